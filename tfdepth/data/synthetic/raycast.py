"""Analytic ray intersections and surface geometry, vectorised over rays AND primitives.

Rays are given by their normalised image coordinates ``(xs, ys)``: the camera-frame direction is ``(xs, ys, 1)``
(= K^-1 [u, v, 1]). Because the direction's z component is 1, the ray parameter ``t`` of a hit IS its z-depth, so the
renderer never converts ray length to depth.

A primitive is described by 18 parameters ``P`` (``prim_params``): ``P[0:9]`` = R (camera-from-local rotation,
row-major), ``P[9:12]`` = o = -R^T c (the camera centre in local coordinates), ``P[12:15]`` = size, ``P[15:18]`` = c
(local origin in camera coordinates). Every function works when each ``P[j]`` is a Python float (one primitive,
rays of a screen rectangle as a row ``[1, w]`` and a column ``[h, 1]`` broadcast once) or a float32 array aligned with
flat ray arrays (many primitives at once, one ray each): the arithmetic is the same.

Misses return ``t = inf``; hits nearer than ``near`` are misses (the camera is never inside a primitive).
"""

import numpy as np

from tfdepth.data.synthetic.primitives import BOX, CYLINDER, PLANE, SPHERE

_INF = np.float32(np.inf)
N_PARAMS = 18


def prim_params(rot, center, size):
    """[18, P] float64 parameter rows of primitives given in camera coordinates (rot [P,3,3], center [P,3])."""
    o = -np.einsum("pji,pj->pi", rot, center)
    return np.concatenate([rot.reshape(-1, 9), o, size, center], axis=1).T


def local_dir(P, i, xs, ys):
    """Component i of the ray direction in the primitive's local frame: (R^T d)_i."""
    return (P[i] * xs + P[6 + i]) + P[3 + i] * ys


