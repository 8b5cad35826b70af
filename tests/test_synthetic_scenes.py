"""Tests for the synthetic_scenes TFDS builder: offline build, exact content, disjoint splits, determinism."""

import os
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfdepth.data import pipeline
from tfdepth.data import synthetic_scenes as S
from tfdepth.data.synthetic import CLASS_NAMES, render_sequence, split_seeds
from tfdepth.data.video import SEQUENCE_KEYS, sequence_signature

F, H, W = 3, 32, 96


def _no_network(*args, **kwargs):
    raise AssertionError("building synthetic_scenes must not touch the network")


@pytest.fixture(scope="module")
def config():
    return S.make_config("street", H, W, frames_per_scene=F, num_scenes=2)


@pytest.fixture(scope="module")
def builder(tmp_path_factory, config):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        return S.build_synthetic(config, tmp_path_factory.mktemp("tfds"), num_workers=1)


def _examples(builder, split):
    return list(pipeline.sequences_from_tfds(builder, split).as_numpy_iterator())


def test_build_has_splits_features_and_metadata(builder):
    assert builder.is_prepared()
    assert {s: builder.info.splits[s].num_examples for s in S.SPLITS} == {"train": 2, "validation": 2, "test": 2}
    ds = pipeline.sequences_from_tfds(builder, "train")
    assert ds.element_spec == sequence_signature(F, H, W)
    assert list(builder.info.metadata["class_names"]) == list(CLASS_NAMES)
    assert builder.info.metadata["preset"] == "street"


def test_examples_equal_the_engine_output_and_splits_are_disjoint(builder):
    seen = {}
    for split in S.SPLITS:
        examples = _examples(builder, split)
        seen[split] = {int(e["seed"]) for e in examples}
        assert seen[split] == set(split_seeds(split, 2))
        for e in examples:
            ref = render_sequence("street", int(e["seed"]), F, H, W)
            for k in SEQUENCE_KEYS[:-1]:  # PNG and zlib are lossless: bit-exact
                np.testing.assert_array_equal(e[k], ref[k], err_msg=k)
    assert not seen["train"] & seen["validation"]
    assert not seen["train"] & seen["test"]
    assert not seen["validation"] & seen["test"]


def test_parallel_build_writes_identical_files(builder, config, tmp_path):
    other = S.build_synthetic(config, tmp_path, num_workers=2)
    files = sorted(p.name for p in builder.data_path.glob("*.tfrecord*"))
    assert files and files == sorted(p.name for p in other.data_path.glob("*.tfrecord*"))
    for name in files:
        assert (builder.data_path / name).read_bytes() == (other.data_path / name).read_bytes(), name


def test_prepared_build_is_reused(builder, config):
    records = sorted(builder.data_path.glob("*.tfrecord*"))
    stamps = [os.stat(p).st_mtime_ns for p in records]
    again = S.build_synthetic(config, builder.data_dir_root)
    assert again.data_path == builder.data_path
    assert [os.stat(p).st_mtime_ns for p in records] == stamps


def test_tfds_sequences_feed_the_video_pipeline(builder):
    batches = list(pipeline.make_video_dataset(pipeline.sequences_from_tfds(builder, "validation"), batch_size=1,
                                               flip=True, color_jitter=True, seed=1))
    assert len(batches) == 2  # 2 scenes x (F - 2) triplets
    assert batches[0]["image_aug"].shape == (1, H, W, 3)
    assert batches[0]["intrinsics"].shape == (1, 3, 3)


def test_predefined_configs():
    configs = {c.name: c for c in S.SyntheticScenes.BUILDER_CONFIGS}
    assert {"street", "street_96x320", "room", "room_120x160"} <= set(configs)
    assert (configs["street"].height, configs["street"].width) == (192, 640)
    assert (configs["street_96x320"].height, configs["street_96x320"].width) == (96, 320)
    assert (configs["room"].preset, configs["room"].height, configs["room"].width) == ("room", 240, 320)
    for c in configs.values():
        assert c.frames_per_scene >= 3 and c.num_scenes["train"] > c.num_scenes["validation"] > 0


