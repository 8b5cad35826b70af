"""Evaluate a training run directory.

    python evaluate.py --run-dir runs/default [--split test] [--output metrics_test.json]
    python evaluate.py --run-dir runs/sddr --middlebury data/mid2021 --base-model runs/default   # SDDR, real data
    python evaluate.py --run-dir runs/sddr --dense-folder my_data --base-dir my_base_maps --base-kind disparity

Depth: KITTI protocol (Garg crop, depth in [1e-3, 80], per-image median scaling, the 7 standard metrics + log10)
as configured in the run's config.yaml (eval section). On synthetic data also the pose ATE over 5-frame snippets.
RSN runs: the NYU protocol (metric depth, no median scaling, eval.crop, cap eval.max_depth). SDDR runs: the base map
and the one- and two-stage refined depth, each least-squares fitted to the ground truth (delta1, rel) with the edge
metrics ORD and D3R (Boost's) and the paper's ranking ORD, on the synthetic test split or, with --middlebury DIR
(Middlebury 2021 layout: im0.png, disp0.pfm, calib.txt per scene) or --dense-folder DIR (images/ + depth/ or
disparity/), on real data with a base predictor: --base-model (a tfdepth run or export) or --base-dir (precomputed
maps <name>_low.* and <name>_high.*; Middlebury names are <scene>_l and <scene>_r).
Prints the metrics as JSON and, with --output, writes them (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="directory written by train.py")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--output", default=None, help="write the metrics JSON here")
    parser.add_argument("--max-scenes", type=int, default=None, help="evaluate only the first N scenes")
    sddr = parser.add_argument_group("SDDR runs on real high-resolution data")
    sddr.add_argument("--middlebury", help="Middlebury 2021 root (one folder per scene)")
    sddr.add_argument("--dense-folder", help="folder with images/ and depth/ or disparity/")
    sddr.add_argument("--base-model", help="base predictor: a tfdepth run directory or export")
    sddr.add_argument("--base-dir", help="precomputed base maps <name>_low.* and <name>_high.*")
    sddr.add_argument("--base-kind", choices=("disparity", "depth"), default="disparity",
                      help="what the --base-dir maps hold (default disparity: MiDaS-like predictors)")
    sddr.add_argument("--png-scale", type=float, default=1.0, help="16-bit PNG maps hold value x this")
    sddr.add_argument("--superpixel-scale", type=float, default=None,
                      help="SLIC resolution for ORD/D3R (default: 0.2 for Middlebury as Boost, else 1)")
    sddr.add_argument("--size", type=int, default=None, help="N_r network size (default: the trained size)")
    args = parser.parse_args(argv)

    from tfdepth.config import ConfigError
    from tfdepth.experiment import RunError, evaluate_run

    try:
        if args.middlebury or args.dense_folder:
            metrics = _evaluate_high_resolution(args)
        else:
            metrics = evaluate_run(args.run_dir, split=args.split, output=args.output, max_scenes=args.max_scenes)
    except (ConfigError, RunError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _evaluate_high_resolution(args) -> dict:
    from tfdepth.io import atomic_write_json
    from tfdepth.recipes.sddr import evaluate_high_resolution

    metrics = evaluate_high_resolution(
        args.run_dir, middlebury=args.middlebury, dense_folder=args.dense_folder, base_model=args.base_model,
        base_dir=args.base_dir, base_kind=args.base_kind, png_scale=args.png_scale,
        superpixel_scale=args.superpixel_scale, size=args.size, max_images=args.max_scenes)
    if args.output is not None:
        from pathlib import Path

        atomic_write_json(Path(args.output), metrics)
    return metrics


if __name__ == "__main__":
    sys.exit(main())
