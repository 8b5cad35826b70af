"""``python -m export``: a trained run as a SavedModel for TF Serving or as TFLite, checked against Keras.

    python -m export --run-dir runs/default-... --format saved_model --output exports/
    python -m export --run-dir runs/default-... --format tflite --quantize none float16 dynamic int8 --output exports/

SavedModel: ``OUTPUT/NAME/VERSION/`` (TF Serving layout; NAME = the run's config name unless --name; VERSION =
the next free integer unless --version, and an existing version is never overwritten) with signatures
``serving_default`` (uint8 ``image`` [B,H,W,3], any size), ``serving_float`` (float32 ``image`` in [0, 1]) and
``serving_bytes`` (encoded PNG/JPEG ``image_bytes``), all returning ``depth`` (and ``disparity``) at the input's
resolution; ``VERSION/assets.extra/metadata.json`` and ``parity.json`` beside the graph. ``--fold float32`` or
``--fold bfloat16`` writes the folded network (BatchNorm folded into the convolutions, weights as constants, one
dtype throughout: the fast path for CPU serving with oneDNN; bf16 needs AVX512-BF16 or AMX to be fast).

TFLite: one ``.tflite`` per --quantize variant at the fixed export size (--height/--width, else the run's
``export.height/width``, else the network input size), with ``<stem>.json`` (metadata) and ``<stem>.parity.json``.
--output is the ``.tflite`` path for one variant, or a directory for ``<NAME>_<variant>.tflite`` files.

Parity: every export is compared with the Keras model on real images before it is published: --parity-image
IMAGE [DEPTH] (repeatable; DEPTH a .npy in metres or a 16-bit PNG of metres x --depth-scale), else the run's own
test frames with their ground truth. Thresholds: float32 max |diff| <= 1e-4 of the depth range, float16 <= 1e-2,
int8 (dynamic and full) and the bf16 fold: delta1 within 1 point of the Keras model's. A failed check prints one line with the
numbers, writes nothing and exits with 1; bad arguments exit with 2. int8 calibrates on --representative images
(files or folders), else --representative-count frames of the run's training pipeline (no augmentation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
QUANTIZE_ALIASES = {"none": "none", "float16": "float16", "dynamic": "dynamic", "dynamic_int8": "dynamic",
                    "int8": "int8"}  # the config's export.quantization spells dynamic-range int8 "dynamic_int8"
VARIANT_TAGS = {"none": "float32", "float16": "float16", "dynamic": "dynamic_int8", "int8": "int8"}


def _parser():
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="directory written by train.py")
    parser.add_argument("--format", required=True, choices=["saved_model", "tflite"])
    parser.add_argument("--output", required=True, help="saved_model: the models' directory (NAME/VERSION/ go "
                        "inside); tflite: a .tflite path (one variant) or a directory")
    parser.add_argument("--quantize", nargs="+", choices=sorted(QUANTIZE_ALIASES),
                        help="tflite variants (default: the run's export.quantization, 'none')")
    parser.add_argument("--fold", choices=["float32", "bfloat16"],
                        help="saved_model: write the folded network in this dtype (BatchNorm folded, constant weights)")
    parser.add_argument("--name", help="saved_model: the model name (default: the run's config name)")
    parser.add_argument("--version", type=int, help="saved_model: the version number (default: the next free one)")
    parser.add_argument("--max-pixels", type=int, help="saved_model: the most pixels one serving_bytes request may "
                        "decode (default 16777216 = 4096x4096)")
    parser.add_argument("--height", type=int, help="tflite: export height (default: export.height, else the "
                        "network input height)")
    parser.add_argument("--width", type=int, help="tflite: export width")
    parser.add_argument("--parity-image", nargs="+", action="append", metavar=("IMAGE", "DEPTH"),
                        help="a real image (or a folder of them) for the parity check, optionally with its "
                             "ground-truth depth; repeatable (default: the run's test frames)")
    parser.add_argument("--parity-frames", type=int, default=8, help="how many of the run's test frames to use "
                        "when no --parity-image is given (default 8)")
    parser.add_argument("--depth-scale", type=float, help="16-bit PNG depth = metres x this (default: the run's "
                        "data.depth_scale)")
    parser.add_argument("--representative", nargs="+", help="tflite int8: images or folders to calibrate on")
    parser.add_argument("--representative-count", type=int, default=64,
                        help="tflite int8: calibration frames from the training pipeline (default 64)")
    return parser


def _image_files(path: Path, what: str) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{what} {path}: the folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return [path]


def _parity_frames(args, info, depth_scale):
    """ParityFrames from --parity-image, else the run's test frames (with ground truth)."""
    from tfdepth.data.folders import read_depth, read_image
    from tfdepth.export import ParityFrame

    frames = []
    if args.parity_image:
        for item in args.parity_image:
            if len(item) > 2:
                raise ValueError(f"--parity-image takes IMAGE [DEPTH], got {len(item)} paths: {' '.join(item)}")
            image_path = Path(item[0])
            if len(item) == 2 and image_path.is_dir():
                raise ValueError(f"--parity-image {image_path}: a folder cannot have one DEPTH file; give images "
                                 "one by one to pair them with their ground truth")
            for path in _image_files(image_path, "--parity-image"):
                image = read_image(path)
                depth = None
                if len(item) == 2:
                    if not Path(item[1]).is_file():
                        raise FileNotFoundError(f"--parity-image depth file {item[1]} does not exist")
                    depth = read_depth(item[1], image.shape[:2], depth_scale)
                frames.append(ParityFrame(path.name, image, depth))
        return frames
    from tfdepth.recipes import get_recipe

    if args.parity_frames < 1:
        raise ValueError(f"--parity-frames must be >= 1, got {args.parity_frames}")
    split = info.config.eval.split
    for name, image, depth, *inputs in get_recipe(info.config.model.name).eval_frames(info.config, split):
        frames.append(ParityFrame(name, image, depth, inputs[0] if inputs else {}))
        if len(frames) >= args.parity_frames:
            break
    if not frames:
        raise ValueError(f"the run's {split!r} split has no frames; give --parity-image IMAGE [DEPTH]")
    return frames


