"""SDDR's noise model: exact depth -> what a depth predictor returns at a low and a high inference resolution.

Eq. 1 of SDDR (specs/sddr.md section 1, paper section 3.1 and appendix A.4): D = D* + eps_cons + eps_edge.

* eps_edge, edge deformation: D* is resized to the predictor's inference resolution (area averaging) and back
  (bilinear), then blurred by a Gaussian inside a band around the depth edges of D* ("masked Gaussian blur"). The blur
  sigma is given in pixels of the predictor's resolution, so a low resolution blurs edges over more output pixels.
* eps_cons, local inconsistency: overlapping 64x64 patches with stride 32; inside each patch every region bounded by
  depth edges gets its own affine map a * D* + b (a = exp(N(0, scale_std)), b = N(0, shift_std)). The patches are
  blended with tent weights that sum to one (two half-overlapping tents per axis), so the noise is smooth inside a
  region and jumps only at depth edges, as the paper requires.

Everything happens in normalised inverse depth (disparity / max disparity, so 1 = nearest point, 0 = infinitely far),
the relative, affine-invariant form MiDaS-like predictors return; both outputs are finally min-max normalised to
[0, 1] and keep that meaning (larger = nearer). Sky (depth 0) is disparity 0, the far end of the range: predictors
see it as far too, blur bleeds across the sky line like theirs, and sky regions get no affine perturbation.

Interpretation choices (sddr.md marks the parameters [not found]): regions are the connected components of the
non-edge pixels of the whole map intersected with each patch (rather than re-labelled per patch); edge pixels join
their nearest region; the defaults below make low "consistent but blurry" and high "sharp but locally inconsistent".
"""

import numbers

import cv2
import numpy as np
from scipy import ndimage

_TAG = 401


