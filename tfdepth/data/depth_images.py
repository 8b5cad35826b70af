"""Single-image depth datasets for supervised families (RSN): image, metric depth, labels and region targets.

Sources (``data.dataset``):

* ``synthetic``: every frame of the embedded procedural scenes (``data.preset: room`` for indoor scenes), with
  their exact depth and semantic classes (``semantic``).
* ``nyu``: the NYU Depth v2 labeled set, built once from the user's ``nyu_depth_v2_labeled.mat`` into
  ``data.data_dir`` (``python -m tfdepth.data.nyu --manual-dir DIR``; ``tfdepth.data.nyu``). NYU has only the
  official train (795) and test (654) frames: the ``validation`` split reads the test frames, for monitoring only
  (nothing selects models on it).

:func:`depth_image_dataset` gives batches of ``image`` [B,H,W,3] float32 in [0, 1], ``depth`` [B,H,W,1] metres and
the RSN targets of Algorithm 1 (``tfdepth.data.region_support``): ``region_support`` (SD) [B,H,W,1] and
``support_ids`` (SI) int32 [B,H,W,1], computed per sample at the network size after the flip, so they describe
the pixels the network sees. :func:`eval_depth_frames` yields numpy frames at the stored size for evaluation.
"""

from __future__ import annotations

import tensorflow as tf

from tfdepth.data.pipeline import make_frame_dataset, make_sample_dataset, sequences_from_tfds
from tfdepth.data.region_support import add_region_support

__all__ = ["DEPTH_IMAGE_DATASETS", "depth_image_dataset", "num_depth_images", "eval_depth_frames", "nyu_builder"]

DEPTH_IMAGE_DATASETS = ("synthetic", "nyu")
BATCH_KEYS = ("image", "depth", "region_support", "support_ids")
_NYU_SPLITS = {"train": "train", "validation": "test", "test": "test"}


def _check(data_config, split, labels_key=None):
    if data_config.dataset not in DEPTH_IMAGE_DATASETS:
        raise ValueError(f"data.dataset {data_config.dataset!r} has no dense depth with semantic labels; single-image "
                         f"depth families train on {' or '.join(DEPTH_IMAGE_DATASETS)} (README, RSN)")
    if split not in _NYU_SPLITS:
        raise ValueError(f"split must be one of {tuple(_NYU_SPLITS)}, got {split!r}")
    if labels_key is not None and data_config.dataset == "synthetic" and labels_key != "semantic":
        raise ValueError(f"loss.region_labels={labels_key!r} exists only in NYU; the synthetic scenes have 'semantic'")


def nyu_builder(data_config):
    """The prepared NYU builder in ``data.data_dir``; a one-line error saying how to build it when it is not."""
    from tfdepth.data.nyu import NyuDepthV2Labeled  # noqa: PLC0415 (h5py only when NYU is used)

    builder = NyuDepthV2Labeled(data_dir=data_config.data_dir)
    if not builder.is_prepared():
        where = data_config.data_dir or "~/tensorflow_datasets"
        raise FileNotFoundError(
            f"NYU Depth v2 is not built in {where}: put nyu_depth_v2_labeled.mat in a folder and run "
            f"python -m tfdepth.data.nyu --manual-dir FOLDER{' --data-dir ' + data_config.data_dir if data_config.data_dir else ''} "
            "(README, NYU Depth v2)")
    return builder


def _synthetic_builder(data_config):
    from tfdepth.data.factory import synthetic_builder  # noqa: PLC0415

    return synthetic_builder(data_config)


def num_depth_images(data_config, split) -> int:
    """Frames in ``split``."""
    _check(data_config, split)
    if data_config.dataset == "nyu":
        return nyu_builder(data_config).info.splits[_NYU_SPLITS[split]].num_examples
    scenes = {"train": data_config.train_scenes, "validation": data_config.validation_scenes,
              "test": data_config.test_scenes}[split]
    return scenes * data_config.frames_per_scene


def _sample_name(sample):
    if "index" in sample:
        return tf.strings.format("NYU frame {}", sample["index"])
    return tf.strings.format("synthetic scene {} frame {}", (sample["scene_seed"], sample["frame_index"]))


def _targets_fn(labels_key, region_options):
    add = add_region_support(labels_key=labels_key, sample_key="sample", **region_options)

    def fn(sample):
        # The network's input is the augmented image (colour jitter, when on); the targets do not depend on it.
        named = {"image": sample.get("image_aug", sample["image"]), "depth": sample["depth"],
                 labels_key: sample[labels_key], "sample": _sample_name(sample)}
        out = add(named)
        depth = out["depth"]
        return {"image": out["image"], "depth": depth if depth.shape.rank == 3 else depth[..., None],
                "region_support": out["region_support"], "support_ids": out["support_ids"]}

    return fn


def depth_image_dataset(data_config, split, *, training, labels_key="semantic", region_options=None,
                        repeat=False):
    """Batched training dicts (:data:`BATCH_KEYS`, module docstring) of ``split`` at ``data.height x data.width``.

    ``training``: shuffle, horizontal flip (``data.flip``) and colour jitter (``data.color_jitter``), batches of
    ``data.batch_size`` with the remainder dropped. ``region_options``: Algorithm 1's options (``bounds``,
    ``regions``, ``support_ids``, ``num_slabs``).
    """
    _check(data_config, split, labels_key)
    common = dict(batch_size=data_config.batch_size, height=data_config.height, width=data_config.width,
                  shuffle=training, flip=training and data_config.flip,
                  color_jitter=training and data_config.color_jitter, seed=data_config.seed,
                  map_fn=_targets_fn(labels_key, dict(region_options or {})), drop_remainder=training,
                  repeat=repeat, shuffle_buffer=data_config.shuffle_buffer)
    if data_config.dataset == "nyu":
        from tfdepth.data.nyu import nyu_frames  # noqa: PLC0415

        frames = nyu_frames(_NYU_SPLITS[split], nyu_builder(data_config), shuffle=training, seed=data_config.seed)
        return make_sample_dataset(frames, **common)
    return make_frame_dataset(sequences_from_tfds(_synthetic_builder(data_config), split), **common)


def eval_depth_frames(data_config, split="test", labels_key="semantic"):
    """Numpy frames at the stored size: dicts ``image`` float32 [H,W,3] in [0,1], ``depth`` [H,W] metres,
    ``labels`` int [H,W] (``labels_key``) and ``name`` (str)."""
    _check(data_config, split, labels_key)
    if data_config.dataset == "nyu":
        from tfdepth.data.nyu import nyu_frames  # noqa: PLC0415

        frames = nyu_frames(_NYU_SPLITS[split], nyu_builder(data_config))
    else:
        from tfdepth.data.video import frames as scene_frames  # noqa: PLC0415

        frames = scene_frames(sequences_from_tfds(_synthetic_builder(data_config), split))
    frames = frames.map(lambda s: {"image": s["image"], "depth": s["depth"], "labels": s[labels_key],
                                   "name": _sample_name(s)})
    for frame in frames.as_numpy_iterator():
        yield {"image": frame["image"], "depth": frame["depth"].reshape(frame["depth"].shape[:2]),
               "labels": frame["labels"].reshape(frame["labels"].shape[:2]), "name": frame["name"].decode()}
