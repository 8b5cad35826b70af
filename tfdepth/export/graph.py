"""Inference graphs: an image batch at any size in, depth at that size out, pre- and post-processing inside.

A family's inference network (``tfdepth.models.inference_heads``: float32 image ``[B, h, w, 3]`` in [0, 1] at the
network size -> ``depth`` and optionally ``disparity`` ``[B, h, w, 1]``) is wrapped in the same steps as
``tfdepth.inference.DepthPredictor``, so an export gives the numbers Python gives:

1. uint8 ``[B, H, W, 3]`` -> float32 ``/ 255`` (the float signature takes [0, 1] directly);
2. resize to the network size ``h x w``: bilinear with antialiasing (``tf.image.resize(..., antialias=True)``, close
   to the PIL resize of Monodepth2's loader);
3. the network;
4. back to ``H x W``: a family with a ``disparity`` output has its disparity resized bilinearly and inverted
   (``depth = 1 / disparity``, Monodepth2's evaluation, A.8); a family with only ``depth`` has its depth resized
   bilinearly. Both outputs keep the channel axis: ``[B, H, W, 1]``.

Two builds of the same steps:

* :meth:`InferenceGraph.serving_functions` (SavedModel): dynamic ``B, H, W``, ``tf.image.resize`` as above.
* :meth:`InferenceGraph.fixed_functions` (TFLite): batch 1 at a fixed export size. TFLite has no antialiased resize
  (``ScaleAndTranslate`` is not a builtin), so step 2 is the same linear map written as two constant matrices
  (:func:`resize_matrix`, taken from ``tf.image.resize`` itself) applied with ``einsum`` (FULLY_CONNECTED, which
  XNNPACK runs); it is skipped when the export size is the network size (the default), as is step 4's resize.

Extra inputs (families such as SDDR whose network takes more than, or other than, the image): the family's
``InferenceSpec.extra_inputs`` names them (``()`` for the self-supervised family). Each is a float32 map
``[B, H, W, C]`` at the image's resolution (``C`` from the network's input of that name, 1 if unknown), resized to the
network size like the image (bilinear, antialiased). A network with a dict input is called with the keys it has
(``image`` only if it takes the image); every signature still takes the image, which fixes the output resolution,
and gains one input per extra name. Nothing else in export is family-specific.

The encoded-bytes signature (``serving_bytes``) reads each image's size from its PNG IHDR chunk or JPEG SOF header
(``tf.io.extract_jpeg_shape``) and refuses the request before decoding when the images hold more than
``max_pixels`` pixels in total (a few kB of PNG can claim gigapixels: a decompression bomb), and refuses bytes that
are neither PNG nor JPEG. Every refusal is a ``tf.errors.InvalidArgumentError`` whose message starts with the
signature's name and says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

__all__ = ["InferenceGraph", "resize_matrix", "DEFAULT_MAX_PIXELS", "DEPTH_SCALING_NOTE", "PNG_SIGNATURE"]

DEFAULT_MAX_PIXELS = 1 << 24  # 16.8 MP (4096 x 4096): a 12 MP phone photo passes; decoded as float32 it is ~200 MB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"

DEPTH_SCALING_NOTE = {
    "relative": (
        "depth is relative (a monocular self-supervised model is up to an unknown scale; units of the training "
        "range model.min_depth..model.max_depth). For metres multiply by one factor per image or per camera: "
        "(a) median scaling, median(ground truth) / median(depth) over pixels with ground truth (the KITTI "
        "protocol); (b) a stereo-trained KITTI model's fixed factor 5.4 (0.54 m baseline / the nominal 0.1); "
        "(c) the camera height: fit the road plane in the back-projected points and scale it to the known "
        "mounting height (1.65 m on KITTI)."
    ),
    "metric": "depth is metric, in metres.",
}


def resize_matrix(in_size: int, out_size: int, antialias: bool = True) -> np.ndarray:
    """``[out_size, in_size]`` float32 matrix ``M`` with ``resize(x)[o] = sum_i M[o, i] x[i]`` along one axis.

    Taken from ``tf.image.resize(..., "bilinear", antialias=antialias)`` applied to the identity (column ``i`` of
    the identity is the unit impulse at ``i``), so it is that resize's kernel, not a re-derivation. The 2-D resize
    is separable: rows with ``M_h``, then columns with ``M_w``.
    """
    impulses = tf.eye(in_size, dtype=tf.float32)[None, :, None, :]  # [1, in, 1, in]: channel c = impulse at row c
    resized = tf.image.resize(impulses, [out_size, 1], method="bilinear", antialias=antialias)
    return resized.numpy()[0, :, 0, :]


def _gate(x, ok, message, *data):
    """``x`` passed on only when the scalar bool ``ok`` holds; else an ``InvalidArgumentError`` with ``message``.

    A data dependency (``tf.cond``): nothing computed from the gate's output runs before the check. Two traps of
    Grappler, the graph optimiser, decide the shape of the checks: an op linked to a failing ``tf.debugging.Assert``
    by a control edge only may run before it, and constant folding reads the shape of a gated tensor from the
    tensor before the gate (and, through ``tf.ensure_shape`` after it, the other way round). So every condition is
    computed without an op that can fail on bad input, several conditions share one gate (:func:`_gate_first`), and
    no ``ensure_shape`` follows a gate.
    """

    def refuse():
        with tf.control_dependencies([tf.debugging.Assert(tf.constant(False), [message, *data])]):
            return tf.nest.map_structure(tf.identity, x)

    return tf.cond(ok, lambda: tf.nest.map_structure(tf.identity, x), refuse)


def _gate_first(x, checks, *data):
    """One :func:`_gate` over ``checks`` (``[(ok, message), ...]``) reporting the first that fails, with ``data``."""
    oks = tf.stack([ok for ok, _ in checks])
    first = tf.argmax(tf.cast(tf.logical_not(oks), tf.int32))  # index of the first False
    message = tf.gather(tf.constant([m for _, m in checks]), first)
    return _gate(x, tf.reduce_all(oks), message, *data)


def _channels(net_inputs, name) -> int:
    """Channels of the network's input ``name`` when known, else 1 (``InferenceSpec.extra_inputs`` maps)."""
    if isinstance(net_inputs, dict):
        spec = net_inputs.get(name)
    else:
        spec = net_inputs if getattr(net_inputs, "name", None) == name else None
    size = None if spec is None else spec.shape[-1]
    return 1 if size is None else int(size)


