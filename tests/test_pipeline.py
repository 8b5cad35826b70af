"""Tests for tfdepth.data.pipeline / video: scene sources, triplets, ground-truth warps and batched pipelines."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tfdepth.data import augment, pipeline
from tfdepth.data.synthetic import FOREGROUND_CLASS_IDS, render_sequence
from tfdepth.data.video import SEQUENCE_KEYS, sequence_signature
from tfdepth.geometry import backproject, invert_intrinsics, inverse_warp, project

SEEDS, F, H, W = (0, 1), 4, 48, 160


@pytest.fixture(scope="module")
def scenes():
    return {seed: render_sequence("street", seed, F, H, W) for seed in SEEDS}


@pytest.fixture(scope="module")
def sequences(scenes):
    # The rendered scenes as an in-memory dataset (same element spec as sequences_from_render), so each test
    # does not render again.
    stacked = {k: np.stack([scenes[s][k] for s in SEEDS]) for k in SEQUENCE_KEYS if k != "seed"}
    stacked["seed"] = np.array(SEEDS, np.int64)
    return tf.data.Dataset.from_tensor_slices(stacked)


def _batches(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def test_sequences_from_render_matches_engine(scenes, sequences):
    ds = pipeline.sequences_from_render("street", list(SEEDS), F, H, W)
    assert ds.element_spec == sequence_signature(F, H, W)
    assert sequences.element_spec == ds.element_spec
    elements = list(ds.as_numpy_iterator())
    assert [int(e["seed"]) for e in elements] == list(SEEDS)
    for e in elements:
        ref = scenes[int(e["seed"])]
        for k in SEQUENCE_KEYS[:-1]:
            np.testing.assert_array_equal(e[k], ref[k], err_msg=k)


def test_video_triplets_structure_and_content(scenes, sequences):
    ds = pipeline.video_triplets(sequences)
    spec = ds.element_spec
    expected = {
        "image": ([H, W, 3], tf.float32), "image_prev": ([H, W, 3], tf.float32),
        "image_next": ([H, W, 3], tf.float32), "intrinsics": ([3, 3], tf.float32),
        "depth": ([H, W, 1], tf.float32), "semantic": ([H, W], tf.int32), "instance": ([H, W], tf.int32),
        "pose_prev": ([4, 4], tf.float32), "pose_next": ([4, 4], tf.float32), "scene_seed": ([], tf.int64),
        "frame_index": ([], tf.int32),
    }
    assert set(spec) == set(expected)
    for k, (shape, dtype) in expected.items():
        assert spec[k].shape.as_list() == shape and spec[k].dtype == dtype, k
    samples = list(ds.as_numpy_iterator())
    assert len(samples) == len(SEEDS) * (F - 2)  # F - 2 triplets per scene
    assert [(int(s["scene_seed"]), int(s["frame_index"])) for s in samples] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    for s in samples:
        ref, t = scenes[int(s["scene_seed"])], int(s["frame_index"])
        np.testing.assert_allclose(s["image"], ref["image"][t] / 255.0, atol=1e-6)
        np.testing.assert_allclose(s["image_prev"], ref["image"][t - 1] / 255.0, atol=1e-6)
        np.testing.assert_allclose(s["image_next"], ref["image"][t + 1] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(s["depth"][..., 0], ref["depth"][t])
        np.testing.assert_array_equal(s["semantic"], ref["semantic"][t])
        np.testing.assert_array_equal(s["intrinsics"], ref["intrinsics"])
        poses = ref["poses"]
        np.testing.assert_allclose(s["pose_prev"], np.linalg.inv(poses[t - 1]) @ poses[t], atol=1e-5)
        np.testing.assert_allclose(s["pose_next"], np.linalg.inv(poses[t + 1]) @ poses[t], atol=1e-5)


def _warp_error(sample, depth_next, pose_key="pose_next"):
    """Mean |inverse_warp(image_next) - image| over co-visible pixels away from depth edges, and its pixel count.

    Co-visible: the point of frame t lands in frame t+1 where t+1's own depth agrees within 3 % (not occluded).
    Away from edges: no instance change and no sky within 2 px (instance boundaries are the depth edges).
    """
    K = sample["intrinsics"][None]
    depth = sample["depth"][None]
    pose = sample[pose_key][None]
    warped, valid = inverse_warp(sample["image_next"][None], depth, pose, K)
    coords, _ = project(backproject(depth, invert_intrinsics(K)), K, pose)
    points = backproject(depth, invert_intrinsics(K))[0].numpy()
    z_next = (points @ pose[0, :3, :3].T + pose[0, :3, 3])[..., 2]
    uv = np.rint(coords[0].numpy()).astype(int)
    u, v = np.clip(uv[..., 0], 0, W - 1), np.clip(uv[..., 1], 0, H - 1)
    covisible = np.abs(depth_next[v, u] - z_next) < 0.03 * np.maximum(z_next, 1e-3)
    inst = sample["instance"]
    boundary = (ndimage.maximum_filter(inst, 5) != ndimage.minimum_filter(inst, 5))
    boundary |= ndimage.maximum_filter((sample["depth"][..., 0] == 0).astype(np.uint8), 5) > 0
    mask = (valid[0, ..., 0].numpy() > 0) & covisible & ~boundary
    err = np.abs(warped[0].numpy() - sample["image"]).mean(-1)
    return err[mask].mean(), mask.mean()


@pytest.mark.parametrize("flip", [False, True])
def test_ground_truth_pose_warps_next_onto_image(scenes, sequences, flip):
    for sample in pipeline.video_triplets(sequences).as_numpy_iterator():
        ref, t = scenes[int(sample["scene_seed"])], int(sample["frame_index"])
        depth_next = ref["depth"][t + 1]
        if flip:
            sample = {k: np.asarray(v) for k, v in augment.random_flip(sample, 0, probability=1.0).items()}
            depth_next = depth_next[:, ::-1]
        err, frac = _warp_error(sample, depth_next)
        assert frac > 0.2, "too few co-visible pixels to judge the warp"
        assert err < 2.0 / 255.0, f"warp error {err * 255:.2f}/255 (scene {sample['scene_seed']}, t={t})"
        # The check discriminates: the previous frame's pose (the wrong direction) warps far worse.
        wrong, _ = _warp_error(sample, depth_next, pose_key="pose_prev")
        assert wrong > 2.0 * err


def test_resized_batch_intrinsics_are_scaled(scenes, sequences):
    ds = pipeline.make_video_dataset(sequences, batch_size=2, height=24, width=64)
    batches = _batches(ds)
    assert len(batches) == 2
    K = scenes[0]["intrinsics"].astype(np.float64)
    sx, sy = 64 / W, 24 / H
    expected = np.array([[K[0, 0] * sx, 0, (K[0, 2] + 0.5) * sx - 0.5],
                         [0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0, 0, 1]])
    for b in batches:
        assert b["intrinsics"].shape == (2, 3, 3)
        np.testing.assert_allclose(b["intrinsics"], np.broadcast_to(expected, (2, 3, 3)), rtol=1e-6)
        assert b["image"].shape == (2, 24, 64, 3) and b["depth"].shape == (2, 24, 64, 1)
        assert b["semantic"].shape == (2, 24, 64) and b["semantic"].dtype == np.int32
        for k in augment.IMAGE_KEYS:  # *_aug always present; equal to the originals without jitter
            np.testing.assert_array_equal(b[f"{k}_aug"], b[k])


def test_pipeline_flips_every_key_of_a_sample_together(sequences):
    reference = {(int(s["scene_seed"]), int(s["frame_index"])): s
                 for s in pipeline.video_triplets(sequences).as_numpy_iterator()}
    ds = pipeline.make_video_dataset(sequences, batch_size=1, shuffle=True, flip=True, color_jitter=True, seed=3,
                                     repeat=True)
    flipped_states = []
    for b in _batches(ds.take(12)):
        s = {k: v[0] for k, v in b.items()}
        ref = reference[(int(s["scene_seed"]), int(s["frame_index"]))]
        flipped = not np.array_equal(s["image"], ref["image"])
        flipped_states.append(flipped)
        sl = np.s_[:, ::-1] if flipped else np.s_[:, :]
        for k in ("image", "image_prev", "image_next", "depth", "semantic", "instance"):
            np.testing.assert_array_equal(s[k], ref[k][sl], err_msg=k)
        expected_cx = W - 1 - ref["intrinsics"][0, 2] if flipped else ref["intrinsics"][0, 2]
        np.testing.assert_allclose(s["intrinsics"][0, 2], expected_cx, atol=1e-4)
        f = np.diag([-1.0, 1, 1, 1]) if flipped else np.eye(4)
        np.testing.assert_allclose(s["pose_next"], f @ ref["pose_next"] @ f, atol=1e-6)
    assert any(flipped_states) and not all(flipped_states)


def test_augmented_batches_are_deterministic(sequences):
    def make(seed):
        return pipeline.make_video_dataset(sequences, batch_size=2, shuffle=True, flip=True, color_jitter=True,
                                           seed=seed, repeat=True, height=24, width=80).take(4)

    a, b, c = _batches(make(7)), _batches(make(7)), _batches(make(8))
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert any(not np.array_equal(x["image_aug"], z["image_aug"]) for x, z in zip(a, c))
    # Each epoch draws new augmentations: the 2 batches of epoch 2 are not a replay of epoch 1.
    assert not all(np.array_equal(a[i]["image_aug"], a[i + 2]["image_aug"]) for i in range(2))


def test_map_fn_sees_augmented_sample(sequences):
    def add_mask(sample):
        fg = tf.constant(FOREGROUND_CLASS_IDS, tf.int32)
        mask = tf.reduce_any(sample["semantic"][..., None] == fg, axis=-1)
        return dict(sample, seg_mask=tf.cast(mask, tf.float32))

    for b in _batches(pipeline.make_video_dataset(sequences, batch_size=2, flip=True, seed=1, map_fn=add_mask)):
        np.testing.assert_array_equal(b["seg_mask"], np.isin(b["semantic"], FOREGROUND_CLASS_IDS))


def test_frame_dataset(scenes, sequences):
    ds = pipeline.make_frame_dataset(sequences, batch_size=3, drop_remainder=False, color_jitter=True, seed=2)
    batches = _batches(ds)
    assert [len(b["image"]) for b in batches] == [3, 3, 2]  # 2 scenes x 4 frames
    assert set(batches[0]) == {"image", "image_aug", "depth", "semantic", "instance", "intrinsics", "scene_seed",
                               "frame_index"}
    b = batches[0]
    np.testing.assert_array_equal(b["frame_index"], [0, 1, 2])
    np.testing.assert_allclose(b["image"][1], scenes[0]["image"][1] / 255.0, atol=1e-6)
    assert b["depth"].shape == (3, H, W, 1) and b["intrinsics"].shape == (3, 3, 3)


def test_bad_arguments_raise_clear_errors(sequences):
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_video_dataset(sequences, batch_size=0)
    with pytest.raises(ValueError, match="height.*width"):
        pipeline.make_video_dataset(sequences, batch_size=1, height=24)
    with pytest.raises(ValueError, match="height"):
        pipeline.make_frame_dataset(sequences, batch_size=1, height=-3, width=4)
    with pytest.raises(ValueError, match="seed"):
        pipeline.make_video_dataset(sequences, batch_size=1, seed=-1)
    with pytest.raises(TypeError, match="sequences"):
        pipeline.make_frame_dataset(np.zeros((2, 4, 8, 8, 3), np.uint8), batch_size=1, shuffle=True)
    with pytest.raises(TypeError, match="map_fn"):
        pipeline.make_video_dataset(sequences, batch_size=1, map_fn=3)
    with pytest.raises(TypeError, match="sequences"):
        pipeline.video_triplets([1, 2, 3])
    with pytest.raises(ValueError, match="frames_per_scene >= 3"):
        pipeline.video_triplets(pipeline.sequences_from_render("street", [0], 2, 8, 16))
    with pytest.raises(ValueError, match="lack keys"):
        pipeline.video_triplets(sequences.map(lambda e: {"image": e["image"]}))
    with pytest.raises(ValueError, match="preset"):
        pipeline.sequences_from_render("forest", [0], 3, 8, 16)
    with pytest.raises(ValueError, match="width"):
        pipeline.sequences_from_render("street", [0], 3, 8, 0)