def _size(name, value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0:
        return int(value), int(value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a positive int (square side) or a (height, width) pair, got {value!r}")


def _nonneg(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def depth_edges(disp, valid, threshold):
    """Boolean map of pixels on a depth discontinuity: a 4-neighbour whose disparity differs by more than
    ``threshold`` times the larger of the two (a relative jump), or a surface/sky boundary. Both sides are marked."""
    edge = np.zeros(disp.shape, bool)
    for axis in (0, 1):
        a = disp[:-1] if axis == 0 else disp[:, :-1]
        b = disp[1:] if axis == 0 else disp[:, 1:]
        va = valid[:-1] if axis == 0 else valid[:, :-1]
        vb = valid[1:] if axis == 0 else valid[:, 1:]
        jump = (np.abs(a - b) > threshold * np.maximum(a, b)) | (va != vb)
        if axis == 0:
            edge[:-1] |= jump
            edge[1:] |= jump
        else:
            edge[:, :-1] |= jump
            edge[:, 1:] |= jump
    return edge


def _edge_deformation(disp, edges, size, sigma, band):
    h, w = disp.shape
    small = cv2.resize(disp, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if sigma <= 0:
        return back
    sx, sy = sigma * max(w / size[1], 1.0), sigma * max(h / size[0], 1.0)  # predictor pixels -> output pixels
    blurred = cv2.GaussianBlur(back, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    # Soft band of about `band` sigmas around the edges of D*.
    radius = max(1, int(round(band * max(sx, sy))))
    mask = cv2.dilate(edges.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    mask = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=max(sx, 0.5), sigmaY=max(sy, 0.5))
    return back + np.clip(mask, 0.0, 1.0) * (blurred - back)


def _regions(edges, valid):
    """Connected regions of non-edge pixels (4-connectivity); edge pixels take their nearest region's label."""
    count, labels = cv2.connectedComponents((~edges).astype(np.uint8), connectivity=4)
    if edges.any() and count > 1:
        _, (iy, ix) = ndimage.distance_transform_edt(edges, return_indices=True)
        labels = labels[iy, ix]
    return labels


def _inconsistency(disp, valid, labels, rng, scale_std, shift_std, stride):
    """Tent-blended per-(patch, region) affine perturbation of ``disp``: sum_phase w_phase * (a * disp + b)."""
    h, w = disp.shape
    patch = 2 * stride
    ys = np.arange(h) + 0.5
    xs = np.arange(w) + 0.5
    out = np.zeros_like(disp)
    n_labels = int(labels.max()) + 1
    sky_label = np.zeros(n_labels, bool)
    sky_label[labels[~valid]] = True
    for py in (0, 1):
        ty = np.floor((ys + stride * py) / patch).astype(np.int64)  # tile index along y of phase py
        wy = 1.0 - np.abs(ys + stride * py - (ty * patch + stride)) / stride  # tent weight, 0 at tile borders
        for px in (0, 1):
            tx = np.floor((xs + stride * px) / patch).astype(np.int64)
            wx = 1.0 - np.abs(xs + stride * px - (tx * patch + stride)) / stride
            n_tx = int(tx.max()) + 1
            key = (ty[:, None] * n_tx + tx[None, :]) * n_labels + labels
            uniq, inverse = np.unique(key, return_inverse=True)
            a = np.exp(rng.normal(0.0, scale_std, len(uniq))).astype(np.float32)
            b = rng.normal(0.0, shift_std, len(uniq)).astype(np.float32)
            sky = sky_label[uniq % n_labels]
            a[sky], b[sky] = 1.0, 0.0
            inverse = inverse.reshape(h, w)
            weight = (wy[:, None] * wx[None, :]).astype(np.float32)
            out += weight * (a[inverse] * disp + b[inverse])
    return out


def degrade_depth(depth, seed, *, low_size=128, high_size=384, edge_sigma_low=1.5, edge_sigma_high=0.8,
                  edge_band=3.0, scale_std_low=0.02, shift_std_low=0.005, scale_std_high=0.12, shift_std_high=0.03,
                  patch_stride=32, edge_threshold=0.05):
    """Simulated base predictions of SDDR: ``{"depth_low", "depth_high"}``, [H, W] float32 in [0, 1].

    Output values are normalised inverse depth (1 = nearest, 0 = farthest / sky), min-max normalised per map.

    Args:
        depth: [H, W] z-depth (metres or any unit), 0 = no surface (sky).
        seed: non-negative int; the noise is a pure function of (depth, seed, parameters).
        low_size, high_size: predictor inference resolutions, int (square, as predictors squash the image) or
            (height, width). Defaults 128 and 384: the low map is ~3x coarser than a 384x384 input.
        edge_sigma_low, edge_sigma_high: edge blur sigma in predictor pixels (0 disables the blur).
        edge_band: half-width of the blurred band around depth edges, in blur sigmas.
        scale_std_low/high: std of log a (per patch region); shift_std_low/high: std of b (disparity units).
        patch_stride: patch stride in pixels; patches are 2 * stride wide (SDDR: 64 with stride 32).
        edge_threshold: relative disparity jump that counts as a depth edge.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or min(depth.shape) < 2 or not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"depth must be a numeric [H, W] map with H, W >= 2, got shape {depth.shape}")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError("depth must be finite and >= 0 (0 marks sky / no surface)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    low, high = _size("low_size", low_size), _size("high_size", high_size)
    if isinstance(patch_stride, bool) or not isinstance(patch_stride, numbers.Integral) or patch_stride < 1:
        raise ValueError(f"patch_stride must be a positive integer, got {patch_stride!r}")
    params = {name: _nonneg(name, value) for name, value in dict(
        edge_sigma_low=edge_sigma_low, edge_sigma_high=edge_sigma_high, edge_band=edge_band,
        scale_std_low=scale_std_low, shift_std_low=shift_std_low, scale_std_high=scale_std_high,
        shift_std_high=shift_std_high, edge_threshold=edge_threshold).items()}

    valid = depth > 0
    disp = np.zeros_like(depth)
    disp[valid] = 1.0 / depth[valid]
    if valid.any():
        disp /= disp.max()
    edges = depth_edges(disp, valid, params["edge_threshold"])
    labels = _regions(edges, valid)
    out = {}
    for level, (name, size) in enumerate((("low", low), ("high", high))):
        rng = np.random.default_rng([int(seed), _TAG, level])
        eps_edge = _edge_deformation(disp, edges, size, params[f"edge_sigma_{name}"], params["edge_band"]) - disp
        eps_cons = _inconsistency(disp, valid, labels, rng, params[f"scale_std_{name}"],
                                  params[f"shift_std_{name}"], int(patch_stride)) - disp
        noisy = disp + eps_edge + eps_cons
        lo, hi = float(noisy.min()), float(noisy.max())
        out[f"depth_{name}"] = ((noisy - lo) / (hi - lo) if hi > lo else np.zeros_like(noisy)).astype(np.float32)
    return out
