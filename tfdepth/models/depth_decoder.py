"""Monodepth2 multi-scale disparity decoder and the depth network (spec monodepth_seg.md §A.2, §A.3).

:class:`DepthDecoder` follows §A.3 exactly: decoder channels [16, 32, 64, 128, 256]; for i = 4..0 a ConvBlock
(reflection pad + 3x3 conv + ELU), nearest x2 upsampling, concat of the encoder skip ``f_{i-1}`` (i > 0), a second
ConvBlock, and at i in ``scales`` a sigmoid disparity from a reflection-padded 3x3 conv. ``disp_s`` has size
H/2^s x W/2^s. The sigmoid runs in float32 so disparities are float32 under a mixed-precision policy.

Decoder kernels use PyTorch's default init (Monodepth2 keeps it): ``tfdepth.layers.torch_default_kernel_initializer``.

``disp_bias_init`` (not in the paper; default None = zero bias, sigmoid ~0.5 at init like Monodepth2) sets the bias of
the disparity convs. Why it exists: a monocular model's depth scale is free, and where it settles depends on the
start. A sigmoid of 0.5 means ``depth ~= 2 * min_depth`` everywhere, so with the paper's init the learnt scale puts
``min_depth`` at half the typical depth: objects nearer than that are pressed against the floor of the range, where
the sigmoid saturates and their gradients vanish (measured on synthetic streets: parked cars, 18% of the pixels and
half of them nearer than 5 m, predicted at the floor, abs_rel 0.67). :func:`disp_bias_for_depth` gives the bias that
starts the network at a chosen depth, which decouples the start from the range: ``configs/default.yaml`` keeps the
paper's start (0.2) and lowers ``min_depth`` to 0.03, 6.7x below the start instead of 2x (cars: abs_rel 0.33).
Starting deeper (``initial_depth`` 0.5 with ``min_depth`` 0.1, or 2.0) moved the scale too but made the first epochs
unstable (README "Measured").
"""

import math
import operator

import keras
import tensorflow as tf

from tfdepth.layers import (
    Conv3x3,
    ConvBlock,
    UpsampleNearest2x,
    activation_input,
    check_bool,
    check_hw,
    check_int,
    check_multiple_on_call,
)
from tfdepth.models.resnet import ResnetEncoder

__all__ = ["DepthDecoder", "DepthNet", "disp_to_depth", "disp_bias_for_depth", "NUM_CH_DEC", "check_image_input"]

NUM_CH_DEC = (16, 32, 64, 128, 256)  # §A.3


def _check_scales(scales):
    if isinstance(scales, int) or not hasattr(scales, "__iter__"):
        raise TypeError(f"scales must be a sequence of ints from 0..3, got {scales!r}.")
    scales = tuple(scales)
    if not scales or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 3 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of ints in 0..3 (e.g. (0, 1, 2, 3)), got {scales!r}.")
    if len(set(scales)) != len(scales):
        raise ValueError(f"scales must not repeat a scale, got {scales!r}.")
    return tuple(sorted(scales))


def _check_num_ch_enc(num_ch_enc):
    msg = f"num_ch_enc must be 5 positive ints (encoder channels of f0..f4), got {num_ch_enc!r}."
    try:
        chans = [operator.index(c) for c in num_ch_enc]  # operator.index rejects floats, accepts numpy ints
    except TypeError as err:
        raise TypeError(msg) from err
    if len(chans) != 5 or min(chans) < 1:
        raise ValueError(msg)
    return chans


_ANY_SIZE_HINT = (
    "To predict on an image of any size use tfdepth.DepthPredictor.from_run_dir(run_dir) (it resizes to the "
    "network size and the depth back) or resize it yourself"
)


