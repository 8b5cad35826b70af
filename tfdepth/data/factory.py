"""Datasets from a ``DataConfig``: the one place where config values become tf.data pipelines.

``dataset: synthetic`` builds the embedded procedural scenes once into a TFDS dataset under ``data_dir`` (the TFDS
default, ``~/tensorflow_datasets``, when unset) at ``render_height x render_width`` and reuses it; the pipelines
resize to the network size ``height x width`` and scale the intrinsics accordingly.
``dataset: kitti`` reads KITTI raw from ``root`` with Monodepth2 split files (``tfdepth.data.kitti``);
``dataset: folders`` reads a user's videos from ``root/<split>/<video>/`` (``tfdepth.data.folders``).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from tfdepth.data.folders import folder_sequences, scan_folders
from tfdepth.data.kitti import kitti_sequences, read_split_file
from tfdepth.data.pipeline import make_video_dataset, sequences_from_tfds
from tfdepth.data.synthetic import FOREGROUND_CLASS_IDS
from tfdepth.data.synthetic_scenes import build_synthetic, make_config

__all__ = ["DATASETS", "synthetic_builder", "video_dataset", "num_video_samples", "eval_sequences",
           "foreground_class_ids", "steps_per_epoch", "has_depth"]

DATASETS = ("synthetic", "kitti", "folders")
SPLITS = ("train", "validation", "test")


def _check(data_config, split=None):
    if data_config.dataset not in DATASETS:
        raise ValueError(
            f"data.dataset {data_config.dataset!r} is not available; known: {', '.join(DATASETS)}"
        )
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if data_config.dataset != "synthetic" and not data_config.root:
        raise ValueError(f"data.root must be set for data.dataset {data_config.dataset!r}: the KITTI raw root "
                         "(holding 2011_09_26/ ...) or the folder holding train/ validation/ test/ video folders")


def _kitti_split_file(data_config, split):
    key = {"train": "train_split", "validation": "validation_split", "test": "test_split"}[split]
    path = getattr(data_config, key)
    if not path:
        raise ValueError(f"data.{key} must name a Monodepth2 split file for KITTI's {split!r} split "
                         "(e.g. splits/eigen_zhou/train_files.txt; splits/eigen/test_files.txt for testing)")
    return path


def _real_sequences(data_config, split, *, training, evaluation=False):
    """KITTI or folder sequences: triplet elements at the network size, or stored-size frames for evaluation."""
    size = {} if evaluation else {"height": data_config.height, "width": data_config.width}
    if data_config.dataset == "kitti":
        return kitti_sequences(
            data_config.root, _kitti_split_file(data_config, split),
            frame_offsets=(0,) if evaluation else (-1, 0, 1),
            depth=split != "train",  # train steps never read depth; skipping the projection ~3x the throughput
            depth_from=data_config.kitti_depth_from, poses=data_config.kitti_poses,
            segmentation_masks=data_config.segmentation_masks, shuffle=training, seed=data_config.seed, **size)
    return folder_sequences(Path(data_config.root) / split, intrinsics=data_config.intrinsics,
                            depth_scale=data_config.depth_scale, shuffle=training, seed=data_config.seed, **size)


def synthetic_builder(data_config):
    """Prepare (once) and return the TFDS builder of the configured synthetic scenes."""
    _check(data_config)
    tfds_config = make_config(
        data_config.preset,
        data_config.render_height,
        data_config.render_width,
        frames_per_scene=data_config.frames_per_scene,
        num_scenes={
            "train": data_config.train_scenes,
            "validation": data_config.validation_scenes,
            "test": data_config.test_scenes,
        },
    )
    return build_synthetic(tfds_config, data_dir=data_config.data_dir)


def _num_scenes(data_config, split):
    return {"train": data_config.train_scenes, "validation": data_config.validation_scenes,
            "test": data_config.test_scenes}[split]


def num_video_samples(data_config, split) -> int:
    """Triplets (t-1, t, t+1) in a split: F - 2 per scene."""
    _check(data_config, split)
    if data_config.dataset == "kitti":
        return len(read_split_file(_kitti_split_file(data_config, split)))  # one triplet per split line
    if data_config.dataset == "folders":
        videos = scan_folders(Path(data_config.root) / split, intrinsics=data_config.intrinsics)
        return sum(max(0, len(v.frames) - 2) for v in videos)
    return _num_scenes(data_config, split) * max(0, data_config.frames_per_scene - 2)


def steps_per_epoch(data_config, split="train") -> int:
    return max(1, num_video_samples(data_config, split) // data_config.batch_size)


def video_dataset(data_config, split, *, training: bool, map_fn=None, repeat: bool = False):
    """Batched dict dataset of video triplets (augmented and shuffled when ``training``)."""
    _check(data_config, split)
    if data_config.dataset == "synthetic":
        sequences = sequences_from_tfds(synthetic_builder(data_config), split)
    else:
        sequences = _real_sequences(data_config, split, training=training)
    return make_video_dataset(
        sequences,
        batch_size=data_config.batch_size,
        height=data_config.height,
        width=data_config.width,
        shuffle=training,
        flip=training and data_config.flip,
        color_jitter=training and data_config.color_jitter,
        seed=data_config.seed,
        map_fn=map_fn,
        drop_remainder=training,
        repeat=repeat,
    )


def has_depth(data_config, split) -> bool:
    """Whether ``split`` carries ground-truth depth: synthetic always; KITTI for validation/test (Velodyne or the
    camera export); folders when any video of the split has a ``depth/`` file."""
    _check(data_config, split)
    if data_config.dataset == "synthetic":
        return True
    if data_config.dataset == "kitti":
        return split != "train"
    videos = scan_folders(Path(data_config.root) / split, intrinsics=data_config.intrinsics)
    return any(f is not None for v in videos for f in v.depth_files)


def eval_sequences(data_config, split="test"):
    """Numpy per-scene dicts (image uint8 [F,H,W,3], depth [F,H,W], poses [F,4,4], ...) at the stored size."""
    _check(data_config, split)
    if data_config.dataset != "synthetic":
        return tfds.as_numpy(_real_sequences(data_config, split, training=False, evaluation=True))
    builder = synthetic_builder(data_config)
    return tfds.as_numpy(sequences_from_tfds(builder, split))


def foreground_class_ids(data_config):
    """Class ids that make the 2-class segmentation target (SegDepth B.2) for this dataset."""
    _check(data_config)
    if data_config.dataset != "synthetic":
        return (1,)  # SegDepth masks: 1 = foreground (B.2); folders carry no labels (all background)
    return tuple(FOREGROUND_CLASS_IDS)


