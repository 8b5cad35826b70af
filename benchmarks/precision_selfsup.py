"""What low precision costs the self-supervised recipe in accuracy (issue "Speed", targets on bf16 and int8).

    python benchmarks/precision_selfsup.py [--out-dir runs/bench_precision] [--skip-train] [--set KEY=VALUE ...]
    python benchmarks/precision_selfsup.py --precisions float32      # inference rows only need the float32 run

Trains ``configs/default.yaml`` twice with the same seed, ``train.precision=float32`` and ``mixed_bfloat16``, then
scores on the held-out synthetic test split (median-scaled, the recipe's own protocol):

* ``train``: each run's test metrics and training time (the bf16 *training* target: test abs_rel within 0.01 of
  fp32's);
* ``inference``: the float32-trained networks run four ways on the same frames: Keras float32, the same weights
  built under ``mixed_bfloat16`` (bf16 matmuls/convs, float32 variables and outputs), the folded graphs
  (``tfdepth.export.fold_model``, float32 and bf16: BatchNorm folded, constant weights), and the TFLite exports
  ``none`` (float32) and ``int8`` (full integer, calibrated by the export CLI on the run's training frames): the
  bf16 / int8 *inference* targets (delta1 within 1 point of float32's).

Prints one JSON object (last line of stdout). Not part of the test suite: two full trainings (tens of minutes on a
2-core CPU). ``--skip-train`` reuses finished runs in ``--out-dir``. On a CPU without AVX512-BF16 or AMX the bf16
run is emulated (slow, and its time means nothing); the JSON says which CPU ran it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PRECISIONS = ("float32", "mixed_bfloat16")
KEEP = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "train_seconds", "train_steps")


class _Float32Outputs:
    """A network whose outputs are cast to float32 (a mixed-precision head may return bfloat16)."""

    def __init__(self, network):
        self.network = network

    def __call__(self, x, training=False):
        import tensorflow as tf

        return {k: tf.cast(v, tf.float32) for k, v in self.network(x, training=training).items()}


def bf16_predictor(run_dir: Path):
    """The run's inference network rebuilt under ``mixed_bfloat16`` with its trained weights."""
    import keras

    from tfdepth.config import load_config
    from tfdepth.inference import DepthPredictor
    from tfdepth.models import build_model
    from tfdepth.models.inference_heads import get_inference_spec
    from tfdepth.recipes.base import precision_policy

    config = load_config(run_dir / "config.yaml")
    spec = get_inference_spec(config.model.name)
    with precision_policy("mixed_bfloat16"):
        built = build_model(config.model)
        for role, file_name in spec.files.items():
            built[role].set_weights(keras.saving.load_model(run_dir / file_name, compile=False).get_weights())
        network = spec.build({role: built[role] for role in spec.files}, config.model)
    return DepthPredictor(_Float32Outputs(network), config.data.height, config.data.width,
                          depth_kind=spec.depth_kind, input_multiple=spec.input_multiple, family=config.model.name,
                          config=config)


def folded_predictor(run_dir: Path, dtype: str):
    """The run's inference network as a folded constant graph in ``dtype`` (tfdepth.export.folding)."""
    from tfdepth.export.folding import fold_model
    from tfdepth.inference import DepthPredictor, load_inference_network

    network, info = load_inference_network(run_dir)
    return DepthPredictor(fold_model(network, dtype), info.height, info.width, depth_kind=info.depth_kind,
                          input_multiple=info.input_multiple, family=info.family, config=info.config)


def _machine(model: str) -> dict:
    flags = set()
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(),
            "bf16_hardware": sorted(flags & {"avx512_bf16", "amx_bf16"}), "date": time.strftime("%Y-%m-%d")}


def score(predictor, config) -> dict:
    from tfdepth.data.factory import eval_sequences
    from tfdepth.evaluation import evaluate_sequences

    started = time.perf_counter()
    metrics = evaluate_sequences(predictor, eval_sequences(config.data, "test"), config.eval)
    return {**{k: metrics[k] for k in KEEP if k in metrics}, "eval_seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_precision"))
    parser.add_argument("--skip-train", action="store_true", help="reuse finished runs in --out-dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="trainings to run (the inference rows need only float32)")
    args = parser.parse_args(argv)

    import export as export_cli
    from machine import cpu_model
    from tfdepth.config import load_config
    from tfdepth.experiment import run_training
    from tfdepth.inference import DepthPredictor

    out_dir = Path(args.out_dir)
    result = {"config": Path(args.config).name, "overrides": args.overrides, "machine": _machine(cpu_model()),
              "train": {}, "inference": {}}
    for precision in args.precisions:
        run_dir = out_dir / precision
        metrics_path = run_dir / "metrics.json"
        if args.skip_train and metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
        else:
            config = load_config(args.config, [*args.overrides, f"train.precision={precision}"])
            metrics = run_training(config, run_dir, verbose=2)
        result["train"][precision] = {k: metrics[k] for k in KEEP if k in metrics}
        print(json.dumps({"train": precision, **result["train"][precision]}), flush=True)

    run_dir = out_dir / "float32"
    config = load_config(run_dir / "config.yaml")
    result["inference"]["keras_float32"] = score(DepthPredictor.from_run_dir(run_dir), config)
    result["inference"]["keras_bf16"] = score(bf16_predictor(run_dir), config)
    for dtype in ("float32", "bfloat16"):
        result["inference"][f"folded_{dtype}"] = score(folded_predictor(run_dir, dtype), config)
    exports = out_dir / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    for variant in ("none", "int8"):
        path = exports / f"float32_{variant}.tflite"
        if not path.is_file():
            code = export_cli.main(["--run-dir", str(run_dir), "--format", "tflite", "--quantize", variant,
                                    "--output", str(path)])
            if code != 0:
                raise SystemExit(f"export of the {variant} variant failed (exit {code})")
        result["inference"][f"tflite_{variant}"] = score(DepthPredictor.from_tflite(path), config)
    for name, row in result["inference"].items():
        print(json.dumps({"inference": name, **row}), flush=True)

    fp32_train, fp32_infer = result["train"]["float32"], result["inference"]["keras_float32"]
    bf16_train = result["train"].get("mixed_bfloat16")
    result["summary"] = {
        **({"bf16_training_abs_rel_change": bf16_train["abs_rel"] - fp32_train["abs_rel"],
            "bf16_training_time_ratio": bf16_train["train_seconds"] / fp32_train["train_seconds"]} if bf16_train else {}),
        **{f"{name}_a1_change": row["a1"] - fp32_infer["a1"] for name, row in result["inference"].items()
           if name != "keras_float32"},
        **{f"{name}_abs_rel_change": row["abs_rel"] - fp32_infer["abs_rel"] for name, row in
           result["inference"].items() if name != "keras_float32"},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
