"""Aligning a prediction to a reference over valid pixels: none, per-image median scale, least-squares scale+shift.

Used by training-time depth monitoring (``alignment`` of a family: self-supervised depth is up to scale, median;
RSN is metric, none; SDDR is affine-invariant, least squares) and by SDDR's losses and merging.

Least squares (MiDaS, Ranftl et al. 2020, Eq. 4): per image ``(s, t) = argmin sum_i m_i (s * p_i + t - r_i)^2``,
closed form from the 2x2 normal equations. Images with fewer than two distinct valid predictions have a singular
system; they fall back to ``s = 1`` and ``t = mean(r - p)`` (a pure shift), never NaN.
"""

import tensorflow as tf

__all__ = ["least_squares_scale_shift_tf", "align_depth_tf", "ALIGNMENTS"]

ALIGNMENTS = ("none", "median", "least_squares")


def least_squares_scale_shift_tf(pred, ref, mask, eps=1e-6):
    """Per-image ``(scale, shift)`` [B,1,1,1] minimising the masked squared error of ``scale*pred + shift - ref``.

    Args:
        pred, ref: [B,H,W,1] float.
        mask: [B,H,W,1] bool or 0/1; pixels outside it do not count.
        eps: relative threshold on the normal-equation determinant below which the system counts as singular.
    """
    pred = tf.cast(pred, tf.float32)
    ref = tf.cast(ref, tf.float32)
    m = tf.cast(mask, tf.float32)
    axes = [1, 2, 3]
    n = tf.reduce_sum(m, axes, keepdims=True)
    sp = tf.reduce_sum(m * pred, axes, keepdims=True)
    sr = tf.reduce_sum(m * ref, axes, keepdims=True)
    spp = tf.reduce_sum(m * pred * pred, axes, keepdims=True)
    spr = tf.reduce_sum(m * pred * ref, axes, keepdims=True)
    det = n * spp - sp * sp
    singular = det <= eps * tf.maximum(n * spp, 1e-12)
    safe_det = tf.where(singular, tf.ones_like(det), det)
    scale = tf.where(singular, tf.ones_like(det), (n * spr - sp * sr) / safe_det)
    shift = tf.where(singular, (sr - sp) / tf.maximum(n, 1.0), (spp * sr - sp * spr) / safe_det)
    return scale, shift


def _masked_median(values, valid):
    """Median of ``values`` [B,N] over ``valid`` per row (numpy's: the mean of the two middle values if even)."""
    big = tf.where(valid, values, tf.fill(tf.shape(values), float("inf")))
    ordered = tf.sort(big, axis=1)
    count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0)[:, None], batch_dims=1)[:, 0]
    high = tf.gather(ordered, tf.maximum(count // 2, 0)[:, None], batch_dims=1)[:, 0]
    return 0.5 * (low + high)


def align_depth_tf(pred, gt, mask, alignment):
    """``pred`` [B,H,W,1] aligned to ``gt`` over ``mask``: ``none``, ``median`` (per image) or ``least_squares``."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {', '.join(ALIGNMENTS)}; got {alignment!r}")
    pred = tf.cast(pred, tf.float32)
    if alignment == "none":
        return pred
    if alignment == "least_squares":
        scale, shift = least_squares_scale_shift_tf(pred, gt, mask)
        return pred * scale + shift
    batch = tf.shape(pred)[0]
    valid = tf.reshape(tf.cast(mask, tf.bool), [batch, -1])
    med_gt = _masked_median(tf.reshape(tf.cast(gt, tf.float32), [batch, -1]), valid)
    med_pred = _masked_median(tf.reshape(pred, [batch, -1]), valid)
    has = tf.reduce_any(valid, axis=1)
    ratio = tf.where(has & (med_pred > 0), med_gt / tf.where(med_pred > 0, med_pred, 1.0), 1.0)
    return pred * ratio[:, None, None, None]