@dataclass(frozen=True)
class _Signature:
    """One serving signature: its input specs (name -> TensorSpec) and a description for the metadata."""

    inputs: dict
    description: str
    outputs: dict = field(default_factory=dict)


class InferenceGraph:
    """Pre- and post-processing around an inference network (module docstring).

    Args:
        network: Keras model, float32 image ``[B, h, w, 3]`` in [0, 1], or a dict of ``image`` and/or the extra
            inputs, -> dict with ``depth`` and optionally ``disparity`` ``[B, h, w, 1]``.
        height, width: the network's input size ``h x w``.
        depth_kind: ``"relative"`` or ``"metric"`` (from the family's ``InferenceSpec``).
        extra_inputs: names of float32 maps beside the image (module docstring), or ``{name: channels}``.
        max_pixels: the most pixels one ``serving_bytes`` request may decode (summed over its images).
        scaling_note: what the depth means and how to scale it, for the signature documentation (default: the
            note of ``depth_kind``, :data:`DEPTH_SCALING_NOTE`, written for the self-supervised family; a family
            can give its own as ``InferenceSpec.scaling_note``).
    """

    def __init__(self, network, height: int, width: int, depth_kind: str = "relative", extra_inputs=None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, scaling_note: str | None = None):
        if depth_kind not in DEPTH_SCALING_NOTE:
            raise ValueError(f"depth_kind must be one of {sorted(DEPTH_SCALING_NOTE)}, got {depth_kind!r}")
        for value, name in ((height, "height"), (width, "width"), (max_pixels, "max_pixels")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.network = network
        self.height, self.width = int(height), int(width)
        self.depth_kind = depth_kind
        self.scaling_note = scaling_note or DEPTH_SCALING_NOTE[depth_kind]
        try:
            net_inputs = network.input  # a functional model's input structure
        except (AttributeError, ValueError):  # a subclassed model that was never called symbolically
            net_inputs = None
        if not isinstance(extra_inputs, dict):
            extra_inputs = {name: _channels(net_inputs, name) for name in (extra_inputs or ())}
        self.extra_inputs = {str(k): int(v) for k, v in extra_inputs.items()}
        if "image" in self.extra_inputs or "image_bytes" in self.extra_inputs:
            raise ValueError("extra_inputs may not be named 'image' or 'image_bytes' (the image inputs)")
        # What the network is called with: a tuple of dict keys, or the one key of a single-tensor input.
        if isinstance(net_inputs, dict):
            self.network_inputs = tuple(net_inputs)
        elif net_inputs is not None and not isinstance(net_inputs, (list, tuple)):
            self.network_inputs = net_inputs.name if net_inputs.name in self.extra_inputs else "image"
        else:  # unknown structure: the InferenceSpec contract (a dict of exactly the extra inputs, else the image)
            self.network_inputs = tuple(self.extra_inputs) if self.extra_inputs else "image"
        keys = (self.network_inputs,) if isinstance(self.network_inputs, str) else self.network_inputs
        unknown = set(keys) - {"image", *self.extra_inputs}
        if unknown:
            raise ValueError(f"the inference network takes inputs {sorted(unknown)} that are neither 'image' nor "
                             f"declared extra_inputs ({sorted(self.extra_inputs)})")
        self.max_pixels = int(max_pixels)
        try:
            outputs = network.output
        except (AttributeError, ValueError):
            outputs = None
        if not isinstance(outputs, dict):  # a subclassed network: its output keys from one call on zeros
            zeros = {"image": tf.zeros([1, self.height, self.width, 3])}
            zeros.update({k: tf.zeros([1, self.height, self.width, c]) for k, c in self.extra_inputs.items()})
            outputs = self._call_network(zeros)
        keys = sorted(outputs) if isinstance(outputs, dict) else []
        if "depth" not in keys:
            raise ValueError(f"the inference network must return a dict with 'depth'; its outputs are {keys}")
        self.has_disparity = "disparity" in keys
        self.output_keys = ("depth", "disparity") if self.has_disparity else ("depth",)

    # ------------------------------------------------------------------------------------------ the shared steps
    def _call_network(self, available):
        if isinstance(self.network_inputs, str):
            return self.network(available[self.network_inputs], training=False)
        return self.network({key: available[key] for key in self.network_inputs}, training=False)

    def _network(self, image, extras):
        out = self._call_network({"image": image, **extras})
        return {key: tf.cast(out[key], tf.float32) for key in self.output_keys}

    def _postprocess(self, out, size, resize_fn):
        """Network outputs at ``h x w`` -> the outputs at ``size`` (disparity resized then inverted: A.8)."""
        if self.has_disparity:
            disparity = resize_fn(out["disparity"], size)
            return {"depth": 1.0 / disparity, "disparity": disparity}
        return {"depth": resize_fn(out["depth"], size)}

    def predict_float(self, image, **extras):
        """Dynamic-size graph: float32 ``[B, H, W, 3]`` in [0, 1] -> dict of ``[B, H, W, 1]`` (module steps 2-4)."""
        image = tf.convert_to_tensor(image, tf.float32)
        size = tf.shape(image)[1:3]

        def shrink(x):
            return tf.image.resize(x, [self.height, self.width], method="bilinear", antialias=True)

        extras = {name: shrink(tf.convert_to_tensor(extras[name], tf.float32)) for name in self.extra_inputs}
        out = self._network(shrink(image), extras)
        return self._postprocess(out, size, lambda x, s: tf.image.resize(x, s, method="bilinear"))

    def predict_uint8(self, image, **extras):
        """Dynamic-size graph on uint8 ``[B, H, W, 3]`` (divided by 255 first)."""
        return self.predict_float(tf.cast(image, tf.float32) / 255.0, **extras)

    # ------------------------------------------------------------------------------------------ signature checks
    @staticmethod
    def _checked(x, signature, key, dtype_name, channels, like=None):
        """``x`` once its rank (4), channel count, size (non-empty, or ``like``'s batch, height and width) hold.

        The signature specs leave the rank open (``shape=None``) on purpose: a serving signature does not check
        shapes at run time (neither ``tf.saved_model.load``'s functions nor TF Serving do), so a rank-3 image would
        otherwise fail deep inside the graph. Each refusal names the signature, the input and the fix. All
        conditions are computed from ``x`` itself (its shape read padded to 4 entries, which cannot fail) and one
        gate reports the first that fails (:func:`_gate`).
        """
        expected = f"{signature}: input `{key}` must be {dtype_name} [batch, height, width, {channels}]"
        shape = tf.concat([tf.shape(x), tf.zeros([4], tf.int32)], 0)[:4]
        fix = " (drop alpha, or repeat a grey channel)" if key == "image" else ""
        checks = [
            (tf.equal(tf.rank(x), 4), f"{expected}; it has a different rank (a single image needs the batch axis: "
                                      "image[None])"),
            (tf.equal(shape[3], channels), f"{expected}; the last axis holds the wrong number of channels{fix}"),
        ]
        if like is None:
            checks.append((tf.reduce_all(shape[:3] > 0),
                           f"{expected}; it is empty (batch, height and width must all be >= 1)"))
        else:
            checks.append((tf.reduce_all(tf.equal(shape[:3], tf.shape(like)[:3])),
                           f"{expected} with the batch, height and width of `image`"))
        x = _gate_first(x, checks, shape)
        # Static rank 4 for what follows, by a reshape to x's own shape, not tf.ensure_shape: Grappler propagated
        # ensure_shape's [?, ?, ?, C] back to x through the gate and folded the rank check above to True.
        return tf.reshape(x, tf.stack([shape[0], shape[1], shape[2], channels]))

    def _checked_extras(self, inputs, image, signature):
        return {name: self._checked(tf.convert_to_tensor(inputs[name]), signature, name, "float32", channels,
                                    like=image)
                for name, channels in self.extra_inputs.items()}

    def _extras_of(self, inputs):
        return {name: inputs[name] for name in self.extra_inputs}

    def _extra_specs(self, fixed=None):
        """Specs of the extra inputs: rank left open (checked in the graph), or ``[1, h, w, c]`` at ``fixed``."""
        return {name: tf.TensorSpec(None if fixed is None else [1, *fixed, c], tf.float32, name=name)
                for name, c in self.extra_inputs.items()}

    # ------------------------------------------------------------------------------------------ encoded bytes
    @staticmethod
    def _header_size(data):
        """int64 ``[2]`` (height, width) of one PNG or JPEG from its header only (nothing is decoded)."""
        is_png = tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE)
        is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), JPEG_SOI)
        data = _gate(data, is_png | is_jpeg,
                     "serving_bytes: an element of `image_bytes` is not a PNG or JPEG file (its first bytes are "
                     "neither the PNG signature nor the JPEG SOI marker): send the file bytes unchanged (base64 in "
                     "JSON, key `b64`), PNG or JPEG only")

        def png_size():
            # IHDR is the first chunk (PNG spec 5.6): length (4 bytes), b"IHDR", width and height (big-endian u32).
            ok = tf.strings.length(data) >= 24
            ihdr = tf.strings.substr(tf.strings.join([data, b"\0" * 24]), 12, 4)  # padded: cannot fail when short
            checked = _gate(data, ok & tf.equal(ihdr, b"IHDR"), "serving_bytes: a PNG in `image_bytes` is damaged: "
                            "no IHDR chunk at its start (truncated, or not a PNG file)")
            raw = tf.cast(tf.io.decode_raw(tf.strings.substr(checked, 16, 8), tf.uint8), tf.int64)
            be32 = lambda b: b[0] * 16777216 + b[1] * 65536 + b[2] * 256 + b[3]  # noqa: E731
            return tf.stack([be32(raw[4:8]), be32(raw[0:4])])

        def jpeg_size():
            return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

        return tf.cond(tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE), png_size, jpeg_size)

    @staticmethod
    def _decode(data):
        """uint8 ``[H, W, 3]``: PNG (8- or 16-bit, grey, RGB, RGBA, palette) or JPEG (libjpeg's accurate IDCT, as
        OpenCV and PIL decode it), always 3 channels (grey repeated, alpha dropped)."""
        is_png = tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE)
        return tf.cond(is_png, lambda: tf.io.decode_png(data, channels=3, dtype=tf.uint8),
                       lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"))

    def decode_batch(self, image_bytes):
        """Scalar or ``[B]`` string of encoded PNG/JPEG -> uint8 ``[B, H, W, 3]``, every header checked first.

        Order, each step gated on the one before (:func:`_gate`): rank <= 1; at least one image; each header
        (PNG or JPEG, readable size); the pixel limit over all images; one size for all; only then decoding.
        """
        signature = "serving_bytes"
        image_bytes = _gate(image_bytes, tf.rank(image_bytes) <= 1,
                            f"{signature}: `image_bytes` must be a string or a 1-D batch of strings")
        data = tf.reshape(image_bytes, [-1])
        data = _gate(data, tf.size(data) > 0, f"{signature}: `image_bytes` holds no image")
        sizes = tf.map_fn(self._header_size, data, fn_output_signature=tf.TensorSpec([2], tf.int64))
        # Each image's h * w fits int64 (PNG and JPEG sizes are < 2^31); capping it at the limit + 1 before the sum
        # keeps the total from overflowing (wrapping negative would pass the check) however many images come.
        pixels = tf.reduce_sum(tf.minimum(sizes[:, 0] * sizes[:, 1], self.max_pixels + 1))
        data = _gate_first(data, [
            (pixels <= self.max_pixels,
             f"{signature}: the images of this request hold more than the limit of {self.max_pixels} pixels (read "
             "from their PNG/JPEG headers, before decoding); send smaller or fewer images per request, or export "
             "again with a higher --max-pixels"),
            (tf.reduce_all(tf.equal(sizes, sizes[:1])),
             f"{signature}: the images of one request must all have the same height and width (the outputs are one "
             "[batch, height, width, 1] tensor); send images of different sizes in separate requests"),
        ], pixels, sizes)
        return tf.map_fn(self._decode, data, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

    # ------------------------------------------------------------------------------------------ the signatures
    def signature_specs(self):
        """name -> :class:`_Signature` of the SavedModel (input specs and descriptions, for the metadata too)."""
        extras = self._extra_specs()
        outputs = {"depth": f"float32 [batch, height, width, 1], at the input's resolution; "
                            f"{self.scaling_note}"}
        if self.has_disparity:
            outputs["disparity"] = ("float32 [batch, height, width, 1], 1 / depth (the network's scaled disparity "
                                    "resized bilinearly to the input's resolution)")
        network = f"resized inside to the network's {self.height}x{self.width} (bilinear, antialiased)"
        return {
            "serving_default": _Signature(
                {"image": tf.TensorSpec(None, tf.uint8, name="image"), **extras},
                f"uint8 RGB image batch [batch, height, width, 3], any height and width; {network}", outputs),
            "serving_float": _Signature(
                {"image": tf.TensorSpec(None, tf.float32, name="image"), **extras},
                f"float32 RGB image batch [batch, height, width, 3] in [0, 1], any height and width; {network}",
                outputs),
            "serving_bytes": _Signature(
                {"image_bytes": tf.TensorSpec(None, tf.string, name="image_bytes"), **extras},
                "encoded PNG or JPEG file bytes: a string or a [batch] of strings whose images share one size "
                f"(base64 under key 'b64' in TF Serving's JSON API); decoded inside to RGB (grey repeated, alpha "
                f"dropped); refused before decoding when the request holds more than {self.max_pixels} pixels; "
                f"{network}", outputs),
        }

    def serving_functions(self):
        """name -> (function of a dict of the signature's named inputs, {name: TensorSpec}) for the SavedModel."""
        specs = self.signature_specs()

        def serving_default(inputs):
            image = self._checked(inputs["image"], "serving_default", "image", "uint8", 3)
            return self.predict_uint8(image, **self._checked_extras(inputs, image, "serving_default"))

        def serving_float(inputs):
            image = self._checked(inputs["image"], "serving_float", "image", "float32", 3)
            image = _gate(image, tf.reduce_all((image >= 0.0) & (image <= 1.0)),
                          "serving_float: input `image` must hold values in [0, 1] (no NaN); send 0..255 data as "
                          "uint8 to serving_default")
            return self.predict_float(image, **self._checked_extras(inputs, image, "serving_float"))

        def serving_bytes(inputs):
            image = self.decode_batch(inputs["image_bytes"])
            return self.predict_uint8(image, **self._checked_extras(inputs, image, "serving_bytes"))

        functions = {"serving_default": serving_default, "serving_float": serving_float,
                     "serving_bytes": serving_bytes}
        return {name: (functions[name], specs[name].inputs) for name in specs}

    # ------------------------------------------------------------------------------------------ fixed size (TFLite)
    def fixed_signature_specs(self, height: int, width: int):
        """name -> :class:`_Signature` of the fixed-size (batch 1) graph converted to TFLite."""
        extras = self._extra_specs((height, width))
        outputs = {"depth": f"float32 [1, {height}, {width}, 1]; {self.scaling_note}"}
        if self.has_disparity:
            outputs["disparity"] = f"float32 [1, {height}, {width}, 1], 1 / depth"
        inside = ("" if (height, width) == (self.height, self.width)
                  else f"; resized inside to the network's {self.height}x{self.width} (bilinear, antialiased)")
        return {
            "serving_default": _Signature(
                {"image": tf.TensorSpec([1, height, width, 3], tf.uint8, name="image"), **extras},
                f"uint8 RGB image [1, {height}, {width}, 3]{inside}", outputs),
            "serving_float": _Signature(
                {"image": tf.TensorSpec([1, height, width, 3], tf.float32, name="image"), **extras},
                f"float32 RGB image [1, {height}, {width}, 3] in [0, 1]{inside}", outputs),
        }

    def fixed_functions(self, height: int, width: int):
        """name -> (function, input specs) at a fixed ``height x width`` with TFLite builtin ops only."""
        for value, name in ((height, "export height"), (width, "export width")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        same = (int(height), int(width)) == (self.height, self.width)
        if same:
            shrink = tf.identity
            grow = lambda x, size: x  # noqa: E731
        else:
            m_h = tf.constant(resize_matrix(height, self.height))
            m_w = tf.constant(resize_matrix(width, self.width))

            def shrink(x):  # the antialiased bilinear resize as two matrix products (module docstring)
                return tf.einsum("pw,bowc->bopc", m_w, tf.einsum("oh,bhwc->bowc", m_h, x))

            def grow(x, size):
                return tf.image.resize(x, size, method="bilinear")

        def run(image, extras):
            extras = {name: shrink(extras[name]) for name in self.extra_inputs}
            return self._postprocess(self._network(shrink(image), extras), [height, width], grow)

        specs = self.fixed_signature_specs(height, width)
        functions = {
            "serving_default": lambda inputs: run(tf.cast(inputs["image"], tf.float32) / 255.0,
                                                  self._extras_of(inputs)),
            "serving_float": lambda inputs: run(inputs["image"], self._extras_of(inputs)),
        }
        return {name: (functions[name], specs[name].inputs) for name in specs}
