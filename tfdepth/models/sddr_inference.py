"""SDDR inference for any image size: one-stage (whole image) and two-stage (tile-based) refinement
(specs/sddr.md §2.1, §3.3, §6; the released ``demo.py`` and ``utils_2stage.py``).

* :func:`one_stage_tf`: both base maps are resized to the network size, min-max normalised, refined once by N_r,
  and D0 is resized back to the output size (bilinear). The paper's Table 1 setting.
* :func:`two_stage_tf`: the one-stage result (network size 1024 in the code's two-stage mode) on a canvas of the
  output size, then for each step ``(n, overlap)`` of ``steps`` (default ``(2, 0.2), (3, 0.25)``: the code's 2x2
  then 3x3): n x n overlapping windows, each refined from the crop of the running estimate (low input) and the
  high-resolution window (the base predictor on the image crop via ``predictor_fn``, or the crop of
  ``depth_high``), aligned to the running estimate's crop by least squares, and pasted with Boost's feathered
  mask (``tfdepth.ops.tiling``; one batched network call per step). The paper's Table 2 setting.
* :func:`refine_depth`: numpy in, numpy out, with input checks; for CLIs and evaluation.

Decisions:

* **Resize, not pad**, to a multiple of 128: the network is trained on whole frames resized to its input size
  (the official demo and GBDF's training squash every image to 2048 x 2048), so resizing feeds it what it was
  trained on; padding would add flat borders it never saw and change the content's scale relative to the
  training data. ``keep_aspect=False`` (default, the official square input) resizes to ``size x size``;
  ``keep_aspect=True`` keeps the long side at ``size`` and rounds the short side to a multiple of 128.
  Windows (two-stage) are squashed to the window network size the same way (the code: 1024 x 1024).
* Base maps are resized to the network size with ``input_resize="nearest"`` (the demo's ``NEAREST``); bilinear
  is an option. Any units work: both maps are min-max normalised (the official ``inference()``); the output is
  relative (affine-invariant) D0 in the units of N_r, not metres.
* Bad input: a non-finite value (NaN, inf) in a base map is an error naming the argument (a broken predictor
  output must not be guessed at); zeros are ordinary values (a min-max-normalised map has its minimum at 0). A
  constant base map carries no depth: when both maps of an image are constant, the one-stage output is the
  constant 0 map (documented fallback, never NaN). Base maps (and the image) of another aspect ratio than the
  output (more than 2 %) are an error, as are network/window sizes that are not multiples of 128 and outputs too
  small for the window grid.
"""

import weakref

import numpy as np
import tensorflow as tf

from tfdepth.ops.edges import minmax_normalize_tf
from tfdepth.ops.tiling import crop_windows_tf, merge_windows_tf, refine_windows_tf, window_grid

__all__ = ["one_stage_tf", "two_stage_tf", "refine_depth", "refine_fn_from_model", "network_size_for", "DEFAULT_STEPS", "MODES"]

DEFAULT_STEPS = ((2, 0.2), (3, 0.25))  # utils_2stage.py: 2x2 at 20 % overlap, then 3x3 at 25 %
MODES = ("one_stage", "two_stage")
INPUT_RESIZES = ("nearest", "bilinear")
MULTIPLE = 128
_ASPECT_TOLERANCE = 0.02


