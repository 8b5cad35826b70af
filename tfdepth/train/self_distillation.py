"""Coarse-to-fine self-distilled edge pseudo-labels G_S of SDDR (specs/sddr.md §3.2-3.3, paper §3.2, Eq. 5-6).

:func:`coarse_to_fine_labels` is a pure TF function (no Keras model subclass, no Python state): it takes the
refinement network as a callable and the base predictor's maps, and returns stop-gradient targets.

1. **G0** (§3.2): one whole-image pass ``D0 = N_r(N_d(L), N_d(H))`` at the canvas (network) size,
   ``G0 = bilateral(G(D0))`` with G the L1 Sobel magnitude of the min-max-normalised D0
   (``tfdepth.ops.edges``; the bilateral filter suppresses noise in flat areas).
2. **For s = 1..S** (S = 3: 2x2, 3x3, 4x4 windows, 1 + 4 + 9 + 16 = 30 passes): the canvas is cut into
   ``(s + 1)^2`` overlapping windows (``tfdepth.ops.tiling.window_grid``; overlaps 0.2, 0.25, 0.25). Per window w:

   * low input: the crop of the previous iteration's depth D_{s-1} (the code: the step's base estimate, not
     updated within the step), nearest-resized to the window network size and min-max normalised;
   * high input: the predictor's high-resolution window N_d(H_s^w): ``predictor_fn(image crop)`` when a predictor
     and the image are given, otherwise the crop of ``depth_high`` at its own resolution (a high-resolution base
     map, e.g. the synthetic engine's degradation rendered at 2x the network size), resized (bilinear,
     anti-aliased) and min-max normalised;
   * ``D_s^w = N_r(low, high)``, aligned to the low crop by least-squares scale and shift (as the code's
     two-stage merge: depth alignment keeps the windows mutually consistent), bicubic-resized to the crop size;
   * Eq. 6: ``(beta1, beta0) = argmin || beta1 G(D_s^w) + beta0 - G_{s-1}^w ||^2`` (least squares over the window
     without its outer one-pixel ring, where the window's Sobel sees padding), ``G_s^w = beta1 G(D_s^w) + beta0``.

   The windows are pasted with Boost's feathered mask (``merge_windows_tf``) into D_s (depth) and G_s (edges).
3. After S iterations **G_S** is the label. ``label_from="depth"`` (default) takes ``G_S = G(D_S)``, the edge
   representation of the merged refined depth; ``label_from="gradient"`` takes the merged Eq.-6-aligned window
   gradients G_s^w (the paper's Eq. 6 read literally). sddr.md §3.3 leaves the merge open and lists both.
   [decision, measured] The literal least-squares fit of a window's gradients onto G_{s-1} pulls sharp window
   edges back towards the coarser G_{s-1}: a wide low ridge is best fitted by a scaled-down narrow peak plus an
   offset beta0 that also lands on the flat areas of the window. On a test scene whose whole-image base map is
   blurred (9x9 box) and whose windows see the sharp scene (``tests/test_self_distillation.py``), against the true
   edge map: L1 distance after max-normalisation 0.040 for G0, 0.045 / 0.036 for the literal G_S at S = 1 / 3,
   0.0049 / 0.0010 for ``G(D_S)``; correlation 0.48 for G0, 0.81 / 0.98 literal, 0.95 / 0.999 ``G(D_S)``. Both
   sharpen G0; the depth route more, without the offset, and it keeps what Eq. 6 is for (windows of one
   consistent scale: each window's depth is least-squares aligned to the running estimate). So it is the
   default; G_S is an edge label either way (L_grad aligns it per region).

All windows of one iteration go through N_r in **one batched call** (window-major batch of ``n^2 B``), so the
graph has S + 1 network calls. Every output is ``tf.stop_gradient``-ed and N_r should be called with
``training=False`` (:func:`refine_fn_from_model` does): labels are targets, never differentiated (§3.3).

Shapes and sizes: ``depth_low`` [B, H, W, 1] defines the canvas H x W (a multiple of 128, the network size);
``depth_high`` [B, H', W', 1] may be larger (its crops then carry more detail than the canvas); the window network
size defaults to the canvas size (the code uses 1024 for its windows). Static spatial shapes are required (the
windows are static slices). ``depth_high`` and ``image`` must have the canvas's aspect ratio (2 % tolerance).

Refresh schedule (sddr.md §3.5 and §8 item 1: [not found]) — proposed, for the trainer: epoch 1 trains L_gt only;
from epoch 2 on, the labels of a sample are computed with the **current weights** (no EMA teacher; the paper's
"G_s^w is further optimized based on the gradient of current refined depth", Fig. 13). Two ways:

* ``"step"``: inside the train step, before the gradient tape, on the step's batch. Always fresh; costs
  ``1 + sum (s+1)^2`` forward passes per sample (30 at S = 3, cheaper at S = 1 or 2): the choice for on-the-fly
  synthetic data (no sample is seen twice).
* ``"epoch"``: at the start of every epoch >= 2, over a fixed training set, cached with the sample (the labels
  then lag the weights by at most one epoch; 3 epochs in the paper, so refreshed twice).
"""