def check_image_input(inputs, channels, owner, what, multiple=32, minimum=None):
    """Readable errors for what a raw network cannot take, before Keras converts or traces anything.

    ``inputs`` must be a 4-D ``[B, H, W, channels]`` floating batch in [0, 1] (the value range cannot be checked
    statically and is not): integer images (uint8 0..255 would be taken as 0..255 "intensities", 255x too bright),
    a single image without the batch axis, the wrong channel count and H/W that are not multiples of ``multiple``
    (a concat shape error deep in the decoder otherwise) are ValueErrors that say what to do. Unknown (traced)
    sizes pass.
    """
    shape = getattr(inputs, "shape", None)
    dtype = getattr(inputs, "dtype", None)
    if shape is None or dtype is None:
        return
    shape = tuple(None if s is None else int(s) for s in shape)
    name = keras.backend.standardize_dtype(dtype)
    if "int" in name or name == "bool":
        raise ValueError(
            f"{owner} takes float images in [0, 1], got dtype {name}: divide by 255 first "
            f"(image.astype('float32') / 255), or use tfdepth.DepthPredictor, which takes uint8 images of any size."
        )
    if len(shape) != 4:
        hint = " (one image? add the batch axis: image[None])" if len(shape) == 3 else ""
        raise ValueError(f"{owner} takes a batch of {what} [B, H, W, {channels}] (float in [0, 1]), got shape "
                         f"{shape}{hint}.")
    if shape[-1] is not None and shape[-1] != channels:
        raise ValueError(f"{owner} takes a batch of {what} [B, H, W, {channels}] (float in [0, 1]), got "
                         f"{shape[-1]} channels (shape {shape}).")
    try:
        check_multiple_on_call(inputs, multiple, owner, minimum=minimum)
    except ValueError as err:
        raise ValueError(f"{err} {_ANY_SIZE_HINT}.") from None


def disp_to_depth(disp, min_depth=0.1, max_depth=100.0):
    """Map a sigmoid output to (scaled disparity, depth) (§A.3, Monodepth2 ``disp_to_depth``).

    ``scaled_disp = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1 / scaled_disp``, so
    disp in [0, 1] maps to depth in [min_depth, max_depth]. Any shape; returns tensors of ``disp``'s shape/dtype.
    """
    if not (isinstance(min_depth, (int, float)) and isinstance(max_depth, (int, float))):
        raise TypeError(f"min_depth and max_depth must be numbers, got {min_depth!r} and {max_depth!r}.")
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}.")
    disp = tf.convert_to_tensor(disp)
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


def disp_bias_for_depth(initial_depth, min_depth=0.1, max_depth=100.0):
    """The disparity-conv bias (a logit) for which a zero pre-activation gives ``depth == initial_depth``.

    Inverts :func:`disp_to_depth`: ``s = (1/initial_depth - 1/max_depth) / (1/min_depth - 1/max_depth)``,
    bias = ``log(s / (1 - s))``. ``initial_depth`` must lie strictly between ``min_depth`` and ``max_depth``.
    """
    for value, name in ((initial_depth, "initial_depth"), (min_depth, "min_depth"), (max_depth, "max_depth")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}.")
    if not 0 < min_depth < initial_depth < max_depth:
        raise ValueError(
            f"initial_depth must lie strictly between min_depth and max_depth, got initial_depth={initial_depth} "
            f"with min_depth={min_depth}, max_depth={max_depth}."
        )
    s = (1.0 / initial_depth - 1.0 / max_depth) / (1.0 / min_depth - 1.0 / max_depth)
    return math.log(s / (1.0 - s))


def _check_bias(disp_bias_init):
    if disp_bias_init is None:
        return None
    if isinstance(disp_bias_init, bool) or not isinstance(disp_bias_init, (int, float)) or not math.isfinite(
        disp_bias_init
    ):
        raise TypeError(f"disp_bias_init must be a finite number or None, got {disp_bias_init!r}.")
    return float(disp_bias_init)


