"""Evaluation of trained self-supervised runs: depth (KITTI protocol) and pose (ATE over 5-frame snippets).

Depth: ``tfdepth.metrics.evaluate_depth`` with the config's crop, depth cap and per-image median scaling
(specs/monodepth_seg.md A.8).

Pose (Monodepth2's evaluate_pose.py, after SfMLearner): the pose network predicts the motion between each pair of
consecutive frames; for every snippet of ``n`` frames the camera positions relative to the snippet's first frame
are chained from the predictions and from the ground truth; the prediction is aligned to the ground truth by its
first position and a least-squares scale, and the snippet's ATE is ``sqrt(sum of squared position errors) / n``
(Monodepth2's ``compute_ate``: it divides the root of the *sum* by n, which we keep for comparability; a per-point
RMSE would be ``sqrt(sum/n)``). The mean and standard deviation over snippets are reported.

This module reads numpy arrays; loading datasets is the CLI's job (layering: no tfdepth.data here).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfdepth.geometry import pose_vec_to_matrix
from tfdepth.metrics import evaluate_depth

__all__ = ["compute_ate", "snippet_positions", "predict_relative_poses", "evaluate_sequences", "constant_depth_baseline"]


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
    for M in np.asarray(T_next_from_current, np.float64):
        T = T @ np.linalg.inv(M)
        positions.append(T[:3, 3].copy())
    return np.stack(positions)


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
    """Evaluate depth (every frame) and, with ``pose_net``, pose (every ``pose_snippet`` window) on sequences.

    Args:
        predictor: a ``DepthPredictor`` (image at its own size in, depth at that size out).
        sequences: iterable of dicts with numpy ``image`` [F,H,W,3] uint8, ``depth`` [F,H,W] (0 = none) and
            ``poses`` [F,4,4] (T_world_from_cam).
        eval_config: ``EvalConfig`` (crop, min/max depth, median scaling, scale factor, pose_snippet).
        pose_net: optional pose network; images are resized to ``network_size`` (h, w) for it.
    """
    gts, preds, ates = [], [], []
    n = int(eval_config.pose_snippet)
    for seq in sequences:
        images = np.asarray(seq["image"])
        depth = predictor.predict_batch(images)
        gts.extend(np.asarray(seq["depth"], np.float32))
        preds.extend(depth)
        if pose_net is None or len(images) < n:
            continue
        small = tf.image.resize(images.astype(np.float32) / 255.0, network_size, method="bilinear", antialias=True).numpy()
        relative = predict_relative_poses(pose_net, small)
        poses = np.asarray(seq["poses"], np.float64)
        if not np.all(np.isfinite(poses)):  # no ground-truth poses (NaN): no pose evaluation for this sequence
            continue
        gt_relative = np.stack([np.linalg.inv(poses[k + 1]) @ poses[k] for k in range(len(poses) - 1)])
        for start in range(0, len(images) - n + 1):
            gt_xyz = snippet_positions(gt_relative[start : start + n - 1])
            pred_xyz = snippet_positions(relative[start : start + n - 1])
            ates.append(compute_ate(gt_xyz, pred_xyz))
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
