"""Per-scene sequences -> per-frame samples: video triplets (t-1, t, t+1) and single frames.

A *sequence* element (one scene, as the ``synthetic_scenes`` TFDS examples and ``sequences_from_render``) is
``image uint8 [F, H, W, 3]``, ``depth float32 [F, H, W]``, ``semantic [F, H, W]``, ``instance int32 [F, H, W]``,
``intrinsics float32 [3, 3]``, ``poses float64 [F, 4, 4]`` (``T_world_from_cam``) and ``seed int64``.

Relative poses follow ``tfdepth.geometry``: ``pose_prev = T_prev_from_t = inv(T_world_from_prev) @
T_world_from_t`` maps frame-t camera points into the previous camera, i.e. it is the ``T_source_from_target``
that ``inverse_warp(image_prev, depth, pose_prev, K)`` needs to re-render frame t. They are computed in float64
from the world poses (street scenes travel tens of metres, where float32 world translations lose millimetres)
and cast to float32 afterwards.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfdepth.geometry import relative_pose

SEQUENCE_KEYS = ("image", "depth", "semantic", "instance", "intrinsics", "poses", "seed")


def scene_element(scene: dict, seed: int) -> dict:
    """A rendered scene (``render_sequence`` output) in the storage dtypes of a per-scene element."""
    return {
        "image": np.asarray(scene["image"], np.uint8),
        "depth": np.asarray(scene["depth"], np.float32),
        "semantic": np.asarray(scene["semantic"], np.uint8),
        "instance": np.asarray(scene["instance"], np.int32),
        "intrinsics": np.asarray(scene["intrinsics"], np.float32),
        "poses": np.asarray(scene["poses"], np.float64),
        "seed": np.int64(seed),
    }


def sequence_signature(frames, height, width) -> dict:
    """``tf.TensorSpec`` dict of one sequence element (``None`` allowed for unknown sizes)."""
    return {
        "image": tf.TensorSpec([frames, height, width, 3], tf.uint8),
        "depth": tf.TensorSpec([frames, height, width], tf.float32),
        "semantic": tf.TensorSpec([frames, height, width], tf.uint8),
        "instance": tf.TensorSpec([frames, height, width], tf.int32),
        "intrinsics": tf.TensorSpec([3, 3], tf.float32),
        "poses": tf.TensorSpec([frames, 4, 4], tf.float64),
        "seed": tf.TensorSpec([], tf.int64),
    }


def check_sequences(sequences, fn_name: str, min_frames: int = 1) -> None:
    """Raise a clear error unless ``sequences`` is a ``tf.data.Dataset`` of sequence dicts."""
    if not isinstance(sequences, tf.data.Dataset):
        raise TypeError(
            f"{fn_name}: `sequences` must be a tf.data.Dataset of per-scene dicts (from sequences_from_tfds or "
            f"sequences_from_render), got {type(sequences).__name__}."
        )
    spec = sequences.element_spec
    if not isinstance(spec, dict):
        raise TypeError(f"{fn_name}: `sequences` elements must be dicts with keys {SEQUENCE_KEYS}, got {spec}.")
    missing = [k for k in SEQUENCE_KEYS if k not in spec]
    if missing:
        raise ValueError(
            f"{fn_name}: `sequences` elements lack keys {missing}; expected {SEQUENCE_KEYS}. Batched datasets are "
            "not sequences: pass the per-scene dataset."
        )
    image = spec["image"].shape
    if image.rank != 4 or image[-1] not in (3, None):
        raise ValueError(
            f"{fn_name}: sequence 'image' must be [F, H, W, 3] uint8 (one scene, unbatched), got {image}."
        )
    if image[0] is not None and image[0] < min_frames:
        raise ValueError(
            f"{fn_name}: scenes have {image[0]} frames but at least {min_frames} are needed "
            "(a triplet needs t-1, t, t+1); render or build with frames_per_scene >= 3."
        )


def _scene_triplets(scene) -> tf.data.Dataset:
    num_frames = tf.shape(scene["image"])[0]
    t = tf.range(1, num_frames - 1)  # centres 1..F-2: every centre has both neighbours
    n = tf.size(t)
    poses = tf.cast(scene["poses"], tf.float64)
    pose_t = tf.gather(poses, t)
    elements = {
        "image": tf.gather(scene["image"], t),
        "image_prev": tf.gather(scene["image"], t - 1),
        "image_next": tf.gather(scene["image"], t + 1),
        "intrinsics": tf.tile(tf.cast(scene["intrinsics"], tf.float32)[None], [n, 1, 1]),
        "depth": tf.gather(scene["depth"], t)[..., None],
        "semantic": tf.gather(scene["semantic"], t),
        "instance": tf.gather(scene["instance"], t),
        "pose_prev": tf.cast(relative_pose(tf.gather(poses, t - 1), pose_t), tf.float32),
        "pose_next": tf.cast(relative_pose(tf.gather(poses, t + 1), pose_t), tf.float32),
        "scene_seed": tf.fill([n], tf.cast(scene["seed"], tf.int64)),
        "frame_index": t,
    }
    return tf.data.Dataset.from_tensor_slices(elements)


def _scene_frames(scene) -> tf.data.Dataset:
    num_frames = tf.shape(scene["image"])[0]
    t = tf.range(num_frames)
    elements = {
        "image": scene["image"],
        "intrinsics": tf.tile(tf.cast(scene["intrinsics"], tf.float32)[None], [num_frames, 1, 1]),
        "depth": scene["depth"][..., None],
        "semantic": scene["semantic"],
        "instance": scene["instance"],
        "scene_seed": tf.fill([num_frames], tf.cast(scene["seed"], tf.int64)),
        "frame_index": t,
    }
    return tf.data.Dataset.from_tensor_slices(elements)


def finalize_sample(sample: dict) -> dict:
    """uint8 frames -> float32 in [0, 1]; labels -> int32 (the sample convention of ``tfdepth.data.augment``).

    Kept separate from the flat-map so pipelines can shuffle compact uint8 samples and convert afterwards.
    """
    out = dict(sample)
    for key in ("image", "image_prev", "image_next"):
        if key in out:
            out[key] = tf.image.convert_image_dtype(out[key], tf.float32)  # x / 255 for uint8
    for key in ("semantic", "instance"):
        if key in out:
            out[key] = tf.cast(out[key], tf.int32)
    out["depth"] = tf.cast(out["depth"], tf.float32)
    return out


def raw_triplets(sequences) -> tf.data.Dataset:
    """Triplets with the sequences' storage dtypes (uint8 frames): the compact form used before shuffling."""
    check_sequences(sequences, "video_triplets", min_frames=3)
    return sequences.flat_map(_scene_triplets)


