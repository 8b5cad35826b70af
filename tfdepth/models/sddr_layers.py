"""The small layers of SDDR's N_r (``tfdepth.models.sddr``; specs/sddr.md §2): replicate padding, the shortcut's
2x subsampling, PyTorch's align_corners bicubic x2 without gathers, GroupNorm, the soft mask fusion and min-max
normalisation. Each is registered serializable (package ``tfdepth``), so ``.keras`` files name the class only and
load whichever module defines it."""

import keras
import numpy as np
import tensorflow as tf

from tfdepth.layers import check_int
from tfdepth.ops.edges import minmax_normalize_tf, replicate_pad_tf

__all__ = ["ReplicatePad2D", "Subsample2x", "BicubicUpsample2x", "GroupNorm", "SoftMaskFusion", "MinMaxNormalize",
           "UPSAMPLE_MODES"]

UPSAMPLE_MODES = ("bicubic_align_corners", "bicubic")


@keras.saving.register_keras_serializable(package="tfdepth")
class ReplicatePad2D(keras.layers.Layer):
    """PyTorch ``padding_mode="replicate"``: repeat the border pixels ``pad`` times (slices + concat)."""

    def __init__(self, pad=1, **kwargs):
        super().__init__(**kwargs)
        self.pad = check_int(pad, "pad", 0)

    def call(self, x):
        return replicate_pad_tf(x, self.pad)

    def compute_output_shape(self, s):
        grow = lambda n: None if n is None else n + 2 * self.pad  # noqa: E731
        return (s[0], grow(s[1]), grow(s[2]), s[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="tfdepth")
class Subsample2x(keras.layers.Layer):
    """Every second row and column from the first, ``x[:, ::2, ::2, :]`` for even H and W, written as
    ``space_to_depth(2)`` and its first C channels (the (0, 0) phase of each 2x2 block).

    With a stride-1 1x1 convolution after it, this is the encoder's 1x1/stride-2 shortcut conv, exactly. Two
    reasons for not using ``Conv2D(1, strides=2)``: oneDNN's backward-filter kernel of a 1x1 stride-2 convolution
    with few channels (1 -> 8, 8 -> 16, even input size) corrupts the heap and aborts training on CPUs where
    TensorFlow enables oneDNN by default (AVX-512 VNNI/BF16, AMX; TensorFlow 2.21); and XNNPACK runs
    SPACE_TO_DEPTH + SLICE but not a STRIDED_SLICE with stride 2.
    """

    def call(self, x):
        return tf.nn.space_to_depth(x, 2)[..., : x.shape[-1]]

    def compute_output_shape(self, s):
        half = lambda n: None if n is None else n // 2  # noqa: E731
        return (s[0], half(s[1]), half(s[2]), s[3])


_CUBIC_A = -0.75  # PyTorch's bicubic coefficient


def _cubic_kernel(d):
    """Keys' cubic convolution weight for distances ``d`` >= 0 (a = -0.75); works on numpy and TF tensors."""
    a = _CUBIC_A
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0  # |d| <= 1
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a  # 1 < |d| < 2
    return near, far


def _phase_weights(n, xp):
    """Cubic weights ``(even, odd)``, each 4 arrays of shape [n], of the x2 align_corners up-sampling of n samples.

    Output i samples the input at ``src = i (n-1) / (2n-1)``, i.e. ``i/2 - i / (2 (2n-1))``. Since n-1 and 2n-1
    are coprime, src is an integer only at i = 0 and i = 2n-1, so the floor is known in closed form: output 2m
    has base m-1 and fraction ``t = 1 - m / (2n-1)`` (t = 1 at m = 0: all weight on x[0]), output 2m+1 has base m
    and ``t = 1/2 - (2m+1) / (2 (2n-1))``. The 4 taps sit at base-1 .. base+2 with weights ``W(t+1), W(t),
    W(1-t), W(2-t)``. ``xp`` is numpy (a static n: float64, then float32 constants) or tf (a traced n).
    """
    m = xp.arange(n, dtype=xp.float64) if xp is np else tf.cast(tf.range(n), tf.float32)
    span = 2.0 * (xp.float64(n) if xp is np else tf.cast(n, tf.float32)) - 1.0
    weights = []
    for t in (1.0 - m / span, 0.5 - (2.0 * m + 1.0) / (2.0 * span)):
        near_t, _ = _cubic_kernel(t)
        near_1t, _ = _cubic_kernel(1.0 - t)
        _, far_t1 = _cubic_kernel(t + 1.0)
        _, far_2t = _cubic_kernel(2.0 - t)
        weights.append((far_t1, near_t, near_1t, far_2t))
    return weights


def _interp_axis(x, axis):
    """PyTorch bicubic x2 (align_corners=True, borders clamped) along ``axis`` (1 = rows, 2 = columns).

    Written without gathers (XNNPACK runs no GATHER, and TF's gather was most of SDDR's CPU time): the input is
    replicate-padded by 2 (= clamped indices), its 5 shifted windows ``s_k[m] = x[clamp(m + k - 2)]`` are sliced
    once, the even outputs are ``sum_k w_even[k][m] s_k[m]`` over k = 0..3 and the odd ones ``sum_k w_odd[k][m]
    s_{k+1}[m]`` (:func:`_phase_weights`), and the two are interleaved by a concat + reshape. Equal to the gather
    form (indices clipped to the border) to float32 rounding (``tests/test_models_sddr.py``).
    """
    static = x.shape[axis]
    n = int(static) if static is not None else tf.shape(x)[axis]
    if static is not None:
        even, odd = [[tf.constant(w.astype(np.float32)) for w in ws] for ws in _phase_weights(n, np)]
    else:
        even, odd = _phase_weights(n, tf)

    def window(t, start, size):
        index = [slice(None)] * 4
        index[axis] = slice(start, start + size)
        return t[tuple(index)]

    first, last = window(x, 0, 1), window(x, n - 1, 1)
    padded = tf.concat([first, first, x, last, last], axis=axis)
    shifted = [window(padded, k, n) for k in range(5)]
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    w = lambda v: tf.reshape(tf.cast(v, x.dtype), shape)  # noqa: E731
    out_even = shifted[0] * w(even[0]) + shifted[1] * w(even[1]) + shifted[2] * w(even[2]) + shifted[3] * w(even[3])
    out_odd = shifted[1] * w(odd[0]) + shifted[2] * w(odd[1]) + shifted[3] * w(odd[2]) + shifted[4] * w(odd[3])
    # [.., n, .., 2 x next axis] -> [.., 2n, ..]: the concat along the next axis puts output 2m+p at (m, p).
    dims = tf.unstack(tf.shape(x)) if None in x.shape else list(x.shape)
    dims[axis] = 2 * n
    return tf.reshape(tf.concat([out_even, out_odd], axis=axis + 1), tf.stack(dims) if None in x.shape else dims)


@keras.saving.register_keras_serializable(package="tfdepth")
class BicubicUpsample2x(keras.layers.Layer):
    """Bicubic x2 up-sampling of [B, H, W, C]: PyTorch's align_corners=True kernel or ``tf.image.resize``."""

    def __init__(self, mode="bicubic_align_corners", **kwargs):
        super().__init__(**kwargs)
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "bicubic":
            size = 2 * tf.shape(x)[1:3]
            return tf.cast(tf.image.resize(x, size, method="bicubic"), x.dtype)
        return _interp_axis(_interp_axis(x, 1), 2)

    def compute_output_shape(self, s):
        grow = lambda n: None if n is None else 2 * n  # noqa: E731
        return (s[0], grow(s[1]), grow(s[2]), s[3])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tfdepth")
class GroupNorm(keras.layers.Layer):
    """PyTorch ``nn.GroupNorm(groups, C)`` on channels-last maps: statistics over (H, W, C / groups) per group.

    Channels are grouped contiguously (``[0, C/G)`` is group 0), biased variance, float32 maths. Written here
    (instead of ``keras.layers.GroupNormalization``, the same maths) for the same reason as
    ``tfdepth.models.mit.LayerNorm``: a few graph ops per call instead of about 30.
    """

    def __init__(self, groups, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.epsilon = check_int(groups, "groups", 1), float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible into {self.groups} groups")
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        shape = tf.shape(x32)
        channels = x.shape[-1]
        grouped = tf.reshape(x32, [shape[0], shape[1], shape[2], self.groups, channels // self.groups])
        mean, var = tf.nn.moments(grouped, axes=[1, 2, 4], keepdims=True)
        out = tf.reshape((grouped - mean) * tf.math.rsqrt(var + self.epsilon), shape)
        out = out * tf.cast(self.gamma, tf.float32) + tf.cast(self.beta, tf.float32)
        return tf.cast(out, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfdepth")
class SoftMaskFusion(keras.layers.Layer):
    """``(m F_low + (1 - m) F_high, Omega = 1 - m)``: the code's mixing with its mask m, Omega in paper convention."""

    def call(self, gate, low, high):
        return gate * low + (1.0 - gate) * high, 1.0 - gate

    def compute_output_shape(self, gate_shape, low_shape, high_shape):
        return low_shape, gate_shape


@keras.saving.register_keras_serializable(package="tfdepth")
class MinMaxNormalize(keras.layers.Layer):
    """Per-image min-max normalisation to [0, 1] (the official ``inference()``); constant maps become 0."""

    def call(self, x):
        return tf.cast(minmax_normalize_tf(x), x.dtype)

    def compute_output_shape(self, s):
        return s
