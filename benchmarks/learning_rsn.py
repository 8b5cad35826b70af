"""Does the RSN recipe learn metric depth? Trains configs/rsn_synthetic.yaml and a log-vs-linear L_r ablation; JSON.

    python benchmarks/learning_rsn.py [--out-dir runs/bench_rsn] [--skip-ablation | --ablation-only] [--set key=value ...]

Output (one JSON object on the last line of stdout), all on the held-out synthetic test rooms, NYU protocol
(metric depth, no median scaling, clamp to eval.max_depth; per-image metrics averaged over images):
  rmse_refined, metrics     the end-to-end model (generation -> 3 refinement iterations) after the full schedule
  rmse_generation           the same run's generation module alone (its region support read as depth)
  rmse_gt_support           the refinement module fed the ground-truth region support (the paper's oracle variant)
  rmse_baseline             one constant depth for every image, the mean of the test ground truth
  ratio                     rmse_refined / rmse_baseline (the issue's goal: at most 0.35)
  rmse_log_lr, rmse_linear_lr   the generation module trained alone for the same number of generation epochs
                            with the log or the linear region loss only (the paper's comparison of the two)
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


def _staged(metrics, baseline, keys, test_frames, started) -> dict:
    """The staged run's keys of the JSON (module docstring)."""
    return {
        "rmse_refined": metrics["rmse"],
        "rmse_generation": metrics["generation"]["rmse"],
        "rmse_gt_support": metrics["gt_support"]["rmse"],
        "baseline_constant_m": baseline["constant"],
        "ratio": metrics["rmse"] / baseline["rmse"],
        "metrics": {k: metrics[k] for k in keys},
        "generation_metrics": {k: metrics["generation"][k] for k in keys},
        "gt_support_metrics": {k: metrics["gt_support"][k] for k in keys},
        "test_frames": test_frames,
        "train_seconds": metrics.get("train_seconds"),
        "train_steps": metrics.get("train_steps"),
        "seconds": round(time.time() - started, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "rsn_synthetic.yaml"))
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_rsn"))
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--ablation-only", action="store_true", help="only the log-vs-linear L_r runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from tfdepth.config import load_config
    from tfdepth.data.depth_images import eval_depth_frames
    from tfdepth.evaluation import metric_constant_baseline
    from tfdepth.experiment import run_training

    out_dir = Path(args.out_dir)
    config = load_config(args.config, args.overrides)
    if args.skip_ablation and args.ablation_only:
        parser.error("--skip-ablation and --ablation-only exclude each other")
    started = time.time()
    keys = ("rmse", "abs_rel", "log10", "rmse_log", "a1", "a2", "a3")
    gts = [f["depth"] for f in eval_depth_frames(config.data, config.eval.split, config.loss.region_labels)]
    baseline = metric_constant_baseline(gts, config.eval)
    result = {"config": Path(args.config).name, "rmse_baseline": baseline["rmse"]}
    if not args.ablation_only:
        result.update(_staged(run_training(config, out_dir / "staged", verbose=2), baseline, keys, len(gts),
                              started))
        print(json.dumps({"staged": result}), flush=True)
    if not args.skip_ablation:
        generation_epochs = sum(config.loss.stage_epochs[:2])
        for name, epochs in (("log_lr", [0, generation_epochs, 0, 0]), ("linear_lr", [generation_epochs, 0, 0, 0])):
            overrides = list(args.overrides) + [f"loss.stage_epochs={epochs}", f"train.epochs={generation_epochs}",
                                                f"name=rsn_{name}"]
            started = time.time()
            m = run_training(load_config(args.config, overrides), out_dir / name, verbose=2)
            result[f"rmse_{name}"] = m["generation"]["rmse"]
            result[f"{name}_metrics"] = {k: m["generation"][k] for k in keys}
            result[f"{name}_seconds"] = round(time.time() - started, 1)
            print(json.dumps({name: result[f"{name}_metrics"]}), flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
