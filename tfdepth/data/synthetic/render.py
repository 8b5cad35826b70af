"""Frame renderer: culled ray casting into a packed z-buffer, edge-only supersampling, batched deferred shading.

1. Primitives are transformed to the camera and bounded by screen rectangles (``screen_bounds``).
2. Visibility. The z-buffer packs ``(float32 bits of t) << 16 | key`` into an int64, so a minimum keeps the nearest
   hit and its surface key at once (positive floats order like their bit patterns); ``key`` = (draw rank + 1) * 4 +
   face, 0 = sky. Big primitives are cast on their rectangle (rows x columns broadcast), front to back, skipping one
   whose rectangle is already covered by nearer hits. All small primitives of a kind are cast in ONE vectorised
   call over their (primitive, pixel) pairs and merged with ``np.minimum.at``: per-primitive Python overhead would
   otherwise dominate a street with hundreds of distant objects.
3. Anti-aliasing. Pixels whose key differs from a 4-neighbour (instance, depth and crease edges) are re-cast with an
   n x n grid of sub-pixel rays against every primitive whose rectangle contains them (again batched per kind).
   Depth and labels keep the centre ray; the image gets the average of the sub-samples.
4. Shading. All shading points (centre rays of the other pixels + sub-samples) are sorted by surface key, keys of
   one material family being contiguous (one 16-bit radix sort); each family is then textured and lit in one
   vectorised call with per-surface parameters repeated to its points.
"""

from dataclasses import dataclass

import numpy as np

from tfdepth.data.synthetic import textures
from tfdepth.data.synthetic.primitives import BOX, CYLINDER, PLANE, SPHERE, PrimitiveSet, screen_bounds, to_camera
from tfdepth.data.synthetic.raycast import intersect, planar_geometry, prim_params, solid_geometry

NEAR = 0.05  # metres: hits nearer than this are ignored (the camera never gets this close to a surface)
_SKY_PACKED = np.int64(int(np.array(np.inf, np.float32).view(np.int32))) << 16
_MAX_PRIMS = (1 << 14) - 2  # keys are uint16: (rank + 1) * 4 + face
_BIG_AREA = 3000  # pixels: larger rectangles are cast as a broadcast block, smaller ones batched
_BAND = 8  # rows per band of the edge-pixel index used by the anti-aliasing pass
_AXES = np.array([[0, 2, 1], [1, 0, 2], [2, 0, 1]])  # face frame (normal, s, t) for a face normal to local axis a


@dataclass(frozen=True)
class Lighting:
    """One directional light + ambient (Lambertian, view independent) and a sky gradient.

    direction: world-frame unit vector pointing from surfaces towards the light (y is down: negative y = above).
    """

    direction: tuple = (0.3, -0.8, -0.5)
    ambient: float = 0.45
    diffuse: float = 0.65
    sky_zenith: tuple = (0.35, 0.55, 0.85)
    sky_horizon: tuple = (0.78, 0.84, 0.9)


def sample_offsets(supersample):
    """Sub-pixel offsets of an n x n grid centred on the pixel centre: ((i + 0.5) / n - 0.5)."""
    g = (np.arange(supersample, dtype=np.float32) + 0.5) / supersample - 0.5
    oy, ox = np.meshgrid(g, g, indexing="ij")
    return ox.ravel(), oy.ravel()


def _pack(t, key):
    t = np.asarray(t, np.float32)  # the bit trick below needs float32
    return (t.view(np.int32).astype(np.int64) << 16) | key


def _ragged(counts):
    """For segments of the given lengths: (segment id, index within segment) of every element."""
    seg = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return seg, within


def _rect_pixels(rects, width):
    """Flat pixel indices of all rectangles [m, 4] (v0, v1, u0, u1) and the rectangle id of each."""
    w = rects[:, 3] - rects[:, 2]
    seg, local = _ragged((rects[:, 1] - rects[:, 0]) * w)
    dv, du = np.divmod(local, w[seg])
    return (rects[seg, 0] + dv) * width + rects[seg, 2] + du, seg


