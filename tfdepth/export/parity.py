"""Parity of an exported model against the Keras model it came from, and the thresholds an export must meet.

Definitions (written into every report, ``DEFINITIONS``):

* *reference*: the Keras inference network with the export's pre- and post-processing run in TensorFlow, float32
  (:meth:`tfdepth.export.graph.InferenceGraph.predict_uint8`, equal to ``DepthPredictor``); *candidate*: the export.
* *depth range*: ``max - min`` of the reference depth over all pixels of all parity frames (pooled). Differences
  are reported absolute and divided by this range (``*_rel``), so a model predicting depths of 0.2 or of 80 is
  judged alike.
* ``delta1_vs_reference``: the fraction of pixels where ``max(c / r, r / c) < 1.25`` for candidate ``c`` and
  reference ``r``: the delta1 accuracy of the export measured against the Keras prediction (1.0 = identical).
* On frames with ground truth, ``errors_fn(gts, preds)`` (the caller's protocol; the CLI passes
  ``tfdepth.metrics.evaluate_depth`` with the run's eval config: crop, depth cap, median scaling for relative
  depth) scores reference and candidate alike; predictions are first resized to the ground truth's size (disparity
  bilinear then inverted, A.8). The report gives both and the changes ``delta_a1`` and ``delta_abs_rel``.

Thresholds (:data:`THRESHOLDS`), checked on every signature of the export:

* float32 (SavedModel, TFLite without quantization): max |candidate - reference| <= 1e-4 of the depth range;
* float16: <= 1e-2 of the depth range;
* dynamic-range int8, full int8 and the bf16 folded SavedModel: delta1 (a1) on the ground-truth frames within 1 point (0.01) of the reference's;
  with no ground-truth frame, ``delta1_vs_reference >= 0.99`` (the reference's own is 1.0: the same 1-point rule
  with the Keras prediction standing in for the ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

__all__ = ["ParityFrame", "THRESHOLDS", "DEFINITIONS", "compare", "ParityError", "resize_depth"]

THRESHOLDS = {
    # variant: (rule, limit); rules are explained in the module docstring.
    "saved_model": ("max_abs_diff_rel", 1e-4),
    "saved_model_bf16": ("delta_a1", 0.01),  # a SavedModel of the bf16 folded graph (exporter.folded_graph)
    "none": ("max_abs_diff_rel", 1e-4),
    "float16": ("max_abs_diff_rel", 1e-2),
    "dynamic": ("delta_a1", 0.01),
    "int8": ("delta_a1", 0.01),
}
DELTA1_VS_REFERENCE_MIN = 0.99  # the int8 rule without ground truth (module docstring)

DEFINITIONS = {
    "reference": "the Keras inference network with the same pre- and post-processing in TensorFlow, float32",
    "depth_range": "max - min of the reference depth over all pixels of all parity frames",
    "max_abs_diff_rel": "max |candidate - reference| depth / depth_range",
    "mean_abs_diff_rel": "mean |candidate - reference| depth / depth_range",
    "delta1_vs_reference": "fraction of pixels with max(c/r, r/c) < 1.25 (candidate c, reference r)",
    "ground_truth": "errors of reference and candidate against the frames' ground truth (the run's evaluation "
                    "protocol: crop, depth cap, median scaling for relative depth); predictions resized to the "
                    "ground truth's size first (disparity bilinear, then inverted)",
    "thresholds": "float32 max_abs_diff_rel <= 1e-4; float16 <= 1e-2; int8 (dynamic, full) and bf16 |delta_a1| <= "
                  "0.01 on ground-truth frames, else delta1_vs_reference >= 0.99",
}


class ParityError(RuntimeError):
    """An export missed its parity threshold; the message is one line with the numbers."""


@dataclass(frozen=True)
class ParityFrame:
    """A real image for the parity check: uint8 ``[H, W, 3]``, optional ground-truth depth ``[h, w]`` (0 = none),
    and the float32 ``[H, W, C]`` extra inputs of a family that takes them (``graph.py``), by name."""

    name: str
    image: np.ndarray
    depth: np.ndarray | None = None
    inputs: dict = field(default_factory=dict)

    def __post_init__(self):
        image = np.asarray(self.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"parity frame {self.name!r}: image must be uint8 [H, W, 3], got {image.dtype} "
                             f"{image.shape}")
        if self.depth is not None and np.asarray(self.depth).ndim != 2:
            raise ValueError(f"parity frame {self.name!r}: depth must be [H, W], got {np.asarray(self.depth).shape}")


def resize_depth(depth, hw, via_disparity: bool = True) -> np.ndarray:
    """Depth ``[H, W]`` -> ``[h, w]``: bilinear on the disparity then inverted (A.8), or bilinear on depth."""
    depth = np.asarray(depth, np.float32)
    if tuple(depth.shape) == tuple(hw):
        return depth
    x = 1.0 / depth if via_disparity else depth
    x = tf.image.resize(x[None, :, :, None], list(hw), method="bilinear").numpy()[0, :, :, 0]
    return 1.0 / x if via_disparity else x


def _delta1(candidate, reference):
    # Metric networks with a ReLU output (RSN) can predict exactly 0: two zeros agree, one zero never does.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(candidate / reference, reference / candidate)
    return (ratio < 1.25) | ((candidate == 0) & (reference == 0))


def compare(reference, candidates, frames, *, variant, errors_fn=None, via_disparity=True) -> dict:
    """Parity report of ``candidates`` against ``reference`` on ``frames``; raises nothing (see :func:`check`).

    Args:
        reference: list (one per frame) of reference depth maps ``[H_i, W_i]``.
        candidates: signature name -> list of candidate depth maps of the same shapes.
        frames: the :class:`ParityFrame` list (names and ground truth).
        variant: a key of :data:`THRESHOLDS`.
        errors_fn: ``errors_fn(gts, preds) -> dict`` with ``a1`` and ``abs_rel``; needed when a frame has depth.
    Returns:
        the report dict (``signatures``: per-signature numbers and their ``passed``; ``passed``; ``summary``).
    """
    if variant not in THRESHOLDS:
        raise ValueError(f"variant must be one of {sorted(THRESHOLDS)}, got {variant!r}")
    if not frames:
        raise ValueError("no parity frames: give at least one real image")
    reference = [np.asarray(r, np.float64) for r in reference]
    pooled = np.concatenate([r.ravel() for r in reference])
    depth_range = float(pooled.max() - pooled.min())
    if not np.isfinite(depth_range) or depth_range <= 0:
        raise ValueError(f"the reference depth is constant or not finite over the parity frames (range "
                         f"{depth_range}); parity relative to the depth range is undefined")
    gt_index = [i for i, f in enumerate(frames) if f.depth is not None and np.any(np.asarray(f.depth) > 0)]
    if gt_index and errors_fn is None:
        raise ValueError("frames with ground truth need errors_fn (e.g. tfdepth.metrics.evaluate_depth)")

    def gt_errors(preds):
        gts = [np.asarray(frames[i].depth, np.float32) for i in gt_index]
        resized = [resize_depth(preds[i], g.shape, via_disparity) for i, g in zip(gt_index, gts)]
        errors = errors_fn(gts, resized)
        return {"a1": float(errors["a1"]), "abs_rel": float(errors["abs_rel"])}

    reference_errors = gt_errors(reference) if gt_index else None
    rule, limit = THRESHOLDS[variant]
    signatures = {}
    for name, preds in candidates.items():
        preds = [np.asarray(p, np.float64) for p in preds]
        if [p.shape for p in preds] != [r.shape for r in reference]:
            raise ValueError(f"signature {name}: candidate shapes {[p.shape for p in preds]} differ from the "
                             f"reference's {[r.shape for r in reference]}")
        diffs = [np.abs(p - r) for p, r in zip(preds, reference)]
        all_diffs = np.concatenate([d.ravel() for d in diffs])
        finite = bool(np.all(np.isfinite(all_diffs)))
        agree = np.concatenate([_delta1(p, r).ravel() for p, r in zip(preds, reference)])
        entry = {
            "max_abs_diff": float(all_diffs.max()) if finite else float("inf"),
            "mean_abs_diff": float(all_diffs.mean()) if finite else float("inf"),
            "delta1_vs_reference": float(agree.mean()) if finite else 0.0,
            "frames": [{"name": f.name, "height": int(r.shape[0]), "width": int(r.shape[1]),
                        "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())}
                       for f, r, d in zip(frames, reference, diffs)],
        }
        entry["max_abs_diff_rel"] = entry["max_abs_diff"] / depth_range
        entry["mean_abs_diff_rel"] = entry["mean_abs_diff"] / depth_range
        if gt_index and finite:
            errors = gt_errors(preds)
            entry["ground_truth"] = {
                "frames": len(gt_index), "reference": reference_errors, "candidate": errors,
                "delta_a1": errors["a1"] - reference_errors["a1"],
                "delta_abs_rel": errors["abs_rel"] - reference_errors["abs_rel"],
            }
        entry["check"] = _check_one(entry, rule, limit, finite)
        signatures[name] = entry
    passed = all(s["check"]["passed"] for s in signatures.values())
    report = {
        "variant": variant, "definitions": DEFINITIONS, "depth_range": depth_range,
        "frames": [{"name": f.name, "height": int(f.image.shape[0]), "width": int(f.image.shape[1]),
                    "ground_truth": i in gt_index} for i, f in enumerate(frames)],
        "signatures": signatures, "passed": passed,
    }
    report["summary"] = _summary(report)
    return report


def _check_one(entry, rule, limit, finite):
    if not finite:
        return {"rule": "finite outputs", "value": None, "limit": None, "passed": False}
    if rule == "max_abs_diff_rel":
        value = entry["max_abs_diff_rel"]
        return {"rule": "max_abs_diff_rel <= limit", "value": value, "limit": limit, "passed": value <= limit}
    if "ground_truth" in entry:
        value = entry["ground_truth"]["delta_a1"]
        return {"rule": "|delta_a1| <= limit (ground-truth frames)", "value": value, "limit": limit,
                "passed": abs(value) <= limit}
    value = entry["delta1_vs_reference"]
    return {"rule": "delta1_vs_reference >= limit (no ground-truth frame)", "value": value,
            "limit": DELTA1_VS_REFERENCE_MIN, "passed": value >= DELTA1_VS_REFERENCE_MIN}


def _summary(report) -> str:
    """One line: each signature's checked number against its limit, and the pooled depth range."""
    parts = []
    for name, entry in report["signatures"].items():
        check = entry["check"]
        if check["value"] is None:
            parts.append(f"{name}: non-finite outputs")
            continue
        what = {"max_abs_diff_rel <= limit": "max |diff| / depth range",
                "|delta_a1| <= limit (ground-truth frames)": "delta1 change on ground truth",
                "delta1_vs_reference >= limit (no ground-truth frame)": "delta1 against the Keras depth"}[check["rule"]]
        sign = "<=" if check["passed"] else ">"
        if check["rule"].startswith("delta1_vs"):
            sign = ">=" if check["passed"] else "<"
        parts.append(f"{name}: {what} {check['value']:.3g} ({sign} limit {check['limit']:g}; "
                     f"max |diff| {entry['max_abs_diff']:.3g})")
    frames = len(report["frames"])
    return (f"{report['variant']}: " + "; ".join(parts)
            + f"; depth range {report['depth_range']:.4g} over {frames} frame(s)")


def check(report, what: str) -> None:
    """Raise :class:`ParityError` (one line with the numbers) when ``report`` did not pass."""
    if not report["passed"]:
        raise ParityError(f"{what} failed its parity check, nothing was written: {report['summary']}")
