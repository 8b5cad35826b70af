"""Deployment: a run's inference graph as a SavedModel for TF Serving and as TFLite, with measured parity.

* ``graph.py``: :class:`InferenceGraph`, the family's inference network with pre- and post-processing inside
  (uint8 or float32 image, or encoded PNG/JPEG bytes, at any size in; depth at that size out), as dynamic-size
  SavedModel signatures or fixed-size TFLite ones;
* ``saved_model.py``: writing the graph, the ``NAME/VERSION/`` layout;
* ``tflite.py``: conversion (float32, float16, dynamic-range int8, full int8) and :class:`TFLiteModel`
  (LiteRT interpreter, outputs by signature key, XNNPACK partition count);
* ``parity.py``: differences to the Keras model on real images and the thresholds an export must meet;
* ``folding.py``: :func:`fold_model`, a network as one constant graph with BatchNorm folded into its convolutions,
  in float32 or bf16 throughout (the fast CPU inference path with oneDNN; docs/speed.md "Folded graphs");
* ``exporter.py``: :func:`export_saved_model` and :func:`export_tflite`: temporary directory, parity, atomic publish.

The CLI is ``python -m export`` (the top-level ``export/`` package); docs/deploy.md has the commands and figures.
"""

from tfdepth.export.exporter import (
    export_saved_model,
    export_size,
    export_tflite,
    graph_from_run,
    representative_samples,
    tflite_paths,
    to_export_size,
)
from tfdepth.export.folding import FoldedModel, fold_model
from tfdepth.export.graph import DEFAULT_MAX_PIXELS, DEPTH_SCALING_NOTE, InferenceGraph, resize_matrix
from tfdepth.export.parity import THRESHOLDS, ParityError, ParityFrame, compare
from tfdepth.export.saved_model import existing_versions, version_dir, write_saved_model
from tfdepth.export.tflite import QUANTIZATIONS, TFLiteModel, convert

__all__ = [
    "FoldedModel", "fold_model", "InferenceGraph", "resize_matrix", "DEFAULT_MAX_PIXELS", "DEPTH_SCALING_NOTE",
    "export_saved_model", "export_tflite", "export_size", "graph_from_run", "representative_samples",
    "tflite_paths", "to_export_size", "THRESHOLDS", "ParityError", "ParityFrame", "compare",
    "existing_versions", "version_dir", "write_saved_model", "QUANTIZATIONS", "TFLiteModel", "convert",
]
