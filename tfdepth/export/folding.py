"""Folded inference graphs: a trained Keras network as one constant graph, BatchNorm folded, in float32 or bf16.

:class:`FoldedModel` (``fold_model(net, "bfloat16")``) runs the same computation as ``net(x, training=False)`` with
three changes that matter for CPU inference with oneDNN (measured in docs/speed.md, "Folded graphs"):

1. **BatchNorm folded into the convolution before it** (inference mode, moving statistics): for a ``Conv2D`` whose
   only consumer is a ``BatchNormalization`` over the channel axis, ``s = gamma / sqrt(moving_variance + eps)``,
   ``W' = W * s`` (per output channel) and ``b' = (b - moving_mean) * s + beta`` (``b = 0`` without a bias), so
   ``BN(conv(x, W) + b) = conv(x, W') + b'``. The fold is done in float64 and rounded once to the graph's dtype.
   A BatchNormalization that follows anything else becomes ``x * s + (beta - moving_mean * s)``.
2. **Weights as constants of the graph**, in the graph's dtype: no per-call reads and casts of float32 variables
   (Keras' ``mixed_bfloat16`` casts all weights to bf16 on every call), and oneDNN caches the blocked layout of a
   constant filter instead of reordering it per call. Conv + bias + ReLU/ELU then fuse into one oneDNN primitive.
3. **Everything in one dtype** (``"float32"`` or ``"bfloat16"``): every layer's inputs are cast to that dtype, so
   activations stay in it (no float32 BatchNorm islands); a weightless head that computes in float32 itself
   (``DisparityToDepth``) keeps its float32 result, and the outputs are returned as float32 in the network's output
   structure. Sigmoids (the disparity heads) run in float32 on the bf16 logits, as under Keras' ``mixed_bfloat16``:
   a bf16 sigmoid output near 0.5 is quantised to steps of 0.002-0.004, which tripled the error on the depth net.
   The accuracy change is measured by ``benchmarks/precision_selfsup.py`` and bounded by the tests.
4. **Reflection padding as one gather** (tfdepth's reflection-padded ``Conv3x3``, in ``ConvBlock`` or alone): the
   padded map is gathered from the flattened source map with a constant index (:func:`reflection_gather`), one
   write where the slices + concat form writes once per axis. It reaches through the decoder's upsampling and skip
   concat: ``pad(up(u))`` is gathered from ``u`` itself (padded row ``i`` of the upsampled map is ``u``'s row
   ``reflect(i) // 2``, reflecting in the upsampled map), and ``pad(concat(a, b)) = concat(pad(a), pad(b))``, so
   the upsampled map and the unpadded concat are never written. A map read by two reflection convs (a disparity
   head and the next decoder block) is padded once. The padded map is an exact copy of the Keras layers' (bf16
   too); the convolution reading it may round differently in bf16 (oneDNN blocks a gather's output otherwise:
   disparities within one bf16 step of the slices + concat form). Measured on the Monodepth2 depth net (AMX
   Xeon, 192x640, bf16): 16.3-17.0 -> 14.1-14.4 ms (docs/speed.md, "Decoder pads as gathers").
5. **One-channel float32 heads as a depthwise convolution + channel sum**: oneDNN blocks a float32 convolution's
   output channels by 16, so a ``C -> 1`` 3x3 head (the disparity heads) costs a 16-channel convolution;
   ``sum_c depthwise(x, K)[..., c]`` is the same sum of products (in another order: float32 rounding) at 1/16 of
   the work (the depth net's four heads 5.8 -> 3.9 ms of kernel time in float32). In bf16 the AMX convolution is
   faster than both, so bf16 graphs keep the convolution.

How: the Keras functional graph (and every nested functional model, e.g. the encoder inside ``DepthNet``) is walked
node by node in topological order and each layer is emitted as TensorFlow ops by a rule (convolutions, BN, ReLU,
tfdepth's ``Conv3x3``/``ConvBlock``/``UpsampleNearest2x``); layers without weights run their own ``call`` in
the graph's dtype; any other layer with weights runs unchanged (Keras ``__call__`` in its own dtype, inputs and
outputs cast), so an unknown layer is slower, never wrong. The weights are read when the graph is traced (the first
call for each input shape): fold a trained network, don't train it afterwards.

The input is validated as the Keras network validates it (the network's own checks run on a symbolic tensor of the
input's shape), so a wrong size fails with the network's message, not deep inside the graph.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from tfdepth.layers import Conv3x3, ConvBlock, UpsampleNearest2x, nearest_2x_broadcast

__all__ = ["FoldedModel", "fold_model", "DTYPES"]

DTYPES = ("float32", "bfloat16")


def fold_model(model: keras.Model, dtype: str = "bfloat16") -> "FoldedModel":
    """``model`` (a built Keras functional network) as a :class:`FoldedModel` computing in ``dtype``."""
    return FoldedModel(model, dtype)


def _is_functional(layer) -> bool:
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _float(x) -> bool:
    return isinstance(x, tf.Tensor) and x.dtype.is_floating


def _cast_all(structure, dtype):
    return tree.map_structure(lambda t: tf.cast(t, dtype) if _float(t) else t, structure)


def _numpy(variable) -> np.ndarray:
    """A variable's current value as float64, read eagerly even while a graph is being traced.

    The raw read keeps the variable out of the traced function's watched variables (``tf.Variable.numpy()`` would
    register it, and a SavedModel of the fold would then store every weight a second time as a variable)."""
    handle = getattr(variable, "value", variable)  # a Keras Variable wraps a tf.Variable
    with tf.init_scope():
        value = tf.raw_ops.ReadVariableOp(resource=handle.handle, dtype=handle.dtype)
        return np.asarray(value.numpy(), np.float64)


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of an inference-mode BatchNormalization, float64 (module docstring, item 1)."""
    mean = _numpy(bn.moving_mean)
    var = _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _channel_last_bn(layer) -> bool:
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    return axis in (-1, 3)


