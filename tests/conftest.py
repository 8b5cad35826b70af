"""Shared test set-up.

Two logical CPU devices are configured before any TensorFlow op runs, so distribution tests can build
``MirroredStrategy(["/cpu:0", "/cpu:1"])`` (stack_notes.md: this must happen first). Everything else runs on
the default device as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import types

import numpy as np
import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError as err:  # TensorFlow was initialised before this file ran: distribution tests cannot work
    raise RuntimeError("tests/conftest.py must configure the logical CPUs before any TensorFlow op runs") from err


# The suite runs on 2 xdist workers (pyproject.toml: --dist loadgroup --no-loadscope-reorder). Each file is one
# work unit, except that the files sharing the session fixture ``trained_run`` (a real train.py run) form one unit,
# so it is built once. Units are handed out in collection order, and the files that take 30 s or more (measured
# alone, 2026-12-01) come first, so that no worker is left with a long file at the end (longest first).
_LONG_FILES = ("test_self_supervised.py", "test_runs.py", "test_cli.py", "test_train_rsn.py", "test_export.py",
               "test_readme_api.py", "test_precision.py", "test_models_sddr.py", "test_refine.py",
               "test_train_sddr.py", "test_speed_backends.py")
_SHARED_RUN_FILES = ("test_runs.py", "test_cli.py")  # both use trained_run


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group markers into the node ids
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("trained_run" if name in _SHARED_RUN_FILES else name))


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the 2 logical CPUs for the whole session.

    Several strategy objects in one process hand out colliding collective-instance keys (synchronized
    BatchNorm all-reduces then fail with "Shape mismatch in the collective instance"), so every
    distribution test shares this one.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def xnnpack_coverage(tmp_path):
    """``coverage(model, shape)``: XNNPACK partitions of a one-input ``model`` converted to TFLite at the fixed
    input ``shape`` through tfdepth.export's path (``TFLiteModel.xnnpack()``: partitions, ops left outside)."""
    from tfdepth.export.saved_model import write_saved_model
    from tfdepth.export.tflite import TFLiteModel, convert

    def coverage(model, shape, name="model"):
        functions = {"serving_default": (lambda d: {"y": model(d["x"])},
                                         {"x": tf.TensorSpec(shape, tf.float32, name="x")})}
        write_saved_model(functions, model, tmp_path / name / "saved_model")
        return TFLiteModel(convert(tmp_path / name / "saved_model")).xnnpack()

    return coverage


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------- shared helpers
# Used by several test files through the fixtures below (test files never import from each other).

VIDEO_H, VIDEO_W = 64, 192


def make_video_batch(seed=0, batch=2, static_camera=False, segmentation=False, H=VIDEO_H, W=VIDEO_W):
    """A batch of (t-1, t, t+1) triplets rendered by the synthetic engine at H x W."""
    from tfdepth.data.synthetic import render_sequence
    from tfdepth.train.targets import segmentation_targets_fn

    samples = []
    for b in range(batch):
        seq = render_sequence("street", seed + b, 3, H, W, static_camera=static_camera)
        images = seq["image"].astype(np.float32) / 255.0
        sample = {
            "image": images[1],
            "image_prev": images[0],
            "image_next": images[2],
            "intrinsics": seq["intrinsics"].astype(np.float32),
            "depth": seq["depth"][1][..., None],
            "semantic": seq["semantic"][1].astype(np.int32),
            "instance": seq["instance"][1].astype(np.int32),
        }
        samples.append(sample)
    out = {k: tf.constant(np.stack([s[k] for s in samples])) for k in samples[0]}
    if segmentation:
        from tfdepth.data.synthetic import FOREGROUND_CLASS_IDS

        fn = segmentation_targets_fn(FOREGROUND_CLASS_IDS)
        per = [fn({k: v[i] for k, v in out.items()}) for i in range(batch)]
        out["seg_mask"] = tf.stack([p["seg_mask"] for p in per])
        out["seg_weight"] = tf.stack([p["seg_weight"] for p in per])
    return out


@pytest.fixture
def video_batch():
    """``video_batch(seed=0, batch=2, static_camera=False, segmentation=False)``: synthetic triplet batches."""
    return make_video_batch


RESNET_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


