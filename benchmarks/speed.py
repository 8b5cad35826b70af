"""Speed of every family beside its PyTorch reference, in one run on one machine (issue "Speed").

    python benchmarks/speed.py                        # every row and backend (about 40-60 min on 2 cores)
    python benchmarks/speed.py --only selfsup_depth_infer --backend function pytorch
    python benchmarks/speed.py --only peak selfsup_depth_infer --rounds 3   # noisy host: each fastest of 3
    python benchmarks/speed.py --list                 # rows, backends, sizes

Prints one JSON object per line and row/backend: ``name``, ``backend``, ``median_ms``, ``min_ms``, ``runs``,
``threads``, ``cpu_model``, ``peak_rss_mb`` (the peak resident memory of the process that ran the row: each row and
backend runs in its own process, and TFLite and PyTorch processes never import TensorFlow), ``gflops`` and
``gflops_per_s`` where the FLOP count is known, and row-specific fields. A backend that cannot run here (no
PyTorch, no bf16 in the CPU) prints ``{"name", "backend", "skipped": "<why>"}``; a failure prints ``"error"``.

Rows (sizes as the issue names them; ``--list`` prints them):

* ``peak``: the machine's matmul rate (2048 x 2048, float32; bf16 where the CPU has AVX512-BF16 or AMX) in
  GFLOP/s: the practical limit each row's ``gflops_per_s`` is compared with (``share_of_peak`` in the summary).
* ``selfsup_depth_infer`` (ResNet18 depth net, 192x640, batch 1 -> the four disparities), ``selfsup_pose_infer``
  (pose net, two stacked frames), ``selfsup_train_step`` (192x640, batch 2, three frames, the default recipe's
  full loss at four scales, Adam step).
* ``rsn_infer`` (480x640, the faithful widths: generation + 3 refinement iterations; 6.4 TFLOP, over a minute per
  image on 2 cores), ``rsn_train_step`` (240x320, batch 1, the joint end-to-end stage: both modules, their two
  optimizers; a quarter of the pixels so the row takes minutes, not an hour).
* ``sddr_one_stage`` (N_r at 1024x1024), ``sddr_one_stage_2048`` (the paper's size: does it fit in memory),
  ``sddr_two_stage`` (1024x1024 output: the whole-image pass, then 2x2 and 3x3 windows at 1024), ``sddr_train_step``
  (supervised stage, 512x512, batch 2).
* ``pipeline_selfsup``: batches/s of the default config's tf.data training pipeline, beside the default config's
  training step time in the same process (``pipeline_over_step``: how many times faster the input is).
* ``engine_render``: synthetic street frames rendered per second on one core.

Backends: ``function`` (``tf.function``, TensorFlow's default kernels for this CPU), ``onednn`` (the same with
``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow turns oneDNN on by default only on CPUs with AVX-512 VNNI/BF16 or AMX, so
on others this backend says what it is worth), ``xla`` (``jit_compile=True``), ``tflite_fp32`` / ``tflite_fp16`` /
``tflite_int8`` (LiteRT with XNNPACK; int8 = full integer, calibrated on synthetic frames), ``bf16`` (Keras
``mixed_bfloat16`` on oneDNN), ``folded`` / ``folded_bf16`` (``tfdepth.export.fold_model``: the network as one
constant graph with BatchNorm folded into the convolutions, float32 or bf16 throughout), ``pytorch`` (the reference in ``benchmarks/torch_*.py``, same sizes and thread
count), ``numpy`` (the engine). Timing: ``--warmup`` untimed calls (tracing, allocation), then ``--runs`` timed
calls, each blocking until its result exists; median and min. Weights are random with trained-like non-zero biases
and BatchNorm statistics (``speed_rows.trained_like``: Grappler removes an all-zero bias, which changes fusion).

Threads: ``--threads`` (default: the CPUs this process may use) for TensorFlow's intra-op pool, LiteRT and
``torch.set_num_threads``; TensorFlow's inter-op pool gets the same number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# row -> (backends, default timed runs, one-line description)
ROWS = {
    "peak": (("function", "numpy", "bf16", "pytorch"), 10, "2048x2048 matmul, GFLOP/s"),
    "selfsup_depth_infer": (("function", "onednn", "xla", "tflite_fp32", "tflite_fp16", "tflite_int8", "bf16", "folded",
                             "folded_bf16", "pytorch"), 20,
                            "Monodepth2 ResNet18 depth net, 192x640, batch 1"),
    "selfsup_pose_infer": (("function", "xla", "tflite_fp32", "folded", "folded_bf16", "pytorch"), 20,
                           "Monodepth2 ResNet18 pose net, two frames 192x640, batch 1"),
    "selfsup_train_step": (("function", "onednn", "xla", "bf16", "pytorch"), 6,
                           "Monodepth2 training step, 192x640, batch 2, 3 frames, 4 scales, Adam"),
    "rsn_infer": (("function", "xla", "tflite_fp32", "bf16", "folded", "folded_bf16", "pytorch"), 2,
                  "RSN (ResNet34 generation + 3 refinement iterations), 480x640, batch 1"),
    "rsn_train_step": (("function", "onednn", "pytorch"), 2,
                       "RSN joint stage step, 240x320, batch 1, two SGD optimizers (480x640 is 6.4 TFLOP per image)"),
    "sddr_one_stage": (("function", "onednn", "xla", "tflite_fp32", "folded", "folded_bf16", "pytorch"), 8, "SDDR N_r one-stage, 1024x1024"),
    "sddr_one_stage_2048": (("function",), 2, "SDDR N_r one-stage, 2048x2048 (the paper's size)"),
    "sddr_two_stage": (("function",), 3, "SDDR two-stage on a 1024x1024 image (1 + 4 + 9 passes at 1024)"),
    "sddr_train_step": (("function", "onednn", "pytorch"), 4, "SDDR supervised step (L_gt), 512x512, batch 2, AdamW"),
    "pipeline_selfsup": (("function",), 40, "default config tf.data training batches (8 x 64x192 triplets)"),
    "engine_render": (("numpy",), 5, "synthetic street frames 192x640 on one core"),
}
TORCH_MODULES = {"selfsup": "torch_monodepth2", "rsn": "torch_rsn", "sddr": "torch_sddr"}
WORKER_TIMEOUT_S = 3600


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # Linux: kilobytes


def bf16_support() -> str | None:
    """None when the CPU has bf16 matmul units (AVX512-BF16 or AMX-BF16), else why not."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "no /proc/cpuinfo flags to tell bf16 support"
    have = {f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()}
    return None if have else "this CPU has neither AVX512-BF16 nor AMX-BF16 (bf16 would be emulated, not measured)"


