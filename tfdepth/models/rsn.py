"""Region-Support Network (RSN, "Region-Support Depth Inference from a Single Image"; spec rsn.md §3-§5).

Only the abstract of the paper is available; the architecture follows the authors' May 2018 code (``rsnet`` and
``drnet`` at commit a18e559), checked against it (spec "Checked against the authors' code").

* :class:`GenerationModule` (``rsnet``): image -> region support S_hat ``[B, H, W, 1]`` (metres, >= 0), spec §4.
  A "ResNet34" ([3, 4, 6, 3] BasicBlocks, built with :class:`ResnetLayerBuilder`, torchvision layer names) with
  the code's strides and padding, which differ from torchvision: conv1 7x7 stride 1 **padding 1** (the map
  shrinks by 4), no max-pool, layer2 stride 2, layer3 and layer4 stride 1 (no dilation). A skip branch
  full1/full2 (3x3, padding 2 each: +4) brings layer1's map back to H x W. Then the pyramid unit on layer4
  (512 -> 512 + 7 * 73 = 1023 channels), deconv0 (3x3), deconv2 (transposed 3x3 / 2, padding 0,
  output_padding 1: 2h + 2), regress1 (3x3 padding 2) -> concat with the skip -> regress2..4, final (CBR) and
  final2 (conv + ReLU, no BN): the abstract's eight conv layers regressing the support. At 480x640 the stride-2
  map is 238x318. H and W must be even and >= 6 (the padding arithmetic: H - 4, / 2, x 2 + 2, + 2 = H).
* :class:`RefinementModule` (``drnet``), spec §5: [RGB, region support, current depth] (5 channels) -> depth.
  conv1 7x7 padding 1 + layer1 (3 BasicBlocks = the abstract's "six conv layers") + full1/full2 (back to H x W),
  the simplified pyramid unit at full resolution (128 -> 128 + 7 * 18 = 254), infer1..4 (CBR) and infer5 (conv
  + ReLU). Any H, W >= 5.
* :class:`RegionSupportNetwork`: both, with ``iterations`` (3) weight-shared refinement steps: x_0 = [RGB, S_hat,
  S_hat]; d_k = F(x_{k-1}); x_k = [RGB, S_hat, d_k] (each refined depth replaces the coarse depth; the region
  support stays the guidance channel). Outputs ``region_support``, ``depth_iter_1`` .. ``depth_iter_N`` and
  ``depth`` (= the last iteration). ``support_input=True`` feeds a given region support (the ground-truth SD of
  Algorithm 1) instead of the generation module: the paper's "refinement with ground-truth region support" and
  the second training stage.

Pyramid unit (:func:`pyramid_unit`): the identity path plus, for each of 7 grids, adaptive average pooling to the
grid (PyTorch ``AdaptiveAvgPool2d`` bins: output cell i averages input rows floor(i H / h) .. ceil((i + 1) H / h)
- 1), a CBR 3x3 to C // 7 channels and bilinear upsampling with **align_corners=True** back to the unit's input
size. ``grid="absolute"`` (default, the code): the grids are the sizes (120, 160), (60, 80), (48, 64), (24, 32),
(12, 16), (6, 8), (3, 4) at every input size. ``grid="relative"`` (the paper's reading): the grids are 1/4,
1/8, 1/10, 1/20, 1/40, 1/80, 1/160 of the network input image, rounded to the nearest integer, at least 1; both
are identical at 480x640; small CPU inputs may prefer relative grids (spec §10).

``width_multiplier`` (default 1.0, the original) scales every channel count (round(c * m), at least 1; the
pyramid paths keep C // 7). Not in the paper or the code: at 480x640 the original costs about 2.4 TMAC
(generation) + 3 x 0.26 TMAC (refinement) per image, still 70 GMAC at 64x96, so CPU-sized runs may need narrower
networks; any value below 1 is a reduced model, not the paper's, and cannot load ImageNet weights.

Conventions: inputs are RGB in [0, 1], normalised inside with the ImageNet mean/std (spec "Checked" item 5 and §1
[interpretation]). The a18e559 loader (``rsden/loader/NYU.py``) has no BGR flip, but applies torchvision's
``ToTensor`` to a float64 array, which does not divide by 255, so the code normalised 0..255 values: a quirk not
reproduced. All convolutions have no bias. BatchNorm is
PyTorch's (momentum 0.1 = Keras 0.9, epsilon 1e-5), synchronised across replicas by default. Initialisation as the
code: conv1, layer1..4, full1, full2 (created before the code's init loop) N(0, 2 / (k^2 C_out)) = He normal
fan-out; the pyramid and decoder layers PyTorch's default U(+-1/sqrt(fan_in)).

Where the original is buggy (spec "Checked" items 3, 4), tfdepth does the right thing:

* The original never loaded its ImageNet weights (DataParallel's ``module.`` prefix made 0 of 180 keys match), so
  it trained from scratch, which is the tfdepth default too (nothing downloads). ``encoder_weights`` (a local
  torchvision ResNet34 ``.npz``, :mod:`tfdepth.models.weights`) is an opt-in improvement, not fidelity.
* The original evaluated with BatchNorm in training mode (per-batch statistics). These models are Keras models:
  ``training=False`` (the default of ``predict``/inference) uses the moving statistics.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfdepth.layers import (FusedBatchNormalization, check_bool, check_int, check_multiple_on_call,
                            concatenate_grouped, torch_default_kernel_initializer)
from tfdepth.models.resnet import ResnetLayerBuilder

__all__ = [
    "ABSOLUTE_GRIDS", "RELATIVE_GRID_DIVISORS", "GRID_MODES", "adaptive_avg_pool2d", "resize_bilinear_align_corners",
    "adaptive_pool_matrix", "relative_grid_size", "AdaptiveAveragePooling2D", "ResizeBilinearAlignCorners",
    "ImageNetNormalization", "pyramid_unit", "GenerationModule", "RefinementModule", "RegionSupportNetwork",
    "refine_iterations", "init_refinement_from_generation", "IMAGENET_MEAN", "IMAGENET_STD",
]

# The code's pyramid grids (rows, cols) and the paper's fractions of the 480x640 input they equal (§4).
ABSOLUTE_GRIDS = ((120, 160), (60, 80), (48, 64), (24, 32), (12, 16), (6, 8), (3, 4))
RELATIVE_GRID_DIVISORS = (4, 8, 10, 20, 40, 80, 160)
GRID_MODES = ("absolute", "relative")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9  # torch momentum 0.1


def _he_fan_out():
    # The code's init loop: N(0, sqrt(2 / (k*k*C_out))), untruncated.
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


# ----------------------------------------------------------------------------------------------- resampling ops
def adaptive_pool_matrix(in_size, out_size, dtype=tf.float32):
    """``[out_size, in_size]`` averaging matrix of PyTorch's adaptive average pooling along one axis.

    Row i averages inputs ``start_i = floor(i * in / out)`` .. ``end_i - 1`` with ``end_i = ceil((i + 1) * in /
    out)`` (PyTorch's ``start_index`` / ``end_index``); works for any sizes (also out > in). Sizes may be tensors.
    """
    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    i = tf.range(out_size)
    start = (i * in_size) // out_size
    end = ((i + 1) * in_size + out_size - 1) // out_size
    j = tf.range(in_size)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return tf.cast(inside, dtype) / tf.cast(end - start, dtype)[:, None]


def adaptive_avg_pool2d(x, out_h, out_w):
    """PyTorch ``F.adaptive_avg_pool2d`` for channels-last ``x`` ``[B, H, W, C]`` -> ``[B, out_h, out_w, C]``.

    Exact for any H, W (not only multiples of the grid): separable averaging matrices (:func:`adaptive_pool_matrix`)
    applied along H then W. When the sizes are static and divisible (e.g. 480x640 -> 120x160) the bins are equal
    and non-overlapping, and the same numbers come from ``avg_pool2d`` with kernel = stride = H / out_h, which is
    used then (it avoids the dense matrix product at full resolution).
    """
    h, w = x.shape[1], x.shape[2]
    if (isinstance(out_h, int) and isinstance(out_w, int) and h is not None and w is not None
            and h % out_h == 0 and w % out_w == 0):
        kh, kw = h // out_h, w // out_w
        if kh == kw == 1:
            return x
        return tf.nn.avg_pool2d(x, (kh, kw), (kh, kw), "VALID")
    shape = tf.shape(x)
    a_h = adaptive_pool_matrix(shape[1], out_h, x.dtype)
    a_w = adaptive_pool_matrix(shape[2], out_w, x.dtype)
    y = tf.einsum("ih,bhwc->biwc", a_h, x)
    return tf.einsum("jw,biwc->bijc", a_w, y)


def resize_bilinear_align_corners(x, out_h, out_w):
    """Bilinear resize with ``align_corners=True`` (PyTorch ``F.interpolate(..., align_corners=True)``).

    Output pixel i samples input coordinate i * (in - 1) / (out - 1) (0 when out = 1). ``tf.image.resize`` has
    no align_corners (half-pixel centres); TF1's ``resize_bilinear(align_corners=True)`` is exactly this and has a
    gradient and a TFLite kernel (RESIZE_BILINEAR with align_corners). Returns float32 (the op's output type).
    """
    # The raw op behind TF1's resize_bilinear (same kernel and gradient, without the deprecation warning).
    size = tf.cast(tf.stack([out_h, out_w]), tf.int32)
    return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True, half_pixel_centers=False)


def relative_grid_size(size, divisor):
    """Grid size of the paper's fraction 1/divisor of an input side: round(size / divisor), at least 1."""
    size = tf.cast(size, tf.int32)
    return tf.maximum((size + divisor // 2) // divisor, 1)


# ------------------------------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package="tfdepth")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """PyTorch ``AdaptiveAvgPool2d`` (channels-last) to a fixed grid or to a fraction of a reference image.

    ``output_size=(h, w)``: pool any input to h x w (called on one tensor). ``divisor=(dh, dw)``: called on
    ``[x, reference]``, pools x to ``relative_grid_size(H_ref, dh) x relative_grid_size(W_ref, dw)`` where H_ref, W_ref
    are the reference's spatial size (the network's input image).
    """

    def __init__(self, output_size=None, divisor=None, **kwargs):
        super().__init__(**kwargs)
        if (output_size is None) == (divisor is None):
            raise ValueError("AdaptiveAveragePooling2D needs exactly one of output_size=(h, w) or divisor=(dh, dw).")
        pair = output_size if output_size is not None else divisor
        pair = tuple(pair)
        if len(pair) != 2:
            raise ValueError(f"AdaptiveAveragePooling2D: expected a pair (rows, cols), got {pair!r}.")
        for v in pair:
            check_int(v, "output_size" if output_size is not None else "divisor", 1)
        self.output_size = pair if output_size is not None else None
        self.divisor = pair if divisor is not None else None

    def _sizes(self, inputs):
        if self.output_size is not None:
            return inputs, self.output_size
        x, reference = inputs
        ref_h, ref_w = reference.shape[1], reference.shape[2]
        dh, dw = self.divisor
        if ref_h is not None and ref_w is not None:  # static: plain ints, so the avg_pool fast path can apply
            return x, (max(1, (ref_h + dh // 2) // dh), max(1, (ref_w + dw // 2) // dw))
        shape = tf.shape(reference)
        return x, (relative_grid_size(shape[1], dh), relative_grid_size(shape[2], dw))

    def call(self, inputs):
        x, (out_h, out_w) = self._sizes(inputs)
        return adaptive_avg_pool2d(x, out_h, out_w)

    def compute_output_shape(self, input_shape):
        if self.output_size is not None:
            return (input_shape[0], *self.output_size, input_shape[-1])
        x_shape, ref_shape = input_shape
        dims = []
        for size, d in zip(ref_shape[1:3], self.divisor):
            dims.append(None if size is None else max(1, (size + d // 2) // d))
        return (x_shape[0], *dims, x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "divisor": self.divisor}


@keras.saving.register_keras_serializable(package="tfdepth")
class ResizeBilinearAlignCorners(keras.layers.Layer):
    """``[x, like]`` -> x resized to like's H x W, bilinear with align_corners=True, in x's dtype.

    See :func:`resize_bilinear_align_corners`.
    """

    def call(self, inputs):
        x, like = inputs
        shape = tf.shape(like)
        out = resize_bilinear_align_corners(x, shape[1], shape[2])
        return tf.cast(out, x.dtype)

    def compute_output_shape(self, input_shape):
        x_shape, like_shape = input_shape
        return (x_shape[0], like_shape[1], like_shape[2], x_shape[-1])


@keras.saving.register_keras_serializable(package="tfdepth")
class ImageNetNormalization(keras.layers.Layer):
    """(x - mean) / std with the ImageNet RGB statistics on the first 3 channels; other channels pass unchanged.

    RSN input convention (spec "Checked" item 5): RGB in [0, 1], no BGR flip. For the refinement input the region
    support and depth channels (metres) are not normalised, as in the code (they were concatenated after the
    loader's image normalisation).
    """

    def call(self, inputs):
        mean = tf.constant(IMAGENET_MEAN, inputs.dtype)
        std = tf.constant(IMAGENET_STD, inputs.dtype)
        rgb = (inputs[..., :3] - mean) / std
        if inputs.shape[-1] == 3:
            return rgb
        return tf.concat([rgb, inputs[..., 3:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


def _cbr(x, filters, kernel, pad, name, sync, init, batchnorm=True):
    """PyTorch conv2DBatchNormRelu / conv2DRelu: explicit zero padding, 'valid' conv without bias, [BN], ReLU."""
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=name + "_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, padding="valid", use_bias=False, kernel_initializer=init,
                            name=name + "_conv")(x)
    if batchnorm:
        x = FusedBatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, synchronized=sync,
                                            name=name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def pyramid_unit(x, image, name, grid="absolute", sync_batchnorm=True):
    """The pyramid unit (spec §4; simplified one of §5 = the same on 128 channels): concat(x, path_1..path_7).

    path j = adaptive average pool to grid j (:data:`ABSOLUTE_GRIDS` or :data:`RELATIVE_GRID_DIVISORS` of
    ``image``), CBR 3x3 padding 1 to C // 7 channels (PyTorch default init), bilinear align_corners back to x's size.
    ``x`` ``[B, h, w, C]`` (static C) -> ``[B, h, w, C + 7 * (C // 7)]``.
    """
    if grid not in GRID_MODES:
        raise ValueError(f"grid must be one of {GRID_MODES}, got {grid!r}.")
    channels = max(1, x.shape[-1] // len(ABSOLUTE_GRIDS))  # int(in_channels / len(pool_sizes)) in the code
    outputs = [x]
    for j, (size, divisor) in enumerate(zip(ABSOLUTE_GRIDS, RELATIVE_GRID_DIVISORS)):
        path = f"{name}_path{j}"
        if grid == "absolute":
            pooled = AdaptiveAveragePooling2D(output_size=size, name=path + "_pool")(x)
        else:
            pooled = AdaptiveAveragePooling2D(divisor=(divisor, divisor), name=path + "_pool")([x, image])
        y = _cbr(pooled, channels, 3, 1, path, sync_batchnorm, torch_default_kernel_initializer())
        outputs.append(ResizeBilinearAlignCorners(name=path + "_up")([y, x]))
    return concatenate_grouped(outputs, name + "_concat")  # 5 + 3 inputs: XNNPACK runs concats of at most 5


def _check_grid(grid):
    if grid not in GRID_MODES:
        raise ValueError(f"grid must be one of {GRID_MODES} ('absolute' = the code's fixed grids, 'relative' = the "
                         f"paper's fractions of the input), got {grid!r}.")
    return grid


def _check_size(value, name, owner, minimum, even):
    if value is None:
        return None
    check_int(value, name, minimum)
    if even and value % 2:
        raise ValueError(f"{owner}: {name}={value} must be even (the stride-2 path and the transposed conv only line "
                         f"up with the skip for even sizes); use {value + 1} or {value - 1}.")
    return value


def _check_width(width):
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be a channel multiplier in (0, 1] (1 = the original network), got {width!r}.")
    return float(width)


def _channels(width):
    """Channel count of a layer of the original network (``c``) at the multiplier ``width``: round(c * width) >= 1."""
    return lambda c: max(1, int(round(c * width)))


def _stem_and_layer1(builder, x, ch):
    """conv1 7x7 stride 1 padding 1 + BN + ReLU, then layer1 (3 BasicBlocks, 64 channels): H - 4."""
    x = builder.conv(x, ch(64), 7, 1, "conv1", padding=1)
    x = keras.layers.ReLU(name="relu")(builder.bn(x, "bn1"))
    for i in range(3):
        x = builder.block(x, "basic", ch(64), 1, f"layer1.{i}")
    return x


def _skip_branch(x, sync, ch):
    """full1, full2: CBR 3x3 padding 2 each (64 -> 128 -> 128): H - 4 -> H. He fan-out init (the code's init loop)."""
    x = _cbr(x, ch(128), 3, 2, "full1", sync, _he_fan_out())
    return _cbr(x, ch(128), 3, 2, "full2", sync, _he_fan_out())


# ------------------------------------------------------------------------------------------------------ models
@keras.saving.register_keras_serializable(package="tfdepth")
class GenerationModule(keras.Model):
    """RSN generation module (``rsnet``, spec §4): image ``[B, H, W, 3]`` in [0, 1] -> ``{"region_support"}``.

    ``region_support`` ``[B, H, W, 1]`` >= 0 (metres). H, W even and >= 6; ``height``/``width`` fix them.
    ``width_multiplier`` (default 1: the original, 30,444,718 parameters) scales every channel count, for CPU-sized
    runs only (see the module docstring). Attributes
    ``torch_names`` (conv1, bn1, layer1..4 with torchvision names, for the opt-in ImageNet ResNet34 weights via
    :func:`tfdepth.models.weights.load_torchvision_resnet_weights`) and ``depth = 34``.
    """

    def __init__(self, grid="absolute", sync_batchnorm=True, height=None, width=None, width_multiplier=1.0,
                 name="generation", **kwargs):
        _check_grid(grid)
        check_bool(sync_batchnorm, "sync_batchnorm")
        height = _check_size(height, "height", "GenerationModule", 6, True)
        width = _check_size(width, "width", "GenerationModule", 6, True)
        width_multiplier = _check_width(width_multiplier)
        ch = _channels(width_multiplier)
        sync = sync_batchnorm
        b = ResnetLayerBuilder(sync)
        image = keras.Input((height, width, 3), name="image")
        x = ImageNetNormalization(name="normalize")(image)
        x = _stem_and_layer1(b, x, ch)  # H - 4
        skip = _skip_branch(x, sync, ch)  # H
        for stage, (planes, n, stride) in enumerate(((128, 4, 2), (256, 6, 1), (512, 3, 1)), start=2):
            for i in range(n):
                x = b.block(x, "basic", ch(planes), stride if i == 0 else 1, f"layer{stage}.{i}")  # (H - 4) / 2
        x = pyramid_unit(x, image, "pyramid", grid, sync)  # 1023 channels
        default = torch_default_kernel_initializer  # PyTorch's default init for the layers after the init loop
        x = _cbr(x, ch(512), 3, 1, "deconv0", sync, default())
        x = keras.layers.Conv2DTranspose(ch(256), 3, strides=2, padding="valid", output_padding=1, use_bias=False,
                                         kernel_initializer=default(), name="deconv2_conv")(x)  # 2h + 2 = H - 2
        x = FusedBatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, synchronized=sync,
                                            name="deconv2_bn")(x)
        x = keras.layers.ReLU(name="deconv2_relu")(x)
        x = _cbr(x, ch(128), 3, 2, "regress1", sync, default())  # H
        x = keras.layers.Concatenate(name="skip_concat")([x, skip])
        x = _cbr(x, ch(128), 3, 1, "regress2", sync, default())
        x = _cbr(x, ch(64), 3, 1, "regress3", sync, default())
        x = _cbr(x, ch(32), 3, 1, "regress4", sync, default())
        x = _cbr(x, ch(16), 3, 1, "final", sync, default())
        support = _cbr(x, 1, 3, 1, "final2", sync, default(), batchnorm=False)  # conv + ReLU: S_hat >= 0
        support = keras.layers.Activation("linear", dtype="float32", name="region_support")(support)
        super().__init__(inputs=image, outputs={"region_support": support}, name=name, **kwargs)
        self.grid = grid
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width
        self.width_multiplier = width_multiplier
        self.torch_names = dict(b.torch_names)
        self.depth = 34
        self.num_input_images = 1

    def call(self, inputs, training=None, mask=None):
        check_multiple_on_call(inputs, 2, type(self).__name__, minimum=6)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {"name": self.name, "grid": self.grid, "sync_batchnorm": self.sync_batchnorm, "height": self.height,
                "width": self.width, "width_multiplier": self.width_multiplier}


@keras.saving.register_keras_serializable(package="tfdepth")
class RefinementModule(keras.Model):
    """RSN refinement module (``drnet``, spec §5), one iteration F.

    Inputs: dict ``image`` ``[B, H, W, 3]`` in [0, 1], ``region_support`` and ``depth`` ``[B, H, W, 1]`` (metres);
    concatenated in that order into the 5-channel input (RGB ImageNet-normalised). Output ``{"depth"}`` ``[B, H, W,
    1]`` >= 0. Any H, W >= 5. ``width_multiplier`` as :class:`GenerationModule` (1 = the original, 994,860).
    """

    def __init__(self, grid="absolute", sync_batchnorm=True, height=None, width=None, width_multiplier=1.0,
                 name="refinement", **kwargs):
        _check_grid(grid)
        check_bool(sync_batchnorm, "sync_batchnorm")
        height = _check_size(height, "height", "RefinementModule", 5, False)
        width = _check_size(width, "width", "RefinementModule", 5, False)
        width_multiplier = _check_width(width_multiplier)
        ch = _channels(width_multiplier)
        sync = sync_batchnorm
        b = ResnetLayerBuilder(sync)
        inputs = {
            "image": keras.Input((height, width, 3), name="image"),
            "region_support": keras.Input((height, width, 1), name="region_support"),
            "depth": keras.Input((height, width, 1), name="depth"),
        }
        x = keras.layers.Concatenate(name="input_concat")(
            [inputs["image"], inputs["region_support"], inputs["depth"]])
        x = ImageNetNormalization(name="normalize")(x)
        x = _stem_and_layer1(b, x, ch)  # H - 4; conv1 has 5 input channels
        x = _skip_branch(x, sync, ch)  # H
        x = pyramid_unit(x, inputs["image"], "pyramid", grid, sync)  # 254 channels
        default = torch_default_kernel_initializer
        x = _cbr(x, ch(128), 3, 1, "infer1", sync, default())
        x = _cbr(x, ch(64), 3, 1, "infer2", sync, default())
        x = _cbr(x, ch(32), 3, 1, "infer3", sync, default())
        x = _cbr(x, ch(16), 3, 1, "infer4", sync, default())
        depth = _cbr(x, 1, 3, 1, "infer5", sync, default(), batchnorm=False)
        depth = keras.layers.Activation("linear", dtype="float32", name="refined_depth")(depth)
        super().__init__(inputs=inputs, outputs={"depth": depth}, name=name, **kwargs)
        self.grid = grid
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width
        self.width_multiplier = width_multiplier
        self.torch_names = dict(b.torch_names)

    def call(self, inputs, training=None, mask=None):
        if isinstance(inputs, dict):  # (a missing key is reported by Keras: 'Missing data for input "depth"')
            for key in ("image", "region_support", "depth"):
                if key in inputs:
                    check_multiple_on_call(inputs[key], 1, type(self).__name__, minimum=5)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {"name": self.name, "grid": self.grid, "sync_batchnorm": self.sync_batchnorm, "height": self.height,
                "width": self.width, "width_multiplier": self.width_multiplier}


def refine_iterations(refinement, image, region_support, iterations=3, training=None):
    """The weight-shared refinement loop (spec §5) -> list of the ``iterations`` depths ``[B, H, W, 1]``.

    x_0 = [image, S, S]; d_k = refinement([image, S, d_{k-1}]) with d_0 = S: each refined depth replaces the
    coarse depth, the region support S stays the guidance channel. Works on Keras tensors (model building) and
    eager/graph tensors (a custom train step).
    """
    check_int(iterations, "iterations", 1)
    if not isinstance(image, keras.KerasTensor):  # eager/graph call: Keras refuses dicts mixing arrays and tensors
        image = tf.convert_to_tensor(image)
        region_support = tf.convert_to_tensor(region_support)
    depth = region_support
    depths = []
    for _ in range(iterations):
        depth = refinement({"image": image, "region_support": region_support, "depth": depth},
                           training=training)["depth"]
        depths.append(depth)
    return depths


@keras.saving.register_keras_serializable(package="tfdepth")
class RegionSupportNetwork(keras.Model):
    """RSN: image ``[B, H, W, 3]`` in [0, 1] -> ``region_support``, ``depth_iter_1..N``, ``depth`` (spec §3-§5).

    ``generation`` / ``refinement``: existing modules to share (e.g. from :func:`tfdepth.models.build_rsn`), or
    None to create them with ``grid`` / ``sync_batchnorm``. ``support_input=True``: inputs are a dict ``image``
    and ``region_support`` (a given, e.g. ground-truth, support depth ``[B, H, W, 1]``); the generation module is
    not part of the model and ``region_support`` is passed through to the outputs. Freeze one module for a
    training stage with ``net.generation.trainable = False`` (or ``net.refinement``).
    """

    def __init__(self, grid="absolute", iterations=3, sync_batchnorm=True, support_input=False, height=None,
                 width=None, width_multiplier=1.0, generation=None, refinement=None, name="rsn", **kwargs):
        check_int(iterations, "iterations", 1)
        width_multiplier = _check_width(width_multiplier)
        check_bool(support_input, "support_input")
        _check_grid(grid)
        check_bool(sync_batchnorm, "sync_batchnorm")
        height = _check_size(height, "height", "RegionSupportNetwork", 6, True)
        width = _check_size(width, "width", "RegionSupportNetwork", 6, True)
        if refinement is None:
            refinement = RefinementModule(grid, sync_batchnorm, height, width, width_multiplier, name="refinement")
        elif not isinstance(refinement, RefinementModule):
            raise TypeError(f"refinement must be a RefinementModule, got {type(refinement).__name__}.")
        # A reloaded model rebuilds its modules under these names, and its saved weights are found by them.
        for module, expected in ((refinement, "refinement"), (generation, "generation")):
            if module is not None and module.name != expected:
                raise ValueError(f"RegionSupportNetwork: the {expected} module must be named {expected!r} (got "
                                 f"{module.name!r}) so that a saved .keras file reloads its weights.")
        image = keras.Input((height, width, 3), name="image")
        if support_input:
            support = keras.Input((height, width, 1), name="region_support")
            inputs = {"image": image, "region_support": support}
            generation = None
        else:
            if generation is None:
                generation = GenerationModule(grid, sync_batchnorm, height, width, width_multiplier,
                                              name="generation")
            elif not isinstance(generation, GenerationModule):
                raise TypeError(f"generation must be a GenerationModule, got {type(generation).__name__}.")
            inputs = image
            support = generation(image)["region_support"]
        depths = refine_iterations(refinement, image, support, iterations)
        # float32 outputs under any mixed-precision policy (losses run in float32)
        out = lambda t, n: keras.layers.Identity(name=n, dtype="float32")(t)  # noqa: E731
        outputs = {"region_support": out(support, "region_support_out")}
        for k, d in enumerate(depths, start=1):
            outputs[f"depth_iter_{k}"] = out(d, f"depth_iter_{k}")
        outputs["depth"] = out(depths[-1], "depth")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.generation = generation
        self.refinement = refinement
        self.grid = grid
        self.iterations = iterations
        self.sync_batchnorm = sync_batchnorm
        self.support_input = support_input
        self.height = height
        self.width = width
        self.width_multiplier = width_multiplier

    def call(self, inputs, training=None, mask=None):
        image = inputs["image"] if isinstance(inputs, dict) else inputs
        if self.support_input and not (isinstance(inputs, dict) and "region_support" in inputs):
            raise ValueError("RegionSupportNetwork(support_input=True) needs a dict with `image` and "
                             "`region_support` (the given support depth [B, H, W, 1]).")
        check_multiple_on_call(image, 2, type(self).__name__, minimum=6)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {"name": self.name, "grid": self.grid, "iterations": self.iterations,
                "sync_batchnorm": self.sync_batchnorm, "support_input": self.support_input, "height": self.height,
                "width": self.width, "width_multiplier": self.width_multiplier}


# ------------------------------------------------------------------------------------------------ initialisation
def init_refinement_from_generation(refinement, generation):
    """Stage-2 initialisation (spec §5): copy conv1, bn1, layer1, full1, full2 from a trained generation module.

    conv1 is widened from 3 to 5 input channels: the RGB filters are copied and the filter of each extra channel
    (region support, depth) is the mean of the RGB filters ([interpretation]; the code appended the RGB mean for
    the 5th channel and, in one resume path, copied channel 3). Returns the number of variables copied.
    """
    if not isinstance(refinement, RefinementModule) or not isinstance(generation, GenerationModule):
        raise TypeError("init_refinement_from_generation(refinement, generation) takes a RefinementModule and a "
                        f"GenerationModule, got {type(refinement).__name__} and {type(generation).__name__}.")
    shared = ("conv1", "bn1", "layer1_", "full1_", "full2_")
    copied = 0
    for layer in refinement.layers:
        if not layer.weights or not layer.name.startswith(shared):
            continue
        source = generation.get_layer(layer.name)
        for target_var, source_var in zip(layer.weights, source.weights):
            value = np.asarray(source_var.numpy())
            if layer.name == "conv1":
                rgb = value  # [7, 7, 3, 64]
                extra = np.repeat(rgb.mean(axis=2, keepdims=True), target_var.shape[2] - rgb.shape[2], axis=2)
                value = np.concatenate([rgb, extra], axis=2)
            target_var.assign(value)
            copied += 1
    return copied
