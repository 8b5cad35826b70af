"""Does SDDR's self-distillation sharpen depth edges? Trains configs/sddr_synthetic.yaml, evaluates it; JSON.

    python benchmarks/learning_sddr.py [--out-dir runs/bench_sddr] [--skip-timing] [--reuse-run] [--set key=value ...]

Output (one JSON object on the last line of stdout), on the held-out synthetic test rooms at their render size
(``tfdepth.recipes.sddr``: every prediction least-squares fitted to 1/GT; Boost's ORD / D3R, the paper's ORD as
``ord_rank``; per-image values averaged over images):
  base, one_stage, two_stage   dicts of delta1, rel, ord, d3r, ord_rank: the simulated predictor's low-resolution
                               map bilinearly up-sampled (base) and the refined depth, one-stage and two-stage
  edge_distance_gs, edge_distance_g0   distance of the trained network's self-distilled label G_S and of its
                               whole-image G0 to the ground-truth edge map G(D*) at the network size: mean
                               |G / max G - G* / max G*| (lower is closer); ``edge_correlation_*`` the Pearson
                               correlation with G*
  time_one_stage_1024_s, time_two_stage_1024_s   median seconds of one- and two-stage inference of one
                               1024x1024 image on this machine (random weights; the time does not depend on them)
Not part of the test suite (about half an hour on a 2-core CPU).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402 (benchmarks/machine.py)


def edge_distances(net, frames, config) -> dict:
    """Distance and correlation of G_S and G0 (the trained net's labels) to G(D*) (module docstring)."""
    import numpy as np
    import tensorflow as tf

    from tfdepth.data.refinement_data import inverse_depth
    from tfdepth.ops.edges import edge_representation_tf
    from tfdepth.recipes.sddr import label_options
    from tfdepth.train.self_distillation import coarse_to_fine_labels, refine_fn_from_model

    hw = (config.data.height, config.data.width)
    refine = refine_fn_from_model(net)
    labels = tf.function(lambda low, high: coarse_to_fine_labels(refine, low, high, **label_options(config.loss)))
    rows = {"gs": [], "g0": []}
    for frame in frames:
        low = tf.image.resize(frame["depth_low"][None, :, :, None], hw, method="area")
        high = tf.constant(frame["depth_high"][None, :, :, None])
        out = labels(low, high)
        truth = tf.image.resize(inverse_depth(frame["depth"])[None, :, :, None], hw, method="area")
        g_true = edge_representation_tf(truth).numpy().ravel()
        g_true = g_true / max(float(g_true.max()), 1e-12)
        for key, name in (("g_s", "gs"), ("g_0", "g0")):
            g = out[key].numpy().ravel()
            g = g / max(float(g.max()), 1e-12)
            rows[name].append((float(np.mean(np.abs(g - g_true))), float(np.corrcoef(g, g_true)[0, 1])))
    result = {}
    for name, values in rows.items():
        result[f"edge_distance_{name}"] = float(np.mean([v[0] for v in values]))
        result[f"edge_correlation_{name}"] = float(np.mean([v[1] for v in values]))
    return result


def inference_times(size=1024, runs=3) -> dict:
    """Median seconds of one- and two-stage refinement of one ``size`` x ``size`` image (random weights)."""
    import numpy as np

    from tfdepth.models.sddr import build_sddr_net
    from tfdepth.models.sddr_inference import refine_depth

    net = build_sddr_net()
    rng = np.random.default_rng(0)
    low, high = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
    times = {}
    for mode in ("one_stage", "two_stage"):
        refine_depth(net, low, high, mode=mode, size=size, window_size=size)  # trace and warm up
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            refine_depth(net, low, high, mode=mode, size=size, window_size=size)
            samples.append(time.perf_counter() - start)
        times[f"time_{mode}_{size}_s"] = round(float(np.median(samples)), 3)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "sddr_synthetic.yaml"))
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_sddr"))
    parser.add_argument("--skip-timing", action="store_true", help="no 1024x1024 inference timing")
    parser.add_argument("--reuse-run", action="store_true",
                        help="read the finished run in OUT_DIR/run (its metrics.json) instead of training again")
    parser.add_argument("--edge-frames", type=int, default=8, help="test frames for the edge distances")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    import itertools

    import keras

    import tfdepth.models  # noqa: F401 (registers the classes)
    from tfdepth.config import load_config
    from tfdepth.data.refinement_data import refinement_eval_frames
    from tfdepth.experiment import run_training

    config = load_config(args.config, args.overrides)
    started = time.time()
    run_dir = Path(args.out_dir) / "run"
    if args.reuse_run:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:
        metrics = run_training(config, run_dir, verbose=2)
    keys = ("delta1", "rel", "ord", "d3r", "ord_rank")
    result = {"config": Path(args.config).name, "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs"}
    result.update({name: {k: metrics[name][k] for k in keys} for name in ("base", "one_stage", "two_stage")})
    result["test_frames"] = metrics.get("frames")
    result["train_seconds"] = metrics.get("train_seconds")
    result["train_steps"] = metrics.get("train_steps")
    print(json.dumps({"evaluation": result}), flush=True)

    net = keras.saving.load_model(run_dir / "sddr_net.keras", compile=False)
    frames = itertools.islice(refinement_eval_frames(config.data, config.loss, config.eval.split), args.edge_frames)
    result.update(edge_distances(net, frames, config))
    result["run_seconds"] = round(time.time() - started, 1)
    if not args.skip_timing:
        result.update(inference_times())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
