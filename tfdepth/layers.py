"""Small reusable Keras layers of the Monodepth2-style decoders (spec monodepth_seg.md §A.3, §A.10), and the
BatchNormalization every encoder uses (:class:`FusedBatchNormalization`: Keras' layer on TensorFlow's fused kernel).

Every layer here is registered serializable (package ``tfdepth``) and has ``get_config``, so models built from them
save to and reload from ``.keras`` files. The layers are written for dynamic spatial sizes (``None`` height/width).

Two export-driven choices (stack_notes.md, "Export"): XNNPACK, TFLite's CPU delegate, runs neither ``MIRROR_PAD``
nor ``RESIZE_NEAREST_NEIGHBOR`` nor what ``UpSampling2D`` lowers to (SHAPE/TILE/RESHAPE); each such op ends a
delegate partition. So :class:`ReflectionPad2D` builds the reflection from slices + concat (``STRIDED_SLICE`` +
``CONCATENATION``) and :class:`UpsampleNearest2x` copies the channels four times and rearranges them with
``depth_to_space`` (``CONCATENATION`` + ``DEPTH_TO_SPACE``). Both are pure copies, bit-identical to
``tf.pad(mode="REFLECT")`` and ``UpSampling2D`` (tested in ``tests/test_layers.py``); with them the whole
Monodepth2 depth network is one XNNPACK partition (``tests/test_layers.py``, ``docs/deploy.md``; it was 6 with
``resize(..., "nearest")`` for the upsampling). XNNPACK also runs a CONCATENATION of at most five inputs only:
:func:`concatenate_grouped` nests wider concats (RSN's 8-path pyramid units).
"""

import keras
import tensorflow as tf

__all__ = ["ReflectionPad2D", "Conv3x3", "ConvBlock", "UpsampleNearest2x", "nearest_2x_broadcast",
           "concatenate_grouped", "FusedBatchNormalization", "activation_input", "torch_default_kernel_initializer"]

XNNPACK_MAX_CONCAT_INPUTS = 5
"""The most inputs of one TFLite ``CONCATENATION`` that XNNPACK runs (measured with ai-edge-litert: 2..5 are
delegated, 6 or more stay on the reference kernels and split the graph into several delegate partitions)."""


def activation_input(shape, name):
    """``keras.Input`` for a nested model that is fed another network's activations (a decoder's features).

    Its dtype is the compute dtype of the dtype policy the model is built under (float32, or bfloat16 under
    ``mixed_bfloat16``): a Keras functional model converts its inputs to their ``Input`` dtype, so a float32
    ``Input`` behind a bf16 encoder would cast every feature to float32 and the first layer back to bf16, forward
    and backward (4 full passes over each skip feature per training step; measured on the Monodepth2 decoder).
    """
    return keras.Input(shape, name=name, dtype=keras.config.dtype_policy().compute_dtype)


def torch_default_kernel_initializer():
    """PyTorch's default ``nn.Conv2d`` weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Monodepth2's decoders keep PyTorch's default initialisation; VarianceScaling(1/3, fan_in, uniform) has limit
    sqrt(3 * (1/3) / fan_in) = 1/sqrt(fan_in), i.e. the same distribution. (Biases start at zero, Keras' default.)
    """
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


# --- argument checks shared by tfdepth.models (clear errors instead of deep TF stack traces) ---------------------


def check_int(value, name, minimum):
    """Return ``value`` if it is an int >= ``minimum``; else raise a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_bool(value, name):
    """Return ``value`` if it is a bool; else raise a TypeError naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def check_hw(value, name, multiple, owner, minimum=None):
    """Validate an optional static height/width: ``None`` or an int multiple of ``multiple`` (>= ``minimum``)."""
    if value is None:
        return None
    minimum = multiple if minimum is None else minimum
    check_int(value, name, 1)
    if value % multiple:
        raise ValueError(
            f"{owner}: {name}={value} is not a multiple of {multiple}; resize the input to a multiple of "
            f"{multiple} (e.g. {max(minimum, round(value / multiple) * multiple)}) or pass {name}=None."
        )
    if value < minimum:
        raise ValueError(f"{owner}: {name}={value} is too small; it must be at least {minimum}.")
    return value