def _foldable_conv(layer) -> bool:
    """A Conv2D the graph can emit itself: channels-last, one group, any strides/padding/dilation/activation."""
    return (type(layer) is keras.layers.Conv2D and layer.data_format == "channels_last" and layer.groups == 1
            and layer.padding in ("same", "valid"))


class _Consumers:
    """Which nodes read each Keras tensor of one functional graph (to find conv -> BN pairs)."""

    def __init__(self, model):
        self.readers: dict[int, list] = {}
        for nodes in model._nodes_by_depth.values():  # noqa: SLF001 (Keras' functional graph)
            for node in nodes:
                for t in node.input_tensors:
                    self.readers.setdefault(id(t), []).append(node)
        self.outputs = {id(t) for t in tree.flatten(model.outputs)}

    def sole_bn_reader(self, node):
        """The BatchNormalization node that is the only reader of ``node``'s single output, else None."""
        if len(node.outputs) != 1 or id(node.outputs[0]) in self.outputs:
            return None
        readers = self.readers.get(id(node.outputs[0]), [])
        if len(readers) == 1 and isinstance(readers[0].operation, keras.layers.BatchNormalization) \
                and _channel_last_bn(readers[0].operation):
            return readers[0]
        return None


class FoldedModel(tf.Module):
    """``model(x, training=False)`` as a folded constant graph in ``dtype`` (module docstring).

    Call it like the Keras network (a tensor, or a dict of tensors, float32; ``training`` must be False): returns
    the network's output structure in float32, so it can stand in for the network (e.g. in ``DepthPredictor``).
    ``signature(spec)`` gives the concrete function for a fixed or dynamic input spec (for a SavedModel). The Keras network is not tracked as a dependency: a SavedModel of this module holds only the
    folded constants.
    """

    def __init__(self, model: keras.Model, dtype: str = "bfloat16", name: str | None = None):
        super().__init__(name=name or f"folded_{dtype}")
        if dtype not in DTYPES:
            raise ValueError(f"fold_model: dtype must be one of {DTYPES}, got {dtype!r}.")
        if not _is_functional(model):
            raise TypeError(f"fold_model needs a Keras functional network (e.g. tfdepth.models.build_model's), "
                            f"got {type(model).__name__}.")
        if not model.built:
            raise ValueError(f"fold_model: {model.name} is not built; call it on an input or load its weights first.")
        object.__setattr__(self, "_keras_model", model)  # untracked: a SavedModel of this holds only constants
        self.dtype = tf.as_dtype(dtype)
        self._checked: set = set()
        self._forward = tf.function(self._run, autograph=False)

    @property
    def model(self) -> keras.Model:
        """The Keras network this graph was folded from (weights are read when a new input shape is traced)."""
        return self._keras_model

    @property
    def input(self):
        """The Keras network's input structure (so tools that inspect a functional network accept this too)."""
        return self.model.input

    @property
    def output(self):
        """The Keras network's output structure."""
        return self.model.output

    def __call__(self, inputs, training=False):
        if training:
            raise ValueError("FoldedModel is an inference graph (BatchNorm folded, weights constant): call it with "
                             "training=False, or train the Keras network it was folded from.")
        self._validate(inputs)
        return self._forward(inputs)

    def signature(self, input_signature):
        """Concrete function of the folded graph for ``input_signature`` (a TensorSpec or a dict of them)."""
        return self._forward.get_concrete_function(input_signature)

    def _validate(self, inputs):
        """The Keras network's own input checks, on a symbolic tensor of the inputs' shapes (once per signature)."""
        def spec(t):
            return tuple(None if d is None else int(d) for d in t.shape), tf.as_dtype(t.dtype).name

        key = str(tree.map_structure(spec, inputs))
        if key in self._checked:
            return
        self.model(tree.map_structure(lambda t: keras.KerasTensor(*spec(t)), inputs))
        self._checked.add(key)

    def _run(self, inputs):
        out = self._graph(self.model, _cast_all(inputs, self.dtype))
        return _cast_all(out, tf.float32)

    # ------------------------------------------------------------------------------------------ graph walk
    def _graph(self, model, inputs):
        """Emit ``model``'s functional graph on ``inputs`` (tensors in ``self.dtype``); same output structure."""
        consumers = _Consumers(model)
        struct = model._inputs_struct  # noqa: SLF001
        if isinstance(struct, dict) and isinstance(inputs, dict):  # by name, as Keras matches a dict input
            inputs = {key: inputs[key] for key in struct}
        values = {id(k): v for k, v in zip(model.inputs, tree.flatten(inputs), strict=True)}
        folded_bn = set()  # ids of BN nodes whose input already is the folded conv's output
        padded = {}  # (id of a Keras tensor, pad) -> its reflection-padded value (shared by the convs reading it)
        for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
            for node in model._nodes_by_depth[depth]:  # noqa: SLF001
                if not node.operation or node.is_input:
                    continue
                with tf.name_scope(_scope_name(node.operation.name)):  # the layer's name on its ops (profiles)
                    outputs = self._node(node, values, consumers, folded_bn, padded)
                for ref, value in zip(node.outputs, tree.flatten(outputs)):
                    values[id(ref)] = value
        return tree.pack_sequence_as(model._outputs_struct, [values[id(t)] for t in tree.flatten(model.outputs)])  # noqa: SLF001

    def _node(self, node, values, consumers, folded_bn, padded):
        """The ops of one node of a functional graph (its input values in ``values``)."""
        args, kwargs = node.arguments.fill_in(values)
        layer = node.operation
        if id(node) in folded_bn:
            return args[0]
        block = layer.conv if isinstance(layer, ConvBlock) else layer
        if isinstance(block, Conv3x3) and block.use_reflection:
            y = self._conv(block.conv, self._reflected(node.input_tensors[0], values, padded, block.padding.pad))
            return tf.nn.elu(y) if block is not layer else y
        bn_node = consumers.sole_bn_reader(node) if _foldable_conv(layer) else None
        if bn_node is not None:
            folded_bn.add(id(bn_node))
            return self._conv(layer, args[0], bn_node.operation)
        return self._layer(layer, args, kwargs)

    def _reflected(self, tensor, values, padded, pad):
        """The reflection-padded input of a ``Conv3x3`` that reads Keras tensor ``tensor``, as gathers of the maps it
        is made from: ``pad(up(u))`` gathers from ``u`` itself and ``pad(concat(a, b))`` is ``concat(pad(a), pad(b))``
        (module docstring, item 4). Memoised in ``padded`` (a decoder feature feeds a head and the next block)."""
        key = (id(tensor), pad)
        if key not in padded:
            history = getattr(tensor, "_keras_history", None)
            producer = history.operation if history is not None else None
            node = producer._inbound_nodes[history.node_index] if producer is not None else None  # noqa: SLF001
            sources = [] if node is None else node.input_tensors
            if isinstance(producer, UpsampleNearest2x) and id(sources[0]) in values:
                padded[key] = reflection_gather(tf.cast(values[id(sources[0])], self.dtype), pad, upsampled=True)
            elif type(producer) is keras.layers.Concatenate and producer.axis in (-1, 3) \
                    and all(id(t) in values for t in sources):
                padded[key] = tf.concat([self._reflected(t, values, padded, pad) for t in sources], axis=-1)
            else:
                padded[key] = reflection_gather(tf.cast(values[id(tensor)], self.dtype), pad)
        return padded[key]

    def _const(self, array):
        """A graph constant in the graph's dtype, rounded once from float64 (no Cast op in the graph)."""
        return tf.constant(np.asarray(array, np.float64).astype(self.dtype.as_numpy_dtype), dtype=self.dtype)

    def _conv(self, layer, x, bn=None):
        """Conv2D (+ the BatchNormalization ``bn`` folded into it) + bias + the layer's activation."""
        kernel = _numpy(layer.kernel)
        bias = _numpy(layer.bias) if layer.use_bias else None
        if bn is not None:
            scale, shift = _bn_affine(bn)
            kernel = kernel * scale
            bias = (np.zeros_like(scale) if bias is None else bias) * scale + shift
        x = tf.cast(x, self.dtype)
        if kernel.shape[-1] == 1 and self.dtype == tf.float32 and layer.groups == 1 and tuple(layer.strides) == (1, 1):
            # A one-channel head (module docstring, item 5): depthwise taps + a channel sum.
            y = tf.reduce_sum(tf.nn.depthwise_conv2d(x, self._const(kernel), [1, 1, 1, 1],
                                                     layer.padding.upper(), dilations=list(layer.dilation_rate)),
                              axis=-1, keepdims=True)
        else:
            y = tf.nn.conv2d(x, self._const(kernel), strides=list(layer.strides),
                             padding=layer.padding.upper(), dilations=list(layer.dilation_rate))
        if bias is not None:
            y = tf.nn.bias_add(y, self._const(bias))
        return self._activation(layer.activation, y)

    def _activation(self, fn, x):
        if fn is keras.activations.linear:
            return x
        if fn is keras.activations.relu:
            return tf.nn.relu(x)
        if fn is keras.activations.elu:
            return tf.nn.elu(x)
        if fn is keras.activations.sigmoid:  # a disparity head: float32 (module docstring, item 3)
            return tf.sigmoid(tf.cast(x, tf.float32))
        return fn(x)

    def _layer(self, layer, args, kwargs):
        """One node that is not a folded conv: a rule for known layers, the layer's own call otherwise. Inputs are
        cast to the graph's dtype; outputs stay as the rule or layer makes them (a head that computes in float32,
        e.g. ``DisparityToDepth``, keeps its float32 result)."""
        args = _cast_all(list(args), self.dtype)
        x = args[0] if args else None
        if _is_functional(layer):
            return self._graph(layer, x)
        if isinstance(layer, ConvBlock):
            return tf.nn.elu(self._conv3x3(layer.conv, x))
        if isinstance(layer, Conv3x3):
            return self._conv3x3(layer, x)
        if isinstance(layer, UpsampleNearest2x):
            return nearest_2x_broadcast(x)  # one copy, faster than the layer's XNNPACK form
        if _foldable_conv(layer):
            return self._conv(layer, x)
        if isinstance(layer, keras.layers.BatchNormalization) and _channel_last_bn(layer):
            scale, shift = _bn_affine(layer)
            return x * self._const(scale) + self._const(shift)
        if type(layer) is keras.layers.ReLU and layer.max_value is None and not layer.negative_slope \
                and not layer.threshold:
            return tf.nn.relu(x)
        if isinstance(layer, keras.layers.Activation):
            return self._activation(layer.activation, x)
        if type(layer) is keras.layers.Rescaling:
            return x * self._const(layer.scale) + self._const(layer.offset)
        if not layer.weights:  # weightless: its own ops, in this graph's dtype
            kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
            return layer.call(*args, **kwargs)
        # Unknown layer with weights: unchanged, in its own dtype (correct, not faster).
        return layer(*_cast_all(args, layer.compute_dtype), **{**kwargs, "training": False})

    def _conv3x3(self, block: Conv3x3, x):
        # A zero-padded Conv3x3 (reflection ones are emitted by _graph with their gathers): a Pad that fuses into
        # the conv.
        return self._conv(block.conv, block.padding.call(x))


