"""Tests of tfdepth.viz (NumPy + OpenCV helpers)."""

import os

import cv2
import numpy as np
import pytest

from tfdepth import viz


def _luma(rgb):
    return rgb.astype(np.float64) @ [0.299, 0.587, 0.114]


def test_colorize_depth_near_is_bright_and_invalid_is_black():
    depth = np.tile(np.linspace(1.0, 20.0, 50, dtype=np.float32), (4, 1))
    depth[0, :5] = 0.0
    depth[1, :5] = np.nan
    depth[2, :5] = -3.0
    rgb = viz.colorize_depth(depth)
    assert rgb.shape == (4, 50, 3) and rgb.dtype == np.uint8
    assert (rgb[:3, :5] == 0).all()
    luma = _luma(rgb[3])
    assert (np.diff(luma) <= 1e-9).all() and luma[0] > luma[-1] + 100  # MAGMA: nearer = brighter
    # Same colours as an independent reference through cv2's MAGMA on normalised inverse depth.
    lo, hi = 2.0, 10.0
    ref_level = (1 / np.clip(depth[3], lo, hi) - 1 / hi) / (1 / lo - 1 / hi)
    ref = cv2.applyColorMap(np.round(ref_level * 255).astype(np.uint8)[None], cv2.COLORMAP_MAGMA)[0, :, ::-1]
    np.testing.assert_array_equal(viz.colorize_depth(depth[3:], vmin=lo, vmax=hi)[0], ref)


def test_colorize_depth_accepts_channel_axis_and_rejects_bad_input():
    depth = np.full((3, 4, 1), 2.0)
    assert viz.colorize_depth(depth).shape == (3, 4, 3)
    assert (viz.colorize_depth(np.zeros((3, 4))) == 0).all()  # nothing valid -> all black
    with pytest.raises(ValueError, match="depth"):
        viz.colorize_depth(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="vmin"):
        viz.colorize_depth(depth, vmin=5.0, vmax=1.0)


def test_colorize_labels_fixed_palette():
    labels = np.array([[0, 1, 2], [2, 1, 40]])
    rgb = viz.colorize_labels(labels)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()  # label 0 is black
    np.testing.assert_array_equal(rgb[0, 1], rgb[1, 1])
    assert not np.array_equal(rgb[0, 1], rgb[0, 2])
    # The palette does not depend on the other labels present or on num_classes.
    np.testing.assert_array_equal(viz.colorize_labels(np.array([[2]]))[0, 0], rgb[0, 2])
    np.testing.assert_array_equal(viz.colorize_labels(labels[:1], num_classes=12), rgb[:1])
    colours = viz.colorize_labels(np.arange(60)[None])[0]
    assert len(np.unique(colours, axis=0)) == 60  # distinct colours well beyond the hand-picked ones
    with pytest.raises(ValueError, match="num_classes"):
        viz.colorize_labels(labels, num_classes=12)
    with pytest.raises(ValueError, match=">= 0"):
        viz.colorize_labels(np.array([[-1]]))
    with pytest.raises(ValueError, match="integer"):
        viz.colorize_labels(np.zeros((2, 2), np.float32))


def test_make_panel_layout():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((4, 5, 3), 7, np.uint8)
    panel = viz.make_panel([[a, b], [b, a]], gap=1)
    assert panel.shape == (9, 11, 3)
    assert (panel[:4, 6:] == 7).all() and (panel[4] == 255).all() and (panel[:, 5] == 255).all()
    with pytest.raises(ValueError, match="shape"):
        viz.make_panel([[a, np.zeros((3, 5, 3), np.uint8)]])


def test_save_png_roundtrip_atomic_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    assert viz.save_png(path, img) == str(path)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], img)  # stored as RGB, read back by cv2 as BGR
    assert os.listdir(tmp_path) == ["x.png"]  # no temporary file left behind
    viz.save_png(path, img[..., 0])  # greyscale, overwriting atomically
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), img[..., 0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        viz.save_png(tmp_path / "missing" / "x.png", img)
    with pytest.raises(TypeError, match="uint8"):
        viz.save_png(path, img.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        viz.save_png(path, np.zeros((2, 2, 2), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["x.png"]


def test_save_png_failure_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    viz.save_png(path, np.zeros((2, 2, 3), np.uint8))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(viz.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        viz.save_png(path, np.full((2, 2, 3), 9, np.uint8))
    assert os.listdir(tmp_path) == ["keep.png"] and (cv2.imread(str(path)) == 0).all()