import tensorflow as tf

from tfdepth.ops.edges import bilateral_filter_tf, edge_representation_tf, minmax_normalize_tf
from tfdepth.models.sddr_inference import refine_fn_from_model
from tfdepth.ops.tiling import align_affine_tf, crop_windows_tf, merge_windows_tf, refine_windows_tf, window_grid

__all__ = ["coarse_to_fine_labels", "refine_fn_from_model", "DEFAULT_OVERLAPS", "LABEL_SOURCES"]

DEFAULT_OVERLAPS = (0.2, 0.25, 0.25)  # 2x2 and 3x3 as the official two-stage code; 4x4 [not found]: as 3x3
LABEL_SOURCES = ("depth", "gradient")
_ASPECT_TOLERANCE = 0.02


def _interior_mask(x):
    """1 inside, 0 on the outer one-pixel ring of each window: there the window's Sobel sees padding instead of the
    true neighbours, so those pixels are left out of the Eq. 6 fit (the feather mask gives them weight 0 too)."""
    h, w = int(x.shape[1]), int(x.shape[2])
    inner = tf.ones([tf.shape(x)[0], h - 2, w - 2, 1], x.dtype)
    return tf.pad(inner, [[0, 0], [1, 1], [1, 1], [0, 0]])


def _static_hw(x, name):
    if x.shape.rank != 4 or x.shape[1] is None or x.shape[2] is None or x.shape[-1] not in (1, 3):
        raise ValueError(f"`{name}` must be a [B, H, W, C] tensor with static H and W, got shape {x.shape}")
    return int(x.shape[1]), int(x.shape[2])


def _check_aspect(canvas_hw, other_hw, name):
    ratio = (other_hw[0] / other_hw[1]) / (canvas_hw[0] / canvas_hw[1])
    if abs(ratio - 1.0) > _ASPECT_TOLERANCE:
        raise ValueError(f"`{name}` is {other_hw[0]}x{other_hw[1]} but the canvas (depth_low) is "
                         f"{canvas_hw[0]}x{canvas_hw[1]}: a different aspect ratio; pass maps of the same image")


