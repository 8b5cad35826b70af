"""Affine-invariant ground-truth loss L_gt of SDDR (specs/sddr.md §4.1): MiDaS's scale-and-shift-invariant trimmed
MAE plus multi-scale gradient matching (Ranftl et al., TPAMI 2022, Eq. 7 and 11), on every depth output.

Per image, over the valid pixels M (shapes ``[B, H, W, 1]``):

1. Robust normalisation of prediction and target separately (MiDaS Eq. 6): ``t = median_M(x)``,
   ``s = mean_M |x - t|`` (at least 1e-6), ``x_hat = (x - t) / s``.
2. Trimmed MAE: the residuals ``|x_hat_pred - x_hat_gt|`` on M are sorted, the lowest ``int((1 - trim) |M|)`` kept
   (trim 0.2), their sum divided by ``2 |M|``.
3. Gradient matching at ``scales`` = 4 scales (steps 1, 2, 4, 8 by sub-sampling): with ``R = M (x_hat_pred -
   x_hat_gt)``, ``sum |d_x R| M_x + |d_y R| M_y / |M|`` (``M_x`` = both pixels of a horizontal pair valid; |M| is
   the sub-sampled mask's count), summed over scales and weighted by 0.5.

``affine_invariant_loss`` returns ``[B]``; ``multi_output_gt_loss`` sums it over the outputs ``depth``, ``depth_1``,
``depth_2`` (the code's D0, out_half, out_quart), the target and mask nearest-resized to each output's size.

Decisions:

* ``reduction="image"`` (default): trimming and the divisions are per image, MiDaS's definition; the loss of an
  image does not depend on the other images in the batch. ``reduction="batch"`` is the official code's
  ``TrimmedProcrustesLoss``: residuals trimmed jointly over the batch and both terms divided by the batch's total
  |M|; the returned ``[B]`` values are then scaled so that their mean is exactly that batch loss.
* The median is over the valid pixels only. ``official_median=True`` reproduces the code's quirk, the median of
  ``mask * x`` over *all* pixels (zeros of invalid pixels included; sddr.md §4.1: "do not replicate by default").
* Medians follow numpy (mean of the two middle values for an even count). Gradients flow through the
  normalisation (median and scale) as in MiDaS.
* Images without valid pixels contribute 0 (never NaN).
"""

import tensorflow as tf

__all__ = [
    "REDUCTIONS",
    "masked_median_tf",
    "robust_normalize_tf",
    "trimmed_mae_tf",
    "gradient_matching_tf",
    "affine_invariant_loss",
    "multi_output_gt_loss",
]

REDUCTIONS = ("image", "batch")


def _maps(pred, gt, mask):
    pred = tf.cast(tf.convert_to_tensor(pred), tf.float32)
    gt = tf.cast(tf.convert_to_tensor(gt), tf.float32)
    if pred.shape.rank != 4 or gt.shape.rank != 4:
        raise ValueError(f"pred and gt must be [B, H, W, 1] maps, got shapes {pred.shape} and {gt.shape}")
    if not pred.shape.is_compatible_with(gt.shape):
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape; resize gt to the output")
    if mask is None:
        mask = tf.ones_like(gt)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    if not mask.shape.is_compatible_with(gt.shape):
        raise ValueError(f"mask {mask.shape} must have gt's shape {gt.shape}")
    # Non-finite targets can never be valid pixels (they would turn the sums into NaN).
    finite = tf.cast(tf.math.is_finite(gt), tf.float32)
    mask = mask * finite
    return pred, tf.where(finite > 0, gt, tf.zeros_like(gt)), mask


