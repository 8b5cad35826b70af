"""SDDR's evaluation metrics (specs/sddr.md §6.2-6.3): depth errors after least-squares scale and shift, and the edge
metrics D3R and ORD of Boosting Monocular Depth (Miangoleh et al., CVPR 2021, ``evaluation/*.m``), plus the paper's
ranking-loss ORD (SDDR App. B.3, Eq. 13). numpy + scipy only (metrics layer; no TensorFlow needed).

**Depth metrics** (:func:`aligned_depth_metrics`, the official ``previous_evaluate_mid21.py``): the prediction is
fitted to the ground truth by least squares (``np.polyfit`` degree 1) over the valid pixels, in depth space; a
disparity prediction is fitted to 1 / GT and inverted. Aligned depth is clamped to at least 1e-6 x max(GT) (and
aligned disparity to 1e-6 x max(1 / GT)) so that a wrong-signed fit gives a large but finite error. ``delta1`` =
fraction with max(d/d*, d*/d) < 1.25, ``rel`` = AbsRel (``tfdepth.metrics.depth_errors``).

**Boost's D3R and ORD** (:func:`boost_edge_metrics`), step by step as ``evaluatedataset.m``:

1. Normalisation: GT disparity (or 1 / GT depth) is divided by its maximum; ``min_gt_disp`` is its minimum;
   both GT disparity and GT depth (1 / disparity) are rescaled to [0, 1]. The estimate (as disparity; a depth
   prediction is inverted first) is rescaled to [min_gt_disp, 1], inverted to depth and rescaled to [0, 1].
   Both are compared as depth. [interpretation] ``evaluatedataset.m``'s disparity branch takes ``min_gt_disp``
   from the raw 16-bit PNG values; dividing by the maximum first (its depth branch) makes it independent of the
   file's disparity scale.
2. SLIC superpixels (:func:`slic_superpixels`, ~``n_segments`` = 5000, compactness 20) on the GT disparity
   resized (nearest) by ``superpixel_scale`` (Boost: 0.2 for Middlebury, 1 for iBims/NYU); centres are the
   floored mean coordinates of each superpixel, scaled back to full resolution; neighbours are superpixels
   4-adjacent (MATLAB ``bwdist(mask) == 1``); "random" relations are 3 labels drawn uniformly per superpixel
   (with replacement, possibly itself, as ``randi``).
3. ``ord(a, b, delta) = +1 if (a + eps) / (b + eps) > delta, -1 if < 1 / delta, else 0`` (eps = 2.2e-16).
4. D3R over neighbour pairs, each unordered pair once (Boost removes i from j's list after visiting i): pairs
   with both GT values non-zero and a GT discontinuity ``ord(gt_i, gt_j, 1.1) != 0`` count; error +=
   ``|ord(gt_i, gt_j, 1.01) - ord(est_i, est_j, 1.01)|`` (0, 1 or 2); D3R = error / count. Note the Boost quirk
   kept here: the rescaled GT depth is 0 at the nearest pixel, so centres there never count.
5. ORD (Boost): the same loop over the random relations with the discontinuity ratio 1 + 0 (only exactly
   equal GT pairs excluded) and ``delta`` = 1.03.

**The paper's ORD** (:func:`ranking_ord`, Eq. 13): ``mean phi(p0 - p1)`` over edge-guided point pairs with
``phi = log(1 + exp(-l (p0 - p1)))`` for ``l != 0`` and ``(p0 - p1)^2`` for ``l = 0``; ``l = +1`` if
``p*0 / p*1 >= 1 + tau``, ``-1`` if ``<= 1 / (1 + tau)``. [not found] in paper and code: tau, the pair count,
the edge source and the normalisation. Decisions: tau = 0.03 (the code's training ranking loss); edges of the
GT depth (Sobel magnitude >= 0.1 max, Xian et al. 2020); per anchor edge pixel 4 points along the gradient
direction at random distances 2..30 px (two per side) give the pairs (a, b), (b, c), (c, d), plus as many random
pairs; 3000 anchors; values compared are the Boost-normalised depths of step 1. It is a loss value, not a
disagreement ratio, and is not comparable with Boost's ORD.

**Which one a table reports:** ``ord`` and ``d3r`` are Boost's (``evaluatedataset.m``, the protocol GBDF and SDDR
cite for ORD/D3R, whose reference numbers are ratios in [0, 2]); ``ord_rank`` is the paper's Eq. 13.

**SLIC** [decision]: scikit-image is not a dependency and opencv-python-headless has no ``ximgproc``, so SLIC
(Achanta et al., TPAMI 2012) is implemented here in numpy: grid seeds of spacing S = sqrt(N / K) moved to the
lowest-gradient pixel of their 3x3 neighbourhood; 10 iterations of assigning every pixel to the nearest centre
within a 2S x 2S window, distance ``sqrt(d_value^2 + (d_xy / S)^2 m^2)`` with compactness m = 20; values scaled
to [0, 100] (the range of L*, for which SLIC's compactness is defined; MATLAB's grayscale scaling is not
documented); candidates are the centres seeded in the 3 x 3 neighbouring grid cells; then connectivity: connected
pieces smaller than a quarter of the mean superpixel size join their largest adjacent neighbour, and labels are
renumbered 0..K-1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tfdepth.metrics import depth_errors

__all__ = [
    "aligned_depth_metrics",
    "slic_superpixels",
    "superpixel_centres",
    "superpixel_neighbours",
    "random_relations",
    "boost_ord",
    "boost_pair_error",
    "boost_normalize",
    "boost_edge_metrics",
    "boost_relations",
    "edge_guided_pairs",
    "ranking_ord_from_pairs",
    "ranking_ord",
    "evaluate_refinement",
    "evaluate_refinements",
]

MATLAB_EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------------- depth metrics


def _valid_mask(gt, valid):
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape:
            raise ValueError(f"valid has shape {valid.shape} but gt has {gt.shape}")
        mask &= valid
    if mask.sum() < 2:
        raise ValueError("fewer than 2 valid ground-truth pixels (gt > 0, finite); metrics are undefined")
    return gt, mask


def aligned_depth_metrics(gt_depth, pred, valid=None, pred_is_disparity=False):
    """``{"delta1", "rel", ...}`` (all of ``tfdepth.metrics.depth_errors``) after least-squares alignment."""
    gt, mask = _valid_mask(gt_depth, valid)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {pred.shape} but gt has {gt.shape}; resize the prediction to the GT size")
    if not np.isfinite(pred[mask]).all():
        raise ValueError("pred has non-finite values on valid pixels")
    target = 1.0 / gt[mask] if pred_is_disparity else gt[mask]
    x = pred[mask]
    if np.ptp(x) > 0:
        scale, shift = np.polyfit(x, target, 1)
    else:  # a constant prediction: only the shift is determined
        scale, shift = 0.0, float(np.mean(target))
    aligned = scale * pred + shift
    floor = 1e-6 * float(target.max())
    aligned = np.maximum(aligned, floor)
    depth = 1.0 / aligned if pred_is_disparity else aligned
    errors = depth_errors(gt, depth, mask)
    return {"delta1": errors["a1"], "rel": errors["abs_rel"], **errors}


# ------------------------------------------------------------------------------------------------------ SLIC


def _as_image(image):
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"SLIC needs an [H, W] or [H, W, C] image of at least 2x2, got shape {image.shape}")
    return np.where(np.isfinite(image), image, 0.0)


def slic_superpixels(image, n_segments=5000, compactness=20.0, iterations=10, value_range=100.0):
    """SLIC labels ``[H, W]`` int32 in ``0..K-1`` and K (module docstring)."""
    image = _as_image(image)
    height, width, _ = image.shape
    lo, hi = image.min(), image.max()
    values = (image - lo) / (hi - lo) * value_range if hi > lo else np.zeros_like(image)
    n_segments = max(1, int(n_segments))
    step = max(1.0, np.sqrt(height * width / n_segments))
    ny, nx = max(1, int(round(height / step))), max(1, int(round(width / step)))
    sy, sx = height / ny, width / nx
    cy = (np.arange(ny) + 0.5) * sy
    cx = (np.arange(nx) + 0.5) * sx
    centres_y, centres_x = np.meshgrid(cy, cx, indexing="ij")
    # Move seeds to the lowest-gradient pixel of their 3x3 neighbourhood (Achanta et al. §3).
    grad = np.zeros((height, width))
    for c in range(values.shape[2]):
        gy, gx = np.gradient(values[:, :, c])
        grad += gy * gy + gx * gx
    iy, ix = np.clip(centres_y.astype(int), 0, height - 1), np.clip(centres_x.astype(int), 0, width - 1)
    best_y, best_x, best_g = iy.copy(), ix.copy(), np.full(iy.shape, np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = np.clip(iy + dy, 0, height - 1), np.clip(ix + dx, 0, width - 1)
            g = grad[yy, xx]
            better = g < best_g
            best_y, best_x, best_g = np.where(better, yy, best_y), np.where(better, xx, best_x), np.minimum(g, best_g)
    centre_pos = np.stack([best_y, best_x], axis=-1).astype(np.float64)  # [ny, nx, 2]
    centre_val = values[best_y, best_x]  # [ny, nx, C]

    rows, cols = np.mgrid[0:height, 0:width]
    cell_y = np.clip((rows / sy).astype(int), 0, ny - 1)
    cell_x = np.clip((cols / sx).astype(int), 0, nx - 1)
    window = step  # the 2S x 2S search window: |dy|, |dx| <= S
    weight = (compactness / step) ** 2
    labels = cell_y * nx + cell_x
    for _ in range(iterations):
        best = np.full((height, width), np.inf)
        best_any = np.full((height, width), np.inf)
        new_labels = labels.copy()
        fallback = labels.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                gy, gx = cell_y + dy, cell_x + dx
                inside = (gy >= 0) & (gy < ny) & (gx >= 0) & (gx < nx)
                gy, gx = np.clip(gy, 0, ny - 1), np.clip(gx, 0, nx - 1)
                pos = centre_pos[gy, gx]
                d_y, d_x = rows - pos[..., 0], cols - pos[..., 1]
                d_val = np.sum((values - centre_val[gy, gx]) ** 2, axis=-1)
                dist = d_val + weight * (d_y * d_y + d_x * d_x)
                dist = np.where(inside, dist, np.inf)
                in_window = (np.abs(d_y) <= window) & (np.abs(d_x) <= window)
                take = in_window & (dist < best)
                new_labels = np.where(take, gy * nx + gx, new_labels)
                best = np.where(take, dist, best)
                take_any = dist < best_any
                fallback = np.where(take_any, gy * nx + gx, fallback)
                best_any = np.where(take_any, dist, best_any)
        labels = np.where(np.isfinite(best), new_labels, fallback)
        flat = labels.ravel()
        count = np.bincount(flat, minlength=ny * nx).astype(np.float64)
        has = count > 0
        for coord, target in ((rows, 0), (cols, 1)):
            sums = np.bincount(flat, weights=coord.ravel(), minlength=ny * nx)
            pos = centre_pos.reshape(-1, 2)
            pos[has, target] = sums[has] / count[has]
        val = centre_val.reshape(-1, values.shape[2])
        for c in range(values.shape[2]):
            sums = np.bincount(flat, weights=values[:, :, c].ravel(), minlength=ny * nx)
            val[has, c] = sums[has] / count[has]
    return _enforce_connectivity(labels, min_size=max(1, int(height * width / (ny * nx) / 4)))


def _enforce_connectivity(labels, min_size):
    """Split labels into 4-connected pieces, merge pieces < ``min_size`` into their largest adjacent piece."""
    pieces = np.zeros(labels.shape, np.int64)
    next_id = 0
    structure = ndimage.generate_binary_structure(2, 1)
    for label, box in enumerate(ndimage.find_objects(labels + 1)):
        if box is None:
            continue
        comp, n = ndimage.label(labels[box] == label, structure=structure)
        region = pieces[box]
        region[comp > 0] = comp[comp > 0] + next_id - 1
        next_id += n
    sizes = np.bincount(pieces.ravel(), minlength=next_id)
    # Merge small pieces, smallest first, into the adjacent piece sharing the longest border.
    for piece in np.argsort(sizes, kind="stable"):
        if sizes[piece] >= min_size or sizes[piece] == 0:
            continue
        mask = pieces == piece
        ring = ndimage.binary_dilation(mask, structure=structure) & ~mask
        neighbours = pieces[ring]
        if neighbours.size == 0:
            continue
        target = np.bincount(neighbours).argmax()
        pieces[mask] = target
        sizes[target] += sizes[piece]
        sizes[piece] = 0
    _, renumbered = np.unique(pieces, return_inverse=True)
    renumbered = renumbered.reshape(labels.shape).astype(np.int32)
    return renumbered, int(renumbered.max()) + 1


def superpixel_centres(labels, num_labels=None):
    """[K, 2] int (row, col): floored mean coordinates of each label (Boost ``computeCenter``)."""
    labels = np.asarray(labels)
    num_labels = int(labels.max()) + 1 if num_labels is None else num_labels
    rows, cols = np.mgrid[0:labels.shape[0], 0:labels.shape[1]]
    count = np.bincount(labels.ravel(), minlength=num_labels).astype(np.float64)
    if (count == 0).any():
        raise ValueError("labels must use every value 0..K-1 (renumber them)")
    mean_r = np.bincount(labels.ravel(), weights=rows.ravel(), minlength=num_labels) / count
    mean_c = np.bincount(labels.ravel(), weights=cols.ravel(), minlength=num_labels) / count
    return np.stack([np.floor(mean_r), np.floor(mean_c)], axis=1).astype(np.int64)


def superpixel_neighbours(labels, num_labels=None):
    """List of sorted int arrays: the labels 4-adjacent to each label (MATLAB ``bwdist(mask) == 1``)."""
    labels = np.asarray(labels)
    num_labels = int(labels.max()) + 1 if num_labels is None else num_labels
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        differ = a != b
        pairs.append(np.stack([a[differ], b[differ]], axis=1))
    pairs = np.concatenate(pairs, axis=0)
    pairs = np.unique(np.concatenate([pairs, pairs[:, ::-1]], axis=0), axis=0)
    neighbours = [np.zeros(0, np.int64) for _ in range(num_labels)]
    if len(pairs):
        splits = np.searchsorted(pairs[:, 0], np.arange(num_labels + 1))
        for i in range(num_labels):
            neighbours[i] = pairs[splits[i]:splits[i + 1], 1].astype(np.int64)
    return neighbours


def random_relations(num_labels, per_label=3, seed=0):
    """Boost's random relations: ``per_label`` labels drawn uniformly (with replacement) for every label."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, num_labels, per_label) for _ in range(num_labels)]


