"""Export a run: build the inference graph, write it, check parity on real images, and publish it atomically.

:func:`export_saved_model` writes ``BASE/NAME/VERSION/`` (TF Serving layout, ``saved_model.py``) and
:func:`export_tflite` one ``.tflite`` file with ``<stem>.json`` (metadata) and ``<stem>.parity.json`` beside it. Both
build everything in a hidden temporary directory next to the output, check parity against the Keras model
(``parity.py``) on the caller's frames, and only then rename the results into place; a failed check raises
:class:`~tfdepth.export.parity.ParityError` (one line with the numbers) and removes the temporary directory, so a
failed export leaves no file behind.

Where frames and ground-truth errors come from is the caller's choice (this layer imports no datasets or metrics):
the ``python -m export`` CLI passes the run's test frames or the user's images and
``tfdepth.metrics.evaluate_depth`` with the run's evaluation protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdepth.export import parity as parity_lib
from tfdepth.export import tflite as tflite_lib
from tfdepth.export.graph import DEFAULT_MAX_PIXELS, InferenceGraph
from tfdepth.export.saved_model import EXTRA_DIR, version_dir, write_saved_model

__all__ = ["graph_from_run", "folded_graph", "FOLD_VARIANTS", "export_size", "to_export_size", "export_saved_model", "export_tflite",
           "representative_samples", "tflite_paths", "TFLITE_SUFFIX"]

TFLITE_SUFFIX = ".tflite"


def graph_from_run(run_dir, max_pixels: int = DEFAULT_MAX_PIXELS):
    """``(InferenceGraph, RunInfo)`` of a run directory, for any family registered in ``INFERENCE_SPECS``."""
    from tfdepth.inference import load_inference_network
    from tfdepth.models.inference_heads import get_inference_spec

    network, info = load_inference_network(run_dir)
    spec = get_inference_spec(info.family)
    graph = InferenceGraph(network, info.height, info.width, info.depth_kind, getattr(spec, "extra_inputs", ()),
                           max_pixels, scaling_note=getattr(spec, "scaling_note", None))
    return graph, info


def export_size(info, height=None, width=None) -> tuple[int, int]:
    """The fixed TFLite input size: explicit ``height``/``width``, else the run's ``export.height/width``, else the
    network input size (each axis on its own)."""
    section = getattr(info.config, "export", None)
    height = height if height is not None else getattr(section, "height", None) or info.height
    width = width if width is not None else getattr(section, "width", None) or info.width
    for value, name in ((height, "height"), (width, "width")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"export {name} must be a positive integer, got {value!r}")
    return int(height), int(width)


def to_export_size(image, hw) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 at ``hw`` (bilinear, antialiased, rounded), as a device camera would give it."""
    image = np.asarray(image)
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    resized = tf.image.resize(image[None].astype(np.float32), list(hw), method="bilinear", antialias=True)
    return np.clip(np.round(resized.numpy()[0]), 0, 255).astype(np.uint8)


def representative_samples(images, hw, signatures=("serving_default", "serving_float")):
    """The converter's representative dataset: a callable yielding ``(signature, {"image": [1, H, W, 3]})`` for each
    image (uint8 ``[H, W, 3]`` at any size, resized to ``hw``) and each signature (uint8, or float32 / 255)."""
    images = [to_export_size(np.asarray(image), hw) for image in images]
    if not images:
        raise ValueError("no representative images: full int8 needs some to calibrate the activations")

    def generate():
        for image in images:
            for signature in signatures:
                value = image[None] if signature == "serving_default" else image[None].astype(np.float32) / 255.0
                yield signature, {"image": value}

    generate.count = len(images)
    return generate


# ----------------------------------------------------------------------------------------------------- metadata
def _describe(specs) -> dict:
    out = {}
    for name, sig in specs.items():
        out[name] = {
            "description": sig.description,
            "inputs": {key: {"dtype": spec.dtype.name,
                             "shape": None if spec.shape.rank is None else [d for d in spec.shape.as_list()]}
                       for key, spec in sig.inputs.items()},
            "outputs": sig.outputs,
        }
    return out


