"""Run evaluation helpers: ATE (Monodepth2 formula), trajectory chaining, constant-depth baseline."""

import numpy as np
import pytest

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