def coarse_to_fine_labels(refine_fn, depth_low, depth_high, *, iterations=3, overlaps=DEFAULT_OVERLAPS,
                          window_size=None, predictor_fn=None, image=None, label_from="depth",
                          edge_padding="replicate", bilateral_radius=3, bilateral_sigma_space=1.5,
                          bilateral_sigma_range=0.1):
    """Self-distilled pseudo-labels (module docstring).

    Args:
        refine_fn: ``(low, high) -> D`` with [N, h, w, 1] inputs in [0, 1] and output; N_r in inference mode.
        depth_low: [B, H, W, 1] N_d(L) resized to the canvas (network) size; any units (normalised here).
        depth_high: [B, H', W', 1] N_d(H), at the canvas size or larger.
        iterations: S (3 in the paper); 0 returns G0.
        overlaps: window overlap per iteration (at least ``iterations`` entries).
        window_size: (h, w) network size of the window passes (default: the canvas size; multiples of 128).
        predictor_fn: optional ``image crop [N, h, w, 3] -> depth [N, h', w', 1]`` (the base predictor N_d), used
            with ``image`` [B, H'', W'', 3] for the high-resolution windows; window crops of the image are resized
            to ``window_size`` before the call.
        label_from: "depth" (default: G of the merged depth D_S) or "gradient" (merged Eq.-6-aligned window
            gradients; module docstring for why not the default).
    Returns:
        dict of [B, H, W, 1] float32, all stop-gradient: ``g_s`` (the label), ``g_0`` (filtered G0),
        ``depth_s`` (merged refined depth D_S in [0, 1] units of D0), ``depth_0``.
    """
    if label_from not in LABEL_SOURCES:
        raise ValueError(f"label_from must be one of {LABEL_SOURCES}, got {label_from!r}")
    if not (isinstance(iterations, int) and iterations >= 0):
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    if len(overlaps) < iterations:
        raise ValueError(f"overlaps has {len(overlaps)} entries but iterations={iterations} needs one per step")
    if (predictor_fn is None) != (image is None):
        raise ValueError("predictor_fn and image go together: pass both (run N_d on window crops) or neither "
                         "(crop depth_high)")
    depth_low = tf.cast(tf.convert_to_tensor(depth_low), tf.float32)
    depth_high = tf.cast(tf.convert_to_tensor(depth_high), tf.float32)
    canvas = _static_hw(depth_low, "depth_low")
    _check_aspect(canvas, _static_hw(depth_high, "depth_high"), "depth_high")
    if image is not None:
        image = tf.cast(tf.convert_to_tensor(image), tf.float32)  # crops are resized: keep float values
        _check_aspect(canvas, _static_hw(image, "image"), "image")
    window_hw = tuple(window_size) if window_size is not None else canvas

    low0 = minmax_normalize_tf(depth_low)
    high0 = depth_high
    if _static_hw(depth_high, "depth_high") != canvas:
        high0 = tf.image.resize(depth_high, canvas, method="bilinear", antialias=True)
    d_prev = minmax_normalize_tf(refine_fn(low0, minmax_normalize_tf(high0)))
    d_0 = d_prev
    g_prev = bilateral_filter_tf(edge_representation_tf(d_prev, edge_padding), bilateral_radius,
                                 bilateral_sigma_space, bilateral_sigma_range)
    g_0 = g_prev

    for s in range(1, iterations + 1):
        boxes = window_grid(canvas[0], canvas[1], s + 1, overlaps[s - 1])
        crop_hw = boxes[0][2:]
        if predictor_fn is not None:
            rgb = crop_windows_tf(image, boxes, canvas, window_hw, method="bilinear")
            refined, _ = refine_windows_tf(refine_fn, d_prev, boxes, window_hw, high_windows=predictor_fn(rgb))
        else:
            refined, _ = refine_windows_tf(refine_fn, d_prev, boxes, window_hw, high=depth_high)
        # Eq. 6: gradient alignment to G_{s-1} on the window.
        g_w = edge_representation_tf(refined, edge_padding)
        g_ref = crop_windows_tf(g_prev, boxes, canvas, crop_hw)
        g_w = align_affine_tf(g_w, g_ref, _interior_mask(g_ref))  # beta1 G(D_s^w) + beta0

        d_prev = merge_windows_tf(d_prev, refined, boxes)
        g_prev = merge_windows_tf(g_prev, g_w, boxes)

    g_s = g_prev if label_from == "gradient" else edge_representation_tf(d_prev, edge_padding)
    return {key: tf.stop_gradient(value) for key, value in
            (("g_s", g_s), ("g_0", g_0), ("depth_s", d_prev), ("depth_0", d_0))}