def _metadata(graph: InferenceGraph, info, fmt: str, signatures: dict, **extra) -> dict:
    from tfdepth import __version__

    model = getattr(info.config, "model", None)
    meta = {
        "format": fmt,
        "family": info.family,
        "depth_kind": info.depth_kind,
        "depth_scaling": graph.scaling_note,
        "network_size": [graph.height, graph.width],  # [h, w] the network runs at (read by DepthPredictor)
        "outputs": list(graph.output_keys),
        "signatures": _describe(signatures),
        "preprocessing": "uint8 / 255 (or float32 in [0, 1]); bilinear antialiased resize to the network input",
        "postprocessing": ("disparity resized bilinearly to the input's resolution, depth = 1 / disparity"
                           if graph.has_disparity else "depth resized bilinearly to the input's resolution"),
        "tfdepth_version": __version__,
        "tensorflow_version": tf.__version__,
        "run_name": getattr(info.config, "name", None),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if model is not None and hasattr(model, "min_depth"):
        meta["training_depth_range"] = {"min_depth": model.min_depth, "max_depth": model.max_depth}
    meta.update(extra)
    return meta


def _json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _frame_inputs(frame, graph):
    missing = [name for name in graph.extra_inputs if name not in (frame.inputs or {})]
    if missing:
        raise ValueError(f"parity frame {frame.name!r} lacks the extra inputs {missing} the network takes")
    return {name: np.asarray(frame.inputs[name], np.float32)[None] for name in graph.extra_inputs}


def _reference(graph, frames, images=None):
    images = images or [f.image for f in frames]
    out = []
    for frame, image in zip(frames, images, strict=True):
        out.append(graph.predict_uint8(image[None], **_frame_inputs(frame, graph))["depth"].numpy()[0, ..., 0])
    return out


# ----------------------------------------------------------------------------------------------------- SavedModel
def folded_graph(graph: InferenceGraph, dtype: str) -> InferenceGraph:
    """``graph`` with its network replaced by :func:`tfdepth.export.folding.fold_model` in ``dtype`` (same steps)."""
    from tfdepth.export.folding import fold_model

    return InferenceGraph(fold_model(graph.network, dtype), graph.height, graph.width, graph.depth_kind,
                          graph.extra_inputs, graph.max_pixels, scaling_note=graph.scaling_note)


FOLD_VARIANTS = {"float32": "saved_model", "bfloat16": "saved_model_bf16"}  # fold dtype -> parity threshold


def export_saved_model(graph: InferenceGraph, info, base, *, frames, version: int | None = None,
                       errors_fn=None, fold: str | None = None) -> tuple[Path, dict]:
    """Write ``base/VERSION/`` (``base`` = ``OUTPUT/NAME``), check parity, publish; returns ``(path, report)``.

    Parity: every signature (``serving_default`` on the frame's uint8 pixels, ``serving_float`` on them / 255,
    ``serving_bytes`` on their lossless PNG encoding) of the SavedModel as reloaded with ``tf.saved_model.load``,
    against the Keras reference at the frame's own resolution; float32 threshold (``parity.THRESHOLDS``).

    ``fold``: ``"float32"`` or ``"bfloat16"`` writes the folded network instead (:func:`folded_graph`: BatchNorm
    folded, weights as constants, the fast CPU serving path with oneDNN; docs/speed.md), held to the float32
    threshold, or for bf16 to the reduced-precision rule (delta1 within 1 point, ``saved_model_bf16``).
    """
    if fold is not None and fold not in FOLD_VARIANTS:
        raise ValueError(f"fold must be one of {sorted(FOLD_VARIANTS)} or None, got {fold!r}")
    serving = graph if fold is None else folded_graph(graph, fold)
    base = Path(base)
    target = version_dir(base, version)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}.export-"))
    try:
        write_saved_model(serving.serving_functions(), serving.network, tmp)
        loaded = tf.saved_model.load(str(tmp))
        reference = _reference(graph, frames)
        candidates = {"serving_default": [], "serving_float": [], "serving_bytes": []}
        for frame in frames:
            extras = {k: tf.constant(v) for k, v in _frame_inputs(frame, graph).items()}
            image = tf.constant(frame.image[None])
            calls = {
                "serving_default": {"image": image},
                "serving_float": {"image": tf.cast(image, tf.float32) / 255.0},
                "serving_bytes": {"image_bytes": tf.io.encode_png(frame.image)[None]},
            }
            for name, inputs in calls.items():
                out = loaded.signatures[name](**inputs, **extras)
                candidates[name].append(out["depth"].numpy()[0, ..., 0])
        report = parity_lib.compare(reference, candidates, frames, variant=FOLD_VARIANTS.get(fold, "saved_model"),
                                    errors_fn=errors_fn, via_disparity=graph.has_disparity)
        del loaded
        parity_lib.check(report, f"SavedModel export to {target}")
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        report.update(format="saved_model", bytes=size)
        meta = _metadata(graph, info, "saved_model", graph.signature_specs(), max_pixels=graph.max_pixels,
                         serving={"model_base_path": str(base.resolve()), "version": int(target.name)},
                         bytes=size, parity=report["summary"], folded=fold)
        (tmp / EXTRA_DIR).mkdir(exist_ok=True)
        _json(tmp / EXTRA_DIR / "metadata.json", meta)
        _json(tmp / EXTRA_DIR / "parity.json", report)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a server under another user must read it
        if target.exists():
            raise FileExistsError(f"version {target.name} appeared in {base} during the export; nothing was "
                                  "overwritten: run the export again")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, report


