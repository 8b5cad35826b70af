"""RSN losses (spec rsn.md §6): the region loss L_r and the iterative loss L_i.

The paper's text is missing; the definitions follow the authors' ``rsden/loss.py`` at a18e559 (spec "Checked
against the authors' code" item 1): logarithms are **natural** logs with eps = 1e-6 (a log10 loss would be 0.189x
as large, so its gradients would be 5.3x smaller at the same learning rate).

* Region loss (``region`` / ``region_log``): with support-region ids SI (Algorithm 1; 0 = no region) and
  R_i = {p : SI_p = i},

      L_r = 1/K * sum_{i=1..K} 1/|R_i| * sum_{p in R_i} e_p^2,   e = y_hat - y   (linear)
                                                                e = ln(y_hat + eps) - ln(y + eps)   (log)

  so every support region counts equally, whatever its size. In the generation stage y_hat is the predicted
  region support and y the ground-truth support depth SD.
* Iterative loss (``log_r``; ``l1_r`` is its linear variant, an MSE despite its name):

      L_i = sum_k w_k * mean_p e_{k,p}^2,   w = (0.2, 0.3, 0.5),   e_k = ln(d_k + eps) - ln(y + eps)

  over the refinement iterations d_1..d_N against the ground-truth depth y.

Decisions ([interpretation], spec §6):

* Per image, then the batch mean. The code pools "region i" over the whole batch (region 3 of image 1 and region
  3 of image 2 become one region) with K = the batch maximum; that makes the loss depend on the batch
  composition. Here L_r is computed per image and averaged over the images that have at least one region.
* K = the number of ids present in the image (the code divides by max SI; Algorithm 1's ids are 1..K without
  gaps, so the two agree there, and a gap cannot create a 0/0).
* L_i averages over the valid pixels (``mask``; default: y > 0 and finite, the labelled NYU depth is dense so
  this is every pixel, as in the code), per image, then over the images with a valid pixel.
* An image without any region (or valid pixel) contributes nothing; a batch with none gives 0, never NaN.

Shapes: predictions, targets and ids ``[B, H, W, 1]`` (or ``[B, H, W]``); returns scalars (float32) and, for
:func:`region_loss_per_image`, a ``[B]`` vector plus a ``[B]`` 0/1 "has a region" vector. Everything is computed
in float32 whatever the inputs' dtype (mixed precision).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["LOG_EPS", "ITERATION_WEIGHTS", "region_loss_per_image", "region_loss", "depth_error_map",
           "iterative_loss"]

LOG_EPS = 1e-6  # `torch.log(x + 1e-6)` in region_log / log_r (rsden/loss.py)
ITERATION_WEIGHTS = (0.2, 0.3, 0.5)  # log_r's weights for iterations 1, 2, 3 (484f315 used 1/3 each)


def _as_map(x, name, dtype=tf.float32):
    try:
        x = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a tensor or array, got {type(x).__name__}: {err}") from None
    if x.shape.rank == 4:
        if x.shape[-1] not in (1, None):
            raise ValueError(f"`{name}` must be a one-channel map [B, H, W, 1] or [B, H, W], got shape {x.shape}.")
        x = x[..., 0]
    elif x.shape.rank is not None and x.shape.rank != 3:
        raise ValueError(f"`{name}` must be [B, H, W, 1] or [B, H, W], got shape {x.shape}.")
    return tf.cast(x, dtype)


def _check_same(a, b, a_name, b_name):
    if not a.shape.is_compatible_with(b.shape):
        raise ValueError(f"`{a_name}` and `{b_name}` must have the same shape, got {a.shape} and {b.shape}.")


def depth_error_map(pred, target, log=True, eps=LOG_EPS):
    """Per-pixel squared error ``[B, H, W]``: (ln(pred + eps) - ln(target + eps))^2, or (pred - target)^2."""
    pred = _as_map(pred, "pred")
    target = _as_map(target, "target")
    _check_same(pred, target, "pred", "target")
    if log:
        # eps as in the code; predictions are >= 0 (final ReLU), so ln(0 + 1e-6) = -13.8 is finite.
        return tf.square(tf.math.log(pred + eps) - tf.math.log(target + eps))
    return tf.square(pred - target)


def region_loss_per_image(pred, target, support_ids, log=False, eps=LOG_EPS):
    """L_r of each image (module docstring) -> ``(loss [B], has_region [B])``, float32.

    Args:
      pred: predicted region support ``[B, H, W, 1]`` (metres).
      target: ground-truth support depth SD ``[B, H, W, 1]``.
      support_ids: integer support-region ids SI ``[B, H, W, 1]``, 0 = ignored pixel.
      log: natural-log error (``region_log``) instead of the linear one (``region``).
      eps: the log's offset (1e-6 in the code).
    """
    err = depth_error_map(pred, target, log=log, eps=eps)
    ids = tf.convert_to_tensor(support_ids)
    if not ids.dtype.is_integer:
        raise TypeError(f"`support_ids` must be an integer id map (0 = no region), got dtype {ids.dtype.name}.")
    ids = _as_map(ids, "support_ids", tf.int32)
    _check_same(err, ids, "pred", "support_ids")
    # A negative id would land in the previous image's segments below: refuse it.
    with tf.control_dependencies([tf.debugging.assert_non_negative(ids, message="`support_ids` must be >= 0 "
                                                                                "(0 = no region)")]):
        ids = tf.identity(ids)

    batch = tf.shape(ids)[0]
    flat_ids = tf.reshape(ids, [batch, -1])
    flat_err = tf.reshape(err, [batch, -1])
    num_ids = tf.maximum(tf.reduce_max(flat_ids), 0) + 1
    # One segment per (image, id): b * num_ids + id. Column 0 (pixels without a region) is summed, then dropped.
    segments = flat_ids + tf.range(batch)[:, None] * num_ids
    total = tf.math.unsorted_segment_sum(flat_err, segments, batch * num_ids)
    count = tf.math.unsorted_segment_sum(tf.ones_like(flat_err), segments, batch * num_ids)
    total = tf.reshape(total, [batch, num_ids])[:, 1:]
    count = tf.reshape(count, [batch, num_ids])[:, 1:]
    present = count > 0
    region_mean = tf.where(present, total / tf.maximum(count, 1.0), 0.0)  # (1/|R_i|) sum e^2, 0 if absent
    k = tf.reduce_sum(tf.cast(present, tf.float32), axis=1)  # regions present per image
    per_image = tf.reduce_sum(region_mean, axis=1) / tf.maximum(k, 1.0)
    return per_image, tf.cast(k > 0, tf.float32)


def region_loss(pred, target, support_ids, log=False, eps=LOG_EPS):
    """L_r averaged over the images of the batch that have at least one region (0 if none); scalar float32.

    Arguments as :func:`region_loss_per_image`. ``log=False`` is the linear L_r (``region``), ``log=True`` the
    natural-log L_r (``region_log``).
    """
    per_image, has_region = region_loss_per_image(pred, target, support_ids, log=log, eps=eps)
    return tf.reduce_sum(per_image * has_region) / tf.maximum(tf.reduce_sum(has_region), 1.0)


def _valid_mask(target, mask):
    if mask is None:
        return tf.math.is_finite(target) & (target > 0)
    mask = _as_map(mask, "mask", tf.bool)
    _check_same(target, mask, "target", "mask")
    return mask


def iterative_loss(depths, target, weights=ITERATION_WEIGHTS, log=True, mask=None, eps=LOG_EPS):
    """L_i over the refinement iterations (module docstring).

    Args:
      depths: sequence of N depth predictions ``[B, H, W, 1]`` (iterations 1..N; the last is the final depth).
      target: ground-truth depth ``[B, H, W, 1]`` (metres).
      weights: N weights (0.2, 0.3, 0.5 for the default 3 iterations).
      log: natural-log squared error (``log_r``, default) or plain squared error (``l1_r``).
      mask: optional bool ``[B, H, W, 1]`` of pixels with ground truth; default target > 0 and finite.
      eps: the log's offset (1e-6 in the code).

    Returns:
      dict ``total`` (sum_k w_k * L_k) and ``iter_1`` .. ``iter_N`` (the unweighted L_k), scalars float32.
    """
    if not isinstance(depths, (list, tuple)) or not depths:
        raise ValueError("`depths` must be a non-empty list of [B, H, W, 1] predictions (one per iteration).")
    weights = [float(w) for w in weights]
    if len(weights) != len(depths):
        raise ValueError(f"iterative_loss got {len(depths)} iterations but {len(weights)} weights {weights}; pass "
                         "one weight per iteration (0.2, 0.3, 0.5 for 3 iterations).")
    target = _as_map(target, "target")
    valid = _valid_mask(target, mask)
    valid_f = tf.cast(valid, tf.float32)
    count = tf.reduce_sum(valid_f, axis=[1, 2])  # [B]
    has_pixels = tf.cast(count > 0, tf.float32)
    safe_target = tf.where(valid, target, 1.0)  # log of an invalid target never enters the loss or its gradient
    out = {}
    total = tf.constant(0.0, tf.float32)
    for k, (depth, w) in enumerate(zip(depths, weights), start=1):
        depth = _as_map(depth, f"depths[{k - 1}]")
        _check_same(depth, target, f"depths[{k - 1}]", "target")
        err = depth_error_map(tf.where(valid, depth, 1.0), safe_target, log=log, eps=eps) * valid_f
        per_image = tf.reduce_sum(err, axis=[1, 2]) / tf.maximum(count, 1.0)
        value = tf.reduce_sum(per_image * has_pixels) / tf.maximum(tf.reduce_sum(has_pixels), 1.0)
        out[f"iter_{k}"] = value
        total = total + w * value
    out["total"] = total
    return out
