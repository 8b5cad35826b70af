"""Run evaluation helpers: ATE (Monodepth2 formula), trajectory chaining (eval.pose_protocol tfdepth | monodepth2),
constant-depth baseline."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import EvalConfig
from tfdepth.evaluation import compute_ate, constant_depth_baseline, snippet_positions


def rigid(yaw, t):
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = t
    return T


def test_ate_is_zero_for_a_scaled_and_shifted_trajectory():
    gt = np.array([[0, 0, 0], [0, 0, 1.0], [0.1, 0, 2.1], [0.3, 0, 3.0], [0.6, 0, 4.2]])
    pred = 0.37 * gt + np.array([5.0, -1.0, 2.0])  # unknown scale and origin: both aligned away
    assert compute_ate(gt, pred) == pytest.approx(0.0, abs=1e-12)


def test_ate_matches_hand_computation():
    gt = np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]])
    pred = np.array([[0, 0, 0], [0, 0, 1.0], [1.0, 0, 2.0]])
    # aligned (same first point); scale = sum(gt*pred)/sum(pred^2) = 5/6; errors: pred*5/6 - gt
    err = pred * 5 / 6 - gt
    expected = np.sqrt(np.sum(err**2)) / 3  # Monodepth2 divides the root of the sum by n
    assert compute_ate(gt, pred) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="n, 3"):
        compute_ate(gt, pred[:2])


def test_snippet_positions_chain_relative_poses():
    # Camera poses T_world_from_cam for 4 frames; relative T_{k+1 from k} = inv(P[k+1]) @ P[k].
    P = [rigid(0.0, [0, 0, 0]), rigid(0.1, [0.1, 0, 1]), rigid(0.25, [0.3, 0.02, 2.1]), rigid(0.3, [0.6, 0, 3])]
    relative = np.stack([np.linalg.inv(P[k + 1]) @ P[k] for k in range(3)])
    positions = snippet_positions(relative)
    expected = np.stack([(np.linalg.inv(P[0]) @ P[k])[:3, 3] for k in range(4)])
    np.testing.assert_allclose(positions, expected, atol=1e-12)


def test_constant_baseline_is_the_best_constant():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(2, 60, size=(40, 60)) for _ in range(3)]
    cfg = EvalConfig(crop="none")
    result = constant_depth_baseline(gts, cfg)
    # No other constant does better on abs_rel (brute force over a grid, per image).
    per_image = [min(np.mean(np.abs(g.ravel() - c) / g.ravel()) for c in np.linspace(2, 60, 400)) for g in gts]
    assert result["abs_rel"] <= np.mean(per_image) + 1e-3
    assert result["constant"] in ("median", "abs_rel-optimal")


# ----------------------------------------------------------------------------- eval.pose_protocol: tfdepth | monodepth2
# Hand-worked case. Ground-truth relative pose M = T_{k+1 from k} = [R | t] with R a +90 deg turn about y
# (R = [[0,0,1],[0,1,0],[-1,0,0]]) and t = (0, 0, -1), twice (3 frames). Prediction: P = [I | (0, 0, -1)], twice.
#   tfdepth (camera centres, inverses chained): inv(M) = [R^T | -R^T t] = [R^T | (-1, 0, 0)], so positions
#     0, (-1, 0, 0), (-1, 0, 0) + R^T (-1, 0, 0) = (-1, 0, -1); the prediction's: 0, (0, 0, 1), (0, 0, 2).
#     scale = sum(gt . pred) / sum(pred^2) = -2 / 5; errors 0, (1, 0, -0.4), (1, 0, 0.2): ATE = sqrt(2.2) / 3.
#   monodepth2 (the matrices multiplied left to right): M, M @ M: positions 0, t = (0, 0, -1), R t + t = (-1, 0, -1);
#     the prediction's: 0, (0, 0, -1), (0, 0, -2). scale = 3 / 5; errors 0, (0, 0, 0.4), (1, 0, -0.2):
#     ATE = sqrt(1.2) / 3. Its second snippet starts at frame 1 and holds one pose (2 positions): gt t, pred t, ATE 0.
R_TURN = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])


def pose(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


GT_TURN = pose(R_TURN, [0, 0, -1])
PRED_STRAIGHT = pose(np.eye(3), [0, 0, -1])


def test_the_two_chainings_against_hand_worked_positions():
    from tfdepth.evaluation import snippet_positions_monodepth2

    np.testing.assert_allclose(snippet_positions([GT_TURN] * 2), [[0, 0, 0], [-1, 0, 0], [-1, 0, -1]], atol=1e-12)
    np.testing.assert_allclose(snippet_positions_monodepth2([GT_TURN] * 2), [[0, 0, 0], [0, 0, -1], [-1, 0, -1]],
                               atol=1e-12)
    # Where they agree: a pure translation gives the same trajectory negated (and so the same ATE).
    shifts = [pose(np.eye(3), t) for t in ([0.1, 0, -1], [0.2, 0.05, -0.9], [0, 0, -1.1])]
    np.testing.assert_allclose(snippet_positions_monodepth2(shifts), -snippet_positions(shifts), atol=1e-12)
    with pytest.raises(ValueError, match=r"\[n, 4, 4\]"):
        snippet_positions_monodepth2(np.eye(4))


def test_protocols_differ_by_chaining_and_by_the_short_tail_snippets():
    from tfdepth.evaluation import sequence_ates

    gt, pred = np.stack([GT_TURN] * 2), np.stack([PRED_STRAIGHT] * 2)
    np.testing.assert_allclose(sequence_ates(gt, pred, 3, "tfdepth"), [np.sqrt(2.2) / 3], rtol=1e-12)
    np.testing.assert_allclose(sequence_ates(gt, pred, 3, "monodepth2"), [np.sqrt(1.2) / 3, 0.0], atol=1e-12)
    # Window counts for F = 6 frames and 5-frame snippets: tfdepth the 2 full ones; monodepth2 one per start frame
    # 0..4 (F - 1), the last three with 4, 3 and 2 positions. The 2-position snippet [0, g], [0, p] by hand:
    # ATE = |(g.p / p.p) p - g| / 2.
    rng = np.random.default_rng(3)
    gt6 = np.stack([pose(np.eye(3), rng.normal(0, 1, 3)) for _ in range(5)])
    pred6 = np.stack([pose(np.eye(3), rng.normal(0, 1, 3)) for _ in range(5)])
    assert len(sequence_ates(gt6, pred6, 5, "tfdepth")) == 2
    md2 = sequence_ates(gt6, pred6, 5, "monodepth2")
    assert len(md2) == 5
    g, p = gt6[4][:3, 3], pred6[4][:3, 3]
    assert md2[4] == pytest.approx(np.linalg.norm(g.dot(p) / p.dot(p) * p - g) / 2, rel=1e-12)
    # The full windows are the same ones in both protocols (pure translations: same ATE), the tail is extra.
    np.testing.assert_allclose(md2[:2], sequence_ates(gt6, pred6, 5, "tfdepth"), rtol=1e-12)
    with pytest.raises(ValueError, match="pose_protocol"):
        sequence_ates(gt, pred, 3, "sfmlearner")
    with pytest.raises(ValueError, match="2 ground-truth relative poses but 1 predicted"):
        sequence_ates(gt, pred[:1], 3)


class _FramePoseNet:
    """Reads the frame's number from its constant pixel value (uint8 20 k) and returns that pair's pose."""

    def __init__(self, table):
        self.table = table  # uint8 value of the earlier frame -> (axisangle, translation)

    def __call__(self, pairs, training=False):
        keys = np.rint(pairs.numpy()[:, 0, 0, 0] * 255).astype(int)
        aa = np.array([self.table[k][0] for k in keys], np.float32)[:, None, :]
        tr = np.array([self.table[k][1] for k in keys], np.float32)[:, None, :]
        return {"axisangle": tf.constant(aa), "translation": tf.constant(tr)}


class _GroundTruthDepth:
    def __init__(self, depths):
        self.depths = iter(depths)

    def predict_batch(self, images):
        return 2.0 * next(self.depths)  # right up to scale: median scaling makes it exact


def test_evaluate_sequences_names_the_pose_protocol_it_used():
    """Sequence A: 3 frames of the hand-worked turn, predicted straight. Sequence B: 2 frames, too short for a
    3-frame snippet; the monodepth2 protocol still scores its one pose: gt t = (0, 0, -1), pred p = (0.3, 0, -1),
    ATE = |residual of g on p| / 2 = sqrt(1 - 1 / 1.09) / 2 = 0.15 / sqrt(1.09)."""
    import dataclasses

    from tfdepth.evaluation import evaluate_sequences

    def sequence(values, gt_relative):
        world = [np.eye(4)]
        for M in gt_relative:  # T_world_from_cam[k+1] = T_world_from_cam[k] @ inv(T_{k+1 from k})
            world.append(world[-1] @ np.linalg.inv(M))
        images = np.stack([np.full((8, 8, 3), v, np.uint8) for v in values])
        return {"image": images, "depth": np.full((len(values), 8, 8), 5.0, np.float32), "poses": np.stack(world)}

    seqs = [sequence([0, 20, 40], [GT_TURN, GT_TURN]), sequence([100, 120], [GT_TURN])]
    table = {0: ([0, 0, 0], [0, 0, -1]), 20: ([0, 0, 0], [0, 0, -1]), 100: ([0, 0, 0], [0.3, 0, -1])}
    net = _FramePoseNet(table)
    base = EvalConfig(crop="none", pose_snippet=3)
    expected = {
        "tfdepth": [np.sqrt(2.2) / 3],
        "monodepth2": [np.sqrt(1.2) / 3, 0.0, 0.15 / np.sqrt(1.09)],
    }
    for protocol, ates in expected.items():
        cfg = dataclasses.replace(base, pose_protocol=protocol)
        depths = [s["depth"] for s in seqs]
        result = evaluate_sequences(_GroundTruthDepth(depths), seqs, cfg, pose_net=net, network_size=(8, 8))
        assert result["pose_protocol"] == protocol
        assert result["ate_snippets"] == len(ates)
        assert result["ate_mean"] == pytest.approx(np.mean(ates), rel=1e-5)
        assert result["ate_std"] == pytest.approx(np.std(ates), rel=1e-4, abs=1e-7)
        assert result["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    no_pose = evaluate_sequences(_GroundTruthDepth([s["depth"] for s in seqs]), seqs, base)
    assert "pose_protocol" not in no_pose and "ate_mean" not in no_pose