def network_size_for(height, width, size, keep_aspect=False):
    """Network input (h, w), multiples of 128, for an image of ``height x width`` (module docstring)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MULTIPLE or size % MULTIPLE:
        raise ValueError(f"network size {size!r} is not a multiple of {MULTIPLE} (>= {MULTIPLE}); SDDR needs H and W "
                         f"divisible by {MULTIPLE}: use e.g. 1024 (the paper: 1024 or 2048)")
    if not keep_aspect:
        return int(size), int(size)
    long_side = max(height, width)
    short = max(MULTIPLE, int(min(height, width) * size / long_side / MULTIPLE + 0.5) * MULTIPLE)  # half up
    return (int(size), short) if height >= width else (short, int(size))


def _check_multiple(hw, name):
    for value in hw:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < MULTIPLE or value % MULTIPLE:
            raise ValueError(f"{name} {tuple(hw)} must be multiples of {MULTIPLE} (>= {MULTIPLE}); e.g. (1024, 1024)")
    return tuple(int(v) for v in hw)


def _as_batch(x, name):
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 2:
        x = x[None, :, :, None]
    elif x.shape.rank == 3:
        x = x[None] if x.shape[-1] in (1, 3) and name == "image" else x[..., None]
    if x.shape.rank != 4 or x.shape[1] is None or x.shape[2] is None:
        raise ValueError(f"{name} must be [H, W], [B, H, W] or [B, H, W, C] with static H, W; got {x.shape}")
    if x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"{name} is {x.shape[1]}x{x.shape[2]}; a base map needs at least 2x2 pixels")
    if not x.dtype.is_floating and not x.dtype.is_integer:
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype.name}")
    x = tf.cast(x, tf.float32)
    if name != "image":
        if tf.executing_eagerly():
            bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
            if bad:
                raise ValueError(f"{name} has {bad} non-finite values (NaN or inf); fill or mask them in the base "
                                 "map before refining (SDDR does not guess missing base depth)")
        else:
            x = tf.debugging.check_numerics(x, f"{name} has non-finite values (NaN or inf)")
    return x


def _check_aspect(reference_hw, hw, name, reference_name):
    ratio = (hw[0] / hw[1]) / (reference_hw[0] / reference_hw[1])
    if abs(ratio - 1.0) > _ASPECT_TOLERANCE:
        raise ValueError(f"{name} is {hw[0]}x{hw[1]} but {reference_name} is {reference_hw[0]}x{reference_hw[1]}: "
                         "another aspect ratio; the base maps must be predictions of the same image (resize them "
                         "to the image's aspect ratio, not crop)")


def _resize(x, hw, method):
    if tuple(x.shape[1:3]) == tuple(hw):
        return x
    antialias = method == "bilinear" and (x.shape[1] > hw[0] or x.shape[2] > hw[1])
    return tf.image.resize(x, hw, method=method, antialias=antialias)


def one_stage_tf(refine_fn, depth_low, depth_high, network_hw, output_hw=None, input_resize="nearest"):
    """One-stage SDDR [B, oh, ow, 1] (module docstring).

    Args:
        refine_fn: ``(low, high) -> D0`` on [B, h, w, 1] maps in [0, 1] (e.g. ``SDDRNet`` via
            ``refine_fn_from_model`` or a lambda).
        depth_low, depth_high: base maps [B, H, W, 1] (or [H, W]) of the same aspect ratio, any resolution.
        network_hw: network input size (multiples of 128).
        output_hw: output size (default: ``depth_high``'s size).
    """
    if input_resize not in INPUT_RESIZES:
        raise ValueError(f"input_resize must be one of {INPUT_RESIZES}, got {input_resize!r}")
    network_hw = _check_multiple(network_hw, "network size")
    low, high = _as_batch(depth_low, "depth_low"), _as_batch(depth_high, "depth_high")
    low_hw, high_hw = tuple(low.shape[1:3]), tuple(high.shape[1:3])
    output_hw = tuple(output_hw) if output_hw is not None else high_hw
    _check_aspect(output_hw, low_hw, "depth_low", "the output")
    _check_aspect(output_hw, high_hw, "depth_high", "the output")
    low_n = minmax_normalize_tf(_resize(low, network_hw, input_resize))
    high_n = minmax_normalize_tf(_resize(high, network_hw, input_resize))
    depth = tf.cast(refine_fn(low_n, high_n), tf.float32)
    # Fallback: both inputs constant -> no depth information -> the constant 0 map (module docstring).
    flat = lambda x: tf.reduce_max(x, axis=[1, 2, 3]) - tf.reduce_min(x, axis=[1, 2, 3]) < 1e-8  # noqa: E731
    constant = (flat(low) & flat(high))[:, None, None, None]
    depth = tf.where(constant, tf.zeros_like(depth), depth)
    return _resize(depth, output_hw, "bilinear")


def two_stage_tf(refine_fn, depth_low, depth_high, *, network_hw=(1024, 1024), window_hw=(1024, 1024),
                 steps=DEFAULT_STEPS, output_hw=None, predictor_fn=None, image=None, initial=None,
                 input_resize="nearest"):
    """Two-stage SDDR [B, oh, ow, 1] in [0, 1] units of the whole-image estimate (module docstring).

    Args:
        network_hw: the whole-image pass size; window_hw: the window passes' size (multiples of 128).
        steps: ``((n, overlap), ...)`` window grids, coarse to fine.
        predictor_fn: optional ``image crops [N, wh, ww, 3] -> depth [N, h, w, 1]`` (the base predictor on the
            window crops, the faithful high input) with ``image`` [B, H, W, 3]; without it, windows of
            ``depth_high`` are the high inputs (a precomputed map limits what the windows can add).
        initial: optional whole-image estimate [B, oh, ow, 1] to start from instead of the one-stage pass.
    """
    if (predictor_fn is None) != (image is None):
        raise ValueError("predictor_fn and image go together: pass both (N_d on window crops) or neither")
    window_hw = _check_multiple(window_hw, "window size")
    high = _as_batch(depth_high, "depth_high")
    output_hw = tuple(output_hw) if output_hw is not None else tuple(high.shape[1:3])
    _check_aspect(output_hw, tuple(high.shape[1:3]), "depth_high", "the output")
    if image is not None:
        image = _as_batch(image, "image")
        _check_aspect(output_hw, tuple(image.shape[1:3]), "image", "the output")
    grids = []
    for n, overlap in steps:  # checked before any network call
        try:
            grids.append(window_grid(output_hw[0], output_hw[1], n, overlap))
        except ValueError as err:
            raise ValueError(f"output size {output_hw} cannot hold the {n}x{n} windows of two-stage SDDR ({err}); "
                             "use one-stage refinement for such small images") from None
    if initial is None:
        estimate = one_stage_tf(refine_fn, depth_low, high, network_hw, output_hw, input_resize)
    else:
        estimate = _as_batch(initial, "initial")
        if tuple(estimate.shape[1:3]) != output_hw:
            raise ValueError(f"initial is {tuple(estimate.shape[1:3])} but the output is {output_hw}")
    estimate = minmax_normalize_tf(estimate)
    for boxes in grids:
        if predictor_fn is not None:
            crops = crop_windows_tf(image, boxes, output_hw, window_hw, method="bilinear")
            windows, _ = refine_windows_tf(refine_fn, estimate, boxes, window_hw, high_windows=predictor_fn(crops))
        else:
            windows, _ = refine_windows_tf(refine_fn, estimate, boxes, window_hw, high=high)
        estimate = merge_windows_tf(estimate, windows, boxes)
    return estimate


def refine_fn_from_model(model, key="depth"):
    """``(low, high) -> model({"depth_low": low, "depth_high": high}, training=False)[key]``, traced once per size.

    The network call is a ``tf.function`` with the signature ``[None, h, w, 1]`` (one per spatial size), so the
    S + 1 calls of :func:`coarse_to_fine_labels` (batches B, 4B, 9B, ...) share one traced network graph instead of
    inlining it S + 1 times. Measured at 256x256 inside an outer ``tf.function``: 67 s of tracing + first run with
    the network inlined three times (S = 2), 21 s with this wrapper (S = 1; the network graph is ~6000 ops).
    """
    traced = {}

    def refine(low, high):
        size = (low.shape[1], low.shape[2])
        if size not in traced:
            spec = tf.TensorSpec([None, size[0], size[1], 1], tf.float32)

            def call(lo, hi):
                return model({"depth_low": lo, "depth_high": hi}, training=False)[key]

            # _noinline: the outer graph calls the network function instead of inlining its ~6000 ops, which
            # halves the tracing + graph-optimisation time of a label function under tf.function (measured).
            traced[size] = tf.function(call, input_signature=[spec, spec],
                                       experimental_attributes={"_noinline": True})
        return traced[size](tf.cast(low, tf.float32), tf.cast(high, tf.float32))

    return refine


_COMPILED = weakref.WeakKeyDictionary()  # model -> its refine_fn_from_model, so repeated calls trace once


def _refine_callable(model):
    if callable(getattr(model, "call", None)) and hasattr(model, "inputs"):
        # Compiled (an eager call dispatches ~6000 ops one by one) and cached per model.
        if model not in _COMPILED:
            _COMPILED[model] = refine_fn_from_model(model)
        return _COMPILED[model]
    if callable(model):
        return model
    raise TypeError(f"model must be an SDDRNet (Keras model) or a callable (low, high) -> depth, got {model!r}")


def refine_depth(model, depth_low, depth_high, *, mode="one_stage", size=1024, window_size=1024,
                 keep_aspect=False, output_size=None, steps=DEFAULT_STEPS, predictor_fn=None, image=None,
                 input_resize="nearest"):
    """Refined relative depth ``[H, W]`` float32 (numpy) from two base maps (numpy ``[H, W]``); module docstring.

    ``output_size`` (h, w) defaults to ``depth_high``'s size (pass the image size); ``size`` is the whole-image
    network size, ``window_size`` the two-stage windows'.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    refine_fn = _refine_callable(model)
    low, high = _as_batch(np.asarray(depth_low), "depth_low"), _as_batch(np.asarray(depth_high), "depth_high")
    out_hw = tuple(output_size) if output_size is not None else tuple(high.shape[1:3])
    network_hw = network_size_for(out_hw[0], out_hw[1], size, keep_aspect)
    if mode == "one_stage":
        out = one_stage_tf(refine_fn, low, high, network_hw, out_hw, input_resize)
    else:
        window_hw = network_size_for(1, 1, window_size, False)
        img = None if image is None else _as_batch(np.asarray(image), "image")
        out = two_stage_tf(refine_fn, low, high, network_hw=network_hw, window_hw=window_hw, steps=steps,
                           output_hw=out_hw, predictor_fn=predictor_fn, image=img, input_resize=input_resize)
    return out.numpy()[0, :, :, 0]
