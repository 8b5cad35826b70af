"""Tests for tfdepth.losses.segmentation: U-Net weight map (numpy) and weighted CE (TF) (spec B.3)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses import unet_weight_map, weighted_cross_entropy

# ---------------------------------------------------------------------------------------------------- weight map


def weight_map_reference(objects, shape, w0, sigma):
    """Brute force from an explicit list of object masks: border distance = min pixel-centre distance - 1/2,
    candidates exclude the pixel's own object, class-balanced w_c with both classes present."""
    h, w = shape
    fg = np.any(objects, axis=0)
    n, n_fg = h * w, fg.sum()
    wc = np.where(fg, n / (2.0 * n_fg), n / (2.0 * (n - n_fg)))
    coords = [np.argwhere(m) for m in objects]
    out = np.empty(shape)
    for i in range(h):
        for j in range(w):
            cands = sorted(
                np.sqrt(((c - (i, j)) ** 2).sum(1)).min() - 0.5 for m, c in zip(objects, coords) if not m[i, j]
            )
            term = 0.0 if len(cands) < 2 else w0 * np.exp(-((cands[0] + cands[1]) ** 2) / (2 * sigma**2))
            out[i, j] = wc[i, j] + term
    return out


def two_squares(gap):
    inst = np.zeros((24, 40), np.int32)
    inst[6:16, 5:15] = 1
    inst[6:16, 15 + gap : 25 + gap] = 2
    return inst


def test_gap_centre_between_two_squares():
    k, w0, sigma = 5, 10.0, 5.0
    inst = two_squares(k)
    wmap = unet_weight_map(inst, w0=w0, sigma=sigma)
    assert wmap.dtype == np.float32 and wmap.shape == inst.shape
    n, n_bg = inst.size, np.sum(inst == 0)
    # Gap columns 15..19: the centre column 17 is k/2 = 2.5 px from both squares' borders.
    expected = n / (2.0 * n_bg) + w0 * np.exp(-(k**2) / (2 * sigma**2))
    np.testing.assert_allclose(wmap[11, 17], expected, rtol=1e-6)
    # A binary mask gives the same map: its connected components are the objects.
    np.testing.assert_array_equal(unet_weight_map((inst > 0).astype(np.uint8), w0=w0, sigma=sigma), wmap)


def test_matches_brute_force_reference():
    inst = np.zeros((14, 18), np.int32)
    inst[1:5, 1:6] = 3
    inst[1:5, 8:12] = 7
    inst[7:12, 2:5] = 1
    inst[8:13, 9:16] = 2
    inst[6, 6:9] = 4  # a thin bar between the others
    inst[10:13, 6:8] = 5  # touches object 2 side by side: different ids stay separate objects
    objects = [inst == label for label in (1, 2, 3, 4, 5, 7)]
    got = unet_weight_map(inst, w0=8.0, sigma=3.0)
    np.testing.assert_allclose(got, weight_map_reference(objects, inst.shape, 8.0, 3.0), rtol=1e-5)


def test_border_term_vanishes_far_from_objects():
    inst = np.zeros((20, 200), np.int32)
    inst[5:10, 2:6] = 1
    inst[5:10, 9:13] = 2
    wmap = unet_weight_map(inst)
    wc_bg = inst.size / (2.0 * np.sum(inst == 0))
    np.testing.assert_allclose(wmap[:, 150:], wc_bg, rtol=1e-6)
    assert wmap[7, 7] > wc_bg + 5.0  # and is large in the 3-px gap


