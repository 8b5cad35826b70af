"""tf.data pipelines: scene sources (TFDS or direct rendering) -> triplets / frames -> augment -> batches.

Sources yield one element per scene (``tfdepth.data.video.SEQUENCE_KEYS``); ``make_video_dataset`` and
``make_frame_dataset`` turn them into batched training dicts:

    sequences -> [shuffle scenes] -> triplets (uint8) -> [shuffle samples] -> [repeat] -> float32
              -> [resize] -> flip / colour jitter (stateless, one seed per sample) -> [map_fn] -> batch -> prefetch

Why this order: samples are shuffled while still uint8 (4x smaller than float32 frames; a 64-sample buffer of
192x640 triplets with labels is about 140 MB), and scenes are shuffled before the flat-map so consecutive
triplets of one scene are spread out. Augmentation seeds come from ``tf.data.Dataset.random(seed,
rerandomize_each_iteration=True)`` zipped with the samples: a fixed ``seed`` gives the same batches every time
the pipeline is built, each epoch draws new augmentations, and parallel ``map`` calls stay deterministic.
The ``*_aug`` images always exist (equal to the originals without colour jitter), so trainers can read them
unconditionally (networks see ``*_aug``, losses the originals; spec monodepth_seg.md A.1).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfdepth.data import augment
from tfdepth.data.tfds_prepare import prepare_once
from tfdepth.data.video import (
    SEQUENCE_KEYS,
    check_sequences,
    finalize_sample,
    frames,
    raw_frames,
    raw_triplets,
    scene_element,
    sequence_signature,
    video_triplets,
)

__all__ = [
    "SEQUENCE_KEYS",
    "frames",
    "make_frame_dataset",
    "make_sample_dataset",
    "make_video_dataset",
    "sequences_from_render",
    "sequences_from_tfds",
    "video_triplets",
]

AUTOTUNE = tf.data.AUTOTUNE


def _positive_int(value, name, fn_name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn_name}: `{name}` must be a positive int, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------------------- sources
def sequences_from_render(preset, seeds, frames_per_scene, height, width, **render_options) -> tf.data.Dataset:
    """Scenes rendered on the fly by ``tfdepth.data.synthetic.render_sequence`` (generator-backed).

    Same element structure and dtypes as the ``synthetic_scenes`` TFDS examples, for tests and quick use
    (rendering happens in the input pipeline, once per iteration). ``render_options`` go to ``render_sequence``
    (e.g. ``supersample``, ``moving_objects``).
    """
    from tfdepth.data.synthetic import PRESETS, render_sequence

    fn = "sequences_from_render"
    if preset not in PRESETS:
        raise ValueError(f"{fn}: `preset` must be one of {PRESETS}, got {preset!r}.")
    frames_per_scene = _positive_int(frames_per_scene, "frames_per_scene", fn)
    height = _positive_int(height, "height", fn)
    width = _positive_int(width, "width", fn)
    seeds = [int(s) for s in np.atleast_1d(np.asarray(seeds))]
    if not seeds or min(seeds) < 0:
        raise ValueError(f"{fn}: `seeds` must be a non-empty list of ints >= 0, got {seeds!r}.")

    def generate():
        for seed in seeds:
            out = render_sequence(preset, seed, frames_per_scene, height, width, **render_options)
            yield scene_element(out, seed)

    signature = sequence_signature(frames_per_scene, height, width)
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def sequences_from_tfds(builder_or_name, split, data_dir=None) -> tf.data.Dataset:
    """Scenes of a prepared TFDS dataset (e.g. ``"synthetic_scenes/street_96x320"`` or a builder instance).

    A ``synthetic_scenes`` config that is not built yet is built now (offline, see ``build_synthetic``); if
    preparing is impossible (e.g. a real dataset whose manual files are missing) a ValueError says what to do.
    """
    import tensorflow_datasets as tfds

    fn = "sequences_from_tfds"
    if isinstance(builder_or_name, str):
        if builder_or_name.split("/")[0] == "synthetic_scenes":
            import tfdepth.data.synthetic_scenes  # noqa: F401  (registers the builder with TFDS)
        try:
            builder = tfds.builder(builder_or_name, data_dir=data_dir)
        except Exception as err:  # DatasetNotFoundError, unknown config (ValueError), ...
            raise ValueError(
                f"{fn}: cannot open TFDS dataset {builder_or_name!r}: {err}. A custom synthetic_scenes config has "
                "no registered name: pass the builder returned by build_synthetic(make_config(...)) instead."
            ) from err
    elif isinstance(builder_or_name, tfds.core.DatasetBuilder):
        builder = builder_or_name
    else:
        raise TypeError(
            f"{fn}: `builder_or_name` must be a TFDS name like 'synthetic_scenes/street_96x320' or a "
            f"DatasetBuilder, got {type(builder_or_name).__name__}."
        )
    if not builder.is_prepared():
        try:
            prepare_once(builder, tfds.download.DownloadConfig(try_download_gcs=False))
        except Exception as err:
            raise ValueError(
                f"{fn}: TFDS dataset {builder.info.full_name!r} is not built under {builder.data_dir!s} and "
                f"could not be prepared ({type(err).__name__}: {err}). Build it first (synthetic data: "
                "tfdepth.data.synthetic_scenes.build_synthetic(config, data_dir); real data: put the files in "
                "the builder's manual_dir) or pass the data_dir where it was built."
            ) from err
    splits = list(builder.info.splits)
    if split not in splits:
        raise ValueError(f"{fn}: split {split!r} is not in {builder.info.full_name!r}; available: {splits}.")
    ds = builder.as_dataset(split=split, shuffle_files=False)
    missing = [k for k in SEQUENCE_KEYS if k not in ds.element_spec]
    if missing:
        raise ValueError(
            f"{fn}: {builder.info.full_name!r} is not a per-scene video dataset (missing features {missing})."
        )
    return ds.map(lambda e: {k: e[k] for k in SEQUENCE_KEYS})


# ----------------------------------------------------------------------------------------------- pipelines
def _check_pipeline_args(fn, sequences, batch_size, height, width, seed, map_fn, shuffle_buffer):
    check_sequences(sequences, fn, min_frames=3 if fn == "make_video_dataset" else 1)
    _positive_int(batch_size, "batch_size", fn)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: `seed` must be an int >= 0, got {seed!r}.")
    _positive_int(shuffle_buffer, "shuffle_buffer", fn)
    if (height is None) != (width is None):
        raise ValueError(f"{fn}: give both `height` and `width` to resize, or neither (got {height}, {width}).")
    if height is not None:
        _positive_int(height, "height", fn)
        _positive_int(width, "width", fn)
    if map_fn is not None and not callable(map_fn):
        raise TypeError(f"{fn}: `map_fn` must be a callable sample -> sample, got {type(map_fn).__name__}.")


def _build(samples_raw, *, batch_size, height, width, shuffle, flip, color_jitter, seed, map_fn,
           drop_remainder, repeat, shuffle_buffer, image_keys):
    seed = int(seed)
    ds = samples_raw
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(finalize_sample, num_parallel_calls=AUTOTUNE)
    if height is not None:
        ds = ds.map(lambda s: augment.resize(s, int(height), int(width)), num_parallel_calls=AUTOTUNE)

    def augment_sample(sample, raw_seed):
        # One independent stateless stream per op, all derived from this sample's seed.
        op_seeds = tf.random.experimental.stateless_split(raw_seed, 2)
        if flip:
            sample = augment.random_flip(sample, op_seeds[0])
        if color_jitter:
            sample = augment.color_jitter(sample, op_seeds[1], image_keys=image_keys)
        return augment.add_aug_copies(sample, image_keys)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(augment_sample, num_parallel_calls=AUTOTUNE)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE)


def _scene_shuffle(sequences, shuffle, shuffle_buffer, seed):
    # A few whole scenes (uint8) in the buffer: cheap, and it spreads one scene's consecutive samples apart.
    if not shuffle:
        return sequences
    return sequences.shuffle(max(2, shuffle_buffer // 8), seed=int(seed) + 1, reshuffle_each_iteration=True)


def make_video_dataset(sequences, *, batch_size, height=None, width=None, shuffle=False, flip=False,
                       color_jitter=False, seed=0, map_fn=None, drop_remainder=True, repeat=False,
                       shuffle_buffer=64) -> tf.data.Dataset:
    """Batched video triplets for self-supervised training (Monodepth2 frames [0, -1, +1], spec A.1).

    Each batch holds the ``video_triplets`` keys batched (``intrinsics`` [B, 3, 3], ``pose_*`` [B, 4, 4]) plus
    ``image_aug``, ``image_prev_aug``, ``image_next_aug``. ``height``/``width`` resize every sample (intrinsics
    rescaled); ``flip`` and ``color_jitter`` apply Monodepth2's p = 0.5 augmentations; ``map_fn(sample) ->
    sample`` runs after augmentation (e.g. to add segmentation masks from the flipped labels).
    """
    fn = "make_video_dataset"
    _check_pipeline_args(fn, sequences, batch_size, height, width, seed, map_fn, shuffle_buffer)
    raw = raw_triplets(_scene_shuffle(sequences, shuffle, shuffle_buffer, seed))
    return _build(raw, batch_size=batch_size, height=height, width=width, shuffle=shuffle,
                  flip=flip, color_jitter=color_jitter, seed=seed, map_fn=map_fn, drop_remainder=drop_remainder,
                  repeat=repeat, shuffle_buffer=shuffle_buffer, image_keys=augment.IMAGE_KEYS)


def make_frame_dataset(sequences, *, batch_size, height=None, width=None, shuffle=False, flip=False,
                       color_jitter=False, seed=0, map_fn=None, drop_remainder=True, repeat=False,
                       shuffle_buffer=64) -> tf.data.Dataset:
    """Batched single frames (``image``, ``image_aug``, ``depth``, ``semantic``, ``instance``, ``intrinsics``,
    ``scene_seed``, ``frame_index``) for supervised training and evaluation; arguments as ``make_video_dataset``.
    """
    fn = "make_frame_dataset"
    _check_pipeline_args(fn, sequences, batch_size, height, width, seed, map_fn, shuffle_buffer)
    raw = raw_frames(_scene_shuffle(sequences, shuffle, shuffle_buffer, seed))
    return _build(raw, batch_size=batch_size, height=height, width=width, shuffle=shuffle,
                  flip=flip, color_jitter=color_jitter, seed=seed, map_fn=map_fn, drop_remainder=drop_remainder,
                  repeat=repeat, shuffle_buffer=shuffle_buffer, image_keys=("image",))


def make_sample_dataset(samples, *, batch_size, height=None, width=None, shuffle=False, flip=False,
                        color_jitter=False, seed=0, map_fn=None, drop_remainder=True, repeat=False,
                        shuffle_buffer=64) -> tf.data.Dataset:
    """Batched single-image samples from an unbatched dataset of sample dicts (e.g. NYU frames) that already
    hold ``image`` and ``depth`` (uint8 or float images; labels any integer type); arguments as
    ``make_frame_dataset``. The same shuffle / resize / augment / batch stages as the scene pipelines."""
    fn = "make_sample_dataset"
    if not isinstance(samples, tf.data.Dataset) or not isinstance(samples.element_spec, dict):
        raise TypeError(f"{fn}: `samples` must be a tf.data.Dataset of sample dicts.")
    missing = [k for k in ("image", "depth") if k not in samples.element_spec]
    if missing:
        raise ValueError(f"{fn}: samples need `image` and `depth`; missing {missing}.")
    _positive_int(batch_size, "batch_size", fn)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: `seed` must be an int >= 0, got {seed!r}.")
    if (height is None) != (width is None):
        raise ValueError(f"{fn}: give both `height` and `width` to resize, or neither (got {height}, {width}).")
    return _build(samples, batch_size=batch_size, height=height, width=width, shuffle=shuffle, flip=flip,
                  color_jitter=color_jitter, seed=seed, map_fn=map_fn, drop_remainder=drop_remainder,
                  repeat=repeat, shuffle_buffer=shuffle_buffer, image_keys=("image",))
