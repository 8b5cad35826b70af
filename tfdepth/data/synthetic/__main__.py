"""Preview a synthetic scene: ``python -m tfdepth.data.synthetic --preset street --seed 0 --out preview.png``.

Writes a PNG panel with one row per frame: RGB | colorized depth (inverse depth, MAGMA) | colorized semantics.
"""

import argparse
import os
import sys

import numpy as np

from tfdepth.data.synthetic import PRESETS, render_sequence
from tfdepth.viz import colorize_depth, colorize_labels, make_panel, save_png
from tfdepth.data.synthetic.classes import CLASS_NAMES


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tfdepth.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="street", help=f"one of {', '.join(PRESETS)} (default street)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (>= 0)")
    parser.add_argument("--out", required=True, help="output PNG path (its directory must exist)")
    parser.add_argument("--frames", type=int, default=3, help="number of frames (rows), default 3")
    parser.add_argument("--stride", type=int, default=1, help="show every n-th frame of the sequence, default 1")
    parser.add_argument("--height", type=int, default=None, help="image height (default: the preset's)")
    parser.add_argument("--width", type=int, default=None, help="image width (default: the preset's)")
    parser.add_argument("--moving-objects", action="store_true", help="enable independently moving objects")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.preset not in PRESETS:
        print(f"error: --preset must be one of {', '.join(PRESETS)}, got {args.preset!r}", file=sys.stderr)
        return 2
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        print(f"error: cannot write --out {args.out!r}: directory {out_dir!r} is missing or not writable",
              file=sys.stderr)
        return 2
    if args.frames < 1 or args.stride < 1:
        print("error: --frames and --stride must be >= 1", file=sys.stderr)
        return 2
    try:
        seq = render_sequence(args.preset, args.seed, (args.frames - 1) * args.stride + 1, args.height, args.width,
                              moving_objects=args.moving_objects)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = []
    for k in range(0, len(seq["image"]), args.stride):
        valid = seq["depth"][k][seq["depth"][k] > 0]
        # Fixed depth range per panel row so colours compare across rows of one scene.
        vmax = float(np.percentile(valid, 98)) if valid.size else None
        rows.append([seq["image"][k], colorize_depth(seq["depth"][k], vmax=vmax),
                     colorize_labels(seq["semantic"][k], num_classes=len(CLASS_NAMES))])
    try:
        save_png(args.out, make_panel(rows))
    except OSError as err:
        print(f"error: cannot write {args.out!r}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(rows)} frames of {args.preset} seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