def time_calls(run_once, runs: int, warmup: int) -> dict:
    """Median and min of ``runs`` timed calls after ``warmup`` untimed ones (each call blocks on its result)."""
    for _ in range(warmup):
        run_once()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run_once()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    mid = len(seconds) // 2
    median = seconds[mid] if len(seconds) % 2 else 0.5 * (seconds[mid - 1] + seconds[mid])
    return {"median_ms": round(1e3 * median, 3), "min_ms": round(1e3 * seconds[0], 3), "runs": runs}


# ------------------------------------------------------------------------------------------------ workers
def run_pytorch(name: str, runs: int, warmup: int, threads: int) -> dict:
    try:
        import torch
    except ImportError:
        return {"skipped": "PyTorch is not installed (optional: pip install torch==2.13.0)"}
    torch.set_num_threads(threads)
    if name == "peak":
        n = 2048
        a, b = torch.rand(n, n), torch.rand(n, n)
        timing = time_calls(lambda: torch.mm(a, b), runs, warmup)
        return {**timing, "gflops": round(2 * n**3 / 1e9, 3), "dtype": "float32", "torch": torch.__version__}
    family = name.split("_")[0]
    if family not in TORCH_MODULES or name.endswith("_2048") or name == "sddr_two_stage":
        return {"skipped": f"no PyTorch reference for {name}"}
    sys.path.insert(0, str(HERE))
    module = __import__(TORCH_MODULES[family])
    if name not in module.ROWS:
        return {"skipped": f"no PyTorch reference for {name}"}
    kwargs = {"selfsup_train_step": {"batch": 2}, "rsn_train_step": {"height": 240, "width": 320, "batch": 1},
              "sddr_train_step": {"height": 512, "width": 512, "batch": 2}}.get(name, {})
    run_once, info = module.make(name, **kwargs)
    timing = time_calls(run_once, runs, warmup)
    return {**timing, "parameters": info["parameters"], "reference": info["description"], "torch": torch.__version__}