# ------------------------------------------------------------------------------------------------ Boost's metrics


def boost_ord(a, b, delta):
    """Boost's ``ord.m``: +1, -1 or 0 for the ratio (a + eps) / (b + eps) against ``delta`` and 1 / delta."""
    ratio = (a + MATLAB_EPS) / (b + MATLAB_EPS)
    return np.where(ratio > delta, 1, np.where(ratio < 1.0 / delta, -1, 0))


def boost_pair_error(gt, est, centres, relations, freq_ratio, ratio):
    """Boost's ``D3R.m`` loop: ``(error, confidence)`` over the relations, each unordered pair visited once.

    Args:
        gt, est: [H, W] normalised depths (:func:`boost_normalize`); NaN in gt counts as 0 (no data).
        centres: [K, 2] (row, col) pixel of each superpixel centre.
        relations: list of K int arrays (neighbours or random relations).
    """
    gt = np.where(np.isfinite(gt), gt, 0.0)
    relations = [list(map(int, r)) for r in relations]
    g = gt[centres[:, 0], centres[:, 1]]
    e = est[centres[:, 0], centres[:, 1]]
    error, confidence = 0, 0
    for i in range(len(centres)):
        current = list(relations[i])
        if not current:
            continue
        for j in current:
            relations[j] = [k for k in relations[j] if k != i]
            if g[i] != 0 and g[j] != 0 and boost_ord(g[i], g[j], 1.0 + freq_ratio) != 0:
                error += abs(int(boost_ord(g[i], g[j], 1.0 + ratio)) - int(boost_ord(e[i], e[j], 1.0 + ratio)))
                confidence += 1
    return error, confidence


