"""Does the self-supervised recipe learn depth? Trains configs/default.yaml and shorter ablations; prints JSON.

    python benchmarks/learning_selfsup.py [--out-dir runs/bench_selfsup] [--ablation-steps 448] [--skip-ablation]

Output (one JSON object on the last line of stdout):
  abs_rel, a1            median-scaled errors of the default recipe on the held-out synthetic test scenes
  baseline_abs_rel       the best constant-depth prediction on the same frames (tfdepth.evaluation)
  ratio                  abs_rel / baseline_abs_rel (the issue's bar: at most 0.5)
  ablation               {variant: {abs_rel, a1, steps, seconds}} from shorter runs: full / no auto-mask /
                         no min-reprojection (average over sources) / with the segmentation loss (SegDepth)
Not part of the test suite (tens of minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]

ABLATIONS = {
    "full": [],
    "no_automask": ["loss.automask=false"],
    "no_min_reprojection": ["loss.min_reprojection=false"],
    "with_segmentation": ["model.segmentation=true"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_selfsup"))
    parser.add_argument("--ablation-steps", type=int, default=448)  # 40% of the default recipe
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--skip-main", action="store_true", help="reuse <out-dir>/default if it finished")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from tfdepth.config import load_config
    from tfdepth.data.factory import eval_sequences
    from tfdepth.evaluation import constant_depth_baseline
    from tfdepth.experiment import run_training

    out_dir = Path(args.out_dir)
    config = load_config(args.config, args.overrides)
    main_dir = out_dir / "default"
    if args.skip_main and (main_dir / "metrics.json").is_file():
        metrics = json.loads((main_dir / "metrics.json").read_text())
    else:
        metrics = run_training(config, main_dir, verbose=2)

    gts = [frame for seq in eval_sequences(config.data, config.eval.split) for frame in seq["depth"]]
    baseline = constant_depth_baseline(gts, config.eval)

    result = {
        "config": str(Path(args.config).name),
        "abs_rel": metrics["abs_rel"],
        "a1": metrics["a1"],
        "rmse": metrics["rmse"],
        "ate_mean": metrics.get("ate_mean"),
        "train_seconds": metrics.get("train_seconds"),
        "train_steps": metrics.get("train_steps"),
        "baseline_abs_rel": baseline["abs_rel"],
        "baseline_a1": baseline["a1"],
        "baseline_constant": baseline["constant"],
        "ratio": metrics["abs_rel"] / baseline["abs_rel"],
        "test_frames": len(gts),
        "ablation": {},
    }
    if not args.skip_ablation:
        for name, overrides in ABLATIONS.items():
            cfg = load_config(args.config, list(args.overrides) + overrides + [f"name={name}"])
            started = time.time()
            m = run_training(cfg, out_dir / f"ablation_{name}", max_steps=args.ablation_steps, verbose=2)
            result["ablation"][name] = {
                "abs_rel": m["abs_rel"],
                "a1": m["a1"],
                "steps": m["train_steps"],
                "seconds": round(time.time() - started, 1),
            }
            print(json.dumps({name: result["ablation"][name]}), flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
