"""TFLite conversion of a fixed-size SavedModel, and running it with the LiteRT interpreter.

Conversion goes through ``tf.lite.TFLiteConverter.from_saved_model`` (``from_concrete_functions`` leaves Keras 3
variables uninitialised and gives NaN: stack_notes.md). Variants (:data:`QUANTIZATIONS`):

* ``none``: float32;
* ``float16``: weights stored as float16 (dequantised at load; about half the size);
* ``dynamic``: dynamic-range int8 (weights int8, activations quantised on the fly);
* ``int8``: full integer quantization, weights and activations int8, with activation ranges calibrated on a
  representative dataset (the caller's uint8 images, e.g. frames of the run's training pipeline), except the ops in
  :data:`FLOAT_OPS_IN_INT8`: the final reciprocal ``depth = 1 / disparity`` stays float32 on the dequantized
  disparity. An int8 depth would spread 256 levels over the whole depth range (three decades, 0.03-100 in the
  default config), so near depths would lose all precision; and XNNPACK has no int8 DIV, which would add a
  partition. Calibration then quantization with this denylist is the converter's own path for selective
  quantization (``tf.lite.experimental.QuantizationDebugger.get_nondebug_quantized_model`` calls the same
  ``mlir_quantize``), without building the debugger's instrumented model.

Inputs and outputs keep their types in every variant (uint8 or float32 image in, float32 depth out), so every
variant is called the same way.

:class:`TFLiteModel` runs a ``.tflite`` through ``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter``
is deprecated) and reads outputs by signature key (the output-details order is not the model's). Its
:meth:`TFLiteModel.xnnpack` counts the XNNPACK delegate partitions from the graph: LiteRT replaces each partition by
one ``DELEGATE`` node, whose inputs and outputs delimit the original nodes it runs (its log line "Replacing N out of
M node(s) ... yielding K partitions" is not printed by the release build).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter

import numpy as np
import tensorflow as tf

__all__ = ["QUANTIZATIONS", "convert", "TFLiteModel"]

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
FLOAT_OPS_IN_INT8 = ("DIV",)  # depth = 1 / disparity in float32 (module docstring)


def convert(saved_model_dir, quantize: str = "none", representative=None, signature_keys=None) -> bytes:
    """The ``.tflite`` bytes of a SavedModel with fixed-size signatures.

    Args:
        saved_model_dir: a SavedModel whose signatures have fully static input shapes (XNNPACK cannot resize
            dynamic shapes at run time: stack_notes.md).
        quantize: one of :data:`QUANTIZATIONS`.
        representative: for ``int8``, a callable returning an iterable of ``(signature_key, {input: array})``
            calibration samples (the converter's representative-dataset format for several signatures).
        signature_keys: the signatures to convert (default: all).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if quantize == "int8" and representative is None:
        raise ValueError("quantize='int8' needs representative images to calibrate the activation ranges")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=signature_keys)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize != "int8":
        return converter.convert()
    converter.representative_dataset = representative
    converter._experimental_calibrate_only = True  # noqa: SLF001  (float model + calibrated ranges)
    with warnings.catch_warnings():  # TF's calibrator runs the deprecated tf.lite.Interpreter internally
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        calibrated = converter.convert()
    from tensorflow.lite.python import convert as lite_convert

    # The converter's default int8 step (TFLiteConverter._quantize -> mlir_quantize: per-channel weights, float
    # model inputs and outputs) with the float ops of FLOAT_OPS_IN_INT8 left out of the quantization.
    return lite_convert.mlir_quantize(calibrated, denylisted_ops=list(FLOAT_OPS_IN_INT8))


class TFLiteModel:
    """A ``.tflite`` file (path or bytes) run by the LiteRT interpreter with its default XNNPACK delegate."""

    def __init__(self, model, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
        else:
            if not os.path.isfile(model):
                raise FileNotFoundError(f"{model} not found: pass a .tflite file written by python -m export")
            self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        self.interpreter.allocate_tensors()  # before any signature runner (stack_notes.md)
        self.signatures = self.interpreter.get_signature_list()
        self._runners = {}

    def runner(self, signature: str = "serving_default"):
        if signature not in self.signatures:
            raise ValueError(f"signature {signature!r} not in the model; it has {sorted(self.signatures)}")
        if signature not in self._runners:
            self._runners[signature] = self.interpreter.get_signature_runner(signature)
        return self._runners[signature]

    def input_details(self, signature: str = "serving_default") -> dict:
        """input name -> {"shape", "dtype"} of a signature."""
        details = self.runner(signature).get_input_details()
        return {name: {"shape": tuple(int(n) for n in d["shape"]), "dtype": np.dtype(d["dtype"])}
                for name, d in details.items()}

    def __call__(self, signature: str = "serving_default", **inputs) -> dict:
        """Outputs (by key) of one call; inputs by name, at the model's fixed shapes."""
        return {key: np.array(value) for key, value in self.runner(signature)(**inputs).items()}

    def predict(self, images, signature: str = "serving_default", output: str = "depth") -> np.ndarray:
        """``output`` ``[B, H, W]`` for images ``[B, H, W, 3]`` at the model's input size (one call per image)."""
        details = self.input_details(signature)["image"]
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if tuple(images.shape[1:]) != details["shape"][1:] or images.dtype != details["dtype"]:
            raise ValueError(f"signature {signature} takes {details['dtype']} images {details['shape'][1:]}, got "
                             f"{images.dtype} {images.shape[1:]}: resize to the export size first")
        return np.stack([self(signature, image=image[None])[output][0, ..., 0] for image in images])

    def xnnpack(self) -> dict:
        """XNNPACK coverage of the primary subgraph (``serving_default``): partitions and nodes left outside.

        Each ``DELEGATE`` node is one partition; ``compute_partitions`` leaves out those fed only by constants
        (the float16 model's weight DEQUANTIZE, done once when the model loads). The original nodes a partition
        runs are found by walking back from its output tensors through their producers until its input tensors;
        every other original node runs on the reference kernels, outside XNNPACK.
        """
        ops = self.interpreter._get_ops_details()  # noqa: SLF001  (the only graph view the interpreter offers)
        delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
        originals = [op for op in ops if op["op_name"] != "DELEGATE"]
        producer = {int(t): op["index"] for op in originals for t in op["outputs"]}
        by_index = {op["index"]: op for op in originals}
        delegated = set()
        for delegate in delegates:
            boundary = {int(t) for t in delegate["inputs"]}
            stack = [int(t) for t in delegate["outputs"]]
            while stack:
                tensor = stack.pop()
                node = producer.get(tensor)
                if tensor in boundary or node is None or node in delegated:
                    continue
                delegated.add(node)
                stack.extend(int(t) for t in by_index[node]["inputs"] if int(t) >= 0)
        outside = Counter(op["op_name"] for op in originals if op["index"] not in delegated)
        # A partition fed only by constants (float16 weights dequantized to float32) runs once, at load time.
        graph_inputs = {int(d["index"]) for d in self.interpreter.get_input_details()}
        weight_only = sum(all(producer.get(int(t)) is None and int(t) not in graph_inputs for t in d["inputs"])
                          for d in delegates)
        return {"partitions": len(delegates), "compute_partitions": len(delegates) - weight_only,
                "weight_only_partitions": weight_only, "nodes": len(originals), "delegated_nodes": len(delegated),
                "not_delegated": dict(sorted(outside.items()))}
