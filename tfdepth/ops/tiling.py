"""Overlapping windows and feathered merging for SDDR's coarse-to-fine steps (specs/sddr.md §3.3, §6).

Used by the self-distilled pseudo-labels (``tfdepth.train.self_distillation``) and by two-stage inference
(``tfdepth.models.sddr_inference``), so that both cut and merge windows identically.

* :func:`window_grid`: ``n x n`` overlapping windows of one size that tile an ``H x W`` canvas, row-major. The
  window size per axis is ``floor(L / (n - (n - 1) * overlap)) + 1`` (the official ``utils_2stage.py`` formula,
  e.g. 1920x1080 at 2x2 / 20 % -> 1067x601) and the starts are spread evenly from 0 to ``L - size``, so the first
  and last windows touch the borders. [interpretation] The official grid generator adds right- and bottom-aligned
  windows one pixel short of the border and yields n^2 windows only for some aspect ratios (sddr.md §3.3); the
  even spread gives exactly n^2 windows for every size and keeps the code's window size and overlap.
* :func:`feather_mask`: Boost's merging mask (Miangoleh et al. 2021, ``generatemask``): 1 on the central 70 % of
  a 3000x3000 square (15 % margin per side), blurred by a Gaussian with sigma = 3000 / 16 truncated at 2 sigma
  (OpenCV's kernel of 2 ceil(2 sigma) + 1 taps), min-max normalised, then resized (bilinear, half-pixel) to the
  window. The blur of a separable box is separable and the 2 sigma support never reaches the square's border,
  so the mask is exactly the outer product of two 1-D profiles that go from 0 at the window border to 1 inside;
  it is computed that way.
* :func:`crop_windows_tf`: cuts the windows out of a map of any resolution (boxes are given in canvas pixels and
  scaled to the map) and resizes each to the network's window size, window-major: windows ``k`` of all images
  are rows ``k*B .. k*B + B - 1``, so one network call refines every window of a step.
* :func:`merge_windows_tf`: pastes windows into the canvas one after the other, ``canvas = canvas (1 - M) + P M``
  inside the window's box (M the feather mask), in row-major order, exactly as the official ``patchfusion``
  does. Pixels no window covers with a non-zero weight (the outer border rows/columns, where every mask is 0)
  keep the canvas value.

* :func:`refine_windows_tf`: one coarse-to-fine step over a list of windows, shared by the self-distilled labels
  and two-stage inference: per window the low input is the crop of the step's base estimate (nearest-resized to
  the window network size, the code's ``transforms.Resize(NEAREST)``), the high input a high-resolution window
  (given, or cropped from a high-resolution map, bilinear); both are min-max normalised (the official
  ``inference()``); the network output is bicubic-resized to the crop size and aligned to the base crop by
  least-squares scale and shift (the code's ``compute_scale_and_shift`` before pasting). [interpretation] The code
  aligns at the window network size against the nearest-resized base crop; aligning at the crop's own size uses
  the unresampled base values (the fit is the same up to resampling).

Boxes are python ints (static shapes): windows are cut with static slices and merged with static pads, so the
graph has no data-dependent shapes and everything runs under ``tf.function``.
"""

import functools

import numpy as np
import tensorflow as tf

from tfdepth.ops.align import least_squares_scale_shift_tf
from tfdepth.ops.edges import minmax_normalize_tf

__all__ = ["window_grid", "feather_mask", "crop_windows_tf", "merge_windows_tf", "refine_windows_tf",
           "align_affine_tf", "RESIZE_METHODS"]

RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "area")
_BOOST_SIZE = 3000  # Boost builds its mask once at 3000x3000 and resizes it (generatemask((3000, 3000)))


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def window_grid(height, width, windows_per_side, overlap):
    """``n^2`` boxes ``(top, left, h, w)`` of equal size tiling ``height x width`` with the given overlap.

    Args:
        height, width: canvas size in pixels (python ints).
        windows_per_side: n (2 for the 2x2 step, 3 for 3x3, ...); 1 gives the whole canvas.
        overlap: fraction of the window shared with its neighbour, in [0, 1) (0.2 and 0.25 in the official code).
    """
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    n = _positive_int(windows_per_side, "windows_per_side")
    if not (isinstance(overlap, (int, float)) and 0.0 <= overlap < 1.0):
        raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    if n == 1:
        return ((0, 0, height, width),)
    if height < n or width < n:
        raise ValueError(f"a {height}x{width} canvas is too small for {n}x{n} windows")

    def axis(length):
        size = min(length, int(length / (n - (n - 1) * overlap)) + 1)
        starts = [int(round(i * (length - size) / (n - 1))) for i in range(n)]
        return size, starts

    h, tops = axis(height)
    w, lefts = axis(width)
    return tuple((top, left, h, w) for top in tops for left in lefts)


