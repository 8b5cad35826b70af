"""Train a tfdepth model from a YAML experiment file.

    python train.py                                   # configs/default.yaml: self-supervised depth on synthetic streets
    python train.py --config configs/monodepth2_kitti.yaml --run-dir runs/kitti
    python train.py --set train.epochs=2 --set data.batch_size=4 --steps 20

Writes into the run directory: config.yaml (resolved), checkpoints/ (resumable; re-running with the same
--run-dir continues), logs/ (TensorBoard), depth_net.keras and pose_net.keras, metrics.json (test split).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML experiment file (default: %(default)s)")
    parser.add_argument("--run-dir", default=None, help="output directory (default: runs/<name>-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="cap on the total number of training steps (smoke runs)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation at the end")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tfdepth.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.steps is not None and args.steps < 1:
        print(f"error: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")

    from tfdepth.experiment import RunError, run_training

    try:
        metrics = run_training(config, run_dir, max_steps=args.steps, evaluate=not args.no_eval)
    except (RunError, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if metrics:
        print(json.dumps(metrics, indent=2))
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
