"""Forward+backward time of tfdepth's gather-based bilinear sampler vs keras.ops.image.map_coordinates.

Both sample a [B, H, W, 3] image at per-pixel (x, y) coordinates with border clamping, inside a tf.function, and
differentiate a scalar loss w.r.t. the image and the coordinates. map_coordinates needs static shapes, so both
functions are traced with fully static input signatures (stack_notes.md, "Bilinear sampling").

    python benchmarks/bilinear_sampler.py [--batch 4 --height 192 --width 640 --repeats 20]

Prints one JSON object: median and min milliseconds per forward+backward for each sampler (ours also under XLA,
``jit_compile=True``), the speed-up of ours (plain tf.function) over map_coordinates, and the
largest difference between the two samplers' outputs (a correctness cross-check).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdepth.geometry import bilinear_sample  # noqa: E402


def _map_coordinates_sample(image, coords):
    """The same sampling through keras.ops.image.map_coordinates on the 4-D image (b, y, x, c index arrays)."""
    B, H, W, C = image.shape
    b = tf.broadcast_to(tf.reshape(tf.range(B, dtype=coords.dtype), [B, 1, 1, 1]), [B, H, W, C])
    c = tf.broadcast_to(tf.reshape(tf.range(C, dtype=coords.dtype), [1, 1, 1, C]), [B, H, W, C])
    # Clamp first, as the border mode does; "nearest" fill then never triggers but keeps the ends exact.
    x = tf.broadcast_to(tf.clip_by_value(coords[..., 0:1], 0.0, W - 1.0), [B, H, W, C])
    y = tf.broadcast_to(tf.clip_by_value(coords[..., 1:2], 0.0, H - 1.0), [B, H, W, C])
    return keras.ops.image.map_coordinates(image, tf.stack([b, y, x, c]), order=1, fill_mode="nearest")


def _step_fn(sampler, shape, jit_compile=False):
    B, H, W, C = shape
    spec = [tf.TensorSpec([B, H, W, C], tf.float32), tf.TensorSpec([B, H, W, 2], tf.float32)]

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def step(image, coords):
        with tf.GradientTape() as tape:
            tape.watch([image, coords])
            loss = tf.reduce_mean(tf.square(sampler(image, coords)))
        grads = tape.gradient(loss, [image, coords])
        return loss, grads

    return step


def _time(step, args, repeats, warmup=3):
    for _ in range(warmup):
        out = step(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = step(*args)
        _ = [g.numpy() for g in out[1]]  # force completion
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.min(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    shape = (args.batch, args.height, args.width, 3)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(0, 1, shape).astype(np.float32))
    # A plausible warp field: the pixel grid plus a few pixels of flow, some of it leaving the image.
    grid = np.stack(np.meshgrid(np.arange(args.width), np.arange(args.height), indexing="xy"), -1)
    flow = rng.normal(0, 4, (args.batch, args.height, args.width, 2))
    coords = tf.constant((grid[None] + flow).astype(np.float32))

    ours = _step_fn(bilinear_sample, shape)
    ours_xla = _step_fn(bilinear_sample, shape, jit_compile=True)
    keras_mc = _step_fn(_map_coordinates_sample, shape)
    diff = float(tf.reduce_max(tf.abs(bilinear_sample(image, coords) - _map_coordinates_sample(image, coords))))
    ours_med, ours_min = _time(ours, (image, coords), args.repeats)
    xla_med, xla_min = _time(ours_xla, (image, coords), args.repeats)
    keras_med, keras_min = _time(keras_mc, (image, coords), args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "bilinear_sampler_forward_backward",
                "shape": list(shape),
                "repeats": args.repeats,
                "tfdepth_gather_ms": {"median": round(ours_med, 2), "min": round(ours_min, 2)},
                "tfdepth_gather_xla_ms": {"median": round(xla_med, 2), "min": round(xla_min, 2)},
                "keras_map_coordinates_ms": {"median": round(keras_med, 2), "min": round(keras_min, 2)},
                "speedup_median": round(keras_med / ours_med, 2),
                "max_abs_output_difference": diff,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
