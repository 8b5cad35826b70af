"""Depth metrics, crops and the KITTI protocol against hand-worked values, loop references and a real KITTI frame."""

import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.metrics import (
    METRIC_NAMES,
    crop_mask,
    depth_errors,
    depth_errors_tf,
    eigen_crop_mask,
    evaluate_depth,
    garg_crop_mask,
    median_scale,
    median_scale_tf,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KITTI_DEPTH = SHARED / "realdata" / "kitti_object_000008_mmdet3d" / "000008_sparse_depth_DERIVED_uint16_x256.png"


# ----------------------------------------------------------------------------------------------- helpers


def loop_errors(gt, pred, mask):
    """Second formulation: one Python pass over the pixels accumulating sums (math module, no vectorisation)."""
    n = s_abs = s_sq = s_se = s_log2 = s_log10 = 0.0
    hits = [0, 0, 0]
    for g, p, m in zip(np.ravel(gt).tolist(), np.ravel(pred).tolist(), np.ravel(mask).tolist(), strict=True):
        if not (m and g > 0 and math.isfinite(g)):
            continue
        n += 1
        s_abs += abs(g - p) / g
        s_sq += (g - p) ** 2 / g
        s_se += (g - p) ** 2
        s_log2 += (math.log(g) - math.log(p)) ** 2
        s_log10 += abs(math.log10(g) - math.log10(p))
        ratio = max(g / p, p / g)
        for k in range(3):
            hits[k] += ratio < 1.25 ** (k + 1)
    return {
        "abs_rel": s_abs / n,
        "sq_rel": s_sq / n,
        "rmse": math.sqrt(s_se / n),
        "rmse_log": math.sqrt(s_log2 / n),
        "log10": s_log10 / n,
        "a1": hits[0] / n,
        "a2": hits[1] / n,
        "a3": hits[2] / n,
    }


def box(mask):
    """(top, bottom, left, right) of a mask, asserting it is exactly that filled rectangle."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert mask[top:bottom, left:right].all() and mask.sum() == (bottom - top) * (right - left)
    return int(top), int(bottom), int(left), int(right)


def assert_metrics_close(actual, expected, rtol=1e-12, atol=0.0):
    assert set(METRIC_NAMES) <= set(actual)
    for key in METRIC_NAMES:
        assert float(actual[key]) == pytest.approx(expected[key], rel=rtol, abs=atol), key


def random_pair(rng, shape):
    gt = rng.uniform(0.5, 60.0, shape)
    gt[rng.random(shape) < 0.3] = 0.0  # missing LiDAR returns
    pred = gt * rng.lognormal(0.0, 0.3, shape)
    pred[gt == 0] = rng.uniform(0.5, 60.0, int((gt == 0).sum()))
    return gt, pred


@pytest.fixture(scope="module")
def kitti_gt():
    if not KITTI_DEPTH.is_file():
        raise FileNotFoundError(
            f"real KITTI sample missing: {KITTI_DEPTH}. The tests expect the project's shared/ folder beside the "
            "repository (shared/realdata/kitti_object_000008_mmdet3d, see shared/realdata/README.md)"
        )
    raw = cv2.imread(str(KITTI_DEPTH), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16 and raw.shape == (375, 1242)
    return raw.astype(np.float64) / 256.0  # KITTI encoding: metres * 256, 0 = no return


# ---------------------------------------------------------------------------------------- depth_errors


# Six valid pixels (gt = 0 at [0, 3] is missing), chosen so each threshold band is hit:
# ratios max(g/p, p/g) = 1, 2, 1.25 (exactly: the bound is strict), 1.875, 1, 4/3, and 1 for the masked pixel.
HAND_GT = np.array([[1.0, 2.0, 4.0, 0.0], [3.0, 8.0, 6.0, 5.0]])
HAND_PRED = np.array([[1.0, 1.0, 5.0, 7.0], [1.6, 8.0, 4.5, 5.0]])


def test_depth_errors_hand_worked():
    got = depth_errors(HAND_GT, HAND_PRED)
    g = [1, 2, 4, 3, 8, 6, 5]
    p = [1, 1, 5, 1.6, 8, 4.5, 5]
    expected = {
        "abs_rel": np.mean([0, 1 / 2, 1 / 4, 1.4 / 3, 0, 1.5 / 6, 0]),
        "sq_rel": np.mean([0, 1 / 2, 1 / 4, 1.96 / 3, 0, 2.25 / 6, 0]),
        "rmse": np.sqrt(np.mean([0, 1, 1, 1.96, 0, 2.25, 0])),
        "rmse_log": np.sqrt(np.mean([(np.log(a) - np.log(b)) ** 2 for a, b in zip(g, p)])),
        "log10": np.mean([0, np.log10(2), np.log10(1.25), np.log10(3 / 1.6), 0, np.log10(6 / 4.5), 0]),
        "a1": 3 / 7,  # ratios 1, 1, 1 (1.25 is not < 1.25)
        "a2": 5 / 7,  # + 1.25 and 4/3 (< 1.5625)
        "a3": 6 / 7,  # + 1.875 (< 1.953125); 2 fails every band
    }
    assert_metrics_close(got, expected)
    assert all(type(got[key]) is float for key in METRIC_NAMES)


def test_depth_errors_mask_excludes_pixels():
    mask = np.ones_like(HAND_GT, dtype=bool)
    mask[1, 3] = False  # drop the (5, 5) pixel: 6 valid pixels remain
    got = depth_errors(HAND_GT, HAND_PRED, mask)
    assert got["a1"] == pytest.approx(2 / 6) and got["a3"] == pytest.approx(5 / 6)
    assert got["rmse"] == pytest.approx(np.sqrt((1 + 1 + 1.96 + 2.25) / 6))


def test_depth_errors_random_against_loop(rng):
    gt, pred = random_pair(rng, (9, 11))
    gt[0, 0], gt[1, 1] = np.nan, np.inf  # non-finite ground truth counts as missing
    mask = rng.random(gt.shape) < 0.8
    assert_metrics_close(depth_errors(gt, pred, mask), loop_errors(gt, pred, mask), rtol=1e-10)
    # Eager tensors and lists are accepted like arrays.
    assert_metrics_close(depth_errors(tf.constant(gt), pred.tolist(), mask), loop_errors(gt, pred, mask), rtol=1e-10)


def test_median_scale_hand_worked():
    # valid gt 1, 2, 4, 3, 8, 6, 5 -> median 4; pred on those pixels 1, 1, 5, 1.6, 8, 4.5, 5 -> median 4.5
    assert median_scale(HAND_GT, HAND_PRED) == pytest.approx(4 / 4.5)
    mask = np.ones_like(HAND_GT, dtype=bool)
    mask[1, 3] = False  # even count: medians (3 + 4) / 2 and (1.6 + 4.5) / 2, numpy's convention
    assert median_scale(HAND_GT, HAND_PRED, mask) == pytest.approx(3.5 / 3.05)


@pytest.mark.parametrize(
    "gt, pred, mask, error, match",
    [
        (np.ones((2, 3)), np.ones((3, 2)), None, ValueError, "shape"),
        (np.zeros((2, 2)), np.ones((2, 2)), None, ValueError, "no valid pixels"),
        (np.ones((2, 2)), np.array([[1.0, 0.0], [1.0, 1.0]]), None, ValueError, "non-positive"),
        (np.ones((2, 2)), np.array([[1.0, np.nan], [1.0, 1.0]]), None, ValueError, "non-finite"),
        (np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 3), bool), ValueError, "mask has shape"),
        (np.ones((2, 2)), np.ones((2, 2)), np.full((2, 2), 0.5), TypeError, "mask must be boolean"),
        (np.array([["a", "b"]]), np.ones((1, 2)), None, TypeError, "gt must hold real numbers"),
    ],
)
def test_depth_errors_rejects_bad_input(gt, pred, mask, error, match):
    with pytest.raises(error, match=match):
        depth_errors(gt, pred, mask)


# ------------------------------------------------------------------------------------------------ TF


def test_depth_errors_tf_matches_numpy(rng):
    gt, pred = random_pair(rng, (2, 7, 9, 1))
    mask = rng.random(gt.shape) < 0.8
    expected = depth_errors(gt, pred, mask)
    eager = depth_errors_tf(gt.astype(np.float32), pred.astype(np.float32), mask)
    graph = tf.function(depth_errors_tf)(tf.constant(gt, tf.float32), tf.constant(pred, tf.float32), mask)
    for got in (eager, graph):
        assert set(got) == set(METRIC_NAMES) and all(v.shape == () and v.dtype == tf.float32 for v in got.values())
        assert_metrics_close({k: v.numpy() for k, v in got.items()}, expected, rtol=2e-5, atol=1e-6)
    # Without a mask: gt > 0 alone selects the pixels.
    no_mask = depth_errors_tf(gt.astype(np.float32), pred.astype(np.float32))
    assert_metrics_close({k: v.numpy() for k, v in no_mask.items()}, depth_errors(gt, pred), rtol=2e-5, atol=1e-6)


def test_depth_errors_tf_edge_cases():
    nan_result = depth_errors_tf(tf.zeros([1, 2, 2, 1]), tf.ones([1, 2, 2, 1]))
    assert all(np.isnan(v.numpy()) for v in nan_result.values())  # documented: no valid pixel -> NaN
    with pytest.raises(ValueError, match="shape"):
        depth_errors_tf(tf.ones([1, 4, 4, 1]), tf.ones([1, 2, 2, 1]))
    with pytest.raises(TypeError, match="mask"):
        depth_errors_tf(tf.ones([2, 2]), tf.ones([2, 2]), tf.ones([2, 2]))


def test_median_scale_tf_matches_numpy(rng):
    gt, pred = random_pair(rng, (2, 5, 6, 1))
    first_valid = np.flatnonzero(gt > 0)[0]
    for drop_one in (False, True):  # dropping one valid pixel flips the count's parity: odd and even medians
        mask = np.ones(gt.shape, dtype=bool)
        mask.flat[first_valid] = not drop_one
        expected = median_scale(gt, pred, mask)
        got = tf.function(median_scale_tf)(gt.astype(np.float32), pred.astype(np.float32), mask)
        assert float(got) == pytest.approx(expected, rel=1e-6)
    assert np.isnan(median_scale_tf(np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)).numpy())


# ---------------------------------------------------------------------------------------------- crops


def test_garg_crop_boundaries():
    # KITTI 375x1242: int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44,
    # int(0.96405229*1242)=1197: the [153:371, 44:1197] box Monodepth2 also uses during training (A.8).
    mask = garg_crop_mask(375, 1242)
    assert mask.shape == (375, 1242) and mask.dtype == bool
    assert box(mask) == (153, 371, 44, 1197)
    assert mask.mean() == pytest.approx((371 - 153) * (1197 - 44) / (375 * 1242))
    # 480x640: 195.89 -> 195, 476.11 -> 476, 23.006 -> 23, 616.99 -> 616 (truncation, as Monodepth2's int32 cast)
    assert box(garg_crop_mask(480, 640)) == (195, 476, 23, 616)


def test_eigen_nyu_crop_boundaries():
    mask = eigen_crop_mask(480, 640)
    assert mask.shape == (480, 640)
    assert box(mask) == (45, 471, 41, 601)
    assert mask.mean() == pytest.approx(426 * 560 / (480 * 640))
    # 375x1242 (a non-NYU size): rows ceil(35.16)=36 .. floor(367.97)=367, cols ceil(79.57)=80 .. floor(1166.3)=1166
    assert box(eigen_crop_mask(375, 1242)) == (36, 367, 80, 1166)


@pytest.mark.parametrize("height, width", [(240, 320), (120, 160), (375, 1242), (481, 641), (7, 9)])
def test_eigen_crop_scaling_keeps_pixels_inside_reference_box(height, width):
    """Independent rule with exact fractions: pixel r spans [r, r+1)/H of the image; keep it iff that span lies
    inside [45, 471)/480 (rows) and [41, 601)/640 (cols)."""
    rows = [Fraction(45, 480) <= Fraction(r, height) and Fraction(r + 1, height) <= Fraction(471, 480)
            for r in range(height)]
    cols = [Fraction(41, 640) <= Fraction(c, width) and Fraction(c + 1, width) <= Fraction(601, 640)
            for c in range(width)]
    np.testing.assert_array_equal(eigen_crop_mask(height, width), np.outer(rows, cols))


def test_crop_mask_by_name():
    np.testing.assert_array_equal(crop_mask("garg", 375, 1242), garg_crop_mask(375, 1242))
    np.testing.assert_array_equal(crop_mask("eigen_nyu", 480, 640), eigen_crop_mask(480, 640))
    assert crop_mask("none", 3, 4).all() and crop_mask("none", 3, 4).shape == (3, 4)
    with pytest.raises(ValueError, match="crop must be one of"):
        crop_mask("eigen", 480, 640)
    with pytest.raises(ValueError, match="height must be a positive integer"):
        crop_mask("garg", 0, 640)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        garg_crop_mask(375, 12.5)


# ------------------------------------------------------------------------------------ KITTI protocol


def test_evaluate_real_kitti_frame_scaled_prediction(kitti_gt):
    gt = kitti_gt
    has_gt = gt > 0
    assert has_gt.sum() == 17107  # SOURCE.txt: 17,107 valid pixels, 2.61 to 76.58 m
    assert gt[has_gt].min() == pytest.approx(2.61, abs=0.01) and gt[has_gt].max() == pytest.approx(76.58, abs=0.01)
    k = 3.7
    pred = np.where(has_gt, k * gt, 1.0)  # off-GT pixels get an arbitrary positive depth: never evaluated

    scaled = evaluate_depth([gt], [pred])  # defaults: Garg crop, (1e-3, 80) m, per-image median scaling
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12) and scaled["rmse"] == pytest.approx(0.0, abs=1e-10)
    assert scaled["a1"] == 1.0 and scaled["num_images"] == 1
    assert scaled["scale_ratio_median"] == pytest.approx(1 / k) and scaled["scale_ratio_std"] == 0.0
    # Valid pixels: the Garg box [153:371, 44:1197] cuts the LiDAR points above the horizon band and at the image
    # sides; every depth is below the 80 m cap. Counted independently with the hand-derived box.
    in_box = np.zeros_like(has_gt)
    in_box[153:371, 44:1197] = True
    assert scaled["num_valid_pixels"] == int((has_gt & in_box).sum())
    assert 0.75 * 17107 < scaled["num_valid_pixels"] < 17107

    # No median scaling, k < 1 so the clamp to [1e-3, 80] never bites: errors are closed-form in k.
    k_small = 0.5
    raw = evaluate_depth([gt], [np.where(has_gt, k_small * gt, 1.0)], median_scaling=False)
    g = gt[has_gt & in_box]
    assert raw["abs_rel"] == pytest.approx(1 - k_small)
    assert raw["sq_rel"] == pytest.approx((1 - k_small) ** 2 * g.mean())
    assert raw["rmse"] == pytest.approx((1 - k_small) * np.sqrt(np.mean(g**2)))
    assert raw["rmse_log"] == pytest.approx(np.log(1 / k_small)) and raw["a3"] == 0.0  # ratio 2 fails every band
    assert "scale_ratio_median" not in raw

    # k = 3.7 without scaling: predictions above 80 m are clamped to 80 (A.8), so abs_rel < k - 1.
    clamped = evaluate_depth([gt], [pred], median_scaling=False)
    expected = loop_errors(g, np.minimum(k * g, 80.0), np.ones_like(g, dtype=bool))
    assert_metrics_close(clamped, expected, rtol=1e-9)
    assert clamped["abs_rel"] < k - 1

    # Stereo-style fixed factor (A.8 uses 5.4): pred = gt / 5.4 is recovered exactly.
    stereo = evaluate_depth([gt], [np.where(has_gt, gt / 5.4, 1.0)], median_scaling=False, scale_factor=5.4)
    assert stereo["abs_rel"] == pytest.approx(0.0, abs=1e-12) and stereo["a1"] == 1.0


def test_evaluate_depth_means_over_images_of_different_sizes(rng):
    gts, preds, expected, ratios = [], [], [], []
    for shape in [(24, 40), (30, 50), (20, 36)]:
        gt, pred = random_pair(rng, shape)
        gt[0, 0] = 95.0  # beyond the 80 m cap: excluded
        pred[1, 1] = 400.0  # an outlier the clamp to 80 m must limit after scaling
        gts.append(gt)
        preds.append(pred)
        valid = (gt > 1e-3) & (gt < 80.0) & garg_crop_mask(*shape)
        ratio = np.median(gt[valid]) / np.median(pred[valid])
        ratios.append(ratio)
        expected.append(loop_errors(gt[valid], np.clip(pred[valid] * ratio, 1e-3, 80.0), np.ones(valid.sum(), bool)))
    got = evaluate_depth(gts, preds)
    assert_metrics_close(got, {k: np.mean([e[k] for e in expected]) for k in METRIC_NAMES}, rtol=1e-9)
    assert got["num_images"] == 3
    assert got["scale_ratio_median"] == pytest.approx(np.median(ratios))
    assert got["scale_ratio_std"] == pytest.approx(np.std(np.array(ratios) / np.median(ratios)))


def test_evaluate_depth_accepts_batched_arrays_and_tensors(rng):
    gt, pred = random_pair(rng, (2, 16, 20, 1))  # channels-last batch, as models output
    from_list = evaluate_depth(list(gt[..., 0]), list(pred[..., 0]), crop="eigen_nyu", max_depth=10.0)
    from_tensor = evaluate_depth(tf.constant(gt), tf.constant(pred), crop="eigen_nyu", max_depth=10.0)
    assert_metrics_close(from_tensor, from_list)
    assert from_tensor["num_images"] == 2


@pytest.mark.parametrize(
    "gts, preds, kwargs, match",
    [
        ([np.ones((8, 8))], [np.ones((4, 4))], {}, "resize the prediction"),
        ([np.ones((8, 8))], [np.ones((8, 8)), np.ones((8, 8))], {}, "pair up"),
        ([], [], {}, "empty"),
        ([np.ones((8, 8))], [np.ones((8, 8))], {"crop": "kitti"}, "crop must be one of"),
        ([np.ones((8, 8))], [np.ones((8, 8))], {"min_depth": 80.0, "max_depth": 10.0}, "min_depth < max_depth"),
        ([np.ones((8, 8))], [np.ones((8, 8))], {"scale_factor": 0.0}, "scale_factor"),
        ([np.full((8, 8), 100.0)], [np.ones((8, 8))], {"crop": "none"}, "no valid pixels .*image 0"),
        ([np.ones((8, 8))], [np.full((8, 8), np.nan)], {"crop": "none"}, "non-finite"),
        ([np.ones((8, 8))], [-np.ones((8, 8))], {"crop": "none"}, "median of pred"),
        (np.ones((8, 8)), np.ones((8, 8)), {}, r"\[N, H, W\]"),
    ],
)
def test_evaluate_depth_rejects_bad_input(gts, preds, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate_depth(gts, preds, **kwargs)