@keras.saving.register_keras_serializable(package="tfdepth")
class DepthDecoder(keras.Model):
    """Dict of encoder features ``f0``..``f4`` -> dict ``disp_s`` ``[B, H/2^s, W/2^s, num_output_channels]``.

    ``num_ch_enc`` gives the channels of ``f0``..``f4``; spatial sizes are dynamic (f_i at stride 2^(i+1)).
    """

    def __init__(self, num_ch_enc, scales=(0, 1, 2, 3), num_output_channels=1, disp_bias_init=None,
                 name="depth_decoder", **kwargs):
        num_ch_enc = _check_num_ch_enc(num_ch_enc)
        scales = _check_scales(scales)
        check_int(num_output_channels, "num_output_channels", 1)
        disp_bias_init = _check_bias(disp_bias_init)
        bias_init = "zeros" if disp_bias_init is None else keras.initializers.Constant(disp_bias_init)

        feats = {f"f{i}": activation_input((None, None, c), f"f{i}") for i, c in enumerate(num_ch_enc)}
        x = feats["f4"]
        outputs = {}
        for i in range(4, -1, -1):
            x = ConvBlock(NUM_CH_DEC[i], name=f"upconv_{i}_0")(x)
            x = UpsampleNearest2x(name=f"upsample_{i}")(x)
            if i > 0:
                x = keras.layers.Concatenate(axis=-1, name=f"skip_{i}")([x, feats[f"f{i - 1}"]])
            x = ConvBlock(NUM_CH_DEC[i], name=f"upconv_{i}_1")(x)
            if i in scales:
                logits = Conv3x3(num_output_channels, use_reflection=True, bias_initializer=bias_init,
                                 name=f"dispconv_{i}")(x)
                # float32 sigmoid: the disparities feed losses and exports in float32 under mixed precision.
                outputs[f"disp_{i}"] = keras.layers.Activation("sigmoid", dtype="float32", name=f"disp_{i}")(logits)
        outputs = {k: outputs[k] for k in sorted(outputs)}

        super().__init__(inputs=feats, outputs=outputs, name=name, **kwargs)
        self.num_ch_enc = num_ch_enc
        self.scales = scales
        self.num_output_channels = num_output_channels
        self.disp_bias_init = disp_bias_init

    def get_config(self):
        return {
            "name": self.name,
            "num_ch_enc": list(self.num_ch_enc),
            "scales": list(self.scales),
            "num_output_channels": self.num_output_channels,
            "disp_bias_init": self.disp_bias_init,
        }


@keras.saving.register_keras_serializable(package="tfdepth")
class DepthNet(keras.Model):
    """Monodepth2 depth network: image ``[B, H, W, 3]`` in [0, 1] -> dict ``disp_s`` ``[B, H/2^s, W/2^s, 1]``.

    A :class:`ResnetEncoder` (attribute ``encoder``) followed by a :class:`DepthDecoder` (attribute ``decoder``).
    H and W must be multiples of 32 (§A.2) and at least 64 (the decoder reflection-pads the stride-32 feature);
    ``height``/``width`` optionally fix them statically (e.g. for export). The outputs are sigmoid disparities,
    not depth: :func:`disp_to_depth` (or ``inference_heads.DisparityToDepth``) maps them to depth, and
    ``tfdepth.DepthPredictor`` does all of it for an image of any size. Integer (uint8) images, a missing batch
    axis, a channel count other than 3 and sizes that are not multiples of 32 raise a ValueError saying so
    (:func:`check_image_input`).
    """

    def __init__(self, encoder_depth=18, scales=(0, 1, 2, 3), sync_batchnorm=True, height=None, width=None,
                 disp_bias_init=None, name="depth_net", **kwargs):
        scales = _check_scales(scales)
        disp_bias_init = _check_bias(disp_bias_init)
        check_bool(sync_batchnorm, "sync_batchnorm")
        # minimum 64: the decoder reflection-pads f4 (stride 32), which needs at least 2 pixels (§A.3).
        height = check_hw(height, "height", 32, "DepthNet", minimum=64)
        width = check_hw(width, "width", 32, "DepthNet", minimum=64)
        encoder = ResnetEncoder(encoder_depth, 1, sync_batchnorm, height, width, name="encoder")
        decoder = DepthDecoder(encoder.num_ch_enc, scales, 1, disp_bias_init=disp_bias_init, name="decoder")

        image = keras.Input((height, width, 3), name="image")
        outputs = decoder(encoder(image))

        super().__init__(inputs=image, outputs=outputs, name=name, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_depth = encoder_depth
        self.scales = scales
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width
        self.disp_bias_init = disp_bias_init

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras casts the input to float32 (uint8 would otherwise pass silently, issue 10 item 5).
        check_image_input(inputs, 3, type(self).__name__, "RGB images", 32, minimum=64)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        check_multiple_on_call(inputs, 32, type(self).__name__, minimum=64)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "encoder_depth": self.encoder_depth,
            "scales": list(self.scales),
            "sync_batchnorm": self.sync_batchnorm,
            "height": self.height,
            "width": self.width,
            "disp_bias_init": self.disp_bias_init,
        }
