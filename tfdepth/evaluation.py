"""Evaluation of trained self-supervised runs: depth (KITTI protocol) and pose (ATE over short snippets).

Depth: ``tfdepth.metrics.evaluate_depth`` with the config's crop, depth cap and per-image median scaling
(specs/monodepth_seg.md A.8).

Pose: the pose network predicts ``T_{k+1 from k}`` for each pair of consecutive frames (fed in temporal order, not
inverted; the ground truth's is ``inv(T_world_from_cam[k+1]) @ T_world_from_cam[k]``). Each snippet's positions are
chained from those matrices for the prediction and the ground truth alike, the prediction is aligned to the ground
truth by its first position and a least-squares scale (monocular pose is up to scale), and the snippet's ATE is
``sqrt(sum of squared position errors) / n`` for n positions (Monodepth2's ``compute_ate``, after SfMLearner: the
root of the *sum* divided by n, kept for comparability; a per-point RMSE would be ``sqrt(sum / n)``). The mean and
the (population) standard deviation over all snippets of all sequences are reported, with ``pose_protocol`` naming
which of the two definitions below (``eval.pose_protocol``) produced them:

``tfdepth`` (default): every *full* window of ``n = eval.pose_snippet`` frames (F - n + 1 per sequence of F frames;
sequences shorter than n give none). Positions are the camera centres in the snippet's first camera frame,
``T_0_from_k = inv(T_1_from_0) @ ... @ inv(T_k_from_{k-1})`` (``snippet_positions``).

``monodepth2``: the original's evaluate_pose.py, for comparisons with published KITTI odometry numbers. Two
differences. (1) It multiplies the relative matrices themselves, left to right: position k is the translation of
``T_1_from_0 @ T_2_from_1 @ ... @ T_k_from_{k-1}`` (evaluate_pose.py's ``dump_xyz``, taken from SfMLearner, applied
to these matrices; ``snippet_positions_monodepth2``), where the camera centres need the inverses. For a pure
translation this is the tfdepth trajectory negated and the ATE is the same; once the camera rotates, the two
trajectories, and their ATEs, differ. (2) A snippet starts at every frame
but the last (F - 1 per sequence): the last n - 2 are shorter (n - 1 down to 2 positions, each divided by its own
length) and are averaged with the full ones. The original evaluates one sequence (09 or 10) at a time; over several
sequences the snippets are pooled, as in the tfdepth protocol. One deliberate difference from its code: an all-zero
predicted trajectory gets scale 0 (ATE = |gt| / n) instead of 0/0 = NaN, which would poison the mean.

This module reads numpy arrays; loading datasets is the CLI's job (layering: no tfdepth.data here).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfdepth.config.common import POSE_PROTOCOLS
from tfdepth.geometry import pose_vec_to_matrix
from tfdepth.metrics import evaluate_depth

__all__ = [
    "compute_ate",
    "snippet_positions",
    "snippet_positions_monodepth2",
    "sequence_ates",
    "predict_relative_poses",
    "evaluate_sequences",
    "constant_depth_baseline",
    "metric_constant_baseline",
]


def compute_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """Monodepth2's absolute trajectory error of one snippet (positions [n,3]); see the module docstring."""
    gt_xyz = np.asarray(gt_xyz, np.float64)
    pred_xyz = np.asarray(pred_xyz, np.float64)
    if gt_xyz.shape != pred_xyz.shape or gt_xyz.ndim != 2 or gt_xyz.shape[1] != 3:
        raise ValueError(f"positions must both be [n, 3]; got {gt_xyz.shape} and {pred_xyz.shape}")
    pred = pred_xyz + (gt_xyz[0] - pred_xyz[0])  # align the first positions
    denom = np.sum(pred**2)
    scale = np.sum(gt_xyz * pred) / denom if denom > 0 else 0.0  # least-squares scale (mono is up to scale)
    error = pred * scale - gt_xyz
    return float(np.sqrt(np.sum(error**2)) / gt_xyz.shape[0])


def snippet_positions(T_next_from_current: np.ndarray) -> np.ndarray:
    """Camera positions in the first camera's frame from n-1 consecutive relative poses -> [n, 3].

    ``T_next_from_current[k]`` maps points of camera k into camera k+1. The pose of camera k in the first camera's
    frame is ``T_0_from_k = inv(T_1_from_0) @ ... @ inv(T_k_from_{k-1})``; its translation is the position.
    """
    T = np.eye(4)
    positions = [T[:3, 3].copy()]
    for M in _relative_poses(T_next_from_current, "T_next_from_current"):
        T = T @ np.linalg.inv(M)
        positions.append(T[:3, 3].copy())
    return np.stack(positions)