def _reflected_index(size, pad: int, upsampled: bool):
    """Source row (or column) of each of the ``n + 2 * pad`` rows of a reflection-padded map of ``n`` rows, where
    ``n = size`` or, ``upsampled``, the ``2 * size`` rows of the nearest x2 upsampling of a ``size``-row map.

    Reflection without repeating the edge (``tf.pad(mode="REFLECT")``): padded row ``i`` in ``[-pad, n + pad)``
    reads row ``(n - 1) - |(n - 1) - |i||`` (``1, 0, 1, ..., n - 2, n - 1, n - 2`` for ``pad = 1``), which needs
    ``pad < n``; the upsampled map's row ``r`` is the source's row ``r // 2``.
    """
    n = 2 * size if upsampled else size
    i = tf.range(-pad, n + pad)
    row = (n - 1) - tf.abs((n - 1) - tf.abs(i))
    return row // 2 if upsampled else row


def reflection_gather(x, pad: int = 1, upsampled: bool = False):
    """``ReflectionPad2D(pad)(x)``, or with ``upsampled`` ``ReflectionPad2D(pad)(UpsampleNearest2x()(x))``, as one
    gather from ``x`` [B, H, W, C] (flattened to [B, H * W, C]): a single write of the padded map, where the slices +
    concat form writes it once per axis and the upsampling once more (module docstring, item 4)."""
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    rows = _reflected_index(height, pad, upsampled)
    cols = _reflected_index(width, pad, upsampled)
    flat = tf.reshape(rows[:, None] * width + cols[None, :], [-1])
    y = tf.gather(tf.reshape(x, [shape[0], height * width, shape[3]]), flat, axis=1)
    y = tf.reshape(y, [shape[0], tf.size(rows), tf.size(cols), shape[3]])
    scale = 2 if upsampled else 1
    y.set_shape([x.shape[0], *(None if n is None else scale * n + 2 * pad for n in x.shape[1:3]), x.shape[3]])
    return y


def _scope_name(name: str) -> str:
    """A Keras layer name as a valid TensorFlow name scope (letters, digits, ``_.-``; not starting with ``_-``)."""
    return re.sub(r"^[_-]+|[^A-Za-z0-9_.-]", "", name) or "layer"


