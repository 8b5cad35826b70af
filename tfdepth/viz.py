"""Visualisation helpers (NumPy + OpenCV only; imports nothing from tfdepth but ``io``, so any layer may use it).

* ``colorize_depth``: inverse depth through the perceptual MAGMA colormap (near = bright), invalid -> black.
* ``depth_colorbar`` / ``colorize_depth_with_colorbar`` / ``depth_panel``: the same colours with a labelled colour
  bar (ticks in depth units, titled metric or relative), and the side-by-side ``RGB | depth | bar`` panel.
* ``colorize_labels``: a fixed palette for semantic / instance ids.
* ``make_panel``: tile equally sized RGB images into a grid with thin separators.
* ``encode_png`` / ``save_png``: PNG bytes (uint8 RGB/grey, uint16 grey) and the atomic PNG write.
* ``png16_scale`` / ``depth_to_png16``: 16-bit depth PNGs (metric: x256 as KITTI; relative: normalised per map).
* ``ply_bytes`` / ``read_ply``: binary PLY point clouds. Back-projection is camera maths and lives with the
  geometry (``tfdepth.inference.depth_to_points`` through ``tfdepth.geometry.backproject``); this module only
  writes the points, so ``viz`` stays a leaf.
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


def _as_depth_map(depth):
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.number):
        raise ValueError(f"depth must be a numeric [H, W] or [H, W, 1] array, got shape {d.shape} ({d.dtype})")
    return d


def depth_display_range(depth, vmin=None, vmax=None):
    """``(lo, hi)``: the depth range :func:`colorize_depth` maps to the colormap ends, or ``(None, None)`` when no
    depth is valid (> 0 and finite). Defaults: the 2nd and 98th percentiles of the valid depths."""
    d = _as_depth_map(depth)
    if vmin is not None and vmax is not None:
        values = None
    else:
        values = d[np.isfinite(d) & (d > 0)]
        if values.size == 0:
            return None, None
    lo = float(np.percentile(values, 2)) if vmin is None else float(vmin)
    hi = float(np.percentile(values, 98)) if vmax is None else float(vmax)
    if not (lo > 0 and hi > 0):
        raise ValueError(f"vmin and vmax must be positive depths, got vmin={vmin!r}, vmax={vmax!r}")
    if lo > hi:
        raise ValueError(f"vmin must be <= vmax, got {lo} > {hi}")
    return lo, hi


def _magma_levels(level):
    """uint8 RGB of levels in [0, 1] through OpenCV's MAGMA (the same rounding as :func:`colorize_depth`)."""
    grey = np.round(np.clip(level, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)


def colorize_depth(depth, vmin=None, vmax=None):
    """[H, W, 3] uint8 RGB of a depth map: inverse depth through MAGMA (near = bright, far = dark).

    depth: [H, W] (or [H, W, 1]) depth; values <= 0 or non-finite are invalid and drawn black.
    vmin, vmax: depth range mapped to the colormap ends (clipped outside). Defaults: the 2nd and 98th percentiles
    of the valid depths, so a few outliers (e.g. a far horizon) do not wash out the picture.
    The colour of a valid depth ``d`` is MAGMA at level ``(1/clip(d) - 1/vmax) / (1/vmin - 1/vmax)``.
    """
    raw = _as_depth_map(depth)
    d = raw.astype(np.float64)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), np.uint8)
    if not valid.any():
        return out
    lo, hi = depth_display_range(raw, vmin, vmax)  # on the input's dtype, as colorize_depth_with_colorbar does
    inv = 1.0 / np.clip(d[valid], lo, hi)
    span = 1.0 / lo - 1.0 / hi
    level = np.zeros(d.shape)
    level[valid] = (inv - 1.0 / hi) / span if span > 0 else 1.0
    coloured = _magma_levels(level)
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


# --- colour bar, legends, panels ------------------------------------------------------------------------------

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CHUNK_ROWS = 256  # colourise big maps in row chunks: a 12 MP map then needs ~10 MB of float64 scratch, not 500 MB


def depth_unit_label(depth_kind):
    """Legend title for a depth kind: ``"metric"`` -> metres, ``"relative"`` -> relative units (up to scale)."""
    labels = {"metric": "depth (m)", "relative": "depth (relative)", None: "depth"}
    if depth_kind not in labels:
        raise ValueError(f"depth_kind must be 'metric', 'relative' or None, got {depth_kind!r}")
    return labels[depth_kind]


def _font_scale(height):
    # Text about 1/60 of the picture height (at least ~9 px), readable from 64-pixel thumbnails to 4k frames.
    return float(np.clip(height / 720.0, 0.35, 1.5))