def masked_median_tf(x, mask):
    """Per-image median [B, 1, 1, 1] of ``x`` [B, H, W, 1] over ``mask`` (numpy's convention); 0 if empty."""
    batch = tf.shape(x)[0]
    flat = tf.reshape(x, [batch, -1])
    valid = tf.reshape(mask, [batch, -1]) > 0
    ordered = tf.sort(tf.where(valid, flat, tf.fill(tf.shape(flat), float("inf"))), axis=1)
    count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0)[:, None], batch_dims=1)[:, 0]
    high = tf.gather(ordered, tf.maximum(count // 2, 0)[:, None], batch_dims=1)[:, 0]
    median = tf.where(count > 0, 0.5 * (low + high), tf.zeros_like(low))
    return tf.reshape(median, [-1, 1, 1, 1])


def robust_normalize_tf(x, mask, official_median=False, eps=1e-6):
    """``(x - median_M x) / max(mean_M |x - median|, eps)`` per image (MiDaS Eq. 6; module docstring)."""
    if official_median:
        shift = masked_median_tf(mask * x, tf.ones_like(mask))
    else:
        shift = masked_median_tf(x, mask)
    centred = x - shift
    count = tf.reduce_sum(mask, axis=[1, 2, 3], keepdims=True)
    scale = tf.reduce_sum(mask * tf.abs(centred), axis=[1, 2, 3], keepdims=True) / tf.maximum(count, 1.0)
    return centred / tf.maximum(scale, eps)


def _keep_lowest(residual, valid, keep_count):
    """0/1 mask of the ``keep_count`` [rows] lowest ``residual`` [rows, N] among ``valid``, by rank (ties by index)."""
    big = tf.where(valid, residual, tf.fill(tf.shape(residual), float("inf")))
    order = tf.argsort(tf.stop_gradient(big), axis=1, stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # inverse permutation: rank of each element
    return tf.cast((rank < keep_count[:, None]) & valid, tf.float32)


def trimmed_mae_tf(pred_n, gt_n, mask, trim=0.2, reduction="image"):
    """Trimmed MAE of normalised maps [B] (module docstring, step 2)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must be in [0, 1), got {trim!r}")
    batch = tf.shape(pred_n)[0]
    residual = tf.reshape(tf.abs(pred_n - gt_n), [batch, -1])
    valid = tf.reshape(mask, [batch, -1]) > 0
    count = tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)
    if reduction == "image":
        keep = tf.cast(tf.floor(count * (1.0 - trim)), tf.int32)
        kept = _keep_lowest(residual, valid, keep)
        return tf.reduce_sum(kept * residual, axis=1) / tf.maximum(2.0 * count, 1.0)
    flat_res, flat_valid = tf.reshape(residual, [1, -1]), tf.reshape(valid, [1, -1])
    total = tf.reduce_sum(count)
    keep = tf.cast(tf.floor(total * (1.0 - trim)), tf.int32)[None]
    kept = tf.reshape(_keep_lowest(flat_res, flat_valid, keep), [batch, -1])
    per_image = tf.reduce_sum(kept * residual, axis=1) / tf.maximum(2.0 * total, 1.0)
    return per_image * tf.cast(batch, tf.float32)  # mean over images == the batch-joint loss


def gradient_matching_tf(pred_n, gt_n, mask, scales=4, reduction="image"):
    """Multi-scale gradient matching of normalised maps [B] (module docstring, step 3), summed over scales."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    batch = tf.cast(tf.shape(pred_n)[0], tf.float32)
    total = 0.0
    for scale in range(scales):
        step = 2**scale
        m = mask[:, ::step, ::step]
        diff = m * (pred_n[:, ::step, ::step] - gt_n[:, ::step, ::step])
        grad_x = tf.abs(diff[:, :, 1:] - diff[:, :, :-1]) * (m[:, :, 1:] * m[:, :, :-1])
        grad_y = tf.abs(diff[:, 1:] - diff[:, :-1]) * (m[:, 1:] * m[:, :-1])
        image_loss = tf.reduce_sum(grad_x, axis=[1, 2, 3]) + tf.reduce_sum(grad_y, axis=[1, 2, 3])
        count = tf.reduce_sum(m, axis=[1, 2, 3])
        if reduction == "image":
            total += image_loss / tf.maximum(count, 1.0)
        else:
            total += image_loss * batch / tf.maximum(tf.reduce_sum(count), 1.0)
    return total


def affine_invariant_loss(pred, gt, mask=None, *, trim=0.2, gradient_weight=0.5, scales=4, reduction="image",
                          official_median=False):
    """MiDaS trimmed SSI MAE + ``gradient_weight`` x gradient matching, per image [B] (module docstring).

    Args:
        pred: [B, H, W, 1] prediction (any affine frame).
        gt: [B, H, W, 1] target (depth or disparity, the space the family trains in).
        mask: [B, H, W, 1] bool/0-1 valid pixels (default: all finite targets).
    """
    pred, gt, mask = _maps(pred, gt, mask)
    pred_n = robust_normalize_tf(pred, mask, official_median)
    gt_n = robust_normalize_tf(gt, mask, official_median)
    loss = trimmed_mae_tf(pred_n, gt_n, mask, trim, reduction)
    if gradient_weight:
        loss += gradient_weight * gradient_matching_tf(pred_n, gt_n, mask, scales, reduction)
    return loss


def multi_output_gt_loss(outputs, gt, mask=None, keys=("depth", "depth_1", "depth_2"), **kwargs):
    """Sum over ``keys`` of :func:`affine_invariant_loss` on each output [B] (the code's three-output L_gt).

    ``gt`` and ``mask`` are given at the full output size and nearest-resized to each smaller output.
    """
    gt = tf.cast(tf.convert_to_tensor(gt), tf.float32)
    mask = tf.ones_like(gt) if mask is None else tf.cast(tf.convert_to_tensor(mask), tf.float32)
    total = 0.0
    for key in keys:
        if key not in outputs:
            raise ValueError(f"outputs has no {key!r}; keys present: {sorted(outputs)}")
        pred = tf.cast(outputs[key], tf.float32)
        size = tf.shape(pred)[1:3]
        if pred.shape[1:3] == gt.shape[1:3] and None not in tuple(gt.shape[1:3]):
            gt_k, mask_k = gt, mask
        else:
            gt_k = tf.image.resize(gt, size, method="nearest")
            mask_k = tf.image.resize(mask, size, method="nearest")
        total += affine_invariant_loss(pred, gt_k, mask_k, **kwargs)
    return total