def test_class_balance_values_and_single_instance():
    inst = np.zeros((10, 12), np.int32)
    inst[2:5, 3:9] = 1  # one instance: no separation border, so w = w_c
    n, n_fg = inst.size, np.sum(inst > 0)
    wmap = unet_weight_map(inst, w0=10.0, sigma=5.0)
    np.testing.assert_allclose(wmap[inst > 0], n / (2.0 * n_fg), rtol=1e-6)
    np.testing.assert_allclose(wmap[inst == 0], n / (2.0 * (n - n_fg)), rtol=1e-6)
    np.testing.assert_allclose(wmap.mean(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(unet_weight_map(inst, class_balance=False), 1.0)


def test_no_instances_gives_class_weight_only():
    empty = np.zeros((8, 9), np.int32)
    # One class present: nothing to balance, w_c = 1 (documented); no border term.
    np.testing.assert_array_equal(unet_weight_map(empty), 1.0)
    np.testing.assert_array_equal(unet_weight_map(empty, class_balance=False), 1.0)


def test_class_balance_off_keeps_border_term():
    inst = two_squares(3)
    wmap = unet_weight_map(inst, w0=10.0, sigma=5.0, class_balance=False)
    np.testing.assert_allclose(wmap[11, 16], 1.0 + 10.0 * np.exp(-9 / 50.0), rtol=1e-6)
    np.testing.assert_allclose(wmap[inst > 0], 1.0)  # two objects: inside each, only one other candidate


def test_batched_equals_per_image():
    batch = np.stack([two_squares(2), two_squares(6), np.zeros((24, 40), np.int32)])
    got = unet_weight_map(batch, w0=5.0, sigma=4.0)
    assert got.shape == batch.shape and got.dtype == np.float32
    for n in range(3):
        np.testing.assert_array_equal(got[n], unet_weight_map(batch[n], w0=5.0, sigma=4.0))


def test_weight_map_rejects_bad_inputs():
    inst = two_squares(3)
    with pytest.raises(TypeError, match="integer or bool"):
        unet_weight_map(inst.astype(np.float32))
    with pytest.raises(ValueError, match=">= 0"):
        unet_weight_map(inst - 1)
    with pytest.raises(ValueError, match=r"\[H, W\] or \[N, H, W\]"):
        unet_weight_map(inst[None, None])
    with pytest.raises(ValueError, match="sigma"):
        unet_weight_map(inst, sigma=0.0)
    with pytest.raises(ValueError, match="w0"):
        unet_weight_map(inst, w0=-1.0)


# ---------------------------------------------------------------------------------------------------- weighted CE


def weighted_ce_reference(logits, labels, weights):
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    return (weights * nll).sum((1, 2)) / weights.sum((1, 2))


def test_weighted_ce_matches_numpy_reference(rng):
    logits = rng.normal(0, 2, (2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5)).astype(np.int32)
    weights = rng.uniform(0.1, 5.0, (2, 4, 5)).astype(np.float32)
    got = weighted_cross_entropy(logits, labels, weights).numpy()
    assert got.shape == (2,)
    np.testing.assert_allclose(got, weighted_ce_reference(logits, labels, weights), rtol=1e-5)


def test_uniform_weights_equal_plain_mean_ce(rng):
    logits = rng.normal(0, 1, (2, 3, 4, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (2, 3, 4)).astype(np.uint8)
    plain = weighted_ce_reference(logits, labels, np.ones((2, 3, 4)))
    np.testing.assert_allclose(weighted_cross_entropy(logits, labels).numpy(), plain, rtol=1e-5)
    threes = np.full((2, 3, 4), 3.0, np.float32)
    np.testing.assert_allclose(weighted_cross_entropy(logits, labels, threes).numpy(), plain, rtol=1e-5)


def test_weighted_ce_gradient(rng):
    logits = tf.Variable(rng.normal(0, 1, (1, 3, 3, 2)).astype(np.float32))
    labels = rng.integers(0, 2, (1, 3, 3)).astype(np.int32)
    weights = tf.Variable(rng.uniform(0.5, 2.0, (1, 3, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weighted_cross_entropy(logits, labels, weights))
    g_logits, g_weights = tape.gradient(loss, [logits, weights])
    g = g_logits.numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    assert g_weights is None  # the weight map is a constant of the ground truth
    # Analytic: dL/dz = w (softmax(z) - onehot) / sum w.
    z, w = logits.numpy(), weights.numpy()
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    onehot = np.eye(2)[labels]
    np.testing.assert_allclose(g, w[..., None] * (p - onehot) / w.sum(), atol=1e-6)


def test_weighted_ce_stable_for_large_logits_and_zero_weights():
    logits = np.zeros((2, 2, 2, 2), np.float32)
    logits[..., 0] = 1000.0  # a sigmoid-then-softmax chain would saturate; raw logits must stay finite
    labels = np.ones((2, 2, 2), np.int32)
    weights = np.ones((2, 2, 2), np.float32)
    weights[1] = 0.0
    got = weighted_cross_entropy(logits, labels, weights).numpy()
    np.testing.assert_allclose(got, [1000.0, 0.0], rtol=1e-6)


def test_weighted_ce_rejects_bad_inputs(rng):
    logits = rng.normal(0, 1, (1, 3, 3, 2)).astype(np.float32)
    labels = np.zeros((1, 3, 3), np.int32)
    with pytest.raises(ValueError, match="no channel axis"):
        weighted_cross_entropy(logits, labels[..., None])
    with pytest.raises(TypeError, match="integer class-index"):
        weighted_cross_entropy(logits, labels.astype(np.float32))
    with pytest.raises(ValueError, match="K >= 2"):
        weighted_cross_entropy(logits[..., :1], labels)
    with pytest.raises(ValueError, match="`weights` must have shape"):
        weighted_cross_entropy(logits, labels, np.ones((1, 3, 2), np.float32))
    with pytest.raises(ValueError, match="must match `logits`"):
        weighted_cross_entropy(logits, labels[:, :2])