# ----------------------------------------------------------------------------------------------------- TFLite
def tflite_paths(output) -> dict:
    """The files of a TFLite export: ``model`` (``x.tflite``), ``metadata`` (``x.json``, where
    ``tfdepth.inference.read_export_metadata`` looks) and ``parity`` (``x.parity.json``) beside it."""
    output = Path(output)
    stem = output.name[: -len(TFLITE_SUFFIX)] if output.name.endswith(TFLITE_SUFFIX) else output.name
    return {"model": output, "metadata": output.with_name(f"{stem}.json"),
            "parity": output.with_name(f"{stem}.parity.json")}


def export_tflite(graph: InferenceGraph, info, outputs, *, height: int | None = None, width: int | None = None,
                  frames, representative=None, errors_fn=None) -> dict:
    """Write one ``.tflite`` (and its JSONs) per variant, each checked for parity first; returns variant -> report.

    Args:
        outputs: quantization variant (``tflite.QUANTIZATIONS``) -> ``.tflite`` path.
        height, width: the fixed export size (default: :func:`export_size`); batch 1.
        frames: :class:`~tfdepth.export.parity.ParityFrame` list (real images, optional ground truth).
        representative: uint8 images (any size; resized to the export size) to calibrate ``int8``.
        errors_fn: ground-truth scoring for frames with depth (``parity.compare``).

    The graph at the export size is written once as a SavedModel into the temporary directory and every variant is
    converted from it. Parity: each frame resized to the export size (uint8, as a device camera would give it)
    through both signatures of the ``.tflite`` against the Keras reference on the same uint8 frame, with the
    variant's threshold (``parity.THRESHOLDS``). Each variant is published on its own when it passes; if any failed,
    :class:`~tfdepth.export.parity.ParityError` is raised after the others are published, with one line per failure,
    and the failed ones leave no file.
    """
    outputs = {q: Path(p) for q, p in dict(outputs).items()}
    if not outputs:
        raise ValueError("no TFLite variant to export")
    for quantize, output in outputs.items():
        if quantize not in tflite_lib.QUANTIZATIONS:
            raise ValueError(f"--quantize must be one of {', '.join(tflite_lib.QUANTIZATIONS)}, got {quantize!r}")
        if not output.name.endswith(TFLITE_SUFFIX):
            raise ValueError(f"--output {output} must name a {TFLITE_SUFFIX} file")
        if not output.parent.is_dir():
            raise FileNotFoundError(f"--output {output}: directory {output.parent} does not exist (create it first)")
        for path in tflite_paths(output).values():
            if path.exists():
                raise FileExistsError(f"{path} exists; exports never overwrite: choose another --output or remove it")
    if "int8" in outputs and graph.extra_inputs:
        raise ValueError("int8 calibration of a network with extra inputs needs samples of them; not supported yet")
    hw = export_size(info, height, width)
    samples = representative_samples(list(representative or []), hw) if "int8" in outputs else None
    first = next(iter(outputs.values()))
    tmp = Path(tempfile.mkdtemp(dir=first.parent, prefix=f".{first.name}.export-"))
    reports, failures = {}, []
    try:
        functions = graph.fixed_functions(*hw)
        write_saved_model(functions, graph.network, tmp / "saved_model")
        images = [to_export_size(f.image, hw) for f in frames]
        reference = _reference(graph, frames, images)
        for quantize, output in outputs.items():
            content = tflite_lib.convert(tmp / "saved_model", quantize, samples, signature_keys=list(functions))
            report = _tflite_parity(graph, content, quantize, frames, images, reference, hw, errors_fn)
            if not report["passed"]:
                failures.append(f"TFLite export ({quantize}) to {output} failed its parity check, nothing was "
                                f"written: {report['summary']}")
                continue
            meta = _metadata(graph, info, "tflite", graph.fixed_signature_specs(*hw), quantization=quantize,
                             export_size={"height": hw[0], "width": hw[1]}, bytes=len(content),
                             xnnpack=report["xnnpack"], parity=report["summary"],
                             representative_images=None if quantize != "int8" else samples.count)
            _publish_tflite(tmp, output, content, meta, report)
            reports[quantize] = report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        error = parity_lib.ParityError("\n".join(failures))
        error.reports = reports  # the variants that passed and were published
        raise error
    return reports


