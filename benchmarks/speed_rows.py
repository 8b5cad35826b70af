"""The TensorFlow side of ``benchmarks/speed.py``: each row's network or step, per backend, and its FLOP count.

Imported only by the worker processes of ``speed.py`` (one row and backend per process). Networks are built as a
user gets them (``tfdepth.models.build_model`` from the family's config; trainers from the family's recipe), with
random weights. FLOPs: TensorFlow's graph profiler on the frozen forward graph at the row's shapes (2 per
multiply-add; ops without a registered FLOP statistic, e.g. gathers and element-wise ops, count 0, so it is a
floor: the ResNet18 depth net at 192x640 comes to 16.05 GFLOP, the figure the issue quotes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from batches import street_triplets  # benchmarks/batches.py

ROOT = Path(__file__).resolve().parents[1]
SELFSUP_HW = (192, 640)
RSN_HW = (480, 640)
RSN_TRAIN_HW = (240, 320)
SDDR_HW = {"sddr_one_stage": (1024, 1024), "sddr_one_stage_2048": (2048, 2048), "sddr_two_stage": (1024, 1024)}
SDDR_TRAIN_HW = (512, 512)
SDDR_TWO_STAGE_PASSES = 1 + 4 + 9  # the whole image, then 2x2 and 3x3 windows (DEFAULT_STEPS)
INFER_ROWS = ("selfsup_depth_infer", "selfsup_pose_infer", "rsn_infer", "sddr_one_stage", "sddr_one_stage_2048")


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _tf(threads: int | None = None):
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _config(path, overrides=()):
    from tfdepth.config import load_config

    return load_config(str(ROOT / "configs" / path), list(overrides))


def trained_like(net, seed: int = 0):
    """Give ``net`` non-zero biases and BatchNorm statistics, as a trained network has (in place; returns it).

    Speed does not depend on the values, with one exception this avoids: Grappler deletes the addition of a bias
    that is all zeros (a fresh network's), and then a folded graph's conv + bias + ELU no longer fuse (measured:
    the folded bf16 depth net 27 ms with zero decoder biases, 21 ms with trained-like ones)."""
    import keras

    rng = np.random.default_rng(seed)

    def visit(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.1, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.1, c))
        elif hasattr(layer, "bias") and getattr(layer, "use_bias", False) and layer.bias is not None:
            layer.bias.assign(rng.normal(0.0, 0.05, layer.bias.shape))
        for child in layer._layers if hasattr(layer, "_layers") else ():  # noqa: SLF001 (nested layers and models)
            visit(child)

    visit(net)
    return net


def network(name: str, precision: str = "float32"):
    """(Keras network, {input name: numpy array}) of an inference row, built under the ``precision`` policy, with
    random trained-like weights (:func:`trained_like`)."""
    net, inputs = _network(name, precision)
    return trained_like(net), inputs


def _network(name: str, precision: str):
    from tfdepth.models import build_model
    from tfdepth.recipes.base import precision_policy

    rng = np.random.default_rng(0)
    with precision_policy(precision):
        if name.startswith("selfsup"):
            h, w = SELFSUP_HW
            nets = build_model(_config("default.yaml", [f"data.height={h}", f"data.width={w}"]).model)
            if name == "selfsup_depth_infer":
                return nets["depth"], {"image": rng.uniform(0, 1, (1, h, w, 3)).astype(np.float32)}
            return nets["pose"], {"frames": rng.uniform(0, 1, (1, h, w, 6)).astype(np.float32)}
        if name == "rsn_infer":
            h, w = RSN_HW
            nets = build_model(_config("rsn_nyu.yaml").model)
            return nets["rsn"], {"image": rng.uniform(0, 1, (1, h, w, 3)).astype(np.float32)}
        if name in SDDR_HW:
            h, w = SDDR_HW[name]
            net = build_model({"name": "sddr"})["sddr"]
            return net, {k: rng.uniform(0, 1, (1, h, w, 1)).astype(np.float32) for k in ("depth_low", "depth_high")}
    raise KeyError(f"{name} is not an inference row")


def _forward(net):
    """The row's forward pass: ``net`` in inference mode on one tensor or a dict of them (``_as_input``)."""
    return lambda x: net(x, training=False)


def _as_input(inputs):
    return next(iter(inputs.values())) if len(inputs) == 1 else inputs


def forward_gflops(net, inputs) -> float:
    """Profiler FLOPs (GFLOP) of one forward pass at the inputs' shapes (module docstring)."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, tf.float32), _as_input(inputs))
    fn = tf.function(_forward(net)).get_concrete_function(spec)
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = convert_variables_to_constants_v2(fn).graph
    return round(model_analyzer.profile(graph, options=options).total_float_ops / 1e9, 3)


def _block(outputs):
    """Wait for (and touch) every output: host copies of the results, as a caller would read them."""
    tf = _tf()
    for value in tf.nest.flatten(outputs):
        value.numpy()


# ------------------------------------------------------------------------------------------------ backends
TF_BACKENDS = ("function", "xla", "bf16", "folded", "folded_bf16")
FOLDED_DTYPES = {"folded": "float32", "folded_bf16": "bfloat16"}  # tfdepth.export.folding
TFLITE_BACKENDS = {"tflite_fp32": "none", "tflite_fp16": "float16", "tflite_int8": "int8"}


def tflite_content(net, inputs, quantize: str, calibration=None) -> bytes:
    """``.tflite`` bytes of ``net`` at the fixed shapes of ``inputs`` (float32 in, the network's dict out), through
    the library's SavedModel writer and converter (``tfdepth.export``); ``calibration``: input dicts for int8."""
    import tempfile

    tf = _tf()
    from tfdepth.export.saved_model import write_saved_model
    from tfdepth.export.tflite import convert

    specs = {k: tf.TensorSpec(v.shape, tf.float32, name=k) for k, v in inputs.items()}
    single = next(iter(specs)) if len(specs) == 1 else None
    call = (lambda d: net(d[single], training=False)) if single else (lambda d: net(d, training=False))
    representative = None
    if quantize == "int8":
        if not calibration:
            raise ValueError("full int8 needs calibration inputs (a list of input dicts at the export shapes)")
        representative = lambda: (("serving_default", dict(c)) for c in calibration)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="tfdepth_speed_sm_") as tmp:
        saved = write_saved_model({"serving_default": (call, specs)}, net, Path(tmp) / "model")
        return convert(saved, quantize, representative=representative)


def backend_runner(net, inputs, backend: str, *, threads=None, content=None):
    """A zero-argument call running ``net`` on ``inputs`` (numpy, fixed shapes) with ``backend``; returns the
    outputs as numpy by name. TF backends: ``net`` built under the backend's precision (bf16: mixed_bfloat16).
    TFLite backends: ``content`` from :func:`tflite_content` (LiteRT with XNNPACK on ``threads``). ``folded`` /
    ``folded_bf16``: ``tfdepth.export.fold_model`` of the float32 ``net`` (BatchNorm folded, constant weights)."""
    if backend in TFLITE_BACKENDS:
        from tfdepth.export.tflite import TFLiteModel

        model = TFLiteModel(content, num_threads=threads)
        return lambda: model("serving_default", **inputs)
    if backend not in TF_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    tf = _tf()
    x = tf.nest.map_structure(tf.constant, _as_input(inputs))
    if backend in FOLDED_DTYPES:
        from tfdepth.export.folding import fold_model

        folded = fold_model(net, FOLDED_DTYPES[backend])
        return lambda: {k: np.asarray(v) for k, v in folded(x).items()}
    fn = tf.function(_forward(net), jit_compile=(backend == "xla"))
    return lambda: {k: np.asarray(tf.cast(v, tf.float32)) for k, v in fn(x).items()}


# ------------------------------------------------------------------------------------------------ inference rows
def infer_row(name, backend, runs, warmup, threads, time_calls) -> dict:
    _tf(threads)
    precision = "mixed_bfloat16" if backend == "bf16" else "float32"
    net, inputs = network(name, precision)
    if backend in FOLDED_DTYPES:
        precision = FOLDED_DTYPES[backend] + " (folded)"
    timing = time_calls(backend_runner(net, inputs, backend), runs, warmup)
    rss = peak_rss_mb()  # before the FLOP count, whose frozen graph copy is not part of inference
    return {**timing, "peak_rss_mb": rss, "gflops": forward_gflops(net, inputs), "parameters": int(net.count_params()),
            "precision": precision}


def sddr_two_stage_row(runs, warmup, threads, time_calls) -> dict:
    _tf(threads)
    from tfdepth.models.sddr_inference import refine_depth

    net, inputs = network("sddr_two_stage")
    h, w = SDDR_HW["sddr_two_stage"]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    low = (0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)  # a smooth scene-like base map
    high = low + 0.02 * np.random.default_rng(0).standard_normal((h, w)).astype(np.float32)
    timing = time_calls(lambda: refine_depth(net, low, high, mode="two_stage", size=h, window_size=h), runs, warmup)
    rss = peak_rss_mb()
    gflops = forward_gflops(net, inputs) * SDDR_TWO_STAGE_PASSES
    return {**timing, "peak_rss_mb": rss, "gflops": round(gflops, 3), "network_passes": SDDR_TWO_STAGE_PASSES,
            "parameters": int(net.count_params())}


# ------------------------------------------------------------------------------------------------ training rows
def _rsn_batch(batch_size, height, width, seed=0):
    """Random RSN batch: image, metric depth 0.5-10 m, support ids on 8x8 cells (0 = no region), support depth."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 17, (batch_size, height // 8 + 1, width // 8 + 1))
    ids = np.repeat(np.repeat(ids, 8, 1), 8, 2)[:, :height, :width, None].astype(np.int32)
    support = rng.uniform(0.5, 10.0, (batch_size, 17))[np.arange(batch_size)[:, None, None, None], ids]
    return {"image": rng.uniform(0, 1, (batch_size, height, width, 3)).astype(np.float32),
            "depth": rng.uniform(0.5, 10.0, (batch_size, height, width, 1)).astype(np.float32),
            "region_support": support.astype(np.float32), "support_ids": ids}


def _sddr_batch(batch_size, height, width, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch_size, height, width, 1)
    return {"depth_low": rng.uniform(0, 1, shape).astype(np.float32),
            "depth_high": rng.uniform(0, 1, shape).astype(np.float32),
            "target": rng.uniform(0.05, 1, shape).astype(np.float32),
            "mask": (rng.uniform(0, 1, shape) < 0.9).astype(np.float32)}


def trainer_for(name, backend):
    """(compiled trainer, numpy batch) of a training row; bf16 = ``train.precision=mixed_bfloat16``."""
    precision = [f"train.precision={'mixed_bfloat16' if backend == 'bf16' else 'float32'}"]
    if name == "selfsup_train_step":
        from tfdepth.recipes.monodepth import build_trainer

        h, w = SELFSUP_HW
        config = _config("default.yaml", [f"data.height={h}", f"data.width={w}", "data.batch_size=2", *precision])
        return build_trainer(config, total_steps=1000), street_triplets(2, h, w)
    if name == "rsn_train_step":
        from tfdepth.recipes.rsn import build_trainer

        h, w = RSN_TRAIN_HW
        config = _config("rsn_nyu.yaml", [f"data.height={h}", f"data.width={w}", "data.batch_size=1", *precision])
        return build_trainer(config, stage="joint", total_steps=1000), _rsn_batch(1, h, w)
    if name == "sddr_train_step":
        from tfdepth.recipes.sddr import build_trainer

        h, w = SDDR_TRAIN_HW
        config = _config("sddr_gpu.yaml", [f"data.height={h}", f"data.width={w}", "data.batch_size=2", *precision])
        return build_trainer(config, stage="supervised", total_steps=1000), _sddr_batch(2, h, w)
    raise KeyError(f"{name} is not a training row")


def step_timer(trainer, batch, jit_compile=False):
    """A zero-argument call running one optimizer step of ``trainer`` on ``batch`` (Keras' own train function)."""
    tf = _tf()
    trainer.jit_compile = bool(jit_compile)
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trainer.make_train_function()  # Keras 3 stores it as trainer.train_function
    train_function = trainer.train_function

    def run_once():
        logs = train_function(iterator)
        return float(logs["loss"])  # blocks until the step is done

    return run_once


def train_row(name, backend, runs, warmup, threads, time_calls) -> dict:
    _tf(threads)
    trainer, batch = trainer_for(name, backend)
    run_once = step_timer(trainer, batch, jit_compile=(backend == "xla"))
    losses = []
    timing = time_calls(lambda: losses.append(run_once()), runs, warmup)
    params = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)
    return {**timing, "parameters": params, "first_loss": losses[0], "last_loss": losses[-1],
            "batch": int(next(iter(batch.values())).shape[0])}


# ------------------------------------------------------------------------------------------------ other rows
def pipeline_row(runs, warmup, threads, time_calls) -> dict:
    """Batches of the default config's training pipeline, then that config's training step, in one process."""
    _tf(threads)
    from tfdepth.recipes.monodepth import MonodepthRecipe, trainer_from_config

    config = _config("default.yaml")
    iterator = iter(MonodepthRecipe().datasets(config).train)
    batch = next(iterator)  # builds / opens the TFDS scenes (not timed)
    timing = time_calls(lambda: _block(next(iterator)), runs, warmup)
    trainer = trainer_from_config(config, 1000, monitor=False)
    step = time_calls(step_timer(trainer, {k: v.numpy() for k, v in batch.items()}), 5, 2)
    return {**timing, "batches_per_s": round(1e3 / timing["median_ms"], 2), "batch": config.data.batch_size,
            "hw": [config.data.height, config.data.width], "train_step_median_ms": step["median_ms"],
            "train_step_min_ms": step["min_ms"], "pipeline_over_step": round(step["median_ms"] / timing["median_ms"], 2)}


def engine_render(runs, warmup, time_calls) -> dict:
    """Synthetic street frames per second at 192x640 on ONE core (pinned before numpy/cv2 start their pools)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import cv2

    cv2.setNumThreads(1)
    from tfdepth.data.synthetic import render_sequence

    frames = 10
    seeds = iter(range(10**6))
    h, w = SELFSUP_HW
    timing = time_calls(lambda: render_sequence("street", next(seeds), frames, h, w), runs, warmup)
    per_frame = {k: round(v / frames, 3) for k, v in timing.items() if k.endswith("_ms")}
    return {**per_frame, "runs": runs, "unit": "per frame", "frames_per_s": round(1e3 / per_frame["median_ms"], 2),
            "threads": 1, "hw": list(SELFSUP_HW)}


def peak_row(backend, runs, warmup, threads, time_calls) -> dict:
    n = 2048
    if backend == "numpy":  # OpenBLAS (numpy's wheel): often the fastest fp32 GEMM on the machine
        os.environ["OPENBLAS_NUM_THREADS"] = str(threads)  # read when numpy loads OpenBLAS in this fresh process
        rng = np.random.default_rng(0)
        a = rng.uniform(0, 1, (n, n)).astype(np.float32)
        timing = time_calls(lambda: a @ a.T, runs, warmup)
        return {**timing, "gflops": round(2 * n**3 / 1e9, 3), "dtype": "float32", "blas": "numpy (OpenBLAS)"}
    tf = _tf(threads)
    dtype = tf.bfloat16 if backend == "bf16" else tf.float32
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    timing = time_calls(lambda: mm(a, b).numpy(), runs, warmup)
    return {**timing, "gflops": round(2 * n**3 / 1e9, 3), "dtype": dtype.name}


def tensorflow_row(name, backend, runs, warmup, threads, time_calls) -> dict:
    if name == "peak":
        return peak_row(backend, runs, warmup, threads, time_calls)
    if name in INFER_ROWS:
        return infer_row(name, backend, runs, warmup, threads, time_calls)
    if name == "sddr_two_stage":
        return sddr_two_stage_row(runs, warmup, threads, time_calls)
    if name.endswith("_train_step"):
        return train_row(name, backend, runs, warmup, threads, time_calls)
    if name == "pipeline_selfsup":
        return pipeline_row(runs, warmup, threads, time_calls)
    raise KeyError(f"unknown row {name}")


# ------------------------------------------------------------------------------------------------ TFLite
def _street_frames(count, height, width):
    from tfdepth.data.synthetic import render_sequence

    frames = [render_sequence("street", 100 + s, 2, height, width)["image"] for s in range(count // 2 + 1)]
    return np.concatenate(frames)[:count].astype(np.float32) / 255.0


def convert_tflite(name: str, quantize: str, path: str) -> None:
    """Write ``path`` (.tflite of the row's network at its fixed size, float32 inputs) and ``path``.json (meta)."""
    from tfdepth.export.tflite import TFLiteModel

    net, inputs = network(name)
    calibration = None
    if quantize == "int8":
        if name != "selfsup_depth_infer":
            raise ValueError(f"full int8 calibration is written for selfsup_depth_infer only, not {name}")
        calibration = [{"image": f[None]} for f in _street_frames(8, *SELFSUP_HW)]
    content = tflite_content(net, inputs, quantize, calibration)
    Path(path).write_bytes(content)
    coverage = TFLiteModel(content).xnnpack()
    meta = {"gflops": forward_gflops(net, inputs), "quantize": quantize, "parameters": int(net.count_params()),
            "xnnpack_compute_partitions": coverage["compute_partitions"],
            "outside_xnnpack": coverage["not_delegated"]}
    Path(path).with_suffix(".json").write_text(json.dumps(meta))