def check_multiple_on_call(inputs, multiple, owner, minimum=None):
    """Raise a ValueError when a statically known H or W of ``inputs`` [B, H, W, C] is not a multiple of
    ``multiple`` or is below ``minimum`` (default ``multiple``).

    Run at call time so a wrong-sized image fails with a readable message, not a concat shape error deep in a
    decoder. Unknown (traced, dynamic) sizes cannot be checked here and pass.
    """
    minimum = multiple if minimum is None else minimum
    shape = getattr(inputs, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"{owner} expects a 4-D [B, H, W, C] tensor, got shape {shape}.")
    for axis_name, size in (("height", shape[1]), ("width", shape[2])):
        if size is None:
            continue
        if int(size) % multiple or int(size) < minimum:
            raise ValueError(
                f"{owner}: input {axis_name} {int(size)} is not a multiple of {multiple} that is >= {minimum}; "
                f"resize or crop the image so H and W are multiples of {multiple} (at least {minimum})."
            )


@keras.saving.register_keras_serializable(package="tfdepth")
class ReflectionPad2D(keras.layers.Layer):
    """Reflection padding of ``pad`` pixels on each side of H and W (PyTorch ``nn.ReflectionPad2d``).

    Input ``[B, H, W, C]`` -> ``[B, H + 2*pad, W + 2*pad, C]``; equal to ``tf.pad(x, ..., mode="REFLECT")`` (edge
    pixel not repeated), which needs ``H, W > pad``. Built from single-row/column slices and one concat per axis
    because XNNPACK cannot run TFLite's MIRROR_PAD (stack_notes.md). Each concat has 2 * pad + 1 inputs, so XNNPACK
    runs it for pad 1 and 2 (every tfdepth model pads by 1); pad >= 3 stays correct but leaves that op outside.
    In training (``training=True``) it is one ``tf.pad(mode="REFLECT")``, the same copy: the slices' backward is a
    StridedSliceGrad per slice and a Slice per concat input (about 140 ms of kernel time per Monodepth2 training step
    at 192x640, batch 2; the step 1398 -> 1321 ms in float32, 889 -> 836 ms in mixed_bfloat16, AMX Xeon).
    """

    def __init__(self, pad=1, **kwargs):
        super().__init__(**kwargs)
        self.pad = check_int(pad, "pad", 0)

    def _reflect(self, x, axis):
        p = self.pad
        # Row/column i (1..p) from the border, mirrored outside: [p, ..., 1] + x + [-2, ..., -(p+1)].
        def take(start, stop):
            idx = [slice(None)] * 4
            idx[axis] = slice(start, stop)
            return x[tuple(idx)]

        before = [take(i, i + 1) for i in range(p, 0, -1)]
        after = [take(-1 - i, -i) for i in range(1, p + 1)]
        return tf.concat(before + [x] + after, axis=axis)

    def call(self, inputs, training=None):
        if self.pad == 0:
            return inputs
        for size in inputs.shape[1:3]:
            # A reflection needs pad < size; slices would silently give a wrong size instead (tf.pad raises).
            if size is not None and size <= self.pad:
                raise ValueError(
                    f"ReflectionPad2D(pad={self.pad}) needs H and W > {self.pad}, "
                    f"got input shape {tuple(inputs.shape)}."
                )
        if training:
            # The same copy as one MirrorPad: its gradient is one MirrorPadGrad, where the slices' is a
            # StridedSliceGrad per slice plus a Slice per concat input (export traces with training=False).
            p = self.pad
            return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        return self._reflect(self._reflect(inputs, 1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.pad  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="tfdepth")
class Conv3x3(keras.layers.Layer):
    """Monodepth2's ``Conv3x3``: pad 1 (reflection, or zeros) then a valid 3x3 convolution with bias (§A.3).

    ``use_reflection=False`` pads with zeros (equivalent to a stride-1 'same' conv).
    """

    def __init__(self, filters, use_reflection=True, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        if not isinstance(use_reflection, bool):
            raise TypeError(f"use_reflection must be a bool, got {use_reflection!r}.")
        self.use_reflection = use_reflection
        self.padding = ReflectionPad2D(1, name="pad") if use_reflection else keras.layers.ZeroPadding2D(1, name="pad")
        self.conv = keras.layers.Conv2D(
            self.filters, 3, padding="valid", use_bias=True,
            kernel_initializer=torch_default_kernel_initializer(), bias_initializer=self.bias_initializer, name="conv",
        )

    def build(self, input_shape):
        self.padding.build(input_shape)
        self.conv.build(self.padding.compute_output_shape(input_shape))

    def call(self, inputs):
        return self.conv(self.padding(inputs))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "use_reflection": self.use_reflection,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="tfdepth")
class ConvBlock(keras.layers.Layer):
    """Monodepth2's ``ConvBlock``: :class:`Conv3x3` (reflection pad) followed by ELU (§A.3)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.conv = Conv3x3(self.filters, use_reflection=True, name="conv3x3")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs):
        return tf.nn.elu(self.conv(inputs))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def concatenate_grouped(tensors, name, axis=-1, group=XNNPACK_MAX_CONCAT_INPUTS):
    """``Concatenate(axis)(tensors)`` as nested concats of at most ``group`` inputs each (same values, same order).

    XNNPACK runs a TFLite ``CONCATENATION`` of at most :data:`XNNPACK_MAX_CONCAT_INPUTS` inputs; a wider one stays
    outside the delegate and splits the graph. Consecutive runs of ``group`` tensors are concatenated first
    (layers ``{name}_group{i}``), then those results (recursively), the last layer being named ``name``. With
    ``len(tensors) <= group`` this is the single ``Concatenate`` named ``name``. Keras functional tensors in, one out.
    """
    tensors = list(tensors)
    if group < 2:
        raise ValueError(f"concatenate_grouped: group must be at least 2, got {group}.")
    if not tensors:
        raise ValueError(f"concatenate_grouped({name!r}): no tensors to concatenate.")
    if len(tensors) == 1:
        return tensors[0]
    level = 0
    while len(tensors) > group:
        merged = []
        for i in range(0, len(tensors), group):
            chunk = tensors[i:i + group]
            merged.append(chunk[0] if len(chunk) == 1 else
                          keras.layers.Concatenate(axis=axis, name=f"{name}_group{level}_{i // group}")(chunk))
        tensors, level = merged, level + 1
    return keras.layers.Concatenate(axis=axis, name=name)(tensors)


def nearest_2x_broadcast(x):
    """Nearest-neighbour x2 upsampling of ``x`` [B, H, W, C] as one broadcast copy (autodiff gradient).

    ``out[b, 2i + di, 2j + dj, c] = x[b, i, j, c]``: the same values as the layer's concat + ``depth_to_space``,
    1.5-2x faster outside TFLite (one write instead of two; measured on the Monodepth2 decoder's maps, AMX Xeon:
    96x320x16 float32 3.1 vs 5.5 ms, bf16 1.7 vs 2.5 ms). Used in training and by ``tfdepth.export.fold_model``;
    XNNPACK does not run what it lowers to (module docstring), so inference graphs keep the concat form.
    """
    shape = tf.shape(x)
    blocks = tf.broadcast_to(x[:, :, None, :, None, :], [shape[0], shape[1], 2, shape[2], 2, shape[3]])
    return tf.reshape(blocks, [shape[0], 2 * shape[1], 2 * shape[2], shape[3]])


def _block_sum_2x2(dy):
    """The gradient of nearest x2 upsampling: each input pixel's 2x2 output block summed, [B, 2H, 2W, C] -> [B, H, W, C].

    Written as 4 x the 2x2 average pool (dividing by 4 and multiplying by 4 are exact in binary floating point, so
    it is the block sum up to the order of its four additions). The pooling kernel (oneDNN on CPU, cuDNN on GPU,
    float16/bfloat16/float32/float64 on both) is 4-6x faster than ``reduce_sum`` over a 6-D reshape (96x320x16
    float32: 1.5 vs 8.8 ms; bf16 1.2 vs 6.5 ms, AMX Xeon), and it compiles under XLA.
    """
    return tf.nn.avg_pool2d(dy, 2, 2, "VALID") * tf.constant(4.0, dy.dtype)


@tf.custom_gradient
def _upsample_nearest_2x(x):
    """Forward: 4 channel copies + ``depth_to_space(2)``. Backward: :func:`_block_sum_2x2`.

    ``depth_to_space`` with block 2 writes ``out[b, 2i + di, 2j + dj, c] = in[b, i, j, (2 * di + dj) * C + c]``;
    with the input ``[x, x, x, x]`` along channels every output pixel of the 2x2 block is ``x[b, i, j, c]``, which is
    nearest-neighbour x2 upsampling, exactly (only copies). It lowers to TFLite's CONCATENATION + DEPTH_TO_SPACE, both
    run by XNNPACK (RESIZE_NEAREST_NEIGHBOR is not). The gradient is written by hand: each input pixel is copied to
    one 2x2 block, so its gradient is the sum of the four; this is cheaper than differentiating the concat.
    """
    return tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2), _block_sum_2x2


@tf.custom_gradient
def _upsample_nearest_2x_training(x):
    """The training form: :func:`nearest_2x_broadcast` forward (the same values), :func:`_block_sum_2x2` backward."""
    return nearest_2x_broadcast(x), _block_sum_2x2


@keras.saving.register_keras_serializable(package="tfdepth")
class UpsampleNearest2x(keras.layers.Layer):
    """Nearest-neighbour x2 upsampling for dynamic spatial sizes (Monodepth2's ``upsample``, §A.3).

    Output pixel ``(o_y, o_x)`` reads input ``(o_y // 2, o_x // 2)``, exactly ``UpSampling2D(interpolation="nearest")``
    (and ``resize(..., "nearest")`` with half-pixel centres), built from a channel concat and ``depth_to_space`` so
    that XNNPACK runs it in TFLite (module docstring). In training (``training=True``; export traces with False) it
    is one broadcast copy instead, the same values faster (:func:`nearest_2x_broadcast`). Keeps the input dtype.
    """

    def call(self, inputs, training=None):
        if training:
            return _upsample_nearest_2x_training(inputs)
        return _upsample_nearest_2x(inputs)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


# --- BatchNormalization with TensorFlow's fused training kernel ------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfdepth")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step runs TensorFlow's fused kernel (same numbers).

    Keras 3 normalises in training mode with separate moments, multiplies and adds (and, with
    ``synchronized=True``, sums, squares and an all-reduce even on one replica), each a full pass over the
    activations forward and several backward; ``FusedBatchNormV3`` is one op each way (oneDNN or Eigen on CPU,
    cuDNN on GPU) and takes bf16/fp16 activations with float32 statistics (TensorFlow 2.21 registers bf16 on CPU
    with and without oneDNN, and on GPU), so ``mixed_bfloat16`` also skips Keras' casts to float32 and back.
    Measured on the Monodepth2 training step (192x640, batch 2, AMX Xeon): 1676 -> 1642 ms in float32, 1303 -> 1125
    ms in mixed_bfloat16; casting bf16 to float32 around the kernel instead costs 7-10 % of the bf16 step.

    The layer is Keras' in every other respect (variables, config, inference, masks, renorm): the fused path is
    taken only in training, with no mask and no renorm, on 4-D channels-last inputs, and when the statistics are
    this replica's anyway (``synchronized=False``, or one replica in sync); a synchronised layer on several replicas
    uses Keras' path with two-pass cross-replica moments (``_moments``: Keras' own lose precision). The moving
    averages are updated exactly as Keras does, with the *biased* batch variance: the kernel returns the Bessel-corrected one (n / (n - 1), n = B * H * W, on CPU and GPU), so it
    is scaled back by (n - 1) / n.
    """

    def _moments(self, inputs, mask):
        """Batch moments for Keras' path: two-pass synchronised moments across replicas, else Keras' own.

        Keras' synchronised moments are ``E[x^2] - E[x]^2`` of all-reduced sums, which loses the variance to
        cancellation once |mean| >> std (measured: 2e-4 of error in the output at mean/std = 30, 0.1 at 1000, where
        the two-pass form and the fused kernel stay at 3e-6 and 8e-5). Here: all-reduce the sums and counts, take
        the global mean, then all-reduce the squared deviations from it: the single-device two-pass variance, so
        several replicas normalise like one device on the global batch. Gradients flow through both all-reduces.
        """
        context = tf.distribute.get_replica_context()
        if mask is not None or context is None or self._statistics_are_local():
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), inputs.dtype)
        total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.reduce_sum(inputs, axis=axes), count])
        mean = total / count
        squares = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(inputs - mean), axis=axes))
        return mean, squares / count

    def _fused_applies(self, inputs, training, mask):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return False
        if inputs.shape.rank != 4 or self.axis not in (-1, 3):
            return False
        if inputs.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            return False
        return self._statistics_are_local()

    def _statistics_are_local(self):
        """True when the batch statistics are this replica's: not synchronised, or one replica in sync (False in a
        cross-replica context, where a synchronised layer takes Keras' own moments)."""
        if not self.synchronized:
            return True
        context = tf.distribute.get_replica_context()
        return context is not None and context.num_replicas_in_sync == 1

    def call(self, inputs, training=None, mask=None):
        inputs = tf.convert_to_tensor(inputs)
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        empty = tf.constant([], tf.float32)
        outputs, mean, corrected_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
        )
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = corrected_variance * (tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0))
        momentum = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            tf.cast(self.moving_variance, tf.float32) * momentum + variance * (1.0 - momentum)
        )
        return tf.cast(outputs, self.compute_dtype)