def render_frame(prims, K, T_world_from_cam, height, width, *, supersample=2, lighting=Lighting()):
    """Render one view of ``prims`` (list of Primitive or a PrimitiveSet).

    Returns a dict: ``image [H,W,3] float32`` (linear radiance, not clipped), ``depth [H,W] float32`` (z-depth,
    0 = no surface), ``semantic [H,W] uint8``, ``instance [H,W] int32`` and ``surface_key [H,W] uint16`` (one id
    per visible primitive face in this frame, 0 = sky; its changes mark instance, depth and crease edges).
    """
    pset = prims if isinstance(prims, PrimitiveSet) else PrimitiveSet(prims)
    K = np.asarray(K, np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    xn = ((np.arange(width) - cx) / fx).astype(np.float32)
    yn = ((np.arange(height) - cy) / fy).astype(np.float32)
    rot, center = to_camera(pset, T_world_from_cam)
    rects, zmin, visible = screen_bounds(pset, rot, center, K, height, width, NEAR)
    params = prim_params(rot, center, pset.size)
    vis = np.flatnonzero(visible)
    order = vis[np.argsort(zmin[vis], kind="stable")]
    if len(order) > _MAX_PRIMS:
        raise ValueError(f"at most {_MAX_PRIMS} visible primitives per frame are supported, got {len(order)}")
    keybase = np.zeros(len(pset), np.int64)
    keybase[order] = (np.arange(len(order)) + 1) * 4
    kind = pset.kind

    zbuf = np.full(height * width, _SKY_PACKED, np.int64)
    z2 = zbuf.reshape(height, width)
    area = (rects[:, 1] - rects[:, 0]) * (rects[:, 3] - rects[:, 2])
    big = (area >= _BIG_AREA) | (kind == PLANE)
    for p in order[big[order]]:
        v0, v1, u0, u1 = rects[p]
        block = z2[v0:v1, u0:u1]
        if zmin[p] < np.inf and block.max() < (int(np.array(zmin[p], np.float32).view(np.int32)) << 16):
            continue  # every pixel of the rectangle already sees something nearer than the primitive's nearest point
        t, face = intersect(kind[p], params[:, p].tolist(), xn[None, u0:u1], yn[v0:v1, None], NEAR)
        np.minimum(block, _pack(t, keybase[p] + face), out=block)
    small = order[~big[order]]
    for k in (BOX, SPHERE, CYLINDER):
        sel = small[kind[small] == k]
        if len(sel):
            pix, seg = _rect_pixels(rects[sel], width)
            v, u = np.divmod(pix, width)
            t, face = intersect(k, params[:, sel].astype(np.float32)[:, seg], xn[u], yn[v], NEAR)
            np.minimum.at(zbuf, pix, _pack(t, keybase[sel][seg] + face))

    keys = (z2 & 0xFFFF).astype(np.uint16)
    depth = (z2 >> 16).astype(np.int32).view(np.float32)
    depth[keys == 0] = 0.0

    # Anti-aliasing set: any pixel whose surface key differs from a 4-neighbour's.
    edge = np.zeros((height, width), bool)
    if supersample > 1:
        dh = keys[:, 1:] != keys[:, :-1]
        dv = keys[1:, :] != keys[:-1, :]
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        edge[1:, :] |= dv
        edge[:-1, :] |= dv
    edge_idx = np.flatnonzero(edge)
    centre_idx = np.flatnonzero(~edge)
    n_sub = supersample * supersample
    ev, eu = np.divmod(edge_idx, width)
    ox, oy = sample_offsets(supersample)
    sx = ((eu[:, None] + ox[None, :] - cx) / fx).astype(np.float32).ravel()
    sy = ((ev[:, None] + oy[None, :] - cy) / fy).astype(np.float32).ravel()
    if len(edge_idx):
        szbuf = _cast_samples(keys, edge_idx, sx, sy, n_sub, order, small, big, kind, rects, params, keybase)
    else:
        szbuf = np.zeros(0, np.int64)

    cv, cu = np.divmod(centre_idx, width)
    pts_key = np.concatenate([keys.ravel()[centre_idx], (szbuf & 0xFFFF).astype(np.uint16)])
    pts_t = np.concatenate([depth.ravel()[centre_idx], (szbuf >> 16).astype(np.int32).view(np.float32)])
    pts_x = np.concatenate([xn[cu], sx])
    pts_y = np.concatenate([yn[cv], sy])
    colour, perm = shade_points(pset, order, rot, params, pts_key, pts_x, pts_y, pts_t, fx, fy, T_world_from_cam,
                                lighting)
    # One scatter from shading order: centre points to their pixels, sub-samples to rows after the image.
    n_pix = height * width
    buffer = np.empty((n_pix + len(sx), 3), np.float32)
    buffer[np.concatenate([centre_idx, n_pix + np.arange(len(sx))])[perm]] = colour
    image = buffer[:n_pix]
    if len(edge_idx):
        samples = buffer[n_pix:].reshape(len(edge_idx), n_sub, 3)
        total = samples[:, 0].copy()
        for j in range(1, n_sub):
            total += samples[:, j]
        image[edge_idx] = total * np.float32(1.0 / n_sub)
    rank_of_pixel = keys >> 2
    class_lut = np.concatenate([[0], pset.class_id[order]]).astype(np.uint8)
    inst_lut = np.concatenate([[0], pset.instance_id[order]]).astype(np.int32)
    return {
        "image": image.reshape(height, width, 3),
        "depth": depth,
        "semantic": class_lut[rank_of_pixel],
        "instance": inst_lut[rank_of_pixel],
        "surface_key": keys,  # (draw rank + 1) * 4 + face; per-frame ids of the visible surfaces (0 = sky)
    }


def _cast_samples(keys, edge_idx, sx, sy, n_sub, order, small, big, kind, rects, params, keybase):
    """Packed nearest hits [E, n_sub] of the sub-pixel rays of the edge pixels.

    Candidates per edge pixel: (1) the big primitives seen by the centre rays of its 3x3 neighbourhood (a big
    surface hidden from all nine centre rays could only show through a sub-pixel gap: ignored), (2) every small
    primitive whose rectangle contains the pixel (thin poles can fall between centre rays), found through an index
    of edge pixels sorted by (band of _BAND rows, column). Parameters are gathered once per (pixel, primitive) pair
    and broadcast over its sub-samples.
    """
    height, width = keys.shape
    n_edge = len(edge_idx)
    ev, eu = np.divmod(edge_idx, width)
    # (1) neighbourhood candidates, deduplicated per pixel.
    padded = np.pad(keys >> 2, 1)
    ranks = [padded[ev + 1 + dy, eu + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    big_rank = np.zeros(len(order) + 1, bool)
    big_rank[1:] = big[order]
    pix_list, prim_list = [], []
    for j, rank in enumerate(ranks):
        keep = big_rank[rank]
        for other in ranks[:j]:
            keep &= rank != other
        sel = np.flatnonzero(keep)
        pix_list.append(sel)
        prim_list.append(order[rank[sel] - 1])
    # (2) small primitives by rectangle.
    if len(small):
        r = rects[small]
        band_key = (ev // _BAND) * width + eu
        by_band = np.argsort(band_key, kind="stable")
        band_key = band_key[by_band]
        b0, b1 = r[:, 0] // _BAND, (r[:, 1] - 1) // _BAND
        pair, within = _ragged(b1 - b0 + 1)
        band = b0[pair] + within
        lo = np.searchsorted(band_key, band * width + r[pair, 2])
        hi = np.searchsorted(band_key, band * width + r[pair, 3])
        cseg, cwithin = _ragged(hi - lo)
        cand = by_band[lo[cseg] + cwithin]
        seg = pair[cseg]
        rows = ev[cand]
        keep = (rows >= r[seg, 0]) & (rows < r[seg, 1])
        pix_list.append(cand[keep])
        prim_list.append(small[seg[keep]])
    pix = np.concatenate(pix_list)
    prim = np.concatenate(prim_list)
    by_kind = np.argsort(kind[prim], kind="stable")
    pix, prim = pix[by_kind], prim[by_kind]
    bounds = np.searchsorted(kind[prim], (PLANE, BOX, SPHERE, CYLINDER, CYLINDER + 1))
    sub = np.arange(n_sub)
    szbuf = np.full(n_edge * n_sub, _SKY_PACKED, np.int64)
    params32 = params.astype(np.float32)
    for k in (PLANE, BOX, SPHERE, CYLINDER):
        a, b = bounds[k], bounds[k + 1]
        if b <= a:
            continue
        # [n_sub, pairs] sample indices: the long axis last keeps NumPy's inner loops long when the [1, pairs]
        # parameter rows broadcast over the sub-samples.
        idx = sub[:, None] + pix[None, a:b] * n_sub
        p = prim[a:b]
        t, face = intersect(k, params32[:, None, p], sx[idx], sy[idx], NEAR)
        np.minimum.at(szbuf, idx.ravel(), _pack(t, keybase[None, p] + face).ravel())
    return szbuf


def shade_points(pset, order, rot, params, keys, xs, ys, ts, fx, fy, T_world_from_cam, lighting):
    """Colours [N, 3] of shading points (flat arrays) with surface ``keys`` (see module docstring), in shading
    order, and that order ``perm`` (colour i belongs to point perm[i])."""
    n_keys = 4 * (len(order) + 1)
    family = np.full(n_keys, -1, np.int64)  # -1 = sky, sorted first
    family[4:] = np.repeat(pset.mat_rows[order, 0].astype(np.int64), 4)
    key_order = np.argsort(family * n_keys + np.arange(n_keys), kind="stable")
    lut = np.empty(n_keys, np.uint16)
    lut[key_order] = np.arange(n_keys)
    sort_key = lut[keys]
    perm = np.argsort(sort_key, kind="stable")
    counts = np.bincount(sort_key, minlength=n_keys)
    starts = np.concatenate([[0], np.cumsum(counts)])
    xs, ys, ts = xs[perm], ys[perm], ts[perm]
    out = np.empty((len(keys), 3), np.float32)
    r_cw = np.asarray(T_world_from_cam, np.float64)[:3, :3].T
    light_cam = r_cw @ np.asarray(lighting.direction, np.float64)
    light_cam /= np.linalg.norm(light_cam)
    inv_fx, inv_fy = 1.0 / float(fx), 1.0 / float(fy)
    fam_bounds = np.searchsorted(family[key_order], np.arange(-1, len(textures.FAMILY_NAMES) + 1))
    for f in range(-1, len(textures.FAMILY_NAMES)):
        k0, k1 = fam_bounds[f + 1], fam_bounds[f + 2]
        a, b = starts[k0], starts[k1]
        if b <= a:
            continue
        if f == -1:
            out[a:b] = _sky(xs[a:b], ys[a:b], r_cw, lighting)
            continue
        sks = k0 + np.flatnonzero(counts[k0:k1])
        key = key_order[sks]
        cnt = counts[sks]
        prim = order[(key >> 2) - 1]
        face = key & 3
        rep = lambda v: np.repeat(np.asarray(v, np.float32), cnt, axis=-1)  # noqa: E731 (per key -> per point)
        sl = slice(a, b)
        light = np.einsum("kji,j->ki", rot[prim], light_cam)  # light direction in each primitive's local frame
        o = params[9:12, prim].T
        if f != textures.WAVES:
            axes = _AXES[np.where(pset.kind[prim] == BOX, face, 1)]
            rp = np.take_along_axis(rot[prim], axes[:, None, :], axis=2)  # camera-from-face rotation
            op = np.take_along_axis(o, axes, axis=1)
            q = rep(np.concatenate([rp.reshape(-1, 9), op], axis=1).T)
            s, t, var_s, var_t = planar_geometry(q, xs[sl], ys[sl], ts[sl], inv_fx, inv_fy)
            origin = pset.texture_origin[prim]
            s0 = np.take_along_axis(origin, axes[:, 1:2], axis=1)[:, 0]
            t0 = np.take_along_axis(origin, axes[:, 2:3], axis=1)[:, 0]
            colour = textures.albedo_2d(pset.mat_rows[prim], s0, t0, cnt, s, t, var_s, var_t)
            ndl = np.sign(op[:, 0]) * np.take_along_axis(light, axes[:, :1], axis=1)[:, 0]
            shade = rep(lighting.ambient + lighting.diffuse * np.maximum(ndl, 0.0))
        else:
            nm, nb = _normal_model(pset.kind[prim], face, pset.size[prim], o)
            q, ju, jv, n = solid_geometry(rep(params[:, prim]), rep(nm.T), rep(nb.T), xs[sl], ys[sl], ts[sl],
                                          inv_fx, inv_fy)
            colour = textures.albedo_3d(pset.mat_rows[prim], pset.texture_origin[prim], cnt, q, ju, jv)
            lt = rep(light.T)
            shade = lighting.ambient + lighting.diffuse * np.maximum(n[0] * lt[0] + n[1] * lt[1] + n[2] * lt[2], 0.0)
        out[sl] = colour * shade[:, None]
    return out, perm


def _normal_model(kinds, faces, size, o):
    """Per key (nm, nb) [K, 3] with local normal n = q * nm + nb (see raycast.solid_geometry)."""
    nm = np.zeros((len(kinds), 3))
    nb = np.zeros((len(kinds), 3))
    inv_r = 1.0 / size[:, 0]
    sphere = kinds == SPHERE
    nm[sphere] = inv_r[sphere, None]
    side = (kinds == CYLINDER) & (faces == 0)
    nm[side, 0] = inv_r[side]
    nm[side, 2] = inv_r[side]
    planar = ~sphere & ~side
    axis = np.where(kinds == BOX, faces, 1)[planar]
    nb[np.flatnonzero(planar), axis] = np.sign(o[planar, axis])  # the visible side faces the camera
    return nm, nb


def _sky(xs, ys, r_cw, lighting):
    """Sky colour as a function of the world-frame view direction only (a surface at infinity)."""
    a, b, c = (float(v) for v in r_cw.T[1])  # Python floats keep the float32 arrays float32
    down = a * xs + b * ys + c  # world y (down) component of the ray
    up = np.clip(-down / np.sqrt(xs * xs + ys * ys + 1.0), 0.0, 1.0)
    zen = np.asarray(lighting.sky_zenith, np.float32)
    hor = np.asarray(lighting.sky_horizon, np.float32)
    return hor + np.sqrt(up)[:, None] * (zen - hor)