def torchvision_shapes(depth, in_channels=3):
    """torch state_dict key -> shape for torchvision resnet{depth} (without fc), from the architecture."""
    kind, blocks = RESNET_BLOCKS[depth]
    exp = 1 if kind == "basic" else 4
    shapes = {"conv1.weight": (64, in_channels, 7, 7)}

    def bn(prefix, c):
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{field}"] = (c,)

    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for i in range(n):
            p = f"layer{stage}.{i}"
            stride = 2 if (i == 0 and stage > 1) else 1
            if kind == "basic":
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            else:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for j, (o, c, k) in enumerate(convs, start=1):
                shapes[f"{p}.conv{j}.weight"] = (o, c, k, k)
                bn(f"{p}.bn{j}", o)
            if stride != 1 or inplanes != planes * exp:
                shapes[f"{p}.downsample.0.weight"] = (planes * exp, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    return shapes


def random_state_dict(rng, depth, in_channels=3):
    sd = {}
    for key, shape in torchvision_shapes(depth, in_channels).items():
        if key.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        elif key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith(".weight"):
            sd[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            sd[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    return sd


def write_npz(path, sd, extra=True):
    arrays = dict(sd)
    if extra:  # present in real torchvision checkpoints; must be ignored by the loader
        arrays["fc.weight"] = np.zeros((1000, 512), np.float32)
        arrays["fc.bias"] = np.zeros((1000,), np.float32)
        arrays["bn1.num_batches_tracked"] = np.array(7)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def torchvision_resnet():
    """Random torchvision-layout ResNet state dicts: ``.shapes(depth)``, ``.random_state_dict(rng, depth)``,
    ``.write_npz(path, sd)``."""
    return types.SimpleNamespace(shapes=torchvision_shapes, random_state_dict=random_state_dict, write_npz=write_npz)


# ------------------------------------------------------------------------------------------- a tiny trained run
# Overrides that make train.py run in seconds: 64x192 renders and network input, 2+1+1 scenes, batch 2.
TINY_RUN = [
    "data.render_height=64", "data.render_width=192", "data.height=64", "data.width=192",
    "data.train_scenes=2", "data.validation_scenes=1", "data.test_scenes=1", "data.frames_per_scene=5",
    "data.batch_size=2", "train.validation_steps=1", "train.epochs=1",
]


def tiny_run_args(run_dir, data_dir, *extra):
    """train.py arguments for a tiny synthetic run into ``run_dir`` (datasets cached under ``data_dir``)."""
    args = ["--run-dir", str(run_dir), "--set", f"data.data_dir={data_dir}"]
    for item in TINY_RUN + list(extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """One TFDS directory for every tiny run of the session (the synthetic set is built once)."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data_dir):
    """A finished 2-step run of train.py (config.yaml, run.json, checkpoints, networks, metrics.json)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import train  # noqa: PLC0415

    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert train.main(tiny_run_args(run_dir, tiny_data_dir) + ["--steps", "2"]) == 0
    return run_dir


@pytest.fixture(scope="session")
def tiny_run():
    """``tiny_run.args(run_dir, data_dir, *overrides)``: train.py arguments for a tiny synthetic run."""
    return types.SimpleNamespace(args=tiny_run_args, overrides=list(TINY_RUN))


# ------------------------------------------------------------------------------------------ NYU fixture .mat
def nyu_fixture_frames(n=5, seed=0, H=6, W=8):
    """Random NYU-like frames (uint8 RGB, depth 0.7-9.5 m, a few raw labels) of H x W for fixture .mat files."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.5, (n, H, W)).astype(np.float32)
    labels = rng.choice(np.array([0, 4, 5, 11, 21, 157], np.uint16), (n, H, W))
    return images, depths, labels


def write_nyu_mat(path, images, depths, labels, skip=(), label_hw=None):
    """The labeled .mat as MATLAB v7.3 writes it: HDF5 after a 512-byte text header, axes reversed."""
    import h5py  # noqa: PLC0415

    with h5py.File(path, "w", userblock_size=512) as f:
        if "images" not in skip:
            f["images"] = images.transpose(0, 3, 2, 1)  # [N, H, W, 3] -> [N, 3, W, H]
        if "depths" not in skip:
            f["depths"] = depths.transpose(0, 2, 1)  # [N, H, W] -> [N, W, H]
        if "labels" not in skip:
            lab = labels if label_hw is None else labels[:, :label_hw[0], :label_hw[1]]
            f["labels"] = np.ascontiguousarray(lab.transpose(0, 2, 1))
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: tfdepth test HDF5 schema 1.00 .")
    return path
