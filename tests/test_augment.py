"""Tests for tfdepth.data.augment: colour jitter, flip and resize keep the sample and the camera model consistent."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.data import augment as A
from tfdepth.geometry import backproject, invert_intrinsics, project

H, W = 12, 16


def _pose(rng):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.1, size=3)).as_matrix()
    T[:3, 3] = rng.normal(scale=0.3, size=3)
    return T.astype(np.float32)


@pytest.fixture
def sample(rng):
    # Off-centre principal point so that the flip really moves cx.
    K = np.array([[14.0, 0.0, 6.3], [0.0, 13.0, 5.2], [0.0, 0.0, 1.0]], np.float32)
    return {
        "image": tf.constant(rng.uniform(0.05, 0.95, (H, W, 3)), tf.float32),
        "image_prev": tf.constant(rng.uniform(0.05, 0.95, (H, W, 3)), tf.float32),
        "image_next": tf.constant(rng.uniform(0.05, 0.95, (H, W, 3)), tf.float32),
        "intrinsics": tf.constant(K),
        "depth": tf.constant(rng.uniform(1.0, 10.0, (H, W, 1)), tf.float32),
        "semantic": tf.constant(rng.integers(0, 5, (H, W)), tf.int32),
        "instance": tf.constant(rng.integers(0, 9, (H, W)), tf.int32),
        "seg_weight": tf.constant(rng.uniform(0, 3, (H, W)), tf.float32),
        "pose_prev": tf.constant(_pose(rng)),
        "pose_next": tf.constant(_pose(rng)),
        "scene_seed": tf.constant(7, tf.int64),
        "frame_index": tf.constant(3, tf.int32),
    }


def _np(d):
    return {k: np.asarray(v) for k, v in d.items()}


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def _via_dataset(sample, fn):
    ds = tf.data.Dataset.from_tensors(sample).map(fn, num_parallel_calls=2)
    return next(iter(ds))


# ------------------------------------------------------------------------------------------ colour jitter
@pytest.mark.parametrize("seed", [(1, 2), (5, 99)])
def test_color_jitter_eager_equals_dataset_map(sample, seed):
    seed_t = tf.constant(seed, tf.int64)
    eager = A.color_jitter(sample, seed_t, probability=1.0)
    mapped = _via_dataset(sample, lambda s: A.color_jitter(s, seed_t, probability=1.0))
    _assert_same(eager, mapped)
    other = A.color_jitter(sample, tf.constant([seed[0], seed[1] + 1], tf.int64), probability=1.0)
    assert not np.allclose(eager["image_aug"], other["image_aug"])


def test_color_jitter_keeps_originals_and_range(sample):
    before = _np(sample)
    out = A.color_jitter(sample, tf.constant([3, 4]), probability=1.0)
    for k in ("image", "image_prev", "image_next"):
        np.testing.assert_array_equal(out[k], before[k])
        np.testing.assert_array_equal(sample[k], before[k])
        aug = out[f"{k}_aug"].numpy()
        assert aug.shape == (H, W, 3) and aug.dtype == np.float32
        assert aug.min() >= 0.0 and aug.max() <= 1.0
        assert np.abs(aug - before[k]).max() > 1e-3
    # Non-image keys pass through as they were.
    for k in ("depth", "semantic", "intrinsics", "pose_next", "scene_seed"):
        np.testing.assert_array_equal(out[k], before[k])


def test_brightness_only_jitter_shares_one_factor_across_frames(sample):
    out = A.color_jitter(
        sample, tf.constant([8, 1]), brightness=(0.5, 1.5), contrast=(1, 1), saturation=(1, 1), hue=(0, 0),
        probability=1.0,
    )
    ratios = []
    for k in ("image", "image_prev", "image_next"):
        aug, orig = out[f"{k}_aug"].numpy(), sample[k].numpy()
        unclipped = aug < 0.999
        ratios.append(aug[unclipped] / orig[unclipped])
    factor = ratios[0][0]
    assert 0.5 <= factor <= 1.5 and abs(factor - 1.0) > 1e-3
    for r in ratios:
        np.testing.assert_allclose(r, factor, rtol=1e-5)


def test_full_jitter_is_one_parameter_set_for_all_frames(sample, rng):
    # Every op is per pixel except contrast, which uses the frame's mean grey (permutation invariant): so a frame
    # that is a pixel permutation of another must be jittered into the same permutation of its jittered copy.
    img = sample["image"].numpy()
    perm = rng.permutation(H * W)
    permuted = img.reshape(-1, 3)[perm].reshape(H, W, 3)
    s = dict(sample, image_next=tf.constant(permuted))
    for seed in range(4):
        out = A.color_jitter(s, tf.constant([seed, 11]), hue=(-0.3, 0.3), probability=1.0)
        a = out["image_aug"].numpy().reshape(-1, 3)[perm].reshape(H, W, 3)
        np.testing.assert_allclose(out["image_next_aug"].numpy(), a, atol=2e-6)


def test_no_jitter_copies_originals(sample):
    out = A.color_jitter(sample, tf.constant([1, 1]), probability=0.0)
    for k in ("image", "image_prev", "image_next"):
        np.testing.assert_array_equal(out[f"{k}_aug"], sample[k])


def test_jitter_probability_is_respected():
    s = {"image": tf.fill([2, 2, 3], 0.5)}
    applied = [
        bool(np.any(A.color_jitter(s, tf.constant([i, 0]), contrast=(1, 1), saturation=(1, 1), hue=(0, 0))
                    ["image_aug"].numpy() != 0.5))
        for i in range(200)
    ]
    assert 0.38 < np.mean(applied) < 0.62


def test_colour_ops_match_numpy_reference(rng):
    x = rng.uniform(0, 1, (4, 5, 3)).astype(np.float32)
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    ref_con = np.clip(gray.mean() + 1.3 * (x - gray.mean()), 0, 1)
    ref_sat = np.clip(gray[..., None] + 0.6 * (x - gray[..., None]), 0, 1)
    np.testing.assert_allclose(A._adjust_contrast(tf.constant(x), 1.3), ref_con, atol=1e-6)
    np.testing.assert_allclose(A._adjust_saturation(tf.constant(x), 0.6), ref_sat, atol=1e-6)
    np.testing.assert_allclose(A._adjust_brightness(tf.constant(x), 1.4), np.clip(1.4 * x, 0, 1), atol=1e-6)
    ref_hue = np.empty_like(x)
    for idx in np.ndindex(x.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*x[idx])
        ref_hue[idx] = colorsys.hsv_to_rgb((h + 0.2) % 1.0, s, v)
    np.testing.assert_allclose(A._adjust_hue(tf.constant(x), 0.2), ref_hue, atol=1e-5)


# ------------------------------------------------------------------------------------------ flip
def test_flip_eager_equals_dataset_map_and_twice_is_identity(sample):
    seed = tf.constant([4, 2], tf.int64)
    s = A.color_jitter(sample, seed, probability=1.0)
    eager = A.random_flip(s, seed, probability=1.0)
    _assert_same(eager, _via_dataset(s, lambda x: A.random_flip(x, seed, probability=1.0)))
    _assert_same(A.random_flip(eager, seed, probability=1.0), s)
    for seed_i in range(6):  # a random flip applied twice with one seed flips both times or neither
        sd = tf.constant([seed_i, 0])
        _assert_same(A.random_flip(A.random_flip(s, sd), sd), s)
    _assert_same(A.random_flip(s, seed, probability=0.0), s)


def test_flip_moves_every_spatial_map_and_camera(sample):
    s = A.color_jitter(sample, tf.constant([0, 1]), probability=1.0)
    out = A.random_flip(s, tf.constant([0, 0]), probability=1.0)
    for k in ("image", "image_prev", "image_next", "image_aug", "image_prev_aug", "image_next_aug", "depth",
              "semantic", "instance", "seg_weight"):
        np.testing.assert_array_equal(out[k], np.asarray(s[k])[:, ::-1], err_msg=k)
    K = s["intrinsics"].numpy()
    expected_K = K.copy()
    expected_K[0, 2] = W - 1 - K[0, 2]
    np.testing.assert_allclose(out["intrinsics"], expected_K, atol=1e-6)
    F = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)
    for k in ("pose_prev", "pose_next"):
        np.testing.assert_allclose(out[k], F @ s[k].numpy() @ F, atol=1e-6)
    for k in ("scene_seed", "frame_index"):
        np.testing.assert_array_equal(out[k], s[k])


def test_flipped_camera_backprojects_to_mirrored_points(sample):
    out = A.random_flip(sample, tf.constant([0, 0]), probability=1.0)
    K, Kf = sample["intrinsics"].numpy(), out["intrinsics"].numpy()
    depth, depth_f = sample["depth"].numpy()[..., 0], out["depth"].numpy()[..., 0]
    for v, u_f in [(0, 0), (3, 5), (11, 15), (7, 2)]:
        X_f = depth_f[v, u_f] * np.linalg.solve(Kf, [u_f, v, 1.0])
        u = W - 1 - u_f
        X = depth[v, u] * np.linalg.solve(K, [u, v, 1.0])
        np.testing.assert_allclose(X_f, [-X[0], X[1], X[2]], rtol=1e-5, atol=1e-5)


def test_flipped_sample_keeps_warp_geometry(sample):
    # Project every target pixel into the next frame: with the flipped depth, K and mirrored pose the projected
    # coordinates are the mirror image (u -> W-1-u) of the unflipped ones, so warping stays exact after a flip.
    out = A.random_flip(sample, tf.constant([0, 0]), probability=1.0)

    def coords(s):
        K = s["intrinsics"][None]
        pts = backproject(s["depth"][None], invert_intrinsics(K))
        uv, _ = project(pts, K, s["pose_next"][None], image_size=(H, W))
        return uv[0].numpy()

    c, c_f = coords(sample), coords(out)
    np.testing.assert_allclose(c_f[..., 0], (W - 1) - c[..., 0][:, ::-1], atol=1e-3)
    np.testing.assert_allclose(c_f[..., 1], c[..., 1][:, ::-1], atol=1e-3)


# ------------------------------------------------------------------------------------------ resize
@pytest.mark.parametrize("size", [(24, 32), (6, 8), (9, 20)])
def test_resize_is_consistent_with_intrinsics(size):
    # A linear ramp is reproduced exactly by bilinear upsampling and by symmetric antialias filters away from
    # the border, so the resized image at the new projection of a 3D point equals the original at the old one.
    h, w = 24, 32
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.stack([0.01 * uu + 0.02 * vv, 0.005 * uu, 0.3 + 0.01 * vv], -1).astype(np.float32)
    K = np.array([[30.0, 0, 15.2], [0, 28.0, 11.4], [0, 0, 1]], np.float32)
    s = {"image": tf.constant(ramp), "intrinsics": tf.constant(K), "depth": tf.constant(1.0 + vv[..., None])}
    out = A.resize(s, *size)
    img, Kr = out["image"].numpy(), out["intrinsics"].numpy()
    sy, sx = size[0] / h, size[1] / w
    np.testing.assert_allclose(Kr[0], [K[0, 0] * sx, 0, (K[0, 2] + 0.5) * sx - 0.5], rtol=1e-6)
    np.testing.assert_allclose(Kr[1], [0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], rtol=1e-6)
    for X in ([0.1, -0.05, 2.0], [-0.2, 0.1, 3.0], [0.05, 0.02, 1.5]):
        u, v, _ = K @ X / X[2]
        ur, vr, _ = Kr @ X / X[2]
        expected = np.array([0.01 * u + 0.02 * v, 0.005 * u, 0.3 + 0.01 * v])
        # bilinear read of the resized image at (ur, vr), done in numpy
        i0, j0 = int(np.floor(vr)), int(np.floor(ur))
        a, b = vr - i0, ur - j0
        got = ((1 - a) * (1 - b) * img[i0, j0] + (1 - a) * b * img[i0, j0 + 1]
               + a * (1 - b) * img[i0 + 1, j0] + a * b * img[i0 + 1, j0 + 1])
        np.testing.assert_allclose(got, expected, atol=2e-3)
    # Depth is nearest-resampled: every output value is an input value (no invented depth across edges).
    assert set(np.unique(out["depth"].numpy())) <= set(np.unique(s["depth"].numpy()))


def test_resize_shapes_dtypes_and_dataset_map(sample):
    eager = A.resize(sample, 6, 10)
    _assert_same(eager, _via_dataset(sample, lambda x: A.resize(x, 6, 10)))
    assert eager["image"].shape == (6, 10, 3) and eager["image"].dtype == tf.float32
    assert eager["depth"].shape == (6, 10, 1)
    assert eager["semantic"].shape == (6, 10) and eager["semantic"].dtype == tf.int32
    assert eager["seg_weight"].shape == (6, 10)
    np.testing.assert_array_equal(eager["pose_next"], sample["pose_next"])
    # Nearest neighbour with half-pixel centres picks source pixel floor((i + 0.5) / s).
    rows = np.floor((np.arange(6) + 0.5) * H / 6).astype(int)
    cols = np.floor((np.arange(10) + 0.5) * W / 10).astype(int)
    np.testing.assert_array_equal(eager["semantic"], sample["semantic"].numpy()[np.ix_(rows, cols)])


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_raises_clear_errors(sample):
    seed = tf.constant([0, 0])
    no_image = {k: v for k, v in sample.items() if k != "image"}
    with pytest.raises(ValueError, match="'image'"):
        A.random_flip(no_image, seed)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        A.color_jitter(dict(sample, image=tf.zeros([1, H, W, 3])), seed)
    with pytest.raises(ValueError, match="probability"):
        A.random_flip(sample, seed, probability=1.5)
    with pytest.raises(ValueError, match="brightness"):
        A.color_jitter(sample, seed, brightness=(1.2, 0.8))
    with pytest.raises(ValueError, match="hue"):
        A.color_jitter(sample, seed, hue=(-0.7, 0.1))
    with pytest.raises(TypeError, match="convert_image_dtype"):
        A.color_jitter(dict(sample, image=tf.zeros([H, W, 3], tf.uint8)), seed)
    with pytest.raises(ValueError, match="seed"):
        A.random_flip(sample, tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="height"):
        A.resize(sample, 0, 4)
    with pytest.raises(ValueError, match="width"):
        A.resize(sample, 4, 2.5)