def _tflite_parity(graph, content, quantize, frames, images, reference, hw, errors_fn) -> dict:
    model = tflite_lib.TFLiteModel(content)
    candidates = {"serving_default": [], "serving_float": []}
    for frame, image in zip(frames, images, strict=True):
        extras = {k: tf.image.resize(v, list(hw), method="bilinear", antialias=True).numpy()
                  for k, v in _frame_inputs(frame, graph).items()}  # at the frame's size -> the export size
        candidates["serving_default"].append(model("serving_default", image=image[None], **extras)["depth"][0, ..., 0])
        candidates["serving_float"].append(
            model("serving_float", image=image[None].astype(np.float32) / 255.0, **extras)["depth"][0, ..., 0])
    report = parity_lib.compare(reference, candidates, frames, variant=quantize, errors_fn=errors_fn,
                                via_disparity=graph.has_disparity)
    report.update(format="tflite", quantization=quantize, bytes=len(content), xnnpack=model.xnnpack(),
                  export_size={"height": hw[0], "width": hw[1]})
    return report


def _publish_tflite(tmp, output, content, meta, report):
    """Stage the three files in ``tmp`` and rename them into place, the model last (it never appears alone)."""
    paths = tflite_paths(output)
    staged = {key: Path(tmp) / path.name for key, path in paths.items()}
    staged["model"].write_bytes(content)
    _json(staged["metadata"], meta)
    _json(staged["parity"], report)
    moved = []
    try:
        for key in ("metadata", "parity", "model"):
            os.chmod(staged[key], 0o644)
            os.replace(staged[key], paths[key])
            moved.append(paths[key])
    except BaseException:
        if paths["model"] not in moved:  # interrupted while publishing: take back the reports already moved
            for path in moved:
                path.unlink(missing_ok=True)
        raise