def intersect(kind, P, xs, ys, near):
    """Nearest hit ``t`` (z-depth, float32, inf on miss) and ``face`` (int8 array, or 0) of rays with primitives.

    face: BOX -> local axis (0, 1, 2) of the entered face; CYLINDER -> 0 side, 1 cap; others 0.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == PLANE:  # the plane y_local = 0: t = -o_y / d_y
            t = -P[10] / local_dir(P, 1, xs, ys)
            return np.where(t > near, t, _INF), 0
        if kind == SPHERE:  # |t d - c|^2 = r^2 in camera coordinates
            r = P[12]
            dc = (P[15] * xs + P[17]) + P[16] * ys
            dd = (xs * xs + 1.0) + ys * ys
            cc = P[15] * P[15] + P[16] * P[16] + P[17] * P[17] - r * r
            t = (dc - np.sqrt(dc * dc - dd * cc)) / dd  # nearer root; NaN (no hit) fails the test below
            return np.where(t > near, t, _INF), 0
        if kind == BOX:
            return _box(P, xs, ys, near)
        if kind == CYLINDER:
            return _cylinder(P, xs, ys, near)
    raise ValueError(f"unknown primitive kind {kind}")


def _box(P, xs, ys, near):
    # Slab method: entry = max over axes of the near slab plane, exit = min of the far ones.
    lo = []
    hi = None
    for i in range(3):
        inv = 1.0 / local_dir(P, i, xs, ys)
        h, o = P[12 + i], P[9 + i]
        ta = inv * (-h - o)
        tb = inv * (h - o)
        lo.append(np.minimum(ta, tb))
        np.maximum(ta, tb, out=tb)
        hi = tb if hi is None else np.minimum(hi, tb, out=hi)
    face = lo[1] > lo[0]
    t = np.maximum(lo[0], lo[1])
    second = lo[2] > t
    np.maximum(t, lo[2], out=t)
    face = face.view(np.int8)
    np.copyto(face, np.int8(2), where=second)
    np.copyto(t, _INF, where=(t > hi) | (t <= near))
    return t, face


def _cylinder(P, xs, ys, near):
    r, h = P[12], P[13]
    ox, oy, oz = P[9], P[10], P[11]
    dx = local_dir(P, 0, xs, ys)
    dy = local_dir(P, 1, xs, ys)
    dz = local_dir(P, 2, xs, ys)
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - r * r
    t_side = (-b - np.sqrt(b * b - a * c)) / a
    y_side = oy + t_side * dy
    t_side = np.where((np.abs(y_side) <= h) & (t_side > near), t_side, _INF)
    if np.ndim(oy) == 0 and abs(oy) <= h:  # the camera is level with the body: no cap faces it
        return t_side, 0
    # The cap facing the camera (none if the camera is level with the body).
    cap = np.where(oy > 0, h, -h)
    if np.ndim(cap) == 0:
        cap = float(cap)  # a 0-d float64 array would promote the float32 rays (Python floats are weak)
    t_cap = (cap - oy) / dy
    px = ox + t_cap * dx
    pz = oz + t_cap * dz
    cap_hit = (px * px + pz * pz <= r * r) & (t_cap > near) & (t_cap < t_side) & (np.abs(oy) > h)
    return np.where(cap_hit, t_cap, t_side), cap_hit.view(np.int8)


def planar_geometry(Q, xs, ys, t, inv_fx, inv_fy):
    """Texture coordinates and pixel footprints of hits on planar faces.

    Q: 12 rows in the face frame (axis 0 = normal, 1 = s, 2 = t): Q[0:9] camera-from-face rotation (row-major),
    Q[9:12] camera centre in face coordinates. Returns s, t and the squared footprints var_s, var_t (m^2 per pixel).

    For a hit p = t d on a plane with normal n, dp/du = t (d_u - (n.d_u)/(n.d) d) with d_u = (1/fx, 0, 0): the ray
    point slides along the plane. In face coordinates n = e_0, so ds/du = t (g_s - g_0 d_s / d_0) with g = R^T d_u.
    """
    d0 = local_dir(Q, 0, xs, ys)
    d1 = local_dir(Q, 1, xs, ys)
    d2 = local_dir(Q, 2, xs, ys)
    inv = 1.0 / d0
    rs = d1 * inv
    rt = d2 * inv
    gu0, gv0 = Q[0] * inv_fx, Q[3] * inv_fy
    jus = t * (Q[1] * inv_fx - gu0 * rs)
    jvs = t * (Q[4] * inv_fy - gv0 * rs)
    jut = t * (Q[2] * inv_fx - gu0 * rt)
    jvt = t * (Q[5] * inv_fy - gv0 * rt)
    return Q[10] + t * d1, Q[11] + t * d2, jus * jus + jvs * jvs, jut * jut + jvt * jvt


def solid_geometry(P, nm, nb, xs, ys, t, inv_fx, inv_fy):
    """Local hit points q, their pixel derivatives ju, jv (lists of 3 arrays) and unit normals n.

    The normal model is n_i = q_i * nm_i + nb_i: sphere nm = 1/r, cylinder side nm = (1/r, 0, 1/r), planar faces
    nm = 0 and nb = +-e_axis. Derivatives as in ``planar_geometry`` with a per-point normal.
    """
    d = [local_dir(P, i, xs, ys) for i in range(3)]
    q = [P[9 + i] + t * d[i] for i in range(3)]
    n = [q[i] * nm[i] + nb[i] for i in range(3)]
    gu = [P[i] * inv_fx for i in range(3)]
    gv = [P[3 + i] * inv_fy for i in range(3)]
    # n.d < 0 on every visible point; at silhouettes it tends to 0 (footprint -> infinity, texture fully filtered):
    # clamp it so that limit stays finite instead of producing inf - inf.
    inv_nd = 1.0 / np.minimum(n[0] * d[0] + n[1] * d[1] + n[2] * d[2], -1e-6)
    ru = (n[0] * gu[0] + n[1] * gu[1] + n[2] * gu[2]) * inv_nd
    rv = (n[0] * gv[0] + n[1] * gv[1] + n[2] * gv[2]) * inv_nd
    ju = [t * (gu[i] - ru * d[i]) for i in range(3)]
    jv = [t * (gv[i] - rv * d[i]) for i in range(3)]
    return q, ju, jv, n