def snippet_positions_monodepth2(T_next_from_current: np.ndarray) -> np.ndarray:
    """Monodepth2's chaining of n-1 relative poses ``T_{k+1 from k}`` -> [n, 3] (module docstring, difference 1).

    Position k is the translation of ``T_1_from_0 @ T_2_from_1 @ ... @ T_k_from_{k-1}``: the relative matrices
    multiplied left to right as evaluate_pose.py's ``dump_xyz`` does with them.
    """
    T = np.eye(4)
    positions = [T[:3, 3].copy()]
    for M in _relative_poses(T_next_from_current, "T_next_from_current"):
        T = T @ M
        positions.append(T[:3, 3].copy())
    return np.stack(positions)


def _relative_poses(poses, name) -> np.ndarray:
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be [n, 4, 4] relative poses, got shape {poses.shape}")
    return poses


def sequence_ates(gt_relative, pred_relative, snippet: int, protocol: str = "tfdepth") -> list[float]:
    """Per-snippet ATEs of one sequence from its F-1 relative poses ``T_{k+1 from k}`` (ground truth, prediction).

    ``tfdepth``: every full window of ``snippet`` frames; ``monodepth2``: a window starting at every frame but the
    last, shorter at the end (module docstring). Returns [] when the protocol finds no snippet.
    """
    if protocol not in POSE_PROTOCOLS:
        raise ValueError(f"eval.pose_protocol must be one of {POSE_PROTOCOLS}, got {protocol!r}")
    if isinstance(snippet, bool) or not isinstance(snippet, (int, np.integer)) or snippet < 2:
        raise ValueError(f"eval.pose_snippet must be an integer >= 2 frames, got {snippet!r}")
    gt_relative = _relative_poses(gt_relative, "ground-truth relative poses")
    pred_relative = _relative_poses(pred_relative, "predicted relative poses")
    if len(gt_relative) != len(pred_relative):
        raise ValueError(f"{len(gt_relative)} ground-truth relative poses but {len(pred_relative)} predicted ones")
    steps = int(snippet) - 1  # relative poses per full snippet
    if protocol == "tfdepth":
        starts, chain = range(len(gt_relative) - steps + 1), snippet_positions
    else:  # evaluate_pose.py: one snippet per start frame 0..F-2, cut short by the end of the sequence
        starts, chain = range(len(gt_relative)), snippet_positions_monodepth2
    return [
        compute_ate(chain(gt_relative[i : i + steps]), chain(pred_relative[i : i + steps])) for i in starts
    ]