def raw_frames(sequences) -> tf.data.Dataset:
    """Single frames with the sequences' storage dtypes."""
    check_sequences(sequences, "frames")
    return sequences.flat_map(_scene_frames)


def video_triplets(sequences) -> tf.data.Dataset:
    """Flat-map every scene into samples centred on ``t = 1 .. F-2`` (``F - 2`` per scene, in order).

    Keys: ``image``, ``image_prev``, ``image_next`` float32 [H, W, 3] in [0, 1]; ``intrinsics`` float32 [3, 3];
    ``depth`` float32 [H, W, 1]; ``semantic``, ``instance`` int32 [H, W]; ``pose_prev`` = T_prev_from_t and
    ``pose_next`` = T_next_from_t float32 [4, 4]; ``scene_seed`` int64; ``frame_index`` int32 (= t).
    """
    return raw_triplets(sequences).map(finalize_sample, num_parallel_calls=tf.data.AUTOTUNE)


def frames(sequences) -> tf.data.Dataset:
    """Every frame of every scene as a sample: ``image``, ``depth``, ``semantic``, ``instance``, ``intrinsics``,
    ``scene_seed``, ``frame_index`` (same dtypes as ``video_triplets``)."""
    return raw_frames(sequences).map(finalize_sample, num_parallel_calls=tf.data.AUTOTUNE)
