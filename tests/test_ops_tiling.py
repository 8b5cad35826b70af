"""tfdepth.ops.tiling: SDDR's window grid, Boost's feather mask, cutting and feathered merging, and the shared
window-refinement step (specs/sddr.md §3.3)."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.ops.tiling import crop_windows_tf, feather_mask, merge_windows_tf, refine_windows_tf, window_grid


def test_window_grid_matches_the_official_sizes_and_covers_the_canvas():
    # utils_2stage.py: floor(L / (n - (n - 1) overlap)) + 1 -> 1920x1080 gives 1067x601 (2x2) and 769x433 (3x3).
    boxes = window_grid(1080, 1920, 2, 0.2)
    assert len(boxes) == 4 and {b[2:] for b in boxes} == {(601, 1067)}
    assert {b[2:] for b in window_grid(1080, 1920, 3, 0.25)} == {(433, 769)}
    for height, width, n, overlap in ((1080, 1920, 2, 0.2), (1024, 768, 3, 0.25), (256, 256, 4, 0.25), (97, 301, 3, 0)):
        boxes = window_grid(height, width, n, overlap)
        assert len(boxes) == n * n
        covered = np.zeros((height, width), bool)
        for top, left, h, w in boxes:
            assert top >= 0 and left >= 0 and top + h <= height and left + w <= width
            covered[top:top + h, left:left + w] = True
        assert covered.all()
        assert boxes[0][:2] == (0, 0) and boxes[-1][0] + boxes[-1][2] == height and boxes[-1][1] + boxes[-1][3] == width
    assert window_grid(10, 20, 1, 0.5) == ((0, 0, 10, 20),)
    with pytest.raises(ValueError, match="too small"):
        window_grid(2, 2, 3, 0.25)
    with pytest.raises(ValueError, match="overlap"):
        window_grid(100, 100, 2, 1.0)


def test_feather_mask_is_boost_generatemask():
    """Reference: Boost's generatemask((3000, 3000)) with OpenCV, then cv2.resize (bilinear). The full 3000^2 blur
    with a 749-tap kernel takes ~20 s, so the reference blurs a 3000 x 16 strip of the box that is 1 across the
    strip: OpenCV's reflect-101 border keeps it constant along x, so each column is the blurred profile a(y) of
    the 2-D mask's central column; the 2-D mask is a(y) a(x) because the blur of a separable box is separable and
    the 2 sigma support never reaches the zero border."""
    size = 3000
    strip = np.zeros((size, 16), np.float32)
    strip[450:2550] = 1
    k = int(2 * np.ceil(2 * int(size / 16)) + 1)
    profile = cv2.GaussianBlur(strip, (k, k), int(size / 16))[:, 8]
    mask = np.outer(profile, profile)
    mask = (mask - mask.min()) / (mask.max() - mask.min())
    for h, w in ((601, 1067), (143, 143)):
        ref = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(feather_mask(h, w), ref, atol=2e-3)
    m = feather_mask(143, 143)
    assert m[0].max() == 0.0 and m[:, 0].max() == 0.0 and m[71, 71] == 1.0  # 0 at the border, 1 inside


def test_crop_windows_window_major_and_any_resolution(rng):
    x = rng.random((2, 8, 12, 1)).astype(np.float32)
    boxes = window_grid(8, 12, 2, 0.25)
    crops = crop_windows_tf(x, boxes, (8, 12), boxes[0][2:]).numpy()
    assert crops.shape == (8, boxes[0][2], boxes[0][3], 1)
    for k, (top, left, h, w) in enumerate(boxes):  # window k of image b is row k * B + b
        for b in range(2):
            np.testing.assert_array_equal(crops[k * 2 + b], x[b, top:top + h, left:left + w])
    # A map at twice the canvas resolution: the same boxes scaled by 2, here cut without resizing.
    x2 = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    h2, w2 = 2 * boxes[0][2], 2 * boxes[0][3]
    crops2 = crop_windows_tf(x2, boxes, (8, 12), (h2, w2)).numpy()
    np.testing.assert_array_equal(crops2[::2][:, ::2, ::2], crops[::2])


def test_merge_windows_sequential_feather_paste():
    canvas = np.zeros((1, 10, 10, 1), np.float32)
    boxes = ((0, 0, 6, 6), (4, 4, 6, 6))
    windows = np.concatenate([np.full((1, 6, 6, 1), 1.0), np.full((1, 6, 6, 1), 2.0)]).astype(np.float32)
    got = merge_windows_tf(canvas, windows, boxes).numpy()[0, :, :, 0]
    m = feather_mask(6, 6)
    ref = np.zeros((10, 10))
    ref[0:6, 0:6] = ref[0:6, 0:6] * (1 - m) + 1.0 * m
    ref[4:10, 4:10] = ref[4:10, 4:10] * (1 - m) + 2.0 * m
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # Pasting windows that equal the canvas changes nothing.
    x = np.random.default_rng(0).random((1, 10, 10, 1)).astype(np.float32)
    same = crop_windows_tf(x, boxes, (10, 10), (6, 6))
    np.testing.assert_allclose(merge_windows_tf(x, same, boxes).numpy(), x, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        merge_windows_tf(canvas, windows, ((0, 0, 6, 6), (5, 5, 6, 6)))


def test_refine_windows_undoes_per_window_affine_maps(rng):
    """A refiner that returns its low input up to a different affine map per window (the "local inconsistency"
    SDDR's alignment exists for) gives back the exact base crops; window size = crop size, so nothing resamples."""
    base = rng.random((1, 20, 20, 1)).astype(np.float32)
    boxes = window_grid(20, 20, 2, 0.25)
    crop = boxes[0][2:]
    scales = tf.constant([3.0, -2.0, 0.5, 7.0])[:, None, None, None]

    def refine(low, high):
        return scales * low + 10.0 * scales

    windows, base_crops = refine_windows_tf(refine, base, boxes, crop, high=base)
    np.testing.assert_allclose(windows.numpy(), base_crops.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        refine_windows_tf(refine, base, boxes, crop)
