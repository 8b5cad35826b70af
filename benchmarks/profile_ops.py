"""Where the time goes: per-op-type time of one ``benchmarks/speed.py`` row, TensorFlow and PyTorch side by side.

    python benchmarks/profile_ops.py selfsup_depth_infer [--runs 5] [--top 15] [--threads 2]
    python benchmarks/profile_ops.py selfsup_train_step --runs 3
    python benchmarks/profile_ops.py selfsup_depth_infer --backend bf16 --skip-torch   # mixed_bfloat16 (oneDNN)

TensorFlow: the row's ``tf.function`` (inference rows: the network's forward pass; ``*_train_step`` rows: the
trainer's Keras train function) runs ``--runs`` times under ``tf.profiler.experimental`` after a warm-up; the
trace's per-op events (``tf_op`` stats of the host plane, read from the written ``.xplane.pb`` with the XSpace
proto) are summed by op type; kernels on the two inter-op threads overlap, so the sum can exceed the wall time. PyTorch: ``torch.profiler`` over the same number of calls of the reference
(``benchmarks/torch_*.py``), ``key_averages()`` by op name (self CPU time). Prints one JSON object with the top
``--top`` op types of each: total ms per call and share of the measured op time.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAPPERS = {"Process", "Run", "PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf"}
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def tensorflow_profile(name: str, runs: int, threads: int, backend: str = "function") -> dict:
    """Per-op-type ms per call of row ``name``; ``backend``: ``function`` (float32) or ``bf16`` (mixed_bfloat16)."""
    import speed_rows

    tf = speed_rows._tf(threads)  # noqa: SLF001
    if name.endswith("_train_step"):
        trainer, batch = speed_rows.trainer_for(name, backend)
        run_once = speed_rows.step_timer(trainer, batch)
    else:
        net, inputs = speed_rows.network(name, "mixed_bfloat16" if backend == "bf16" else "float32")
        run_once = speed_rows.backend_runner(net, inputs, backend)
    run_once()
    run_once()
    with tempfile.TemporaryDirectory(prefix="tfdepth_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(runs):
            run_once()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        return _op_times(path, runs)


def _op_times(path: str, runs: int) -> dict:
    """Per-op-type milliseconds per call from an XSpace file: events of the host threads' TF op lines."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    totals = defaultdict(float)
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if "tf_op" in line.name.lower() or "TraceMe" in line.name:
                continue
            for event in line.events:
                label = names.get(event.metadata_id, "")
                if ":" not in label:  # TF kernels are named "<node name>:<OpType>"
                    continue
                op = label.rsplit(":", 1)[1].strip()
                if not op.isidentifier() or op.startswith("__") or op in WRAPPERS:
                    continue  # function calls and executor spans enclose the kernels: counting them counts twice
                totals[op] += event.duration_ps / 1e9 / runs  # ms per call
    return dict(totals)


def torch_profile(name: str, runs: int, threads: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    family = {"selfsup": "torch_monodepth2", "rsn": "torch_rsn", "sddr": "torch_sddr"}[name.split("_")[0]]
    module = __import__(family)
    kwargs = {"selfsup_train_step": {"batch": 2}, "rsn_train_step": {"height": 240, "width": 320, "batch": 1},
              "sddr_train_step": {"height": 512, "width": 512, "batch": 2}}.get(name, {})
    run_once, _ = module.make(name, **kwargs)
    run_once()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            run_once()
    return {e.key: e.self_cpu_time_total / 1e3 / runs for e in prof.key_averages()}


def top(times: dict, n: int) -> list:
    total = sum(times.values()) or 1.0
    rows = sorted(times.items(), key=lambda kv: -kv[1])[:n]
    return [{"op": k, "ms_per_call": round(v, 2), "share": round(v / total, 3)} for k, v in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--backend", choices=("function", "bf16"), default="function",
                        help="TensorFlow side: float32 tf.function, or the same under mixed_bfloat16")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = {"row": args.row, "backend": args.backend, "runs": args.runs, "threads": args.threads}
    tf_times = tensorflow_profile(args.row, args.runs, args.threads, args.backend)
    result["tensorflow_total_op_ms_per_call"] = round(sum(tf_times.values()), 1)
    result["tensorflow_top"] = top(tf_times, args.top)
    if not args.skip_torch:
        try:
            torch_times = torch_profile(args.row, args.runs, args.threads)
            result["pytorch_total_op_ms_per_call"] = round(sum(torch_times.values()), 1)
            result["pytorch_top"] = top(torch_times, args.top)
        except ImportError:
            result["pytorch_top"] = "PyTorch is not installed"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
