"""RSN losses (spec rsn.md §6) against numpy references written here and against hand-worked cases: region loss
L_r (every region counts equally; per image, not pooled over the batch as the code does), natural log (not log10),
iterative loss L_i with weights 0.2/0.3/0.5, masks, empty images, gradients."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses.region import ITERATION_WEIGHTS, iterative_loss, region_loss, region_loss_per_image

EPS = 1e-6


def np_region_loss(pred, target, ids, log):
    """Independent reference: loop over images and over the ids present."""
    values = []
    for p, t, s in zip(pred[..., 0].astype(np.float64), target[..., 0].astype(np.float64), ids[..., 0]):
        e = (np.log(p + EPS) - np.log(t + EPS)) if log else (p - t)
        regions = [i for i in np.unique(s) if i > 0]
        if regions:
            values.append(np.mean([np.mean(e[s == i] ** 2) for i in regions]))
    return float(np.mean(values)) if values else 0.0


def np_iterative_loss(depths, target, weights, log):
    t = target[..., 0].astype(np.float64)
    valid = t > 0
    total, parts = 0.0, []
    for d, w in zip(depths, weights):
        d = d[..., 0].astype(np.float64)
        per_image = []
        for di, ti, vi in zip(d, t, valid):
            if vi.any():
                e = (np.log(di[vi] + EPS) - np.log(ti[vi] + EPS)) if log else (di[vi] - ti[vi])
                per_image.append(np.mean(e ** 2))
        parts.append(float(np.mean(per_image)))
        total += w * parts[-1]
    return total, parts


def random_batch(seed, b=3, h=6, w=7, max_id=5):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.5, 6.0, (b, h, w, 1)).astype(np.float32)
    pred = (target * rng.uniform(0.6, 1.5, target.shape)).astype(np.float32)
    ids = rng.integers(0, max_id + 1, (b, h, w, 1)).astype(np.int32)
    return pred, target, ids


@pytest.mark.parametrize("log", [False, True])
def test_region_loss_matches_numpy(log):
    pred, target, ids = random_batch(0)
    ids[1] = np.where(ids[1] == 2, 4, ids[1])  # a gap in the ids of image 1: K counts the ids present
    got = float(region_loss(pred, target, ids, log=log))
    assert got == pytest.approx(np_region_loss(pred, target, ids, log), rel=1e-5)


def test_region_loss_hand_case_every_region_counts_equally():
    # One image, 4 pixels: region 1 = one pixel with error 2 (squared 4), region 2 = three exact pixels.
    # L_r = (4 + 0) / 2 = 2, while the pixel mean of the squared error would be 1.
    target = np.array([1.0, 2.0, 2.0, 2.0], np.float32).reshape(1, 1, 4, 1)
    pred = np.array([3.0, 2.0, 2.0, 2.0], np.float32).reshape(1, 1, 4, 1)
    ids = np.array([1, 2, 2, 2], np.int32).reshape(1, 1, 4, 1)
    assert float(region_loss(pred, target, ids)) == pytest.approx(2.0)
    # Natural log: region 1 error ln(3 + eps) - ln(1 + eps) = ln 3 (to 1e-6); L_r = ln(3)^2 / 2.
    assert float(region_loss(pred, target, ids, log=True)) == pytest.approx(np.log(3.0) ** 2 / 2, rel=1e-5)
    # A log10 loss (the later code) would be ln(10)^2 = 5.3x smaller: the test tells the two apart.
    assert np.log(3.0) ** 2 / 2 / (np.log10(3.0) ** 2 / 2) == pytest.approx(np.log(10.0) ** 2)


def test_region_loss_is_per_image_not_pooled_over_the_batch():
    # Image 0: region 1 = 1 pixel, error 2; image 1: region 1 = 3 pixels, error 0.
    # Per image (ours): (4 + 0) / 2 = 2. The code pools "region 1" across the batch: 4 / 4 = 1.
    target = np.ones((2, 1, 3, 1), np.float32)
    pred = target.copy()
    pred[0, 0, 0, 0] = 3.0
    ids = np.array([[1, 0, 0], [1, 1, 1]], np.int32).reshape(2, 1, 3, 1)
    assert float(region_loss(pred, target, ids)) == pytest.approx(2.0)
    per_image, has = region_loss_per_image(pred, target, ids)
    np.testing.assert_allclose(per_image.numpy(), [4.0, 0.0])
    np.testing.assert_array_equal(has.numpy(), [1.0, 1.0])


def test_region_loss_empty_images_give_no_nan():
    pred, target, ids = random_batch(1)
    ids[0] = 0  # image 0 has no region: excluded from the batch mean
    got = float(region_loss(pred, target, ids))
    assert got == pytest.approx(np_region_loss(pred[1:], target[1:], ids[1:], False), rel=1e-5)
    zero = region_loss(pred, target, np.zeros_like(ids))
    assert float(zero) == 0.0
    with tf.GradientTape() as tape:
        p = tf.Variable(pred)
        loss = region_loss(p, target, np.zeros_like(ids), log=True)
    grad = tape.gradient(loss, p)
    assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_region_loss_gradient_matches_numpy_derivative():
    pred, target, ids = random_batch(2, b=2, h=3, w=4, max_id=2)
    p = tf.Variable(pred)
    with tf.GradientTape() as tape:
        loss = region_loss(p, target, ids)
    grad = tape.gradient(loss, p).numpy()
    # d/dp of (1/B') sum_b (1/K_b) sum_i (1/|R_i|) sum_{p in R_i} (p - t)^2 = 2 (p - t) / (B' K_b |R_i|)
    expected = np.zeros_like(pred, np.float64)
    images = [b for b in range(2) if (ids[b] > 0).any()]
    for b in images:
        regions = [i for i in np.unique(ids[b]) if i > 0]
        for i in regions:
            m = ids[b] == i
            expected[b][m] = 2 * (pred[b][m] - target[b][m]) / (len(images) * len(regions) * m.sum())
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_region_loss_bad_inputs():
    pred, target, ids = random_batch(3)
    with pytest.raises(TypeError, match="integer id map"):
        region_loss(pred, target, ids.astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        region_loss(pred, target[:, :3], ids)
    with pytest.raises(tf.errors.InvalidArgumentError, match="support_ids` must be >= 0"):
        region_loss(pred, target, -ids)


@pytest.mark.parametrize("log", [True, False])
def test_iterative_loss_matches_numpy(log):
    rng = np.random.default_rng(4)
    target = rng.uniform(0.5, 5.0, (2, 5, 6, 1)).astype(np.float32)
    target[0, 0, :3] = 0.0  # no ground truth: masked out by default
    depths = [(target + rng.normal(0, 0.3, target.shape)).clip(0.0, None).astype(np.float32) for _ in range(3)]
    out = iterative_loss(depths, target, log=log)
    total, parts = np_iterative_loss(depths, target, ITERATION_WEIGHTS, log)
    assert sorted(out) == ["iter_1", "iter_2", "iter_3", "total"]
    for k in range(3):
        assert float(out[f"iter_{k + 1}"]) == pytest.approx(parts[k], rel=1e-5)
    assert float(out["total"]) == pytest.approx(total, rel=1e-5)


def test_iterative_loss_hand_case_weights():
    # Errors ln 2, ln 3, 0 at every pixel of iterations 1..3: L_i = 0.2 ln(2)^2 + 0.3 ln(3)^2 + 0.5 * 0.
    target = np.ones((1, 2, 2, 1), np.float32)
    depths = [2 * target, 3 * target, target]
    out = iterative_loss(depths, target)
    assert float(out["total"]) == pytest.approx(0.2 * np.log(2) ** 2 + 0.3 * np.log(3) ** 2, rel=1e-5)
    assert float(iterative_loss(depths, target, weights=(1 / 3,) * 3)["total"]) == pytest.approx(
        (np.log(2) ** 2 + np.log(3) ** 2) / 3, rel=1e-5)  # the earliest version's equal weights


def test_iterative_loss_mask_and_no_nan():
    target = np.zeros((2, 3, 3, 1), np.float32)
    target[1] = 2.0
    depths = [np.full_like(target, 1.0)] * 3
    out = iterative_loss(depths, target)  # image 0 has no valid pixel: ignored, no log(0) anywhere
    assert float(out["iter_1"]) == pytest.approx(np.log(2.0) ** 2, rel=1e-5)
    mask = np.zeros_like(target, bool)
    mask[1, 0, 0] = True
    d = [np.where(mask, 1.0, 2.0).astype(np.float32)] * 3
    assert float(iterative_loss(d, target, mask=mask)["iter_2"]) == pytest.approx(np.log(2.0) ** 2, rel=1e-5)
    v = tf.Variable(depths[0])
    with tf.GradientTape() as tape:
        loss = iterative_loss([v, v, v], target)["total"]
    assert np.all(np.isfinite(tape.gradient(loss, v).numpy()))
    with pytest.raises(ValueError, match="3 iterations but 2 weights"):
        iterative_loss(depths, target, weights=(0.5, 0.5))
