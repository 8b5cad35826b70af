"""Visualisation helpers (NumPy + OpenCV only; imports nothing from tfdepth, so any layer may use it).

* ``colorize_depth``: inverse depth through the perceptual MAGMA colormap (near = bright), invalid -> black.
* ``colorize_labels``: a fixed palette for semantic / instance ids.
* ``make_panel``: tile equally sized RGB images into a grid with thin separators.
* ``save_png``: atomic PNG write (temp file in the same directory + ``os.replace``).
All images are uint8 RGB ``[H, W, 3]``.
"""

import os

import cv2
import numpy as np

from tfdepth.io import atomic_write_bytes

# A fixed palette: hand-picked distinct colours first (0 is black: "none"/"sky"), then golden-ratio hues.
_BASE_PALETTE = np.array(
    [
        (0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (0, 0, 142), (153, 153, 153), (107, 142, 35),
        (152, 251, 152), (190, 153, 153), (70, 130, 180), (220, 20, 60), (255, 165, 0), (0, 128, 128),
        (250, 170, 30), (220, 220, 0), (119, 11, 32), (0, 60, 100), (0, 80, 100), (255, 0, 0), (0, 0, 230),
    ],
    np.uint8,
)


def _palette(n):
    if n <= len(_BASE_PALETTE):
        return _BASE_PALETTE[:n]
    extra = n - len(_BASE_PALETTE)
    hue = (np.arange(extra) * 0.6180339887 % 1.0 * 180).astype(np.uint8)  # OpenCV hue range is [0, 180)
    sat = np.where(np.arange(extra) % 2 == 0, 200, 140).astype(np.uint8)
    val = np.where(np.arange(extra) % 3 == 0, 255, 190).astype(np.uint8)
    hsv = np.stack([hue, sat, val], -1)[None]
    return np.concatenate([_BASE_PALETTE, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]])


def colorize_depth(depth, vmin=None, vmax=None):
    """[H, W, 3] uint8 RGB of a depth map: inverse depth through MAGMA (near = bright, far = dark).

    depth: [H, W] (or [H, W, 1]) depth; values <= 0 or non-finite are invalid and drawn black.
    vmin, vmax: depth range mapped to the colormap ends (clipped outside). Defaults: the 2nd and 98th percentiles
    of the valid depths, so a few outliers (e.g. a far horizon) do not wash out the picture.
    """
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.number):
        raise ValueError(f"depth must be a numeric [H, W] or [H, W, 1] array, got shape {d.shape} ({d.dtype})")
    d = d.astype(np.float64)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), np.uint8)
    if not valid.any():
        return out
    lo = np.percentile(d[valid], 2) if vmin is None else float(vmin)
    hi = np.percentile(d[valid], 98) if vmax is None else float(vmax)
    if not (lo > 0 and hi > 0):
        raise ValueError(f"vmin and vmax must be positive depths, got vmin={vmin!r}, vmax={vmax!r}")
    if lo > hi:
        raise ValueError(f"vmin must be <= vmax, got {lo} > {hi}")
    inv = 1.0 / np.clip(d[valid], lo, hi)
    span = 1.0 / lo - 1.0 / hi
    level = np.zeros(d.shape)
    level[valid] = (inv - 1.0 / hi) / span if span > 0 else 1.0
    grey = np.round(np.clip(level, 0.0, 1.0) * 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)
    out[valid] = coloured[valid]
    return out


def colorize_labels(labels, num_classes=None):
    """[H, W, 3] uint8 RGB of integer labels with a fixed palette (label 0 is black).

    num_classes: if given, labels must lie in [0, num_classes); the palette is the same whatever it is.
    """
    lab = np.asarray(labels)
    if lab.ndim == 3 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer [H, W] array, got shape {lab.shape} ({lab.dtype})")
    if lab.size and lab.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {lab.min()}")
    top = int(lab.max()) + 1 if lab.size else 1
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if top > num_classes:
            raise ValueError(f"labels must be < num_classes={num_classes}, got a label {top - 1}")
    return _palette(max(top, 1))[lab]


def make_panel(rows, gap=2):
    """Tile a list of rows (each a list of uint8 [H, W, 3] images of one size) into one image, ``gap`` px apart."""
    if not rows or not all(rows):
        raise ValueError("rows must be a non-empty list of non-empty lists of images")
    shapes = {np.asarray(img).shape for row in rows for img in row}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"all panel images must be [H, W, 3] of one shape, got {sorted(shapes)}")
    h, w, _ = next(iter(shapes))
    n_cols = max(len(row) for row in rows)
    panel = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            panel[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = np.asarray(img, np.uint8)
    return panel


def save_png(path, rgb):
    """Write an RGB (or greyscale) uint8 image as PNG atomically.

    The PNG is encoded in memory, written to a temporary file in the target directory and moved into place with
    ``os.replace``, so an interrupted run never leaves a truncated PNG. Raises FileNotFoundError if the directory
    does not exist, TypeError/ValueError for a bad image.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8 (convert with np.clip(x * 255, 0, 255).astype(np.uint8)), got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (1, 3))) or img.size == 0:
        raise ValueError(f"rgb must be [H, W, 3], [H, W, 1] or [H, W], got shape {img.shape}")
    path = os.fspath(path)
    bgr = img[..., ::-1] if img.ndim == 3 and img.shape[-1] == 3 else img
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {img.shape} as PNG")
    atomic_write_bytes(path, encoded.tobytes())
    return path