def predict_relative_poses(pose_net, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """T_{k+1 from k} [n-1,4,4] for consecutive frames of ``images`` [n,H,W,3] (float in [0,1]).

    The pair is fed in temporal order [I_k, I_k+1] and not inverted, so the matrix maps camera-k points into
    camera k+1 (A.4).
    """
    pairs = np.concatenate([images[:-1], images[1:]], axis=-1).astype(np.float32)
    out = []
    for start in range(0, len(pairs), batch_size):
        pred = pose_net(tf.constant(pairs[start : start + batch_size]), training=False)
        T = pose_vec_to_matrix(tf.cast(pred["axisangle"], tf.float32), tf.cast(pred["translation"], tf.float32))
        out.append(T.numpy())
    return np.concatenate(out).astype(np.float64)


def evaluate_sequences(predictor, sequences, eval_config, pose_net=None, network_size=None) -> dict:
    """Evaluate depth (every frame) and, with ``pose_net``, pose (snippets of ``pose_snippet`` frames) on sequences.

    Args:
        predictor: a ``DepthPredictor`` (image at its own size in, depth at that size out).
        sequences: iterable of dicts with numpy ``image`` [F,H,W,3] uint8, ``depth`` [F,H,W] (0 = none) and
            ``poses`` [F,4,4] (T_world_from_cam).
        eval_config: ``EvalConfig`` (crop, min/max depth, median scaling, scale factor, pose_snippet,
            pose_protocol: ``tfdepth`` or ``monodepth2``, see the module docstring).
        pose_net: optional pose network; images are resized to ``network_size`` (h, w) for it.

    Returns the depth metrics and, when any snippet was evaluated, ``ate_mean``, ``ate_std``, ``ate_snippets`` and
    ``pose_protocol`` (the definition used, so that a report can say which).
    """
    gts, preds, ates = [], [], []
    n = int(eval_config.pose_snippet)
    protocol = getattr(eval_config, "pose_protocol", "tfdepth")
    if protocol not in POSE_PROTOCOLS:
        raise ValueError(f"eval.pose_protocol must be one of {POSE_PROTOCOLS}, got {protocol!r}")
    shortest = n if protocol == "tfdepth" else 2  # frames a sequence needs for one snippet
    for seq in sequences:
        images = np.asarray(seq["image"])
        depth = predictor.predict_batch(images)
        gts.extend(np.asarray(seq["depth"], np.float32))
        preds.extend(depth)
        if pose_net is None or len(images) < shortest:
            continue
        poses = np.asarray(seq["poses"], np.float64)
        if not np.all(np.isfinite(poses)):  # no ground-truth poses (NaN): no pose evaluation for this sequence
            continue
        small = tf.image.resize(images.astype(np.float32) / 255.0, network_size, method="bilinear", antialias=True).numpy()
        relative = predict_relative_poses(pose_net, small)
        gt_relative = np.stack([np.linalg.inv(poses[k + 1]) @ poses[k] for k in range(len(poses) - 1)])
        ates.extend(sequence_ates(gt_relative, relative, n, protocol))
    if not gts:
        raise ValueError("no frames to evaluate: the sequence iterable was empty")
    results = evaluate_depth(
        gts,
        preds,
        crop=eval_config.crop,
        min_depth=eval_config.min_depth,
        max_depth=eval_config.max_depth,
        median_scaling=eval_config.median_scaling,
        scale_factor=eval_config.scale_factor,
    )
    if ates:
        results["ate_mean"] = float(np.mean(ates))
        results["ate_std"] = float(np.std(ates))
        results["ate_snippets"] = len(ates)
        results["pose_protocol"] = protocol
    return results


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def constant_depth_baseline(gts, eval_config) -> dict:
    """The best constant-depth prediction per image, evaluated with the same protocol as a model.

    With per-image median scaling every constant becomes ``median(gt)``; without it the constant is an oracle per
    image. We evaluate two constants per image and keep the one with the lower mean abs_rel over the set:
    ``median(gt)`` (what median scaling makes of any constant) and the weighted median of gt with weights 1/gt,
    which minimises abs_rel = mean(|gt - c| / gt) exactly. Median scaling is switched off for the second so the
    oracle constant is kept. A model must beat this to have learned anything about scene structure.
    """
    from tfdepth.metrics import crop_mask

    gts = [np.asarray(g, np.float64) for g in gts]
    medians, optimal = [], []
    for gt in gts:
        valid = (gt > eval_config.min_depth) & (gt < eval_config.max_depth)
        valid &= crop_mask(eval_config.crop, *gt.shape)
        values = gt[valid]
        if values.size == 0:
            raise ValueError("a ground-truth map has no valid pixel inside the crop and depth range")
        medians.append(np.full(gt.shape, np.median(values)))
        optimal.append(np.full(gt.shape, _weighted_median(values, 1.0 / values)))
    kwargs = dict(crop=eval_config.crop, min_depth=eval_config.min_depth, max_depth=eval_config.max_depth)
    by_median = evaluate_depth(gts, medians, median_scaling=True, **kwargs)
    by_optimum = evaluate_depth(gts, optimal, median_scaling=False, scale_factor=1.0, **kwargs)
    best = by_optimum if by_optimum["abs_rel"] < by_median["abs_rel"] else by_median
    return {**best, "constant": "abs_rel-optimal" if best is by_optimum else "median"}


def metric_constant_baseline(gts, eval_config) -> dict:
    """One constant depth for every image (the mean of all valid ground-truth pixels of the set, which minimises the
    pooled squared error), evaluated with ``eval_config``'s crop and range and no scaling: the bar a metric-depth
    model (RSN) must clear to have learned anything beyond the typical distance of the data."""
    from tfdepth.metrics import crop_mask

    gts = [np.asarray(g, np.float64) for g in gts]
    values = []
    for gt in gts:
        valid = (gt > eval_config.min_depth) & (gt < eval_config.max_depth) & crop_mask(eval_config.crop, *gt.shape)
        values.append(gt[valid])
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        raise ValueError("the ground truth has no valid pixel inside the crop and depth range")
    constant = float(values.mean())
    metrics = evaluate_depth(gts, [np.full(g.shape, constant) for g in gts], crop=eval_config.crop,
                             min_depth=eval_config.min_depth, max_depth=eval_config.max_depth, median_scaling=False,
                             scale_factor=1.0)
    return {**metrics, "constant": constant}