@functools.lru_cache(maxsize=None)
def _boost_profile():
    """Boost's 1-D mask profile on 3000 samples (module docstring), values in [0, 1]."""
    size = _BOOST_SIZE
    margin = int(0.15 * size)
    box = np.zeros(size, np.float64)
    box[margin: size - margin] = 1.0
    sigma = int(size / 16)
    k_size = int(2 * np.ceil(2 * sigma) + 1)
    offsets = np.arange(k_size) - k_size // 2
    kernel = np.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    # The support (2 sigma = 374) never reaches the border (margin 450), so zero padding equals OpenCV's
    # BORDER_REFLECT_101 here: only zeros are reflected.
    blurred = np.convolve(box, kernel, mode="same")
    return (blurred - blurred.min()) / (blurred.max() - blurred.min())


def _resize_profile(length):
    """The 3000-sample profile resized to ``length`` like cv2.INTER_LINEAR (half-pixel centres, clamped)."""
    profile = _boost_profile()
    src = (np.arange(length) + 0.5) * (_BOOST_SIZE / length) - 0.5
    return np.interp(np.clip(src, 0, _BOOST_SIZE - 1), np.arange(_BOOST_SIZE), profile)


@functools.lru_cache(maxsize=64)
def feather_mask(height, width):
    """Boost's feathered merging mask ``[height, width]`` float32 in [0, 1] (module docstring)."""
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    mask = np.outer(_resize_profile(height), _resize_profile(width)).astype(np.float32)
    mask.setflags(write=False)
    return mask


def _static_hw(x, name):
    shape = x.shape
    if shape.rank != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"`{name}` needs a static [B, H, W, C] shape for window cutting, got {shape}")
    return int(shape[1]), int(shape[2])


