"""Depth-estimation metrics, evaluation crops and the KITTI Eigen evaluation protocol.

Definitions follow Monodepth2's ``compute_errors`` (Godard et al., ICCV 2019; spec ``monodepth_seg.md`` §A.8) plus
``log10 = mean |log10 gt - log10 pred|`` (the NYU convention, ``rsn.md`` §8 / ``sddr.md`` §6.2). With ``d`` the
ground truth and ``d^`` the prediction over the valid pixels::

    abs_rel  = mean(|d - d^| / d)             sq_rel = mean((d - d^)^2 / d)
    rmse     = sqrt(mean((d - d^)^2))          rmse_log = sqrt(mean((ln d - ln d^)^2))
    log10    = mean(|log10 d - log10 d^|)      a_k = mean(max(d / d^, d^ / d) < 1.25^k), k = 1, 2, 3

The numpy functions (``depth_errors``, ``median_scale``, ``evaluate_depth``) are the reference used for reported
numbers; they compute in float64 and return python floats. ``depth_errors_tf`` / ``median_scale_tf`` are the
in-graph versions for monitoring during training (float32, XLA-friendly: no data-dependent shapes).
This module imports numpy and tensorflow only (layering rule in DESIGN.md).
"""

import numpy as np
import tensorflow as tf

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")
CROP_NAMES = ("garg", "eigen_nyu", "none")

# Garg crop (Garg et al., ECCV 2016), as fractions of the image size exactly as Monodepth2's evaluate_depth.py
# writes them (spec A.8): rows [0.40810811 H, 0.99189189 H), cols [0.03594771 W, 0.96405229 W), each bound cast
# to int (truncation). At KITTI's 375x1242 this is rows 153:371, cols 44:1197, the same box Monodepth2 uses for
# its training-time monitoring.
_GARG_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)

# NYU Eigen crop (Eigen et al., NIPS 2014), as used by BTS and AdaBins and offered by rsn.md §8: rows 45:471,
# cols 41:601 of the 480x640 NYU frame. It removes the border where the registered Kinect depth is invalid.
_EIGEN_NYU_REFERENCE = {"height": 480, "width": 640, "rows": (45, 471), "cols": (41, 601)}


# --------------------------------------------------------------------------------------------- input checks


def _as_float_array(value, name):
    """np.asarray(value) as float64, with a clear error for symbolic tensors and non-numeric data."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise TypeError(
            f"{name} must be array-like (numpy array, nested list or eager tensor), got {type(value).__name__}; "
            "inside a tf.function use depth_errors_tf instead"
        ) from exc
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (depth in metres or model units), got dtype {array.dtype}")
    return array.astype(np.float64)


def _as_mask(mask, shape, name="mask"):
    """Boolean mask of ``shape``; None means every pixel. Integer masks must hold only 0 and 1."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise TypeError(f"{name} must be boolean (or integer 0/1), got dtype {mask.dtype}; pass e.g. gt > 0")
        mask = mask.astype(bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape} but gt has shape {tuple(shape)}; they must be equal")
    return mask


