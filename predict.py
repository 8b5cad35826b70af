"""Predict depth for images with a trained run.

    python predict.py --run-dir runs/default photo.jpg more_photos/ --out predictions/

For each input image (files, or every image in a folder) writes ``<name>.npy`` (float32 depth at the input's
resolution; relative units for self-supervised monocular models, see README "Metric scale") and ``<name>.png``
(colorized inverse depth). Unreadable files get a one-line message and the rest are still processed; the exit
code is 1 if any input failed, else 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def collect_inputs(inputs):
    """Expand folders (sorted, non-recursive) into image files; keep explicit files whatever their suffix."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def read_rgb(path: Path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a readable image (missing, empty or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def unique_stem(path: Path, used: set) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="directory written by train.py")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    args = parser.parse_args(argv)

    from tfdepth.inference import DepthPredictor
    from tfdepth.io import atomic_save_npy
    from tfdepth.viz import colorize_depth, save_png

    try:
        predictor = DepthPredictor.from_run_dir(args.run_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(args.inputs)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    used, failed = set(), 0
    for path in files:
        try:
            image = read_rgb(path)
        except ValueError as err:
            print(f"skipped {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        depth = predictor.predict(image)
        stem = unique_stem(path, used)
        atomic_save_npy(out_dir / f"{stem}.npy", depth.astype("float32"))
        save_png(out_dir / f"{stem}.png", colorize_depth(depth))
        print(f"{path} -> {out_dir / stem}.npy, .png ({depth.shape[1]}x{depth.shape[0]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
