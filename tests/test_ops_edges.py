"""tfdepth.ops.edges: Sobel edge representation, bilateral filter, min-max normalisation against numpy references
and analytic cases (SDDR, specs/sddr.md §3.1-3.2)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.ops.edges import (
    bilateral_filter_tf,
    edge_representation_tf,
    minmax_normalize_tf,
    replicate_pad_tf,
    sobel_gradients_tf,
)


def _np_sobel(d, pad_mode):
    """Independent numpy Sobel by explicit neighbour sums (cross-correlation, as F.conv2d)."""
    p = np.pad(d, 1, mode="edge" if pad_mode == "replicate" else "constant")
    h, w = d.shape
    at = lambda dy, dx: p[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]  # noqa: E731
    rows = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    cols = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    return rows, cols


@pytest.mark.parametrize("padding", ["replicate", "zero"])
def test_sobel_matches_numpy(rng, padding):
    d = rng.random((9, 13)).astype(np.float32)
    rows, cols = sobel_gradients_tf(d[None, :, :, None], padding)
    ref_rows, ref_cols = _np_sobel(d.astype(np.float64), padding)
    np.testing.assert_allclose(rows.numpy()[0, :, :, 0], ref_rows, atol=1e-5)
    np.testing.assert_allclose(cols.numpy()[0, :, :, 0], ref_cols, atol=1e-5)
    g = edge_representation_tf(d[None, :, :, None], padding).numpy()[0, :, :, 0]
    np.testing.assert_allclose(g, np.abs(ref_rows) + np.abs(ref_cols), atol=1e-5)


def test_sobel_analytic_ramp_and_step():
    # A ramp d = 2 * col: each kernel row contributes d[c+1] - d[c-1] = 4, weighted 1 + 2 + 1, so d_cols = 16
    # in the interior and d_rows = 0 everywhere.
    ramp = np.tile(2.0 * np.arange(8, dtype=np.float32), (6, 1))
    rows, cols = sobel_gradients_tf(ramp[None, :, :, None])
    np.testing.assert_allclose(cols.numpy()[0, 1:-1, 1:-1, 0], 16.0)
    np.testing.assert_allclose(rows.numpy()[0, :, :, 0], 0.0)
    # Replicate padding: a constant map has no edges anywhere, zero padding invents a border frame.
    const = np.full((1, 6, 6, 1), 3.0, np.float32)
    assert np.abs(edge_representation_tf(const).numpy()).max() == 0.0
    assert edge_representation_tf(const, "zero").numpy()[0, 0, 0, 0] > 0.0
    with pytest.raises(ValueError, match="padding"):
        edge_representation_tf(const, "reflect")
    with pytest.raises(ValueError, match=r"\[B, H, W, 1\]"):
        edge_representation_tf(np.zeros((1, 6, 6, 3), np.float32))


def test_replicate_pad_matches_numpy_edge_mode(rng):
    x = rng.random((2, 4, 5, 3)).astype(np.float32)
    for pad in (1, 2, 3):
        ref = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="edge")
        np.testing.assert_array_equal(replicate_pad_tf(tf.constant(x), pad).numpy(), ref)


def _np_bilateral(x, radius, sigma_space, sigma_range):
    h, w = x.shape
    p = np.pad(x, radius, mode="edge")
    s_r = sigma_range * np.abs(x).max()
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            num = den = 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    q = p[i + radius + dy, j + radius + dx]
                    wgt = np.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2))
                    wgt *= np.exp(-(q - x[i, j]) ** 2 / (2 * s_r**2))
                    num += wgt * q
                    den += wgt
            out[i, j] = num / den
    return out


def test_bilateral_filter_matches_numpy_and_keeps_edges(rng):
    x = rng.random((7, 8)).astype(np.float64)
    got = bilateral_filter_tf(x[None, :, :, None].astype(np.float32), radius=2, sigma_space=1.2, sigma_range=0.2)
    np.testing.assert_allclose(got.numpy()[0, :, :, 0], _np_bilateral(x, 2, 1.2, 0.2), atol=1e-5)
    # A step (edge map of a depth edge) survives, low-amplitude noise in the flat part is smoothed.
    step = np.zeros((12, 12))
    step[:, 6:] = 1.0
    noisy = step + 0.01 * rng.standard_normal(step.shape)
    out = bilateral_filter_tf(noisy[None, :, :, None].astype(np.float32)).numpy()[0, :, :, 0]
    assert abs(out[:, 5].mean() - 0.0) < 0.02 and abs(out[:, 6].mean() - 1.0) < 0.02  # edge kept sharp
    assert out[:, :4].std() < 0.6 * noisy[:, :4].std()  # noise reduced
    assert np.all(bilateral_filter_tf(np.zeros((1, 5, 5, 1), np.float32)).numpy() == 0.0)  # no NaN for G = 0


def test_minmax_normalize_and_constant_fallback():
    x = tf.constant([[[[2.0], [4.0]], [[6.0], [10.0]]], [[[5.0], [5.0]], [[5.0], [5.0]]]])
    out = minmax_normalize_tf(x).numpy()
    np.testing.assert_allclose(out[0, :, :, 0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(out[1], 0.0)  # a constant map -> 0, never NaN
