"""Camera, transform and projection ops against numpy/scipy references and analytic cases."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

from tfdepth.geometry import (
    axis_angle_to_matrix,
    backproject,
    bilinear_sample,
    flip_intrinsics_horizontally,
    intrinsics_from_normalized,
    invert_intrinsics,
    invert_pose,
    matrix_to_axis_angle,
    pixel_grid,
    pose_vec_to_matrix,
    project,
    relative_pose,
    scale_intrinsics,
)


def _K(fx=50.0, fy=48.0, cx=15.5, cy=11.0, batch=None):
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], np.float32)
    return K if batch is None else np.tile(K[None], [batch, 1, 1])


def _random_pose(rng, batch, max_angle=0.3, max_t=0.5):
    rotvec = rng.uniform(-1, 1, (batch, 3)) * max_angle
    T = np.tile(np.eye(4), [batch, 1, 1])
    T[:, :3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:, :3, 3] = rng.uniform(-max_t, max_t, (batch, 3))
    return T.astype(np.float32)


# ---------------------------------------------------------------- camera


def test_intrinsics_from_normalized_centre_and_values():
    K = intrinsics_from_normalized(0.58, 1.92, 0.5, 0.5, 192, 640).numpy()
    np.testing.assert_allclose(K, [[0.58 * 640, 0, 319.5], [0, 1.92 * 192, 95.5], [0, 0, 1]], rtol=1e-6)
    # Per-batch normalised values broadcast with scalar sizes.
    Kb = intrinsics_from_normalized([0.5, 1.0], 1.0, [0.25, 0.75], 0.5, 10, 20).numpy()
    assert Kb.shape == (2, 3, 3)
    np.testing.assert_allclose(Kb[:, 0, 0], [10.0, 20.0])
    np.testing.assert_allclose(Kb[:, 0, 2], [4.5, 14.5])
    np.testing.assert_allclose(Kb[:, 1, 2], [4.5, 4.5])


def test_invert_intrinsics_matches_numpy_inverse(rng):
    K = np.tile(np.eye(3, dtype=np.float32), [3, 1, 1])
    K[:, 0, 0] = rng.uniform(100, 500, 3)
    K[:, 1, 1] = rng.uniform(100, 500, 3)
    K[:, 0, 1] = rng.uniform(-2, 2, 3)  # skew
    K[:, :2, 2] = rng.uniform(50, 300, (3, 2))
    inv = invert_intrinsics(K).numpy()
    np.testing.assert_allclose(inv, np.linalg.inv(K.astype(np.float64)), rtol=1e-5, atol=1e-7)
    # A 4x4 K gives the inverse of its top-left block.
    K4 = np.tile(np.eye(4, dtype=np.float32), [3, 1, 1])
    K4[:, :3, :3] = K
    np.testing.assert_allclose(invert_intrinsics(K4).numpy(), inv, rtol=1e-6)


def test_pixel_grid_layout():
    grid = pixel_grid(3, 4).numpy()
    assert grid.shape == (3, 4, 2) and grid.dtype == np.float32
    assert tuple(grid[2, 1]) == (1.0, 2.0)  # (u, v) = (column, row)
    np.testing.assert_array_equal(grid[..., 0], np.tile(np.arange(4), [3, 1]))
    np.testing.assert_array_equal(grid[..., 1], np.tile(np.arange(3)[:, None], [1, 4]))


def test_scale_intrinsics_formula_and_4x4():
    K = _K(batch=2)
    out = scale_intrinsics(K, 0.5, [0.25, 2.0]).numpy()
    np.testing.assert_allclose(out[:, 0, 0], [25.0, 25.0])
    np.testing.assert_allclose(out[:, 0, 2], [(15.5 + 0.5) * 0.5 - 0.5] * 2)
    np.testing.assert_allclose(out[:, 1, 1], [48 * 0.25, 48 * 2.0])
    np.testing.assert_allclose(out[:, 1, 2], [(11.0 + 0.5) * 0.25 - 0.5, (11.0 + 0.5) * 2.0 - 0.5])
    K4 = np.tile(np.eye(4, dtype=np.float32), [2, 1, 1])
    K4[:, :3, :3] = K
    K4[:, 0, 3] = 7.0  # e.g. a stereo baseline term: must be left alone
    out4 = scale_intrinsics(K4, 0.5, [0.25, 2.0]).numpy()
    np.testing.assert_allclose(out4[:, :3, :3], out, rtol=1e-6)
    np.testing.assert_array_equal(out4[:, :, 3], K4[:, :, 3])
    np.testing.assert_array_equal(out4[:, 3, :], K4[:, 3, :])


@pytest.mark.parametrize("size_hi,size_lo", [((48, 64), (24, 32)), ((48, 64), (36, 48)), ((24, 32), (40, 56))])
def test_scale_intrinsics_consistent_with_tf_image_resize(rng, size_hi, size_lo):
    """Back-project at one resolution, project at another with the scaled K: the projected pixel must land where
    tf.image.resize (half-pixel bilinear) put that pixel's content. Ramp images u(x, y) = x and v(x, y) = y resize
    exactly (bilinear interpolation of a linear function), so sampling the resized ramps returns the source pixel."""
    (H, W), (h, w) = size_hi, size_lo
    K = _K(fx=40.0, fy=42.0, cx=30.0, cy=22.0, batch=1)
    depth = rng.uniform(1.0, 5.0, (1, H, W, 1)).astype(np.float32)
    points = backproject(depth, invert_intrinsics(K))
    K_lo = scale_intrinsics(K, w / W, h / H)
    coords, valid = project(points, K_lo, np.eye(4, dtype=np.float32)[None], image_size=(h, w))
    ramps = pixel_grid(H, W)[tf.newaxis]
    resized = tf.image.resize(ramps, (h, w), method="bilinear", antialias=False)
    sampled = bilinear_sample(resized, coords).numpy()
    # Away from the border, where resize clamps its taps (and project marks nothing invalid inside).
    margin = int(np.ceil(max(W / w, H / h)))
    inner = (slice(None), slice(margin, H - margin), slice(margin, W - margin))
    assert valid.numpy()[inner].min() == 1.0
    np.testing.assert_allclose(sampled[inner], pixel_grid(H, W).numpy()[None][inner], atol=2e-3)


def test_flip_intrinsics_horizontally(rng):
    W = 32
    K = _K(cx=12.25, batch=1)
    K[0, 0, 1] = 0.3  # skew flips sign under x -> -x
    Kf = flip_intrinsics_horizontally(K, W).numpy()
    np.testing.assert_allclose(Kf[0, 0, 2], W - 1 - 12.25)
    np.testing.assert_allclose(Kf[0, 0, 0], K[0, 0, 0])
    np.testing.assert_allclose(Kf[0, 1], K[0, 1])
    # A point seen in the flipped image is the mirrored point (x -> -x) seen with the flipped K.
    points = np.concatenate([rng.uniform(-2, 2, (1, 4, 5, 2)), rng.uniform(1, 4, (1, 4, 5, 1))], -1)
    points = points.astype(np.float32)
    eye = np.eye(4, dtype=np.float32)[None]
    uv, _ = project(points, K, eye)
    mirrored = points * np.array([-1, 1, 1], np.float32)
    uv_f, _ = project(mirrored, Kf, eye)
    np.testing.assert_allclose(uv_f.numpy()[..., 0], W - 1 - uv.numpy()[..., 0], atol=1e-4)
    np.testing.assert_allclose(uv_f.numpy()[..., 1], uv.numpy()[..., 1], atol=1e-4)
    # A centred K (cx_n = 0.5) is unchanged, and a 4x4 K keeps its extra row and column.
    Kc = intrinsics_from_normalized(0.6, 0.8, 0.5, 0.5, 24, W).numpy()
    np.testing.assert_allclose(flip_intrinsics_horizontally(Kc, W).numpy(), Kc)
    K4 = np.eye(4, dtype=np.float32)
    K4[:3, :3] = Kc
    np.testing.assert_allclose(flip_intrinsics_horizontally(K4, W).numpy(), K4)


# ---------------------------------------------------------------- transforms


def test_axis_angle_matches_scipy_and_is_orthonormal(rng):
    rotvecs = np.concatenate(
        [rng.normal(size=(16, 3)), rng.normal(size=(4, 3)) * 1e-3, [[0.0, 0.0, 0.0], [np.pi - 1e-3, 0.0, 0.0]]]
    ).astype(np.float32)
    R = axis_angle_to_matrix(rotvecs).numpy()
    np.testing.assert_allclose(R, Rotation.from_rotvec(rotvecs.astype(np.float64)).as_matrix(), atol=2e-6)
    np.testing.assert_allclose(R @ np.transpose(R, (0, 2, 1)), np.broadcast_to(np.eye(3), R.shape), atol=2e-6)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=2e-6)
    # Arbitrary leading dims.
    assert axis_angle_to_matrix(rotvecs.reshape(2, 11, 3)).shape == (2, 11, 3, 3)


def test_axis_angle_gradient_is_finite_at_zero():
    v = tf.zeros([2, 3])
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss = tf.reduce_sum(axis_angle_to_matrix(v) * tf.random.normal([2, 3, 3]))
    grad = tape.gradient(loss, v)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))


def test_pose_vec_to_matrix_and_its_inverse(rng):
    axisangle = (rng.normal(size=(3, 1, 3)) * 0.2).astype(np.float32)
    translation = rng.normal(size=(3, 1, 3)).astype(np.float32)
    M = pose_vec_to_matrix(axisangle, translation).numpy()
    R = Rotation.from_rotvec(axisangle[:, 0].astype(np.float64)).as_matrix()
    expected = np.tile(np.eye(4), [3, 1, 1])
    expected[:, :3, :3] = R
    expected[:, :3, 3] = translation[:, 0]  # T(t) @ R: rotate, then translate
    np.testing.assert_allclose(M, expected, atol=2e-6)
    M_inv = pose_vec_to_matrix(axisangle, translation, invert=True).numpy()
    np.testing.assert_allclose(M_inv, np.linalg.inv(expected), atol=5e-6)
    np.testing.assert_allclose(M_inv @ M, np.broadcast_to(np.eye(4), M.shape), atol=5e-6)
    # [B, 3] inputs are accepted too.
    np.testing.assert_allclose(pose_vec_to_matrix(axisangle[:, 0], translation[:, 0]).numpy(), M)


def test_invert_pose_and_relative_pose(rng):
    T = _random_pose(rng, 5, max_angle=2.0, max_t=3.0)
    T_inv = invert_pose(T).numpy()
    np.testing.assert_allclose(T_inv @ T, np.broadcast_to(np.eye(4), T.shape), atol=5e-6)
    np.testing.assert_allclose(T_inv, np.linalg.inv(T.astype(np.float64)), atol=5e-6)
    Ta, Tb = T[:2], _random_pose(rng, 2, max_angle=2.0, max_t=3.0)
    T_ab = relative_pose(Ta, Tb).numpy()
    np.testing.assert_allclose(T_ab, np.linalg.inv(Ta.astype(np.float64)) @ Tb, atol=5e-6)


def test_matrix_to_axis_angle_round_trip(rng):
    directions = rng.normal(size=(7, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    angles = np.array([0.0, 1e-6, 1e-3, 0.5, np.pi / 2, 3.0, np.pi - 1e-4])
    rotvecs = directions * angles[:, None]
    R = Rotation.from_rotvec(rotvecs).as_matrix().astype(np.float32)
    got = matrix_to_axis_angle(R).numpy()
    np.testing.assert_allclose(got, rotvecs, atol=2e-4)
    # The generic range, against scipy.
    more = rng.normal(size=(32, 3))
    R = Rotation.from_rotvec(more).as_matrix()
    np.testing.assert_allclose(matrix_to_axis_angle(R).numpy(), Rotation.from_matrix(R).as_rotvec(), atol=1e-9)
    # At exactly pi both signs are the same rotation: compare the matrices, not the vectors.
    R_pi = Rotation.from_rotvec(directions[:2] * np.pi).as_matrix()
    back = Rotation.from_rotvec(matrix_to_axis_angle(R_pi).numpy()).as_matrix()
    np.testing.assert_allclose(back, R_pi, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(matrix_to_axis_angle(R_pi).numpy(), axis=-1), np.pi, atol=1e-9)


# ---------------------------------------------------------------- projection


def test_backproject_matches_pinhole_formula(rng):
    K = _K(batch=2)
    depth = rng.uniform(0.5, 10, (2, 3, 4, 1)).astype(np.float32)
    points = backproject(depth, invert_intrinsics(K)).numpy()
    i, j = 2, 3  # row, column
    x = (j - K[0, 0, 2]) / K[0, 0, 0] * depth[1, i, j, 0]
    y = (i - K[0, 1, 2]) / K[0, 1, 1] * depth[1, i, j, 0]
    np.testing.assert_allclose(points[1, i, j], [x, y, depth[1, i, j, 0]], rtol=1e-5)
    np.testing.assert_allclose(points[..., 2:], depth, rtol=1e-6)  # z-depth, not ray length


def test_backproject_project_round_trip(rng):
    K = _K(batch=2)
    depth = rng.uniform(0.5, 50, (2, 9, 11, 1)).astype(np.float32)
    points = backproject(depth, invert_intrinsics(K))
    coords, valid = project(points, K, np.tile(np.eye(4, dtype=np.float32), [2, 1, 1]))
    np.testing.assert_allclose(coords.numpy(), np.broadcast_to(pixel_grid(9, 11).numpy(), (2, 9, 11, 2)), atol=1e-3)
    assert valid.shape == (2, 9, 11, 1)
    assert valid.numpy()[:, 1:-1, 1:-1].min() == 1.0
    # A rigid motion then its inverse also round-trips.
    T = _random_pose(rng, 2, max_angle=0.1, max_t=0.2)
    moved = tf.einsum("bij,bhwj->bhwi", T[:, :3, :3], points) + T[:, None, None, :3, 3]
    back, _ = project(moved, K, invert_pose(T))
    np.testing.assert_allclose(back.numpy(), coords.numpy(), atol=2e-3)


def test_project_pure_translation_shifts_by_fx_b_over_d():
    """Camera moved by b along x, fronto-parallel plane at depth d: every pixel shifts by fx * b / d."""
    fx, b, d = 50.0, 0.3, 2.5
    K = _K(fx=fx, batch=1)
    depth = np.full((1, 6, 8, 1), d, np.float32)
    T = np.eye(4, dtype=np.float32)[None].copy()
    T[0, 0, 3] = b  # X_source = X_target + (b, 0, 0)
    coords, valid = project(backproject(depth, invert_intrinsics(K)), K, T)
    grid = pixel_grid(6, 8).numpy()
    np.testing.assert_allclose(coords.numpy()[0, ..., 0], grid[..., 0] + fx * b / d, atol=1e-4)
    np.testing.assert_allclose(coords.numpy()[0, ..., 1], grid[..., 1], atol=1e-4)
    # Shifted by 6 pixels: the last 6 columns leave the 8-wide image.
    np.testing.assert_array_equal(valid.numpy()[0, :, :, 0], np.tile((grid[0, :, 0] + 6.0 <= 7.0), [6, 1]))


def test_project_marks_points_behind_camera_invalid():
    K = _K(batch=1)
    points = np.array([[[[0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [0.0, 0.0, 0.0]]]], np.float32)
    coords, valid = project(points, K, np.eye(4, dtype=np.float32)[None], image_size=(24, 32))
    np.testing.assert_array_equal(valid.numpy()[0, 0, :, 0], [1.0, 0.0, 0.0])
    assert np.all(np.isfinite(coords.numpy()))


# ---------------------------------------------------------------- input checking


def test_bad_shapes_raise_value_error_naming_the_argument():
    K = _K(batch=1)
    with pytest.raises(ValueError, match="K must have shape"):
        scale_intrinsics(np.zeros((2, 3, 2), np.float32), 1.0, 1.0)
    with pytest.raises(ValueError, match="axisangle"):
        axis_angle_to_matrix(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="translation"):
        pose_vec_to_matrix(np.zeros((2, 1, 3), np.float32), np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="T must have shape"):
        invert_pose(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"depth must have shape \[B, H, W, 1\]"):
        backproject(np.ones((1, 4, 5), np.float32), invert_intrinsics(K))
    with pytest.raises(ValueError, match=r"points must have shape \[B, H, W, 3\]"):
        project(np.ones((1, 4, 5, 4), np.float32), K, np.eye(4, dtype=np.float32)[None])
    with pytest.raises(ValueError, match="inv_K"):
        backproject(np.ones((1, 4, 5, 1), np.float32), np.eye(3, dtype=np.float32))
    with pytest.raises(TypeError, match="axisangle"):
        axis_angle_to_matrix(tf.constant(["a", "b", "c"]))


def test_camera_and_pose_ops_trace_with_unknown_dims(rng):
    """Traced once with None batch (and unknown K size) and reused for both 3x3 and 4x4 K."""
    scale = tf.function(
        scale_intrinsics,
        input_signature=[tf.TensorSpec([None, None, None]), tf.TensorSpec([None]), tf.TensorSpec([None])],
    )
    K3 = _K(batch=2)
    K4 = np.tile(np.eye(4, dtype=np.float32), [2, 1, 1])
    K4[:, :3, :3] = K3
    sx, sy = np.array([0.5, 2.0], np.float32), np.array([0.25, 1.0], np.float32)
    eager = scale_intrinsics(K3, sx, sy).numpy()
    np.testing.assert_allclose(scale(K3, sx, sy).numpy(), eager)
    np.testing.assert_allclose(scale(K4, sx, sy).numpy()[:, :3, :3], eager)
    assert scale.experimental_get_tracing_count() == 1
    pose = tf.function(pose_vec_to_matrix, input_signature=[tf.TensorSpec([None, 1, 3])] * 2)
    aa, t = rng.normal(size=(3, 1, 3)).astype(np.float32), rng.normal(size=(3, 1, 3)).astype(np.float32)
    np.testing.assert_allclose(pose(aa, t).numpy(), pose_vec_to_matrix(aa, t).numpy(), atol=1e-6)
    rot = tf.function(axis_angle_to_matrix, input_signature=[tf.TensorSpec(None)])  # unknown rank
    np.testing.assert_allclose(rot(aa).numpy(), axis_angle_to_matrix(aa).numpy(), atol=1e-6)