def test_make_config_names_and_validation():
    a = S.make_config("room", 60, 80, num_scenes={"train": 3})
    assert a.num_scenes == {"train": 3, "validation": 0, "test": 0}
    assert a.name != S.make_config("room", 60, 80, num_scenes={"train": 4}).name
    assert a.name != S.make_config("room", 60, 80, num_scenes={"train": 3}, supersample=1).name
    with pytest.raises(ValueError, match="frames_per_scene"):
        S.make_config("street", 32, 96, frames_per_scene=2, num_scenes=1)
    with pytest.raises(ValueError, match="preset"):
        S.make_config("forest", 32, 96, num_scenes=1)
    with pytest.raises(ValueError, match="unknown splits"):
        S.make_config("street", 32, 96, num_scenes={"val": 1})
    with pytest.raises(ValueError, match="at least one scene"):
        S.make_config("street", 32, 96, num_scenes=0)
    with pytest.raises(ValueError, match="height"):
        S.make_config("street", 0, 96, num_scenes=1)


def test_bad_names_and_splits_raise_value_errors(builder, tmp_path):
    with pytest.raises(ValueError, match="predefined"):
        S.build_synthetic("street_1x1", tmp_path)
    with pytest.raises(ValueError, match="build_synthetic"):
        pipeline.sequences_from_tfds("synthetic_scenes/street_1x1", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="available"):
        pipeline.sequences_from_tfds(builder, "training")
    with pytest.raises(ValueError, match="num_workers"):
        S.SyntheticScenes(config="street", data_dir=tmp_path, num_workers=0)


class ManualOnlyScenes(tfds.core.GeneratorBasedBuilder):
    """A builder whose data must be supplied by hand (like KITTI): preparing it without the files fails."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"x": np.int64}))

    def _split_generators(self, dl_manager):
        raise FileNotFoundError("manual files not found")

    def _generate_examples(self):
        yield 0, {"x": 0}


def test_unbuilt_dataset_that_cannot_be_prepared_gives_value_error(tmp_path):
    with pytest.raises(ValueError, match="could not be prepared"):
        pipeline.sequences_from_tfds(ManualOnlyScenes(data_dir=tmp_path), "train")


_WAITING_BUILD = """
import json, sys
sys.path.insert(0, {root!r})
from tfdepth.data import synthetic_scenes as S
config = S.make_config("street", {h}, {w}, frames_per_scene={f}, num_scenes=2)
print("ready", flush=True)
builder = S.build_synthetic(config, {data_dir!r}, num_workers=1)
print(json.dumps({{s: builder.info.splits[s].num_examples for s in S.SPLITS}}), flush=True)
"""


def test_concurrent_preparation_waits_for_the_first_and_reuses_its_files(config, tmp_path):
    """Two processes preparing one dataset (two runs started together): the second waits on the lock, then reads
    the first one's files with their splits (without the lock TFDS's temporary directories clash:
    ``NotFoundError: Failed to finalize writing of split``)."""
    import fcntl
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tfdepth.data.tfds_prepare import lock_path

    first = S.SyntheticScenes(config=config, data_dir=tmp_path, num_workers=1)
    lock = lock_path(first)
    lock.parent.mkdir(parents=True, exist_ok=True)
    script = _WAITING_BUILD.format(root=str(Path(__file__).resolve().parents[1]), h=H, w=W, f=F,
                                   data_dir=str(tmp_path))
    with open(lock, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # this process is "the first": it holds the lock
        second = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert second.stdout.readline().strip() == "ready"
        time.sleep(2.0)  # the second process is now blocked on the lock, its dataset not prepared
        assert second.poll() is None
        first.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        records = sorted(first.data_path.glob("*.tfrecord*"))
        stamps = [os.stat(p).st_mtime_ns for p in records]
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == '{"train": 2, "validation": 2, "test": 2}'
    assert records and [os.stat(p).st_mtime_ns for p in records] == stamps  # read, not rebuilt
