"""SDDR's L_gt (tfdepth.losses.affine_invariant): MiDaS trimmed SSI MAE + multi-scale gradient matching, against an
independent numpy implementation (loops and np.median) and analytic cases (specs/sddr.md §4.1)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses.affine_invariant import (
    affine_invariant_loss,
    masked_median_tf,
    multi_output_gt_loss,
    robust_normalize_tf,
)


def _np_normalize(x, m, official_median=False):
    t = np.median((m * x).ravel()) if official_median else np.median(x[m > 0])
    s = max(np.sum(m * np.abs(x - t)) / m.sum(), 1e-6)
    return (x - t) / s


def _np_grad(p, g, m, scales):
    """Per scale: (sum of masked |d R| over both axes, valid count) by explicit loops."""
    num = []
    for k in range(scales):
        st = 2**k
        pp, gg, mm = p[::st, ::st], g[::st, ::st], m[::st, ::st]
        r = mm * (pp - gg)
        loss = 0.0
        h, w = r.shape
        for i in range(h):
            for j in range(w - 1):
                loss += abs(r[i, j + 1] - r[i, j]) * mm[i, j + 1] * mm[i, j]
        for i in range(h - 1):
            for j in range(w):
                loss += abs(r[i + 1, j] - r[i, j]) * mm[i + 1, j] * mm[i, j]
        num.append((loss, mm.sum()))
    return num


def _np_loss(pred, gt, mask, trim=0.2, alpha=0.5, scales=4, reduction="image", official_median=False):
    """pred, gt, mask: [B, H, W] float64 arrays; returns [B] (per-image) or the scalar batch loss."""
    preds = [_np_normalize(p, m, official_median) for p, m in zip(pred, mask)]
    gts = [_np_normalize(g, m, official_median) for g, m in zip(gt, mask)]
    if reduction == "image":
        out = []
        for p, g, m in zip(preds, gts, mask):
            res = np.sort(np.abs(p - g)[m > 0])
            data = res[: int(len(res) * (1 - trim))].sum() / (2 * m.sum())
            reg = sum(loss / cnt for loss, cnt in _np_grad(p, g, m, scales))
            out.append(data + alpha * reg)
        return np.array(out)
    res = np.sort(np.concatenate([np.abs(p - g)[m > 0] for p, g, m in zip(preds, gts, mask)]))
    data = res[: int(len(res) * (1 - trim))].sum() / (2 * mask.sum())
    grads = [_np_grad(p, g, m, scales) for p, g, m in zip(preds, gts, mask)]
    reg = sum(sum(grads[b][k][0] for b in range(len(grads))) / sum(grads[b][k][1] for b in range(len(grads)))
              for k in range(scales))
    return data + alpha * reg


def _batch(rng, b=2, h=12, w=10):
    gt = rng.random((b, h, w)) * 5 + 1
    pred = 0.3 * gt + rng.normal(0, 0.5, gt.shape)
    mask = (rng.random(gt.shape) > 0.25).astype(np.float64)
    return pred, gt, mask


def _tf(x):
    return tf.constant(x[..., None], tf.float32)


@pytest.mark.parametrize("official_median", [False, True])
def test_matches_numpy_per_image(rng, official_median):
    pred, gt, mask = _batch(rng)
    got = affine_invariant_loss(_tf(pred), _tf(gt), _tf(mask), official_median=official_median).numpy()
    np.testing.assert_allclose(got, _np_loss(pred, gt, mask, official_median=official_median), rtol=2e-4)


def test_matches_numpy_batch_reduction(rng):
    pred, gt, mask = _batch(rng, b=3)
    got = affine_invariant_loss(_tf(pred), _tf(gt), _tf(mask), reduction="batch").numpy()
    assert got.shape == (3,)
    np.testing.assert_allclose(got.mean(), _np_loss(pred, gt, mask, reduction="batch"), rtol=2e-4)


def test_affine_invariance_and_zero_for_an_affine_prediction(rng):
    _, gt, mask = _batch(rng)
    exact = affine_invariant_loss(_tf(-0.0 + 2.5 * gt + 7.0), _tf(gt), _tf(mask)).numpy()
    np.testing.assert_allclose(exact, 0.0, atol=1e-5)
    pred = rng.random(gt.shape)
    a = affine_invariant_loss(_tf(pred), _tf(gt), _tf(mask)).numpy()
    b = affine_invariant_loss(_tf(4.0 * pred - 3.0), _tf(gt), _tf(mask)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_invalid_pixels_do_not_count_and_nan_targets_are_masked(rng):
    pred, gt, mask = _batch(rng, b=1)
    ref = affine_invariant_loss(_tf(pred), _tf(gt), _tf(mask)).numpy()
    pred2, gt2 = pred.copy(), gt.copy()
    pred2[mask == 0] = 1e6
    gt2[mask == 0] = np.nan
    got = affine_invariant_loss(_tf(pred2), _tf(gt2), _tf(mask)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    empty = affine_invariant_loss(_tf(pred), _tf(gt), _tf(np.zeros_like(mask))).numpy()
    assert np.all(empty == 0.0)  # no valid pixels -> 0, never NaN


def test_masked_median_and_normalisation():
    x = tf.constant([1.0, 9.0, 3.0, 100.0, 5.0, 7.0])[None, :, None, None]
    m = tf.constant([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])[None, :, None, None]
    assert float(masked_median_tf(x, m).numpy().item()) == 5.0  # median of 1, 9, 3, 5, 7
    m_even = tf.constant([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])[None, :, None, None]
    assert float(masked_median_tf(x, m_even).numpy().item()) == 4.0  # numpy: mean of 3 and 5
    n = robust_normalize_tf(x, m).numpy().ravel()
    np.testing.assert_allclose(n[[0, 1, 2, 4, 5]], (np.array([1, 9, 3, 5, 7]) - 5) / 2.4, rtol=1e-6)


def test_multi_output_sum_with_nearest_resized_targets(rng):
    gt = rng.random((1, 16, 16)) + 1
    mask = np.ones_like(gt)
    outputs = {"depth": _tf(rng.random((1, 16, 16))), "depth_1": _tf(rng.random((1, 8, 8))),
               "depth_2": _tf(rng.random((1, 4, 4)))}
    total = multi_output_gt_loss(outputs, _tf(gt), _tf(mask)).numpy()
    parts = [affine_invariant_loss(outputs["depth"], _tf(gt), _tf(mask)).numpy()]
    for key, size in (("depth_1", 8), ("depth_2", 4)):
        small = tf.image.resize(_tf(gt), (size, size), method="nearest")
        parts.append(affine_invariant_loss(outputs[key], small, tf.ones_like(small)).numpy())
    np.testing.assert_allclose(total, sum(parts), rtol=1e-5)
    with pytest.raises(ValueError, match="depth_3"):
        multi_output_gt_loss(outputs, _tf(gt), keys=("depth_3",))


def test_gradient_flows_to_the_prediction(rng):
    pred, gt, mask = _batch(rng, b=1)
    p = tf.Variable(_tf(pred))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(affine_invariant_loss(p, _tf(gt), _tf(mask)))
    grad = tape.gradient(loss, p).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