def _valid_pairs(gt, pred, mask, context=""):
    """Validated 1-D float64 (gt, pred) over pixels where gt > 0, gt is finite and mask is set."""
    gt = _as_float_array(gt, "gt")
    pred = _as_float_array(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(
            f"gt has shape {gt.shape} but pred has shape {pred.shape}{context}; resize the prediction to the "
            "ground-truth size (and squeeze a channel axis) before computing metrics"
        )
    valid = (gt > 0) & np.isfinite(gt) & _as_mask(mask, gt.shape)
    if not valid.any():
        raise ValueError(f"no valid pixels (gt > 0, finite, inside mask){context}; metrics are undefined")
    gt, pred = gt[valid], pred[valid]
    if not np.isfinite(pred).all():
        raise ValueError(f"pred has {int((~np.isfinite(pred)).sum())} non-finite values on valid pixels{context}")
    return gt, pred


def _errors(gt, pred):
    """Monodepth2's compute_errors (A.8) + log10 on validated 1-D arrays with pred > 0."""
    if (pred <= 0).any():
        raise ValueError(
            f"pred has {int((pred <= 0).sum())} non-positive values on valid pixels; depth must be positive: "
            "clamp it first (the KITTI protocol clamps to [1e-3, 80], see evaluate_depth)"
        )
    thresh = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    log_ratio = np.log(gt) - np.log(pred)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(log_ratio**2))),
        "log10": float(np.mean(np.abs(np.log10(gt) - np.log10(pred)))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


# ------------------------------------------------------------------------------------------- numpy metrics


def depth_errors(gt, pred, mask=None):
    """Standard depth errors over valid pixels (gt > 0, finite, and ``mask``), pooled over all of them.

    Args:
        gt, pred: arrays of the same shape (any rank; numpy, lists or eager tensors).
        mask: optional boolean array of the same shape selecting pixels to evaluate.
    Returns:
        dict with keys ``METRIC_NAMES`` (python floats); definitions in the module docstring (A.8 + log10).
    Raises:
        ValueError on shape mismatch, no valid pixel, or non-positive / non-finite pred on a valid pixel.
    """
    return _errors(*_valid_pairs(gt, pred, mask))


def median_scale(gt, pred, mask=None):
    """Median-scaling ratio ``median(gt) / median(pred)`` over valid pixels (Monodepth2 mono evaluation, A.8)."""
    gt, pred = _valid_pairs(gt, pred, mask)
    pred_median = float(np.median(pred))
    if pred_median <= 0:
        raise ValueError(f"median of pred over valid pixels is {pred_median}; median scaling needs positive depth")
    return float(np.median(gt)) / pred_median


# ------------------------------------------------------------------------------------------------- crops


def _check_size(height, width):
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def garg_crop_mask(height, width):
    """Boolean [height, width] mask of the Garg crop (KITTI Eigen split, A.8); bounds as Monodepth2 computes them."""
    _check_size(height, width)
    top, bottom, left, right = (
        int(f * s) for f, s in zip(_GARG_FRACTIONS, (height, height, width, width), strict=True)
    )
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def eigen_crop_mask(height, width):
    """Boolean [height, width] mask of the NYU Eigen crop: rows 45:471, cols 41:601 at 480x640 (rsn.md §8).

    Other sizes (the image resized from 480x640) keep exactly the pixels whose footprint lies inside the reference
    box: with pixel ``r`` of an ``H``-row image covering ``[r, r + 1) * 480 / H`` in reference rows, the crop is
    rows ``ceil(45 H / 480) : floor(471 H / 480)`` and likewise for columns. At 480x640 this is the box itself;
    for smaller images no kept pixel mixes in the invalid border. Integer arithmetic, so no rounding surprises.
    """
    _check_size(height, width)
    ref = _EIGEN_NYU_REFERENCE

    def bounds(size, ref_size, start, stop):
        return -((-start * size) // ref_size), (stop * size) // ref_size  # (ceil, floor)

    top, bottom = bounds(height, ref["height"], *ref["rows"])
    left, right = bounds(width, ref["width"], *ref["cols"])
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def crop_mask(name, height, width):
    """Evaluation crop by name: ``"garg"`` (KITTI), ``"eigen_nyu"`` (NYU) or ``"none"`` (every pixel)."""
    if name == "garg":
        return garg_crop_mask(height, width)
    if name == "eigen_nyu":
        return eigen_crop_mask(height, width)
    if name == "none":
        _check_size(height, width)
        return np.ones((height, width), dtype=bool)
    raise ValueError(f"crop must be one of {CROP_NAMES}, got {name!r}")


# ---------------------------------------------------------------------------------------- KITTI protocol


def _image_list(images, name):
    """A list of 2-D float64 depth maps from a list of maps or one [N, H, W] / [N, H, W, 1] array."""
    if isinstance(images, (list, tuple)):
        items = [_as_float_array(image, f"{name}[{i}]") for i, image in enumerate(images)]
    else:
        array = _as_float_array(images, name)
        if array.ndim not in (3, 4):
            raise ValueError(
                f"{name} must be a list of 2-D depth maps or an array [N, H, W] or [N, H, W, 1], "
                f"got shape {array.shape}"
            )
        items = list(array)
    out = []
    for i, image in enumerate(items):
        if image.ndim == 3 and image.shape[-1] == 1:  # channels-last depth maps [H, W, 1] (DESIGN.md conventions)
            image = image[..., 0]
        if image.ndim != 2:
            raise ValueError(f"{name}[{i}] must be a depth map [H, W] or [H, W, 1], got shape {image.shape}")
        out.append(image)
    return out


def evaluate_depth(
    gts, preds, *, crop="garg", min_depth=1e-3, max_depth=80.0, median_scaling=True, scale_factor=1.0
):
    """Monodepth2's KITTI Eigen evaluation (spec ``monodepth_seg.md`` §A.8), image by image, then averaged.

    Per image: valid = ``min_depth < gt < max_depth`` and the crop; pred (already at gt's size: resize it first,
    bilinear as A.8) is multiplied by ``scale_factor`` (5.4 for stereo-trained models), then, with
    ``median_scaling``, by ``median(gt) / median(pred)`` over the valid pixels; clamped to
    ``[min_depth, max_depth]``; errors as ``depth_errors``. This order is Monodepth2's, so with median scaling the
    scale factor cancels out of the errors and only changes the reported ratios.

    Args:
        gts, preds: lists of depth maps ``[H, W]`` / ``[H, W, 1]`` (sizes may differ between images) or arrays
            ``[N, H, W(, 1)]``. Zero / non-finite gt marks missing ground truth.
        crop: ``"garg"`` (KITTI), ``"eigen_nyu"`` (NYU) or ``"none"``; computed at each image's own size.
    Returns:
        dict: mean over images of each of ``METRIC_NAMES``; ``num_images``; ``num_valid_pixels`` (total); with
        median scaling ``scale_ratio_median`` = median of the per-image ratios and ``scale_ratio_std`` =
        std(ratios / median), the relative spread Monodepth2 prints as "std".
    """
    if crop not in CROP_NAMES:
        raise ValueError(f"crop must be one of {CROP_NAMES}, got {crop!r}")
    if not (np.isfinite(min_depth) and np.isfinite(max_depth) and 0 <= min_depth < max_depth):
        raise ValueError(f"need 0 <= min_depth < max_depth (finite), got min_depth={min_depth}, max_depth={max_depth}")
    if not (np.isfinite(scale_factor) and scale_factor > 0):
        raise ValueError(f"scale_factor must be a positive finite number, got {scale_factor}")
    if not isinstance(median_scaling, (bool, np.bool_)):
        raise TypeError(f"median_scaling must be True or False, got {median_scaling!r}")
    gts = _image_list(gts, "gts")
    preds = _image_list(preds, "preds")
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground-truth maps but {len(preds)} predictions; they must pair up")
    if not gts:
        raise ValueError("gts is empty: nothing to evaluate")

    per_image, ratios, num_valid = [], [], 0
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        # The depth cap and the crop enter through the mask; _valid_pairs adds gt > 0 and finite gt.
        mask = (gt > min_depth) & (gt < max_depth) & crop_mask(crop, *gt.shape)
        gt_v, pred_v = _valid_pairs(gt, pred, mask, context=f" (image {i})")
        pred_v = pred_v * scale_factor
        if median_scaling:
            pred_median = float(np.median(pred_v))
            if pred_median <= 0:
                raise ValueError(f"median of pred over the valid pixels of image {i} is {pred_median}; it must be > 0")
            ratio = float(np.median(gt_v)) / pred_median
            ratios.append(ratio)
            pred_v = pred_v * ratio
        # A.8 clamps after scaling, so a few far or near outliers cannot dominate sq_rel / rmse.
        pred_v = np.clip(pred_v, min_depth, max_depth)
        per_image.append(_errors(gt_v, pred_v))
        num_valid += gt_v.size

    result = {key: float(np.mean([errors[key] for errors in per_image])) for key in METRIC_NAMES}
    result["num_images"] = len(per_image)
    result["num_valid_pixels"] = int(num_valid)
    if median_scaling:
        ratios = np.asarray(ratios)
        median_ratio = float(np.median(ratios))
        result["scale_ratio_median"] = median_ratio
        result["scale_ratio_std"] = float(np.std(ratios / median_ratio))
    return result


# ------------------------------------------------------------------------------------- in-graph (training)


def _tf_inputs(gt, pred, mask):
    """float32 gt/pred and the valid mask (gt > 0, finite, mask) with static-shape checks."""
    gt = tf.convert_to_tensor(gt)
    pred = tf.convert_to_tensor(pred)
    for name, tensor in (("gt", gt), ("pred", pred)):
        if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
            raise TypeError(f"{name} must be a real-valued tensor, got dtype {tensor.dtype.name}")
    gt, pred = tf.cast(gt, tf.float32), tf.cast(pred, tf.float32)
    if not gt.shape.is_compatible_with(pred.shape):
        raise ValueError(f"gt has shape {gt.shape} but pred has shape {pred.shape}; resize the prediction first")
    valid = (gt > 0.0) & tf.math.is_finite(gt)
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.dtype != tf.bool:
            if not mask.dtype.is_integer:
                raise TypeError(f"mask must be a boolean (or integer 0/1) tensor, got dtype {mask.dtype.name}")
            mask = tf.not_equal(mask, 0)
        if not mask.shape.is_compatible_with(gt.shape):
            raise ValueError(f"mask has shape {mask.shape} but gt has shape {gt.shape}; they must be equal")
        valid = valid & mask
    return gt, pred, valid


def depth_errors_tf(gt, pred, mask=None):
    """In-graph ``depth_errors``: the same formulas pooled over all valid pixels of the batch (A.8 monitoring).

    Shapes: any equal shapes, e.g. ``[B, H, W, 1]``. Returns a dict of float32 scalar tensors keyed by
    ``METRIC_NAMES``. Errors cannot be raised inside a graph, so: no valid pixel gives NaN, and non-positive pred
    on a valid pixel gives inf/NaN; clamp pred (A.8: to [1e-3, 80]) before calling. Masked reductions instead of
    boolean_mask keep shapes static, so this runs under XLA (Keras 3's jit_compile="auto").
    """
    gt, pred, valid = _tf_inputs(gt, pred, mask)
    weight = tf.cast(valid, tf.float32)
    count = tf.reduce_sum(weight)
    # Invalid pixels are replaced by 1 so their logs and ratios stay finite (0 * inf would be NaN).
    gt = tf.where(valid, gt, 1.0)
    pred = tf.where(valid, pred, 1.0)

    def mean(values):
        return tf.reduce_sum(weight * values) / count

    thresh = tf.maximum(gt / pred, pred / gt)
    diff = gt - pred
    log_ratio = tf.math.log(gt) - tf.math.log(pred)
    ln10 = tf.math.log(10.0)
    return {
        "abs_rel": mean(tf.abs(diff) / gt),
        "sq_rel": mean(tf.square(diff) / gt),
        "rmse": tf.sqrt(mean(tf.square(diff))),
        "rmse_log": tf.sqrt(mean(tf.square(log_ratio))),
        "log10": mean(tf.abs(log_ratio) / ln10),
        "a1": mean(tf.cast(thresh < 1.25, tf.float32)),
        "a2": mean(tf.cast(thresh < 1.25**2, tf.float32)),
        "a3": mean(tf.cast(thresh < 1.25**3, tf.float32)),
    }


def _masked_median_tf(values, valid):
    """Median of ``values[valid]`` (numpy's convention: mean of the two middle values for an even count)."""
    flat = tf.reshape(values, [-1])
    flat_valid = tf.reshape(valid, [-1])
    # Invalid entries sort to the end as +inf; the valid ones are the first `count` sorted values.
    ordered = tf.sort(tf.where(flat_valid, flat, tf.constant(np.inf, tf.float32)))
    count = tf.reduce_sum(tf.cast(flat_valid, tf.int32))
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0))
    high = tf.gather(ordered, tf.maximum(count // 2, 0))
    return tf.where(count > 0, 0.5 * (low + high), tf.constant(np.nan, tf.float32))


def median_scale_tf(gt, pred, mask=None):
    """In-graph ``median_scale``: ``median(gt) / median(pred)`` over the valid pixels of the whole batch.

    Monodepth2 monitors training with batch-level median scaling (A.8). Returns a float32 scalar; NaN when no
    pixel is valid. Sort-based, so shapes stay static (XLA-friendly).
    """
    gt, pred, valid = _tf_inputs(gt, pred, mask)
    return _masked_median_tf(gt, valid) / _masked_median_tf(pred, valid)
