"""Dict-in / dict-out augmentations for one (unbatched) sample; geometric ones keep the camera model exact.

Sample convention: ``image``, ``image_prev``, ``image_next`` float32 ``[H, W, 3]`` in [0, 1]; ``intrinsics``
float32 ``[3, 3]`` in pixels of ``image``; optional spatial maps (``depth [H, W, 1]``, ``semantic [H, W]``,
``instance [H, W]``, ``seg_mask``, ``seg_weight``, ...); relative poses ``pose_*`` ``[4, 4]``; anything else
(``scene_seed``, ``frame_index``, ...) passes through untouched.

A key is treated as a *spatial map* when it is rank 2 or 3, its leading two dimensions are compatible with
``image``'s ``[H, W]``, and it is not named ``intrinsics*``, ``pose*`` or ``T_*`` (those are camera matrices).

Randomness is stateless: every random op takes a ``seed`` tensor of shape ``[2]`` (int32/int64, or a Python
int, read as ``[0, seed]``), so the same seed gives the same result eagerly, inside ``Dataset.map`` and with
parallel map calls.

Monodepth2 (spec monodepth_seg.md A.1): flip with p = 0.5 on every frame of the sample, colour jitter with
p = 0.5 and ONE parameter set per sample applied to every frame; the jittered frames (``<key>_aug``) feed the
networks, the originals feed the losses. Choices where the spec is silent (documented here):

* The four colour ops follow torchvision's ``ColorJitter`` (which Monodepth2 calls): brightness multiplies,
  contrast blends with the mean of each frame's grayscale, saturation blends with the per-pixel grayscale
  (ITU-R 601 weights 0.299/0.587/0.114), hue rotates by a fraction of the hue circle (``tf.image.adjust_hue``);
  the result is clipped to [0, 1] after every op, and the ops are applied in a random order drawn from the seed,
  as torchvision does. An op whose range is the identity (e.g. ``hue=(0, 0)``) is skipped exactly.
* A horizontal flip mirrors the scene (x -> -x in the camera frame): ``cx -> W - 1 - cx`` and every ``pose_*``
  transform becomes ``F T F`` with ``F = diag(-1, 1, 1, 1)``, so warping with the flipped depth, pose and K is
  exactly the mirror image of the unflipped warp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from tfdepth.geometry import flip_intrinsics_horizontally, scale_intrinsics

IMAGE_KEYS = ("image", "image_prev", "image_next")
_CAMERA_PREFIXES = ("intrinsics", "pose", "T_")
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale (and tf.image.rgb_to_grayscale).
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------- validation
def _check_sample(sample, fn_name: str) -> dict:
    if not isinstance(sample, Mapping):
        raise TypeError(f"{fn_name}: `sample` must be a dict of tensors, got {type(sample).__name__}.")
    if "image" not in sample:
        raise ValueError(
            f"{fn_name}: `sample` has no 'image' key (keys: {sorted(sample)}); every sample needs the target "
            "frame 'image' [H, W, 3] float32 in [0, 1]."
        )
    out = dict(sample)
    image = tf.convert_to_tensor(out["image"])
    if image.shape.rank != 3 or image.shape[-1] not in (3, None):
        raise ValueError(
            f"{fn_name}: sample['image'] must have shape [H, W, 3] (one unbatched RGB frame), got {image.shape}; "
            "apply augmentations before batching."
        )
    out["image"] = image
    return out


def _check_image(value, key: str, fn_name: str) -> tf.Tensor:
    value = tf.convert_to_tensor(value)
    if value.shape.rank != 3 or value.shape[-1] not in (3, None):
        raise ValueError(f"{fn_name}: sample[{key!r}] must have shape [H, W, 3], got {value.shape}.")
    if not value.dtype.is_floating:
        raise TypeError(
            f"{fn_name}: sample[{key!r}] must be float in [0, 1], got {value.dtype.name}; convert it first with "
            "tf.image.convert_image_dtype(x, tf.float32)."
        )
    return value


def _check_probability(probability, fn_name: str) -> float:
    p = float(probability)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn_name}: `probability` must be in [0, 1], got {probability}.")
    return p


def _check_range(value, name: str, fn_name: str, lo_min: float, hi_max: float) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{fn_name}: `{name}` must be a (low, high) pair, got {value!r}.")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ValueError(f"{fn_name}: `{name}` range has low > high ({lo} > {hi}); pass (low, high).")
    if lo < lo_min or hi > hi_max:
        raise ValueError(f"{fn_name}: `{name}` must lie within [{lo_min}, {hi_max}], got ({lo}, {hi}).")
    return lo, hi


def as_seed(seed, fn_name: str = "augment") -> tf.Tensor:
    """Return a stateless-RNG seed ``[2]`` int64 from a Python int or a shape-``[2]`` integer tensor."""
    if isinstance(seed, int):
        return tf.constant([0, seed], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] not in (2, None):
        raise ValueError(
            f"{fn_name}: `seed` must be a Python int or an integer tensor of shape [2] (stateless RNG seed), got "
            f"{seed.dtype.name} {seed.shape}."
        )
    return tf.cast(seed, tf.int64)


def _is_camera_key(key: str) -> bool:
    return key.startswith(_CAMERA_PREFIXES)


def spatial_keys(sample: Mapping) -> list[str]:
    """Keys of ``sample`` holding per-pixel maps aligned with ``sample['image']`` (see module docstring)."""
    hw = tf.TensorShape(tf.convert_to_tensor(sample["image"]).shape[:2])
    keys = []
    for key, value in sample.items():
        if _is_camera_key(key):
            continue
        shape = tf.convert_to_tensor(value).shape
        if shape.rank in (2, 3) and shape[:2].is_compatible_with(hw):
            keys.append(key)
    return keys


def _pose_keys(sample: Mapping) -> list[str]:
    keys = []
    for key, value in sample.items():
        shape = tf.convert_to_tensor(value).shape
        if key.startswith("pose") and shape.rank is not None and shape.rank >= 2 and shape[-2:] == (4, 4):
            keys.append(key)
    return keys


# ----------------------------------------------------------------------------------------------- colour
def _grayscale(x: tf.Tensor) -> tf.Tensor:
    weights = tf.constant(_GRAY_WEIGHTS, x.dtype)
    return tf.reduce_sum(x * weights, axis=-1, keepdims=True)


def _adjust_brightness(x, factor):
    return tf.clip_by_value(x * factor, 0.0, 1.0)


def _adjust_contrast(x, factor):
    # torchvision blends with the mean grayscale of the whole frame (one scalar per frame, not per channel).
    mean = tf.reduce_mean(_grayscale(x), axis=[-3, -2, -1], keepdims=True)
    return tf.clip_by_value(mean + factor * (x - mean), 0.0, 1.0)


def _adjust_saturation(x, factor):
    gray = _grayscale(x)
    return tf.clip_by_value(gray + factor * (x - gray), 0.0, 1.0)


def _adjust_hue(x, delta):
    return tf.clip_by_value(tf.image.adjust_hue(x, delta), 0.0, 1.0)


def color_jitter(
    sample,
    seed,
    *,
    brightness=(0.8, 1.2),
    contrast=(0.8, 1.2),
    saturation=(0.8, 1.2),
    hue=(-0.1, 0.1),
    probability=0.5,
    image_keys=IMAGE_KEYS,
) -> dict:
    """Colour jitter with one parameter set for all frames of the sample (Monodepth2, spec A.1).

    Writes ``<key>_aug`` for every key of ``image_keys`` present in ``sample`` and leaves the originals untouched.
    With probability ``1 - probability`` no jitter is drawn and ``<key>_aug`` equals ``<key>``.
    Factors are uniform in the given ranges (brightness/contrast/saturation multiplicative, hue a shift in
    fractions of the hue circle, within [-0.5, 0.5]).
    """
    name = "color_jitter"
    out = _check_sample(sample, name)
    ranges = {
        "brightness": _check_range(brightness, "brightness", name, 0.0, float("inf")),
        "contrast": _check_range(contrast, "contrast", name, 0.0, float("inf")),
        "saturation": _check_range(saturation, "saturation", name, 0.0, float("inf")),
        "hue": _check_range(hue, "hue", name, -0.5, 0.5),
    }
    p = _check_probability(probability, name)
    if isinstance(image_keys, str):
        raise TypeError(f"{name}: `image_keys` must be a sequence of keys, e.g. ('image',), not a string.")
    keys = [k for k in image_keys if k in out]
    seeds = tf.random.experimental.stateless_split(as_seed(seed, name), 6)
    apply = tf.random.stateless_uniform([], seeds[0]) < p
    identity = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    factors = {}
    for i, op in enumerate(("brightness", "contrast", "saturation", "hue")):
        lo, hi = ranges[op]
        factors[op] = tf.random.stateless_uniform([], seeds[i + 1], minval=lo, maxval=hi)
    funcs = {
        "brightness": _adjust_brightness,
        "contrast": _adjust_contrast,
        "saturation": _adjust_saturation,
        "hue": _adjust_hue,
    }
    # Ops whose range is exactly the identity are skipped (a no-op hue rotation still round-trips HSV).
    active = [op for op in funcs if ranges[op] != (identity[op], identity[op])]
    # Random op order as torchvision's ColorJitter; same order for every frame of the sample.
    order = tf.argsort(tf.random.stateless_uniform([max(len(active), 1)], seeds[5]))
    for key in keys:
        original = _check_image(out[key], key, name)
        x = original
        for step in range(len(active)):
            branches = [
                (lambda fn=funcs[op], f=factors[op], v=x: fn(v, tf.cast(f, v.dtype))) for op in active
            ]
            x = tf.switch_case(order[step], branches)
        out[f"{key}_aug"] = tf.where(apply, x, original)
    return out


# ----------------------------------------------------------------------------------------------- geometry
def _mirror_pose(pose: tf.Tensor) -> tf.Tensor:
    """``F T F`` with ``F = diag(-1, 1, 1, 1)``: the same motion seen in the x-mirrored world."""
    f = tf.constant([-1.0, 1.0, 1.0, 1.0], pose.dtype)
    return pose * f[:, None] * f[None, :]


def random_flip(sample, seed, *, probability=0.5) -> dict:
    """Horizontally flip every spatial map of the sample together (Monodepth2 A.1), with probability ``probability``.

    Flips images, ``*_aug`` images, depth, labels, masks and weight maps along the width axis, maps the intrinsics
    through ``flip_intrinsics_horizontally`` (``cx -> W - 1 - cx``) and mirrors every ``pose_*`` transform
    (``T -> F T F``, ``F = diag(-1, 1, 1, 1)``). Deterministic given ``seed`` (shape ``[2]``).
    """
    name = "random_flip"
    out = _check_sample(sample, name)
    p = _check_probability(probability, name)
    do_flip = tf.random.stateless_uniform([], as_seed(seed, name)) < p
    for key in spatial_keys(out):
        value = tf.convert_to_tensor(out[key])
        out[key] = tf.where(do_flip, tf.reverse(value, axis=[1]), value)
    if "intrinsics" in out:
        k = tf.convert_to_tensor(out["intrinsics"])
        width = tf.cast(tf.shape(out["image"])[1], k.dtype)
        out["intrinsics"] = tf.where(do_flip, flip_intrinsics_horizontally(k, width), k)
    for key in _pose_keys(out):
        pose = tf.convert_to_tensor(out[key])
        out[key] = tf.where(do_flip, _mirror_pose(pose), pose)
    return out


def _is_color_key(key: str, value: tf.Tensor) -> bool:
    return value.dtype.is_floating and (key in IMAGE_KEYS or key.startswith("image") or key.endswith("_aug"))


def resize(sample, height: int, width: int) -> dict:
    """Resize every spatial map of the sample to ``[height, width]`` and rescale the intrinsics.

    Images (``image*``, ``*_aug``) are resized bilinearly with half-pixel centres and an antialiasing filter
    (active only when shrinking; Monodepth2 pre-resizes with PIL's antialiasing filter, spec A.1); depth, labels
    and other maps with nearest neighbour, so no depth is invented across edges. Intrinsics follow
    ``scale_intrinsics(K, width / W, height / H)``.
    """
    name = "resize"
    for arg, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name}: `{arg}` must be a positive int, got {v!r}.")
    out = _check_sample(sample, name)
    size = tf.stack([height, width])
    in_hw = tf.shape(out["image"])[:2]
    for key in spatial_keys(out):
        value = tf.convert_to_tensor(out[key])
        rank2 = value.shape.rank == 2
        x = value[..., None] if rank2 else value
        if _is_color_key(key, value):
            x = tf.cast(tf.image.resize(x, size, method="bilinear", antialias=True), value.dtype)
        elif value.dtype == tf.bool:
            x = tf.cast(tf.image.resize(tf.cast(x, tf.uint8), size, method="nearest"), tf.bool)
        else:
            x = tf.image.resize(x, size, method="nearest")
        out[key] = x[..., 0] if rank2 else x
    if "intrinsics" in out:
        k = tf.convert_to_tensor(out["intrinsics"])
        in_hw_f = tf.cast(in_hw, k.dtype)
        sx = tf.cast(width, k.dtype) / in_hw_f[1]
        sy = tf.cast(height, k.dtype) / in_hw_f[0]
        out["intrinsics"] = scale_intrinsics(k, sx, sy)
    return out


def add_aug_copies(sample, image_keys=IMAGE_KEYS) -> dict:
    """Set ``<key>_aug = <key>`` for present image keys that have no ``_aug`` copy yet (no jitter configured)."""
    out = dict(sample)
    for key in image_keys:
        if key in out and f"{key}_aug" not in out:
            out[f"{key}_aug"] = out[key]
    return out
