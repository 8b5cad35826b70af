"""SDDR's evaluation metrics (tfdepth.edge_metrics; specs/sddr.md §6.2-6.3): hand-computed small cases for Boost's
D3R and ORD and the paper's ranking ORD, the SLIC superpixels, least-squares-aligned depth metrics, and the real
Middlebury 2003 Cones sample."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tfdepth.edge_metrics import (
    aligned_depth_metrics,
    boost_normalize,
    boost_ord,
    boost_pair_error,
    edge_guided_pairs,
    evaluate_refinement,
    ranking_ord_from_pairs,
    slic_superpixels,
    superpixel_centres,
    superpixel_neighbours,
)

CONES = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "middlebury2003_cones_pandora"


def test_boost_ord():
    assert boost_ord(1.2, 1.0, 1.1) == 1 and boost_ord(1.0, 1.2, 1.1) == -1 and boost_ord(1.05, 1.0, 1.1) == 0
    assert boost_ord(0.0, 0.0, 1.01) == 0  # eps keeps 0 / 0 defined


def _pair_case():
    """Four superpixel centres on a 1x4 'image'; values at the centres and Boost's neighbour lists."""
    gt = np.array([[1.0, 1.5, 1.05, 0.0]])
    est = np.array([[1.0, 1.0, 2.0, 0.5]])
    centres = np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    relations = [[1, 2], [0, 2, 3], [0, 1], [1]]
    return gt, est, centres, relations


def test_boost_d3r_and_ord_by_hand():
    gt, est, centres, relations = _pair_case()
    # D3R (discontinuity 1.1, ratio 1.01); pairs visited once: (0,1) (0,2) (1,2) (1,3).
    # (0,1): gt 1/1.5 -> a discontinuity; ord_gt -1, ord_est(1, 1) 0 -> 1.   (0,2): 1/1.05, no discontinuity.
    # (1,2): 1.5/1.05 -> +1 vs ord_est(1, 2) -1 -> 2.                         (1,3): gt 0 -> skipped.
    assert boost_pair_error(gt, est, centres, relations, 0.1, 0.01) == (3, 2)
    # ORD (only equal GT excluded, ratio 1.03): (0,2) counts now: ord_gt(1, 1.05) -1 = ord_est(1, 2) -1 -> 0.
    assert boost_pair_error(gt, est, centres, relations, 0.0, 0.03) == (3, 3)
    # A relation listed twice counts twice (Boost's randi may draw a label twice); self-pairs never count.
    assert boost_pair_error(gt, est, centres, [[1, 1], [], [2], []], 0.0, 0.03) == (2, 2)


def test_boost_normalize_by_hand():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # depth; 0 = no data
    est = np.array([[1.0, 2.0], [4.0, 8.0]])
    gt_n, est_n = boost_normalize(gt, est)
    np.testing.assert_allclose(gt_n[~np.isnan(gt_n)], [0.0, 1 / 3, 1.0])
    assert np.isnan(gt_n[1, 1])
    # est disparity [1, .5, .25, .125] -> [0, 1] -> [min_gt_disp = .25, 1] -> depth -> [0, 1]
    disp = 0.25 + 0.75 * (np.array([1, 0.5, 0.25, 0.125]) - 0.125) / 0.875
    depth = 1 / disp
    np.testing.assert_allclose(est_n.ravel(), (depth - depth.min()) / np.ptp(depth))


def test_superpixel_centres_and_neighbours_by_hand():
    labels = np.array([[0, 0, 1], [0, 2, 1], [3, 3, 3]])
    np.testing.assert_array_equal(superpixel_centres(labels), [[0, 0], [0, 2], [1, 1], [2, 1]])
    neighbours = superpixel_neighbours(labels)
    assert [list(n) for n in neighbours] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]


def test_slic_follows_depth_edges_and_is_connected():
    image = np.zeros((48, 60))
    image[:, 27:] = 1.0
    image[30:, :] = 0.5
    labels, k = slic_superpixels(image, n_segments=30, compactness=20.0)
    assert labels.shape == image.shape and labels.min() == 0 and labels.max() == k - 1
    assert 15 <= k <= 60
    for label in range(k):
        values = np.unique(image[labels == label])
        assert len(values) == 1, f"superpixel {label} straddles an edge: {values}"
        assert ndimage.label(labels == label)[1] == 1  # 4-connected


def test_aligned_depth_metrics():
    gt = np.linspace(1.0, 10.0, 100).reshape(10, 10)
    m = aligned_depth_metrics(gt, 0.5 * gt - 3.0)
    assert m["delta1"] == 1.0 and m["rel"] < 1e-9
    m = aligned_depth_metrics(gt, 7.0 / gt + 2.0, pred_is_disparity=True)  # fitted against 1 / GT
    assert m["delta1"] == 1.0 and m["rel"] < 1e-9
    noisy = aligned_depth_metrics(gt, gt + np.random.default_rng(0).normal(0, 2.0, gt.shape))
    assert noisy["delta1"] < 1.0 and noisy["rel"] > 0.05
    with pytest.raises(ValueError, match="shape"):
        aligned_depth_metrics(gt, gt[:5])


def test_ranking_ord_by_hand():
    gt = np.array([[1.0, 2.0, 1.01, 3.0]])
    est = np.array([[0.5, 0.2, 0.5, 0.9]])
    pairs = np.array([[[0, 1], [0, 0]],   # gt 2/1 -> l = +1, p0 - p1 = -0.3 -> log(1 + e^0.3)
                      [[0, 0], [0, 2]],   # gt 1/1.01 within tau -> l = 0 -> (0)^2
                      [[0, 0], [0, 3]]])  # gt 1/3 -> l = -1, p0 - p1 = -0.4 -> log(1 + e^-0.4)
    expected = (np.log1p(np.exp(0.3)) + 0.0 + np.log1p(np.exp(-0.4))) / 3
    assert ranking_ord_from_pairs(gt, est, pairs, tau=0.03) == pytest.approx(expected)


def test_edge_guided_pairs_straddle_depth_edges():
    gt = np.ones((60, 60))
    gt[:, 30:] = 3.0
    pairs = edge_guided_pairs(gt, num_anchors=50, seed=1)
    assert len(pairs) > 0 and pairs.min() >= 0 and pairs.max() < 60
    across = gt[pairs[:, 0, 0], pairs[:, 0, 1]] != gt[pairs[:, 1, 0], pairs[:, 1, 1]]
    assert across.sum() >= 50  # the (b, c) pair of every anchor crosses the edge


def test_cones_perfect_and_blurred_estimates():
    assert CONES.is_dir(), f"the real Middlebury sample must lie beside the repository at {CONES}"
    import tifffile

    disp = tifffile.imread(str(CONES / "cones_left_gt_disparity.tif")).astype(np.float64)
    valid = disp > 0
    gt_depth = np.where(valid, 1.0 / np.where(valid, disp, 1.0), 0.0)  # inverse depth ~ disparity
    perfect = evaluate_refinement(gt_depth, disp, pred_is_disparity=True, n_segments=1000)
    blurred = evaluate_refinement(gt_depth, ndimage.gaussian_filter(disp, 4), pred_is_disparity=True,
                                  n_segments=1000)
    assert perfect["d3r"] == 0.0 and perfect["delta1"] == 1.0 and perfect["rel"] < 1e-6
    assert perfect["ord"] < 0.01 < blurred["ord"]
    assert blurred["d3r"] > 0.05 and blurred["rel"] > perfect["rel"]
    assert all(np.isfinite(v) for v in blurred.values())