def crop_windows_tf(x, boxes, canvas_hw, out_hw, method="bilinear"):
    """Windows of ``x`` [B, H', W', C] -> [len(boxes) * B, out_h, out_w, C], window-major (module docstring).

    ``boxes`` are ``(top, left, h, w)`` in pixels of a ``canvas_hw`` canvas; for a map of another resolution
    they are scaled to it and rounded. Down-sizing uses anti-aliasing (area-weighted for bilinear/bicubic).
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}, got {method!r}")
    x = tf.convert_to_tensor(x)
    map_h, map_w = _static_hw(x, "x")
    canvas_h, canvas_w = canvas_hw
    sy, sx = map_h / canvas_h, map_w / canvas_w
    crops = []
    for top, left, h, w in boxes:
        t0, t1 = int(round(top * sy)), int(round((top + h) * sy))
        l0, l1 = int(round(left * sx)), int(round((left + w) * sx))
        t1, l1 = max(t1, t0 + 1), max(l1, l0 + 1)
        crop = x[:, t0:t1, l0:l1]
        if (t1 - t0, l1 - l0) != tuple(out_hw):
            antialias = method in ("bilinear", "bicubic") and (t1 - t0 > out_hw[0] or l1 - l0 > out_hw[1])
            crop = tf.image.resize(crop, out_hw, method=method, antialias=antialias)
        crops.append(tf.cast(crop, x.dtype))
    return tf.concat(crops, axis=0)


def merge_windows_tf(canvas, windows, boxes):
    """Feathered sequential paste of ``windows`` [len(boxes) * B, h, w, C] into ``canvas`` [B, H, W, C].

    Every box must have the window's size ``h x w`` (true for :func:`window_grid`). Returns the new canvas.
    """
    canvas = tf.convert_to_tensor(canvas)
    windows = tf.cast(tf.convert_to_tensor(windows), canvas.dtype)
    height, width = _static_hw(canvas, "canvas")
    batch = tf.shape(canvas)[0]
    win_h, win_w = _static_hw(windows, "windows")
    for k, (top, left, h, w) in enumerate(boxes):
        if (h, w) != (win_h, win_w):
            raise ValueError(f"box {k} is {h}x{w} but the windows are {win_h}x{win_w}; resize them first")
        if top < 0 or left < 0 or top + h > height or left + w > width:
            raise ValueError(f"box {k} {(top, left, h, w)} lies outside the {height}x{width} canvas")
        patch = windows[k * batch:(k + 1) * batch]
        pads = [[0, 0], [top, height - top - h], [left, width - left - w], [0, 0]]
        mask = tf.constant(feather_mask(h, w)[None, :, :, None], dtype=canvas.dtype)
        mask = tf.pad(mask, pads)
        canvas = canvas * (1.0 - mask) + tf.pad(patch, pads) * mask
    return canvas


def refine_windows_tf(refine_fn, base, boxes, window_hw, high=None, high_windows=None):
    """Refined depth windows [len(boxes) * B, h, w, 1] aligned to the crops of ``base`` (module docstring).

    Args:
        refine_fn: ``(low, high) -> depth``, [N, wh, ww, 1] each, inputs in [0, 1] (N_r in inference mode).
        base: [B, H, W, 1] the step's base estimate on the canvas.
        boxes: canvas boxes of equal size (:func:`window_grid`).
        window_hw: the network size (wh, ww) of the window passes.
        high: [B, H', W', 1] a high-resolution map to crop (same aspect as the canvas), or
        high_windows: [len(boxes) * B, wh', ww', 1] window-major high-resolution predictions (e.g. N_d on crops).
    Returns:
        ``(windows, base_crops)``, both [len(boxes) * B, h, w, 1]: aligned refined windows and the base crops.
    """
    if (high is None) == (high_windows is None):
        raise ValueError("refine_windows_tf: pass exactly one of high (a map to crop) or high_windows")
    base = tf.cast(base, tf.float32)
    canvas = _static_hw(base, "base")
    window_hw = tuple(window_hw)
    crop_hw = tuple(boxes[0][2:])
    base_crops = crop_windows_tf(base, boxes, canvas, crop_hw)
    low = minmax_normalize_tf(crop_windows_tf(base, boxes, canvas, window_hw, method="nearest"))
    if high_windows is None:
        high_windows = crop_windows_tf(tf.cast(high, tf.float32), boxes, canvas, window_hw, method="bilinear")
    high_windows = tf.cast(high_windows, tf.float32)
    if tuple(high_windows.shape[1:3]) != window_hw:
        high_windows = tf.image.resize(high_windows, window_hw, method="bilinear", antialias=True)
    refined = tf.cast(refine_fn(low, minmax_normalize_tf(high_windows)), tf.float32)
    if tuple(refined.shape[1:3]) != crop_hw:
        refined = tf.image.resize(refined, crop_hw, method="bicubic")
    return align_affine_tf(refined, base_crops), base_crops


def align_affine_tf(pred, ref, mask=None):
    """``scale * pred + shift`` with the per-image least-squares (scale, shift) of ``pred`` onto ``ref`` over ``mask``.

    ``pred`` and ``ref`` are centred on their masked means before the fit (``least_squares_scale_shift_tf``'s normal
    equations then do not cancel digits in float32: for maps offset far from 0 the error drops from ~1e-4 to
    ~1e-7); the fitted map is the same.
    """
    pred = tf.cast(pred, tf.float32)
    ref = tf.cast(ref, tf.float32)
    mask = tf.ones_like(ref) if mask is None else tf.cast(mask, tf.float32)
    count = tf.maximum(tf.reduce_sum(mask, axis=[1, 2, 3], keepdims=True), 1.0)
    pred_mean = tf.reduce_sum(mask * pred, axis=[1, 2, 3], keepdims=True) / count
    ref_mean = tf.reduce_sum(mask * ref, axis=[1, 2, 3], keepdims=True) / count
    scale, shift = least_squares_scale_shift_tf(pred - pred_mean, ref - ref_mean, mask)
    return scale * (pred - pred_mean) + shift + ref_mean