def _rescale(x):
    lo, hi = np.nanmin(x), np.nanmax(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def boost_normalize(gt, est, gt_is_disparity=False, est_is_disparity=False):
    """``(gt_depth, est_depth)`` in [0, 1] as ``evaluatedataset.m`` (module docstring, step 1); NaN = no GT."""
    gt = np.asarray(gt, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    if gt.shape != est.shape:
        raise ValueError(f"gt {gt.shape} and estimate {est.shape} must have the same shape")
    with np.errstate(divide="ignore", invalid="ignore"):
        gt_disp = np.where(np.isfinite(gt) & (gt > 0), gt if gt_is_disparity else 1.0 / gt, np.nan)
        if np.all(np.isnan(gt_disp)):
            raise ValueError("the ground truth has no valid pixel (> 0, finite)")
        gt_disp = gt_disp / np.nanmax(gt_disp)
        min_gt_disp = float(np.nanmin(gt_disp))
        gt_depth = _rescale(1.0 / gt_disp)
        if not np.isfinite(est).all():
            raise ValueError("the estimate has non-finite values")
        est_disp = est if est_is_disparity else 1.0 / np.maximum(est, 1e-12 * max(float(np.max(np.abs(est))), 1e-12))
        est_disp = min_gt_disp + (1.0 - min_gt_disp) * _rescale(est_disp)
        est_depth = _rescale(1.0 / est_disp)
    return gt_depth, est_depth


def boost_relations(gt, *, gt_is_disparity=False, superpixel_scale=1.0, n_segments=5000, compactness=20.0, seed=0):
    """What Boost's metrics take from the ground truth alone (steps 2 of the module docstring): superpixel
    ``centres`` [K, 2] at full resolution, ``neighbours`` and ``random`` relations. Computed once per image, it
    serves every prediction of that image (:func:`evaluate_refinements`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.asarray(gt, dtype=np.float64)
        gt_disp = np.where(np.isfinite(raw) & (raw > 0), raw if gt_is_disparity else 1.0 / raw, 0.0)
        gt_disp = _rescale(gt_disp)
    small = gt_disp
    if superpixel_scale != 1.0:
        h = max(2, int(round(gt_disp.shape[0] * superpixel_scale)))
        w = max(2, int(round(gt_disp.shape[1] * superpixel_scale)))
        rows = np.minimum((np.arange(h) / superpixel_scale).astype(int), gt_disp.shape[0] - 1)
        cols = np.minimum((np.arange(w) / superpixel_scale).astype(int), gt_disp.shape[1] - 1)
        small = gt_disp[rows][:, cols]  # nearest
    labels, k = slic_superpixels(small, n_segments, compactness)
    centres = superpixel_centres(labels, k)
    if superpixel_scale != 1.0:  # MATLAB: sub / scale on 1-based indices
        centres = np.round((centres + 1) / superpixel_scale).astype(np.int64) - 1
        centres = np.clip(centres, 0, np.array(gt_disp.shape) - 1)
    return {"centres": centres, "neighbours": superpixel_neighbours(labels, k), "random": random_relations(k, 3, seed)}


def boost_edge_metrics(gt, pred, *, gt_is_disparity=False, pred_is_disparity=False, superpixel_scale=1.0,
                       n_segments=5000, compactness=20.0, seed=0, relations=None):
    """Boost's ``{"d3r", "ord"}`` for one image (module docstring); NaN when no pair qualifies. ``relations``:
    :func:`boost_relations` of this ``gt`` (computed here when None)."""
    gt_depth, est_depth = boost_normalize(gt, pred, gt_is_disparity, pred_is_disparity)
    if relations is None:
        relations = boost_relations(gt, gt_is_disparity=gt_is_disparity, superpixel_scale=superpixel_scale,
                                    n_segments=n_segments, compactness=compactness, seed=seed)
    centres = relations["centres"]
    err, conf = boost_pair_error(gt_depth, est_depth, centres, relations["neighbours"], 0.1, 0.01)
    d3r = err / conf if conf else float("nan")
    err, conf = boost_pair_error(gt_depth, est_depth, centres, relations["random"], 0.0, 0.03)
    ord_ = err / conf if conf else float("nan")
    return {"d3r": float(d3r), "ord": float(ord_)}


# ------------------------------------------------------------------------------------------ the paper's ORD


def ranking_ord_from_pairs(gt, est, pairs, tau=0.03):
    """Eq. 13 over explicit ``pairs`` [N, 2, 2] of (row, col) points: mean phi (module docstring)."""
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, 2) or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty [N, 2, 2] array of (row, col) points, got {pairs.shape}")
    g0, g1 = gt[pairs[:, 0, 0], pairs[:, 0, 1]], gt[pairs[:, 1, 0], pairs[:, 1, 1]]
    p0, p1 = est[pairs[:, 0, 0], pairs[:, 0, 1]], est[pairs[:, 1, 0], pairs[:, 1, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g0 / g1
    label = np.where(ratio >= 1.0 + tau, 1.0, np.where(ratio <= 1.0 / (1.0 + tau), -1.0, 0.0))
    diff = p0 - p1
    phi = np.where(label != 0, np.logaddexp(0.0, -label * diff), diff * diff)
    return float(np.mean(phi))


def edge_guided_pairs(gt_depth, valid=None, num_anchors=3000, min_distance=2, max_distance=30, seed=0):
    """Edge-guided point pairs [N, 2, 2] (Xian et al. 2020) on a GT depth map, plus as many random pairs."""
    gt = np.asarray(gt_depth, dtype=np.float64)
    valid = np.isfinite(gt) & (gt > 0) if valid is None else np.asarray(valid, bool) & np.isfinite(gt)
    filled = np.where(valid, gt, 0.0)
    gy = ndimage.sobel(filled, axis=0, mode="nearest")
    gx = ndimage.sobel(filled, axis=1, mode="nearest")
    magnitude = np.hypot(gx, gy)
    rng = np.random.default_rng(seed)
    height, width = gt.shape
    edges = np.argwhere((magnitude >= 0.1 * magnitude.max()) & valid) if magnitude.max() > 0 else np.zeros((0, 2))
    pairs = []
    if len(edges):
        anchors = edges[rng.choice(len(edges), size=min(num_anchors, len(edges)), replace=False)]
        theta = np.arctan2(gy[anchors[:, 0], anchors[:, 1]], gx[anchors[:, 0], anchors[:, 1]])
        direction = np.stack([np.sin(theta), np.cos(theta)], axis=1)  # (row, col) unit gradient direction
        near = rng.integers(min_distance, max_distance + 1, size=(len(anchors), 2))
        far = rng.integers(min_distance, max_distance + 1, size=(len(anchors), 2))
        d_in, d_out = np.minimum(near, far), np.maximum(near, far)
        points = [anchors - d_out[:, :1] * direction, anchors - d_in[:, :1] * direction,
                  anchors + d_in[:, 1:] * direction, anchors + d_out[:, 1:] * direction]
        points = [np.clip(np.round(p).astype(np.int64), 0, [height - 1, width - 1]) for p in points]
        for a, b in ((0, 1), (1, 2), (2, 3)):
            pairs.append(np.stack([points[a], points[b]], axis=1))
    edge_pairs = np.concatenate(pairs, axis=0) if pairs else np.zeros((0, 2, 2), np.int64)
    valid_idx = np.argwhere(valid)
    n_random = max(len(edge_pairs), 1)
    random_pairs = valid_idx[rng.integers(0, len(valid_idx), size=(n_random, 2))]
    all_pairs = np.concatenate([edge_pairs, random_pairs], axis=0)
    keep = valid[all_pairs[:, 0, 0], all_pairs[:, 0, 1]] & valid[all_pairs[:, 1, 0], all_pairs[:, 1, 1]]
    keep &= np.any(all_pairs[:, 0] != all_pairs[:, 1], axis=1)
    return all_pairs[keep]


def _ranking_pairs(gt, gt_is_disparity=False, num_anchors=3000, seed=0):
    """The edge-guided pairs of the paper's ORD for one ground truth (they depend on it alone)."""
    gt_depth, _ = boost_normalize(gt, np.ones_like(np.asarray(gt, np.float64)), gt_is_disparity, False)
    raw = np.asarray(gt, dtype=np.float64)
    valid = np.isfinite(raw) & (raw > 0)
    return edge_guided_pairs(np.where(valid, gt_depth, 0.0), valid & (gt_depth > 0), num_anchors, seed=seed)


def ranking_ord(gt, pred, *, gt_is_disparity=False, pred_is_disparity=False, tau=0.03, num_anchors=3000, seed=0,
                pairs=None):
    """The paper's ORD (Eq. 13) on Boost-normalised depths with edge-guided pairs (module docstring); ``pairs``:
    precomputed pairs of this ``gt`` (computed here when None)."""
    gt_depth, est_depth = boost_normalize(gt, pred, gt_is_disparity, pred_is_disparity)
    if pairs is None:
        pairs = _ranking_pairs(gt, gt_is_disparity, num_anchors, seed)
    if len(pairs) == 0:
        return float("nan")
    return ranking_ord_from_pairs(gt_depth, est_depth, pairs, tau)


def evaluate_refinement(gt_depth, pred, valid=None, *, pred_is_disparity=False, superpixel_scale=1.0,
                        n_segments=5000, seed=0):
    """One image's SDDR protocol: ``{"delta1", "rel", "ord", "d3r", "ord_rank"}`` (module docstring).

    ``gt_depth`` is depth (0 / non-finite = no data); ``pred`` the refined (or base) map at the GT size.
    """
    return evaluate_refinements(gt_depth, {"pred": pred}, valid, pred_is_disparity=pred_is_disparity,
                                superpixel_scale=superpixel_scale, n_segments=n_segments, seed=seed)["pred"]


def evaluate_refinements(gt_depth, preds, valid=None, *, pred_is_disparity=False, superpixel_scale=1.0,
                         n_segments=5000, seed=0):
    """:func:`evaluate_refinement` of several predictions ``{name: map}`` of one image, with the ground truth's
    superpixels and pairs computed once (SLIC dominates the cost)."""
    gt = np.asarray(gt_depth, dtype=np.float64)
    if valid is not None:
        gt = np.where(np.asarray(valid, bool), gt, 0.0)
    relations = boost_relations(gt, superpixel_scale=superpixel_scale, n_segments=n_segments, seed=seed)
    pairs = _ranking_pairs(gt, seed=seed)
    out = {}
    for name, pred in preds.items():
        depth = aligned_depth_metrics(gt, pred, None, pred_is_disparity)
        edges = boost_edge_metrics(gt, pred, pred_is_disparity=pred_is_disparity, relations=relations)
        rank = ranking_ord(gt, pred, pred_is_disparity=pred_is_disparity, pairs=pairs)
        out[name] = {"delta1": depth["delta1"], "rel": depth["rel"], "ord": edges["ord"], "d3r": edges["d3r"],
                     "ord_rank": rank}
    return out
