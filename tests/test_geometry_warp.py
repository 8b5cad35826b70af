"""bilinear_sample and inverse_warp: numpy reference, exact cases, gradients, tf.function with None dims, XLA."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.geometry import bilinear_sample, intrinsics_from_normalized, inverse_warp, pixel_grid


def _reference_sample(image, coords):
    """PyTorch grid_sample(bilinear, border, align_corners=True) written as explicit loops: clamp the position,
    then add each of the four neighbours that lies inside the image, weighted by its bilinear weight."""
    B, H, W, C = image.shape
    _, Ho, Wo, _ = coords.shape
    out = np.zeros((B, Ho, Wo, C), np.float64)
    for b in range(B):
        for i in range(Ho):
            for j in range(Wo):
                x = min(max(float(coords[b, i, j, 0]), 0.0), W - 1.0)
                y = min(max(float(coords[b, i, j, 1]), 0.0), H - 1.0)
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    if 0 <= xi < W and 0 <= yi < H:
                        w = (1.0 - abs(x - xi)) * (1.0 - abs(y - yi))
                        out[b, i, j] += w * image[b, yi, xi]
    return out


def _K(batch, height, width):
    return tf.tile(intrinsics_from_normalized(0.58, 1.92, 0.5, 0.5, height, width)[tf.newaxis], [batch, 1, 1])


def test_bilinear_sample_matches_numpy_reference(rng):
    image = rng.uniform(0, 1, (2, 6, 7, 3)).astype(np.float32)
    # Output grid of a different size than the image; about a third of the coordinates fall outside.
    coords = np.stack([rng.uniform(-3, 9, (2, 5, 4)), rng.uniform(-3, 8, (2, 5, 4))], -1).astype(np.float32)
    coords[0, 0, 0] = [6.0, 5.0]  # exactly the last pixel centre (x0 = W-1: the clamped x1 must stay in bounds)
    coords[0, 0, 1] = [6.0, 2.5]
    coords[0, 0, 2] = [-1e6, 1e6]
    got = bilinear_sample(image, coords).numpy()
    np.testing.assert_allclose(got, _reference_sample(image, coords), atol=1e-5)
    assert got.shape == (2, 5, 4, 3) and got.dtype == np.float32


def test_bilinear_sample_integer_coords_reproduce_pixels(rng):
    image = rng.uniform(0, 1, (2, 5, 6, 4)).astype(np.float32)
    rows = rng.integers(0, 5, (2, 3, 3))
    cols = rng.integers(0, 6, (2, 3, 3))
    coords = np.stack([cols, rows], -1).astype(np.float32)
    got = bilinear_sample(image, coords).numpy()
    expected = image[np.arange(2)[:, None, None], rows, cols]
    np.testing.assert_array_equal(got, expected)
    # The full pixel grid is the identity.
    grid = np.broadcast_to(pixel_grid(5, 6).numpy(), (2, 5, 6, 2))
    np.testing.assert_array_equal(bilinear_sample(image, grid).numpy(), image)


def test_bilinear_sample_gradients_match_finite_differences(rng):
    image = rng.uniform(0, 1, (2, 4, 5, 2))
    # Non-integer, in-range coordinates (fractional parts away from 0 and 1, where the sampler has kinks).
    base = np.stack([rng.integers(0, 4, (2, 3, 3)), rng.integers(0, 3, (2, 3, 3))], -1)
    coords = base + rng.uniform(0.2, 0.8, base.shape)
    theo, numer = tf.test.compute_gradient(lambda c: bilinear_sample(tf.constant(image), c), [tf.constant(coords)])
    np.testing.assert_allclose(theo[0], numer[0], atol=1e-7)
    assert np.abs(theo[0]).max() > 0.01  # the check is not vacuous
    theo, numer = tf.test.compute_gradient(lambda im: bilinear_sample(im, tf.constant(coords)), [tf.constant(image)])
    np.testing.assert_allclose(theo[0], numer[0], atol=1e-7)


def test_bilinear_sample_gradient_is_zero_where_clamped(rng):
    image = tf.constant(rng.uniform(0, 1, (1, 4, 5, 3)).astype(np.float32))
    coords = tf.constant([[[[-2.0, 1.5], [2.5, 7.0], [1.5, 2.5]]]])  # x clamped, y clamped, inside
    with tf.GradientTape() as tape:
        tape.watch(coords)
        loss = tf.reduce_sum(bilinear_sample(image, coords))
    grad = tape.gradient(loss, coords).numpy()[0, 0]
    assert grad[0, 0] == 0.0 and grad[1, 1] == 0.0
    assert grad[0, 1] != 0.0 and grad[1, 0] != 0.0 and np.all(grad[2] != 0.0)


def test_bilinear_sample_mixed_precision_keeps_image_dtype(rng):
    image = rng.uniform(0, 1, (1, 4, 5, 3)).astype(np.float32)
    coords = rng.uniform(0, 3, (1, 2, 2, 2)).astype(np.float32)
    got = bilinear_sample(tf.cast(image, tf.float16), coords)
    assert got.dtype == tf.float16
    np.testing.assert_allclose(got.numpy(), _reference_sample(image, coords), atol=2e-3)


def test_identity_warp_reproduces_image(rng):
    B, H, W = 2, 12, 20
    image = rng.uniform(0, 1, (B, H, W, 3)).astype(np.float32)
    depth = rng.uniform(0.1, 80.0, (B, H, W, 1)).astype(np.float32)
    T = np.tile(np.eye(4, dtype=np.float32), [B, 1, 1])
    warped, valid = inverse_warp(image, depth, T, _K(B, H, W))
    np.testing.assert_allclose(warped.numpy(), image, atol=1e-4)
    assert valid.numpy()[:, 1:-1, 1:-1].min() == 1.0


def test_inverse_warp_pure_translation_shifts_image(rng):
    """Source camera moved by b along x, fronto-parallel plane at depth d: target pixel u reads source u + fx b/d."""
    B, H, W, d = 1, 8, 24, 4.0
    K = _K(B, H, W)
    fx = float(K[0, 0, 0])
    b = 2.0 * d / fx  # a two-pixel shift
    source = rng.uniform(0, 1, (B, H, W, 3)).astype(np.float32)
    T = np.eye(4, dtype=np.float32)[None].copy()
    T[0, 0, 3] = b
    warped, valid = inverse_warp(source, np.full((B, H, W, 1), d, np.float32), T, K)
    np.testing.assert_allclose(warped.numpy()[:, :, : W - 2], source[:, :, 2:], atol=1e-4)
    np.testing.assert_array_equal(valid.numpy()[0, :, :, 0].min(axis=0), [1.0] * (W - 2) + [0.0, 0.0])


def _warp_inputs(rng, B, H, W):
    image = rng.uniform(0, 1, (B, H, W, 3)).astype(np.float32)
    depth = rng.uniform(2.0, 10.0, (B, H, W, 1)).astype(np.float32)
    T = np.tile(np.eye(4, dtype=np.float32), [B, 1, 1])
    T[:, :3, 3] = rng.uniform(-0.1, 0.1, (B, 3))
    return image, depth, T


def test_inverse_warp_in_tf_function_with_unknown_dims_and_4x4_K(rng):
    spec = [
        tf.TensorSpec([None, None, None, 3], tf.float32),
        tf.TensorSpec([None, None, None, 1], tf.float32),
        tf.TensorSpec([None, 4, 4], tf.float32),
        tf.TensorSpec([None, 4, 4], tf.float32),
    ]
    traced = tf.function(inverse_warp, input_signature=spec)
    for B, H, W in ((1, 6, 10), (3, 9, 7)):
        image, depth, T = _warp_inputs(rng, B, H, W)
        K3 = _K(B, H, W)
        K4 = tf.pad(K3, [[0, 0], [0, 1], [0, 1]]) + tf.pad(tf.ones([B, 1, 1]), [[0, 0], [3, 0], [3, 0]])
        warped, valid = traced(image, depth, T, K4)
        warped_ref, valid_ref = inverse_warp(image, depth, T, K3)
        np.testing.assert_allclose(warped.numpy(), warped_ref.numpy(), atol=1e-6)
        np.testing.assert_array_equal(valid.numpy(), valid_ref.numpy())
    assert traced.experimental_get_tracing_count() == 1


def test_inverse_warp_under_xla_matches_eager_with_gradients(rng):
    image, depth, T = _warp_inputs(rng, 2, 8, 12)
    K = _K(2, 8, 12)

    def loss_and_grads(image, depth):
        with tf.GradientTape() as tape:
            tape.watch([image, depth])
            warped, valid = inverse_warp(image, depth, T, K)
            loss = tf.reduce_sum(tf.square(warped - 0.5) * valid)
        return loss, tape.gradient(loss, [image, depth])

    eager = loss_and_grads(tf.constant(image), tf.constant(depth))
    jitted = tf.function(loss_and_grads, jit_compile=True)(tf.constant(image), tf.constant(depth))
    np.testing.assert_allclose(jitted[0].numpy(), eager[0].numpy(), rtol=1e-5)
    for a, b in zip(jitted[1], eager[1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert np.abs(eager[1][1].numpy()).max() > 0  # depth receives a gradient through the coordinates


def test_warp_bad_inputs_raise_clear_errors():
    image = np.zeros((1, 4, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"image must have shape \[B, H, W, C\]"):
        bilinear_sample(image[0], np.zeros((1, 4, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"coords must have shape \[B, Ho, Wo, 2\]"):
        bilinear_sample(image, np.zeros((1, 4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="same batch size"):
        bilinear_sample(image, np.zeros((2, 4, 5, 2), np.float32))
    with pytest.raises(ValueError, match="T_source_from_target"):
        inverse_warp(image, np.ones((1, 4, 5, 1), np.float32), np.eye(3, dtype=np.float32)[None], _K(1, 4, 5))
    with pytest.raises(ValueError, match="K must have shape"):
        inverse_warp(image, np.ones((1, 4, 5, 1), np.float32), np.eye(4, dtype=np.float32)[None], np.eye(2)[None])
    with pytest.raises(TypeError, match="image"):
        bilinear_sample(tf.constant([["x"]]), np.zeros((1, 4, 5, 2), np.float32))


def test_source_pixel_planes_match_numpy_backproject_transform_project(rng):
    """The one-step planes (K R K^-1 depth + K t) equal the two-step pinhole chain worked in float64 numpy."""
    from tfdepth.geometry.projection import source_pixel_planes
    from scipy.spatial.transform import Rotation

    b, h, w = 2, 5, 7
    depth = rng.uniform(1.0, 20.0, (b, h, w, 1))
    K = np.array([[[6.0, 0.0, 3.2], [0.0, 5.5, 2.1], [0.0, 0.0, 1.0]]] * b)
    T = np.tile(np.eye(4), (b, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.05, (b, 3))).as_matrix()
    T[:, :3, 3] = rng.normal(0, 0.3, (b, 3))
    T[1, 2, 3] = -5.0  # pushes some points behind the source camera: invalid there
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    pix = np.stack([u, v, np.ones_like(u)], -1).astype(np.float64)  # [h, w, 3]
    want_x, want_y, want_valid, want_z = [], [], [], []
    for i in range(b):
        points = depth[i] * (pix @ np.linalg.inv(K[i]).T)  # [h, w, 3]
        cam = (points @ T[i, :3, :3].T + T[i, :3, 3]) @ K[i].T
        x, y = cam[..., 0] / (cam[..., 2] + 1e-7), cam[..., 1] / (cam[..., 2] + 1e-7)
        want_x.append(x)
        want_y.append(y)
        want_z.append(cam[..., 2])
        want_valid.append((cam[..., 2] > 1e-3) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))
    x, y, valid = source_pixel_planes(tf.constant(depth, tf.float32), tf.constant(K, tf.float32),
                                      tf.constant(T, tf.float32), image_size=(h, w))
    z_ok = np.stack(want_z) > 0.5  # coordinates compared away from the camera plane (where they blow up)
    np.testing.assert_allclose(x.numpy()[z_ok], np.stack(want_x)[z_ok], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(y.numpy()[z_ok], np.stack(want_y)[z_ok], rtol=1e-4, atol=1e-3)
    assert valid.shape == (b, h, w, 1)
    np.testing.assert_array_equal(valid.numpy()[..., 0] > 0.5, np.stack(want_valid))
    assert not np.stack(want_valid).all() and np.stack(want_valid).any()  # the case has both kinds of pixels