def run_tflite(name: str, backend: str, runs: int, warmup: int, threads: int, workdir: Path) -> dict:
    """Convert in a separate process (TensorFlow), then time here with LiteRT only (honest peak memory)."""
    quantize = {"tflite_fp32": "none", "tflite_fp16": "float16", "tflite_int8": "int8"}[backend]
    path = workdir / f"{name}_{quantize}.tflite"
    meta_path = path.with_suffix(".json")
    cmd = [sys.executable, str(Path(__file__)), "--convert", name, quantize, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"conversion failed: {_last_line(done.stderr)}")
    meta = json.loads(meta_path.read_text())
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    rng = np.random.default_rng(0)
    inputs = {key: rng.uniform(0, 1, d["shape"]).astype(np.float32) for key, d in runner.get_input_details().items()}
    timing = time_calls(lambda: runner(**inputs), runs, warmup)
    return {**timing, **meta, "file_mb": round(path.stat().st_size / 2**20, 1)}


def worker(name: str, backend: str, runs: int, warmup: int, threads: int) -> dict:
    if backend == "pytorch":
        return run_pytorch(name, runs, warmup, threads)
    if backend.startswith("tflite_"):
        with tempfile.TemporaryDirectory(prefix="tfdepth_speed_") as tmp:
            return run_tflite(name, backend, runs, warmup, threads, Path(tmp))
    if backend in ("bf16", "folded_bf16") and bf16_support():
        return {"skipped": bf16_support()}
    if name == "engine_render" or (name == "peak" and backend == "numpy"):
        sys.path.insert(0, str(HERE))
        import speed_rows

        if name == "peak":
            return speed_rows.peak_row(backend, runs, warmup, threads, time_calls)
        return speed_rows.engine_render(runs, warmup, time_calls)
    sys.path.insert(0, str(HERE))
    from speed_rows import tensorflow_row  # imports TensorFlow

    result = tensorflow_row(name, "function" if backend == "onednn" else backend, runs, warmup, threads, time_calls)
    return {**result, "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default)")}


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else "no message"


