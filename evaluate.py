"""Evaluate a training run directory.

    python evaluate.py --run-dir runs/default [--split test] [--output metrics_test.json]

Depth: KITTI protocol (Garg crop, depth in [1e-3, 80], per-image median scaling, the 7 standard metrics + log10)
as configured in the run's config.yaml (eval section). On synthetic data also the pose ATE over 5-frame snippets.
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
    args = parser.parse_args(argv)

    from tfdepth.config import ConfigError
    from tfdepth.experiment import RunError, evaluate_run

    try:
        metrics = evaluate_run(args.run_dir, split=args.split, output=args.output, max_scenes=args.max_scenes)
    except (ConfigError, RunError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
