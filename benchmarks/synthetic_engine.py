"""Rendering speed of the synthetic scene engine on ONE core (synthetic.md "Determinism and speed": >= 20 frames/s
at 192x640 street with the default 2x2 edge anti-aliasing).

Usage: python benchmarks/synthetic_engine.py [--scenes 3] [--frames 10] [--repeats 3]
Prints one JSON object: frames/s (median and min over repeats) per preset and size, plus the machine load.
Other processes share the CPU: read the load average next to the numbers.
"""

import os

# Pin one thread BEFORE numpy / cv2 are imported (their thread pools read these at import time).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

cv2.setNumThreads(1)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tfdepth.data.synthetic import render_sequence  # noqa: E402

CASES = (("street", 192, 640), ("street", 96, 320), ("room", 480, 640))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, not just one thread
    results = {}
    for preset, height, width in CASES:
        render_sequence(preset, 999, 2, height, width)  # warm-up (imports, allocator, caches)
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for seed in range(args.scenes):
                render_sequence(preset, seed, args.frames, height, width)
            rates.append(args.scenes * args.frames / (time.perf_counter() - start))
        results[f"{preset}_{height}x{width}"] = {
            "frames_per_s_median": round(statistics.median(rates), 2),
            "frames_per_s_min": round(min(rates), 2),
            "frames_per_repeat": args.scenes * args.frames,
        }
    results["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    results["threads"] = 1
    print(json.dumps(results))


if __name__ == "__main__":
    main()
