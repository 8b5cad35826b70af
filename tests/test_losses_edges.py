"""SDDR's edge losses (tfdepth.losses.edges): L_grad (Eq. 7), L_fusion (Eq. 8-9) and the total (Eq. 10), against
numpy references written with explicit loops and analytic cases (specs/sddr.md §4.2-4.3)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses.affine_invariant import multi_output_gt_loss
from tfdepth.losses.edges import edge_fusion_loss, edge_guided_gradient_loss, edge_regions_tf, sddr_loss


def _t(x):
    return tf.constant(np.asarray(x, np.float32)[..., None])


# ---------------------------------------------------------------------------------------------- L_fusion


def _np_fusion(omega, g, a=0.02, bands=4):
    """Eq. 8-9 per image by explicit loops: rank bands of G (stable), quantile thresholds of Omega."""
    out = []
    for o, gs in zip(omega.reshape(len(omega), -1), g.reshape(len(g), -1)):
        n = o.size
        order = sorted(range(n), key=lambda i: (gs[i], i))  # ascending G, ties by index
        o_sorted = sorted(o)
        total = 0.0
        for band in range(1, bands + 1):
            k = max(1, math.ceil(band * a * n - 1e-6))
            t_low, t_high = o_sorted[k - 1], o_sorted[n - k]
            total += sum(max(0.0, o[i] - t_low) for i in order[:k])
            total += sum(max(0.0, t_high - o[i]) for i in order[n - k:])
        out.append(total / (bands * n))
    return np.array(out)


def test_fusion_matches_numpy(rng):
    g = rng.random((2, 10, 12))
    omega = rng.random((2, 10, 12))
    np.testing.assert_allclose(edge_fusion_loss(_t(omega), _t(g)).numpy(), _np_fusion(omega, g), rtol=1e-5)
    np.testing.assert_allclose(edge_fusion_loss(_t(omega), _t(g), a=0.05, num_bands=3).numpy(),
                               _np_fusion(omega, g, 0.05, 3), rtol=1e-5)


def test_fusion_is_zero_for_a_rank_consistent_omega_and_positive_otherwise(rng):
    g = rng.random((1, 20, 20))
    assert float(edge_fusion_loss(_t(0.2 + 0.5 * g), _t(g))[0]) == 0.0  # Omega ordered like G_S: edges high
    assert float(edge_fusion_loss(_t(1.0 - g), _t(g))[0]) > 0.05  # Omega high where flat: penalised


def test_fusion_bands_by_rank_survive_ties():
    # 97 % of G_S is exactly 0 (flat): a strict "G_S < t_a" set would be empty; rank bands hold k pixels.
    g = np.zeros((1, 10, 10))
    g[0, 0, :3] = [1.0, 2.0, 3.0]
    omega = np.full((1, 10, 10), 0.5)
    omega[0, 9, 9] = 0.9  # a flat pixel with high Omega: in the lowest bands (by index order among the ties)?
    got = edge_fusion_loss(_t(omega), _t(g)).numpy()
    np.testing.assert_allclose(got, _np_fusion(omega, g), rtol=1e-6)
    omega2 = np.full((1, 10, 10), 0.5)
    omega2[0, 0, :3] = 0.1  # the three edge pixels have the lowest Omega: the high bands must see it
    assert float(edge_fusion_loss(_t(omega2), _t(g))[0]) > 0.0
    np.testing.assert_allclose(edge_fusion_loss(_t(omega2), _t(g)).numpy(), _np_fusion(omega2, g), rtol=1e-6)


def test_fusion_gradient_is_the_hinge_subgradient_with_fixed_thresholds(rng):
    g = rng.random((1, 10, 10))
    omega = tf.Variable(_t(rng.random((1, 10, 10))))
    with tf.GradientTape() as tape:
        loss = edge_fusion_loss(omega, _t(g))[0]
    grad = tape.gradient(loss, omega).numpy().ravel()
    o, gs, n = omega.numpy().ravel(), g.ravel(), 100
    order = np.argsort(gs, kind="stable")
    expected = np.zeros(n)
    for band in range(1, 5):
        k = max(1, math.ceil(band * 0.02 * n - 1e-6))
        t_low, t_high = np.sort(o)[k - 1], np.sort(o)[n - k]
        expected[order[:k]] += (o[order[:k]] > t_low) / (4 * n)
        expected[order[n - k:]] -= (o[order[n - k:]] < t_high) / (4 * n)
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_fusion_resizes_the_label_to_omega(rng):
    g = rng.random((1, 16, 16))
    omega = rng.random((1, 8, 8))
    small = tf.image.resize(_t(g), (8, 8), method="area").numpy()[..., 0]
    np.testing.assert_allclose(edge_fusion_loss(_t(omega), _t(g)).numpy(), _np_fusion(omega, small), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- L_grad


def _np_sobel_l1(d):
    p = np.pad(d, 1, mode="edge")
    h, w = d.shape
    at = lambda dy, dx: p[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]  # noqa: E731
    rows = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    cols = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    return np.abs(rows) + np.abs(cols)


def _np_grad_loss(depth, g_s, regions, n_regions):
    g0 = _np_sobel_l1(depth)
    errors = []
    for n in range(n_regions):
        m = regions == n
        if not m.any():
            continue
        x, y = g0[m], g_s[m]
        a = np.vstack([x, np.ones_like(x)]).T
        if np.ptp(x) > 0:
            (s, t), *_ = np.linalg.lstsq(a, y, rcond=None)
        else:
            s, t = 1.0, np.mean(y - x)
        errors.append(np.mean(np.abs(s * x + t - y)))
    return np.mean(errors) if errors else 0.0


def _two_edges(size=24):
    """A depth map with two raised squares in opposite corners and its edge label."""
    depth = np.zeros((size, size))
    depth[2:7, 2:7] = 1.0
    depth[17:22, 17:22] = 3.0
    return depth, _np_sobel_l1(depth)


def test_regions_split_separate_edges_and_stay_in_the_edge_band():
    depth, g = _two_edges()
    regions = edge_regions_tf(_t(g[None]), num_regions=2, top_fraction=0.2, band_radius=1).numpy()[0]
    first, second = set(np.unique(regions[:12, :12])) - {-1}, set(np.unique(regions[12:, 12:])) - {-1}
    assert len(first) == 1 and len(second) == 1 and first != second  # one region per object outline
    assert np.all(regions[10:14] == -1) and np.all(regions[:, 10:14] == -1)  # flat areas: no region
    assert np.all(regions[4, 4] == -1)  # the flat inside of a square (2 px from its outline) neither
    flat = edge_regions_tf(tf.zeros([1, 8, 8, 1])).numpy()
    assert np.all(flat == -1)  # a flat label has no edges (G_S > 0 required)


def test_grad_loss_matches_numpy_and_is_zero_for_an_aligned_edge_map(rng):
    depth, g = _two_edges()
    pred = depth + 0.2 * rng.random(depth.shape)
    regions = edge_regions_tf(_t(g[None]), num_regions=2, top_fraction=0.2).numpy()
    got = edge_guided_gradient_loss(_t(pred[None]), _t(g[None]), num_regions=2, top_fraction=0.2).numpy()
    np.testing.assert_allclose(got, [_np_grad_loss(pred, g, regions[0], 2)], rtol=1e-4)
    # G_S an affine map of G(D0) inside the regions: the per-region least squares removes it (Eq. 7).
    label = 2.5 * _np_sobel_l1(pred) + 0.7
    zero = edge_guided_gradient_loss(_t(pred[None]), _t(label[None]), num_regions=2, top_fraction=0.2).numpy()
    np.testing.assert_allclose(zero, 0.0, atol=1e-4)
    flat = edge_guided_gradient_loss(_t(pred[None]), tf.zeros([1, 24, 24, 1])).numpy()
    assert flat[0] == 0.0  # no edges in the label -> nothing to match, no NaN


def test_grad_loss_gradient_reaches_depth(rng):
    depth, g = _two_edges()
    pred = tf.Variable(_t((depth + 0.3 * rng.random(depth.shape))[None]))
    with tf.GradientTape() as tape:
        loss = edge_guided_gradient_loss(pred, _t(g[None]), num_regions=2, top_fraction=0.2)[0]
    grad = tape.gradient(loss, pred).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


# ------------------------------------------------------------------------------------------------- total


def _outputs(rng, size=32):
    return {"depth": _t(rng.random((1, size, size))), "depth_1": _t(rng.random((1, size // 2, size // 2))),
            "depth_2": _t(rng.random((1, size // 4, size // 4))), "omega_1": _t(rng.random((1, size // 2, size // 2))),
            "omega_2": _t(rng.random((1, size // 4, size // 4)))}


def test_total_applies_the_weights_once(rng):
    out = _outputs(rng)
    gt = _t(rng.random((1, 32, 32)) + 1)
    g_s = _t(_np_sobel_l1(rng.random((32, 32)))[None])
    terms = sddr_loss(out, gt, None, g_s)
    l_gt = multi_output_gt_loss(out, gt).numpy()
    l_grad = edge_guided_gradient_loss(out["depth"], g_s).numpy()
    l_fusion = (edge_fusion_loss(out["omega_1"], g_s).numpy() + edge_fusion_loss(out["omega_2"], g_s).numpy()) / 2
    np.testing.assert_allclose(terms["gt"].numpy(), l_gt, rtol=1e-6)
    np.testing.assert_allclose(terms["grad"].numpy(), l_grad, rtol=1e-6)
    np.testing.assert_allclose(terms["fusion"].numpy(), l_fusion, rtol=1e-6)
    np.testing.assert_allclose(terms["loss"].numpy(), l_gt + 0.5 * l_grad + 0.1 * l_fusion, rtol=1e-6)
    custom = sddr_loss(out, gt, None, g_s, grad_weight=2.0, fusion_weight=tf.constant(3.0))
    np.testing.assert_allclose(custom["loss"].numpy(), l_gt + 2.0 * l_grad + 3.0 * l_fusion, rtol=1e-6)


def test_total_epoch_one_is_ground_truth_only(rng):
    out = _outputs(rng)
    gt = _t(rng.random((1, 32, 32)) + 1)
    terms = sddr_loss(out, gt, grad_weight=0, fusion_weight=0.0)  # no label needed
    np.testing.assert_allclose(terms["loss"].numpy(), multi_output_gt_loss(out, gt).numpy(), rtol=1e-6)
    assert float(terms["grad"][0]) == 0.0 and float(terms["fusion"][0]) == 0.0
    with pytest.raises(ValueError, match="g_s"):
        sddr_loss(out, gt)