def _representative(args, info, count):
    """uint8 images to calibrate int8: --representative files/folders, else training-pipeline frames."""
    import numpy as np

    from tfdepth.data.folders import read_image

    if args.representative:
        return [read_image(p) for item in args.representative for p in _image_files(Path(item), "--representative")]
    from tfdepth.recipes import get_recipe

    if count < 1:
        raise ValueError(f"--representative-count must be >= 1, got {count}")
    images = []
    for image in get_recipe(info.config.model.name).training_images(info.config):
        images.append(np.clip(np.round(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8))
        if len(images) >= count:
            break
    return images


def _errors_fn(info):
    import functools

    from tfdepth.metrics import evaluate_depth

    ev = info.config.eval  # the run's protocol: crop, depth cap, median scaling (relative depth) or a fixed factor
    return functools.partial(evaluate_depth, crop=ev.crop, min_depth=ev.min_depth, max_depth=ev.max_depth,
                             median_scaling=ev.median_scaling, scale_factor=ev.scale_factor)


def _size(path: Path) -> str:
    total = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"


def _run(args) -> int:
    from tfdepth.export import DEFAULT_MAX_PIXELS, export_saved_model, export_tflite, graph_from_run

    quantize = [QUANTIZE_ALIASES[q] for q in (args.quantize or [])]
    if args.format == "saved_model":
        if any(q != "none" for q in quantize):
            raise ValueError("--quantize applies to --format tflite; a SavedModel is float32")
        for flag in ("height", "width"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag} applies to --format tflite (a SavedModel takes any size)")
    elif args.name or args.version is not None or args.max_pixels is not None or args.fold:
        raise ValueError("--name, --version, --max-pixels and --fold apply to --format saved_model")
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if max_pixels < 1:
        raise ValueError(f"--max-pixels must be >= 1, got {max_pixels}")
    graph, info = graph_from_run(args.run_dir, max_pixels=max_pixels)
    depth_scale = args.depth_scale if args.depth_scale is not None else info.config.data.depth_scale
    frames = _parity_frames(args, info, depth_scale)
    errors_fn = _errors_fn(info)
    output = Path(args.output)
    name = args.name or getattr(info.config, "name", None) or Path(args.run_dir).resolve().name
    if args.format == "saved_model":
        path, report = export_saved_model(graph, info, output / name, frames=frames, version=args.version,
                                          errors_fn=errors_fn, fold=args.fold)
        folded = f", folded {args.fold}" if args.fold else ""
        print(f"wrote {path} (SavedModel{folded}, {_size(path)}); parity {report['summary']}")
        return 0
    if not quantize:
        config_q = getattr(getattr(info.config, "export", None), "quantization", "none") or "none"
        quantize = [QUANTIZE_ALIASES.get(config_q, config_q)]
    quantize = list(dict.fromkeys(quantize))
    if output.suffix == ".tflite":
        if len(quantize) > 1:
            raise ValueError(f"--output {output} names one file but --quantize gives {len(quantize)} variants; "
                             "give a directory to write one file per variant")
        outputs = {quantize[0]: output}
    else:
        output.mkdir(parents=True, exist_ok=True)
        outputs = {q: output / f"{name}_{VARIANT_TAGS[q]}.tflite" for q in quantize}
    representative = _representative(args, info, args.representative_count) if "int8" in quantize else None
    from tfdepth.export import ParityError

    try:
        reports = export_tflite(graph, info, outputs, height=args.height, width=args.width, frames=frames,
                                representative=representative, errors_fn=errors_fn)
    except ParityError as err:
        reports, failed = getattr(err, "reports", {}), err
    else:
        failed = None
    for q, report in reports.items():
        x = report["xnnpack"]
        print(f"wrote {outputs[q]} (TFLite {VARIANT_TAGS[q]}, {_size(outputs[q])}, XNNPACK "
              f"{x['compute_partitions']} partition(s)); parity {report['summary']}")
    if failed is not None:
        raise failed
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    from tfdepth.export import ParityError

    try:
        return _run(args)
    except ParityError as err:
        print(f"export: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
