"""Tests for tfdepth.losses.smoothness against a numpy reference and analytic cases (spec A.6 step 6)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses import edge_aware_smoothness
from tfdepth.losses.smoothness import _forward_difference


def smoothness_reference(disp, image):
    """Loop over samples; np.diff for forward differences, float64."""
    out = []
    for d, im in zip(disp.astype(np.float64), image.astype(np.float64)):
        d = d[..., 0] / (d.mean() + 1e-7)
        wx = np.exp(-np.abs(np.diff(im, axis=1)).mean(-1))
        wy = np.exp(-np.abs(np.diff(im, axis=0)).mean(-1))
        out.append((np.abs(np.diff(d, axis=1)) * wx).mean() + (np.abs(np.diff(d, axis=0)) * wy).mean())
    return np.array(out)


def test_matches_numpy_reference(rng):
    disp = rng.uniform(0.01, 1.0, (3, 6, 9, 1)).astype(np.float32)
    image = rng.random((3, 6, 9, 3), dtype=np.float32)
    got = edge_aware_smoothness(disp, image).numpy()
    assert got.shape == (3,)
    np.testing.assert_allclose(got, smoothness_reference(disp, image), rtol=1e-5)


def test_constant_disparity_gives_zero(rng):
    disp = np.full((2, 5, 7, 1), 0.4, np.float32)
    image = rng.random((2, 5, 7, 3), dtype=np.float32)
    np.testing.assert_array_equal(edge_aware_smoothness(disp, image).numpy(), 0.0)


def test_step_on_image_edge_is_penalised_by_exp_of_image_step():
    h, w, col = 4, 8, 5
    disp = np.ones((1, h, w, 1), np.float32)
    disp[:, :, col:] = 2.0
    flat = np.full((1, h, w, 3), 0.5, np.float32)
    edge = flat.copy()
    step = np.array([0.1, 0.3, 0.5], np.float32)
    edge[:, :, col:] += step  # image edge at the same column as the disparity step
    mean = disp.mean()
    # Only the x term is nonzero: one column of w - 1 differences carries |2 - 1| / mean in each of the h rows.
    flat_expected = (1.0 / mean) / (w - 1)
    got_flat = float(edge_aware_smoothness(disp, flat)[0])
    got_edge = float(edge_aware_smoothness(disp, edge)[0])
    np.testing.assert_allclose(got_flat, flat_expected, rtol=1e-5)
    np.testing.assert_allclose(got_edge, flat_expected * np.exp(-step.mean()), rtol=1e-5)


def test_vertical_step_uses_y_term():
    disp = np.ones((1, 6, 3, 1), np.float32)
    disp[:, 4:] = 3.0
    image = np.zeros((1, 6, 3, 3), np.float32)
    expected = (2.0 / disp.mean()) / (6 - 1)  # one row of the 5 y-differences carries |3 - 1| / mean
    np.testing.assert_allclose(float(edge_aware_smoothness(disp, image)[0]), expected, rtol=1e-5)


def test_scale_invariance_from_mean_normalisation(rng):
    disp = rng.uniform(0.05, 1.0, (2, 5, 6, 1)).astype(np.float32)
    image = rng.random((2, 5, 6, 3), dtype=np.float32)
    base = edge_aware_smoothness(disp, image).numpy()
    np.testing.assert_allclose(edge_aware_smoothness(disp * 5.0, image).numpy(), base, rtol=1e-5)


def test_samples_are_independent(rng):
    disp = rng.uniform(0.05, 1.0, (2, 4, 5, 1)).astype(np.float32)
    image = rng.random((2, 4, 5, 3), dtype=np.float32)
    batched = edge_aware_smoothness(disp, image).numpy()
    for n in range(2):
        single = edge_aware_smoothness(disp[n : n + 1], image[n : n + 1]).numpy()
        np.testing.assert_allclose(batched[n], single[0], rtol=1e-6)


def test_gradient_is_finite_and_nonzero(rng):
    disp = tf.Variable(rng.uniform(0.05, 1.0, (1, 4, 5, 1)).astype(np.float32))
    image = rng.random((1, 4, 5, 3), dtype=np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(edge_aware_smoothness(disp, image))
    grad = tape.gradient(loss, disp).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_rejects_bad_inputs(rng):
    disp = rng.random((1, 4, 5, 1), dtype=np.float32)
    image = rng.random((1, 4, 5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="1 channel"):
        edge_aware_smoothness(image, image)
    with pytest.raises(ValueError, match="share \\[B, h, w\\]"):
        edge_aware_smoothness(disp, image[:, :2])
    with pytest.raises(TypeError, match="floating-point"):
        edge_aware_smoothness(disp, (image * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="rank 4"):
        edge_aware_smoothness(disp[0], image[0])
    with pytest.raises(ValueError, match="width >= 2"):
        edge_aware_smoothness(disp[:, :, :1], image[:, :, :1])


def test_gradient_matches_finite_differences_of_the_numpy_reference(rng):
    """The differences as 2-tap convolutions: forward values equal the slice form bit for bit, and the gradient
    (transposed convolutions through the mean normalisation) equals central differences of the numpy loop."""
    disp = rng.uniform(0.05, 1.0, (2, 4, 6, 1))
    image = rng.random((2, 4, 6, 3))
    weights = np.array([0.7, 1.3])
    var = tf.Variable(disp)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(edge_aware_smoothness(var, image) * weights)
    grad = tape.gradient(loss, var).numpy()
    numeric = np.zeros_like(disp)
    for index in np.ndindex(disp.shape):
        step = np.zeros_like(disp)
        step[index] = 1e-6
        numeric[index] = ((smoothness_reference(disp + step, image) - smoothness_reference(disp - step, image))
                          * weights).sum() / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-7)
    d32 = disp.astype(np.float32)
    n = d32 / (d32.mean(axis=(1, 2), keepdims=True) + np.float32(1e-7))
    np.testing.assert_array_equal(_forward_difference(tf.constant(n), 2).numpy(), n[:, :, 1:] - n[:, :, :-1])
    np.testing.assert_array_equal(_forward_difference(tf.constant(n), 1).numpy(), n[:, 1:] - n[:, :-1])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_runs_in_low_precision(rng, dtype):
    disp = tf.constant(rng.uniform(0.05, 1.0, (1, 4, 5, 1)), dtype)
    image = tf.constant(rng.random((1, 4, 5, 3)), dtype)
    got = edge_aware_smoothness(disp, image)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy().astype(np.float64),
                               smoothness_reference(disp.numpy().astype(np.float64), image.numpy().astype(np.float64)),
                               rtol=3e-2)