def spawn(name: str, backend: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--worker", name, backend, "--threads", str(args.threads),
           "--warmup", str(args.warmup)]
    if args.runs:
        cmd += ["--runs", str(args.runs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    if backend == "onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"  # read when TensorFlow loads: a process of its own
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"name": name, "backend": backend, "error": f"timed out after {WORKER_TIMEOUT_S} s"}
    wall = round(time.perf_counter() - start, 1)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines and "error" in json.loads(lines[-1]):  # the worker's own one-line report of its exception
        return {**json.loads(lines[-1]), "process_seconds": wall}
    if done.returncode != 0 or not lines:
        return {"name": name, "backend": backend, "error": _last_line(done.stderr), "process_seconds": wall}
    return {**json.loads(lines[-1]), "process_seconds": wall}


def fill_gflops(results: list[dict]) -> None:
    """PyTorch rows run the same network as the TensorFlow row of their name: take its FLOP count."""
    counts = {r["name"]: r["gflops"] for r in results if r.get("gflops") and r.get("backend") != "pytorch"}
    for r in results:
        if "median_ms" in r and not r.get("gflops") and r["name"] in counts and r["name"] != "peak":
            r["gflops"] = counts[r["name"]]
            r["gflops_per_s"] = round(r["gflops"] / (r["median_ms"] / 1e3), 2)


def best_of_rounds(results: list[dict]) -> dict:
    """{(row, backend): the timed result of its fastest round (lowest median)}, each with ``round_medians_ms``.

    With ``--rounds N`` every row and backend runs N times, round-robin over the whole list, so that a burst of
    interference (a noisy neighbour on a shared host, a frequency drop) hits one round of a row and not all of
    them; the least disturbed round of each is the one compared (ratios, share of peak)."""
    best = {}
    for r in results:
        if "median_ms" not in r:
            continue
        key = (r["name"], r["backend"])
        medians = best[key]["round_medians_ms"] + [r["median_ms"]] if key in best else [r["median_ms"]]
        if key not in best or r["median_ms"] < best[key]["median_ms"]:
            best[key] = dict(r)
        best[key]["round_medians_ms"] = medians
    return best


def summarize(results: list[dict]) -> dict:
    """Ratios in this run: each row's backends over PyTorch's time, and GFLOP/s over the fp32 ``peak`` (with
    several rounds, each row and backend by its fastest round: :func:`best_of_rounds`)."""
    timed = best_of_rounds(results)
    fp32_peaks = [r["gflops_per_s"] for (name, backend), r in timed.items() if name == "peak" and backend != "bf16"]
    peak = max(fp32_peaks) if fp32_peaks else None  # the best fp32 GEMM of any library in this run
    out = {"peak_fp32_gflops_per_s": peak} if peak else {}
    for (name, backend), r in timed.items():
        entry = {}
        ref = timed.get((name, "pytorch"))
        if ref and backend != "pytorch":
            entry["over_pytorch_median"] = round(r["median_ms"] / ref["median_ms"], 3)
            entry["over_pytorch_min"] = round(r["min_ms"] / ref["min_ms"], 3)
            if "peak_rss_mb" in r and "peak_rss_mb" in ref:
                entry["memory_over_pytorch"] = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 3)
        if peak and r.get("gflops_per_s") and name != "peak":
            entry["share_of_peak_fp32"] = round(r["gflops_per_s"] / peak, 3)
        if entry:
            out[f"{name}/{backend}"] = entry
    one, two = timed.get(("sddr_one_stage", "function")), timed.get(("sddr_two_stage", "function"))
    if one and two:
        out["sddr_two_stage_over_one_stage"] = round(two["median_ms"] / one["median_ms"], 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="rows to run (default: all)")
    parser.add_argument("--backend", nargs="+", metavar="B", help="backends to run (default: each row's all)")
    parser.add_argument("--runs", type=int, default=None, help="timed calls per row (default: per row)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (tracing, allocation)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole list N times, round-robin; the summary compares each row's fastest "
                             "round (for shared or noisy machines)")
    parser.add_argument("--output", help="also append the JSON lines to this file")
    parser.add_argument("--list", action="store_true", help="print the rows and their backends, then exit")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--convert", nargs=3, metavar=("NAME", "QUANTIZE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.warmup < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--threads, --warmup and --runs must be >= 1 (the first call traces)")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.convert:
        sys.path.insert(0, str(HERE))
        from speed_rows import convert_tflite

        convert_tflite(*args.convert)
        return 0
    if args.worker:
        name, backend = args.worker
        runs = args.runs or ROWS[name][1]
        from machine import cpu_model

        try:
            result = worker(name, backend, runs, args.warmup, args.threads)
        except Exception as err:  # noqa: BLE001 (reported as the row's error line, the run goes on)
            print(json.dumps({"name": name, "backend": backend, "error": f"{type(err).__name__}: {err}"[:600]}))
            return 1
        base = {"name": name, "backend": backend}
        if "skipped" not in result:
            base.update(threads=args.threads, cpu_model=cpu_model(), peak_rss_mb=peak_rss_mb())
            if result.get("gflops") and result.get("median_ms"):
                result["gflops_per_s"] = round(result["gflops"] / (result["median_ms"] / 1e3), 2)
        print(json.dumps({**base, **result}))
        return 0
    if args.list:
        for name, (backends, runs, what) in ROWS.items():
            print(f"{name:22s} {what}\n{'':22s} backends: {', '.join(backends)}; runs: {runs}")
        return 0
    names = args.only or list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"--only: unknown rows {unknown}; known: {', '.join(ROWS)}")
    known_backends = {b for backends, _, _ in ROWS.values() for b in backends}
    bad = [b for b in (args.backend or []) if b not in known_backends]
    if bad:
        parser.error(f"--backend: unknown {bad}; known: {', '.join(sorted(known_backends))}")
    sink = open(args.output, "a", encoding="utf-8") if args.output else None  # noqa: SIM115 (closed below)
    results = []
    try:
        todo = [(name, backend) for name in names for backend in ROWS[name][0]
                if not args.backend or backend in args.backend]
        for round_index in range(args.rounds):
            for name, backend in todo:
                result = spawn(name, backend, args)
                if args.rounds > 1:
                    result["round"] = round_index + 1
                results.append(result)
                fill_gflops(results)
                line = json.dumps(result)
                print(line, flush=True)
                if sink:
                    sink.write(line + "\n")
                    sink.flush()
        summary = {"name": "summary", "ratios": summarize(results), "load_average_1_5_15": os.getloadavg(),
                   "date": time.strftime("%Y-%m-%d")}
        if args.rounds > 1:
            summary["rounds"] = args.rounds
            summary["best_round_medians_ms"] = {f"{n}/{b}": {"best": r["median_ms"], "all": r["round_medians_ms"]}
                                                for (n, b), r in best_of_rounds(results).items()}
        print(json.dumps(summary), flush=True)
        if sink:
            sink.write(json.dumps(summary) + "\n")
    finally:
        if sink:
            sink.close()
    return 0 if not any("error" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