def depth_colorbar(height, vmin, vmax, label="depth"):
    """uint8 RGB ``[height, w, 3]`` strip: the MAGMA scale of :func:`colorize_depth` for ``vmin..vmax`` with depth
    ticks, titled ``label`` (white background).

    The bar's top row is ``vmin`` (near, bright), its bottom row ``vmax`` (far, dark); row ``r`` of the bar has
    the colour of level ``1 - r / (bar rows - 1)``, i.e. the depth ``1 / (1/vmax + level * (1/vmin - 1/vmax))``.
    Ticks sit at evenly spaced levels (evenly spaced in inverse depth, as the colours are) and are labelled with
    that depth. ``vmin``/``vmax`` None (nothing valid): the bar is drawn without ticks and titled "no depth".
    """
    height = int(height)
    if height < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    scale = _font_scale(height)
    thick = 1 if scale < 1.2 else 2
    (_, text_h), base = cv2.getTextSize("0", _FONT, scale, thick)
    pad = max(2, int(round(4 * scale)))
    lines = label.split(" ", 1) if vmin is not None else ["no", "depth"]
    title_h = len(lines) * (text_h + base + pad) + pad
    # The bar starts below the title with room for the first tick label's upper half, and ends half a label above
    # the bottom edge (on very short strips the title gives way to the bar).
    top = min(title_h + text_h // 2 + pad, height // 2)
    bottom = max(0, min(text_h // 2 + pad, height // 4))
    bar_rows = max(1, height - top - bottom)
    bar_w = max(4, int(round(12 * scale)))
    if vmin is None:
        ticks = []
    else:
        if not (vmin > 0 and vmax >= vmin):
            raise ValueError(f"need 0 < vmin <= vmax, got vmin={vmin}, vmax={vmax}")
        n_ticks = 1 if vmin == vmax else int(np.clip(bar_rows // (2.2 * (text_h + base)) + 1, 2, 5))
        levels = np.linspace(1.0, 0.0, n_ticks) if n_ticks > 1 else np.array([1.0])
        span = 1.0 / vmin - 1.0 / vmax
        ticks = [(lv, 1.0 / (1.0 / vmax + lv * span)) for lv in levels]
    labels = [f"{d:.3g}" for _, d in ticks]
    label_w = max([cv2.getTextSize(t, _FONT, scale, thick)[0][0] for t in labels] + [0])
    title_w = max(cv2.getTextSize(t, _FONT, scale, thick)[0][0] for t in lines)
    tick_len = max(2, bar_w // 3)
    width = max(pad + bar_w + tick_len + pad + label_w + pad, title_w + 2 * pad)
    strip = np.full((height, width, 3), 255, np.uint8)
    level = 1.0 - np.arange(bar_rows) / max(1, bar_rows - 1) if vmin != vmax else np.ones(bar_rows)
    strip[top:top + bar_rows, pad:pad + bar_w] = _magma_levels(level[:, None])[:, :1]
    y = pad
    for text in lines:
        y += text_h
        cv2.putText(strip, text, (pad, y), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
        y += base + pad
    for (lv, _), text in zip(ticks, labels):
        row = top + int(round((1.0 - lv) * (bar_rows - 1)))
        x0 = pad + bar_w
        strip[row, x0:x0 + tick_len] = 0
        baseline = int(np.clip(row + text_h // 2, text_h, height - 1))
        cv2.putText(strip, text, (x0 + tick_len + pad, baseline), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return strip


def colorize_depth_chunked(depth, vmin, vmax):
    """:func:`colorize_depth` with a fixed range, row chunk by row chunk (identical output, bounded scratch)."""
    d = _as_depth_map(depth)
    out = np.zeros(d.shape + (3,), np.uint8)
    if vmin is None:
        return out
    for start in range(0, d.shape[0], _CHUNK_ROWS):
        out[start:start + _CHUNK_ROWS] = colorize_depth(d[start:start + _CHUNK_ROWS], vmin, vmax)
    return out


def colorize_depth_with_colorbar(depth, label="depth", vmin=None, vmax=None, gap=4):
    """``[H, W + gap + bar, 3]`` uint8: :func:`colorize_depth` of ``depth`` with a :func:`depth_colorbar` at its
    right. ``vmin``/``vmax`` as in :func:`colorize_depth` (defaults: 2nd/98th percentiles)."""
    d = _as_depth_map(depth)
    lo, hi = depth_display_range(d, vmin, vmax)
    coloured = colorize_depth_chunked(d, lo, hi)
    bar = depth_colorbar(d.shape[0], lo, hi, label)
    return _hstack([coloured, bar], gap)


def _hstack(images, gap):
    height = images[0].shape[0]
    width = sum(img.shape[1] for img in images) + gap * (len(images) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for img in images:
        out[:, x:x + img.shape[1]] = img
        x += img.shape[1] + gap
    return out


def depth_panel(rgb, depth, label="depth", vmin=None, vmax=None, gap=4):
    """Side-by-side ``RGB | colourised depth | colour bar`` (uint8 ``[H, 2W + ..., 3]``).

    rgb: uint8 ``[H, W, 3]`` (or grey ``[H, W]``); depth: ``[H, W]`` at the same size, or a list of such maps
    (e.g. prediction and ground truth), drawn side by side in one colour range (the first map's 2nd/98th
    percentiles unless ``vmin``/``vmax`` are given) with one colour bar.
    """
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"rgb must be a uint8 [H, W, 3] image, got shape {img.shape} ({img.dtype})")
    maps = [_as_depth_map(d) for d in (depth if isinstance(depth, (list, tuple)) else [depth])]
    for d in maps:
        if d.shape != img.shape[:2]:
            raise ValueError(f"depth {d.shape} and rgb {img.shape[:2]} must have the same height and width")
    lo, hi = depth_display_range(maps[0], vmin, vmax)
    pictures = [colorize_depth_chunked(d, lo, hi) for d in maps]
    return _hstack([img, *pictures, depth_colorbar(img.shape[0], lo, hi, label)], gap)


def encode_png(image):
    """PNG bytes of a uint8 RGB ``[H, W, 3]`` / grey ``[H, W]`` image or a uint16 grey ``[H, W]`` image."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype == np.uint16:
        if img.ndim != 2 or img.size == 0:
            raise ValueError(f"a 16-bit PNG must be grey [H, W], got shape {img.shape}")
    elif img.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8 (convert with np.clip(x * 255, 0, 255).astype(np.uint8)), got {img.dtype}")
    elif not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)) or img.size == 0:
        raise ValueError(f"rgb must be [H, W, 3], [H, W, 1] or [H, W], got shape {img.shape}")
    bgr = img[..., ::-1] if img.ndim == 3 else img
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {img.shape} as PNG")
    return encoded.tobytes()


def save_png(path, rgb):
    """Write an RGB (or greyscale) uint8 image as PNG atomically.

    The PNG is encoded in memory, written to a temporary file in the target directory and moved into place with
    ``os.replace``, so an interrupted run never leaves a truncated PNG. Raises FileNotFoundError if the directory
    does not exist, TypeError/ValueError for a bad image.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8 (convert with np.clip(x * 255, 0, 255).astype(np.uint8)), got {img.dtype}")
    path = os.fspath(path)
    atomic_write_bytes(path, encode_png(img))
    return path


# --- 16-bit depth PNGs ----------------------------------------------------------------------------------------

METRIC_PNG16_SCALE = 256.0  # KITTI's convention: value = metres * 256 (1/256 m steps, up to 255.99 m); 0 = none
PNG16_MAX = 65535


def png16_scale(depth, depth_kind):
    """The value-per-depth-unit of :func:`depth_to_png16` for this map.

    metric: 256 (KITTI's depth PNGs; ``data.depth_scale`` 256 reads them back). relative (up to scale, no unit):
    normalised per map, ``65535 / max(valid depth)``, so the farthest pixel is 65535 and the quantisation step is
    1/65535 of the farthest depth wherever the map's range sits (a fixed x256 would give 1/8-unit steps at the
    0.03-unit near end of the default model's range). The scale is written beside the PNG (predict.py: a
    ``.json`` sidecar).
    """
    if depth_kind == "metric":
        return METRIC_PNG16_SCALE
    d = _as_depth_map(depth)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return 1.0
    return float(PNG16_MAX / float(valid.max()))


def depth_to_png16(depth, scale):
    """uint16 ``[H, W]``: ``round(depth * scale)``; invalid (<= 0, non-finite) and values that do not fit
    (``depth * scale`` above 65535 or rounding to 0) are 0, the "no depth" value of KITTI-style depth PNGs."""
    d = _as_depth_map(depth).astype(np.float64)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    value = np.where(np.isfinite(d) & (d > 0), np.round(d * scale), 0.0)
    value[(value > PNG16_MAX) | (value < 1)] = 0
    return value.astype(np.uint16)


# --- point clouds ---------------------------------------------------------------------------------------------


def ply_bytes(points, colors=None, comments=()):
    """Binary little-endian PLY of ``points`` ``[N, 3]`` (float32 x, y, z) with optional uint8 RGB ``colors``
    ``[N, 3]``; ``comments``: header comment lines (e.g. units, camera)."""
    pts = np.asarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {pts.shape}")
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {' '.join(str(c).split())}" for c in comments]
    header += [f"element vertex {len(pts)}", "property float x", "property float y", "property float z"]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        col = np.asarray(colors)
        if col.shape != pts.shape or col.dtype != np.uint8:
            raise ValueError(f"colors must be uint8 [N, 3] like points {pts.shape}, got {col.shape} ({col.dtype})")
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header.append("end_header")
    rows = np.empty(len(pts), dtype=fields)
    rows["x"], rows["y"], rows["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        rows["red"], rows["green"], rows["blue"] = col[:, 0], col[:, 1], col[:, 2]
    return ("\n".join(header) + "\n").encode("ascii") + rows.tobytes()


def read_ply(path):
    """``(points [N, 3] float32, colors [N, 3] uint8 or None, comments)`` of a PLY written by :func:`ply_bytes`."""
    with open(path, "rb") as handle:
        data = handle.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if lines[:2] != ["ply", "format binary_little_endian 1.0"]:
        raise ValueError(f"{path}: not a binary little-endian PLY")
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    has_color = "property uchar red" in lines
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if has_color else [])
    rows = np.frombuffer(data, dtype=fields, count=count, offset=end)
    points = np.stack([rows["x"], rows["y"], rows["z"]], -1)
    colors = np.stack([rows["r"], rows["g"], rows["b"]], -1) if has_color else None
    comments = [line[len("comment "):] for line in lines if line.startswith("comment ")]
    return points, colors, comments
