"""Scene primitives (planes, oriented boxes, spheres, cylinders) and their screen-space bounds.

A primitive is a local frame (``rotation`` whose columns are the local axes in world coordinates, ``center``) plus
a shape in that frame:

* PLANE: the plane ``y_local = 0``; the local y axis is the normal. Unbounded.
* BOX: ``|x| <= size[0], |y| <= size[1], |z| <= size[2]`` (half extents).
* SPHERE: radius ``size[0]`` around the centre.
* CYLINDER: axis = local y, radius ``size[0]``, half height ``size[1]``, closed by two caps.

Texture coordinates are the local coordinates plus ``texture_origin`` (float64): objects carry their texture with
them (surface-anchored); long strips regenerated around the camera every frame (road, sidewalk) set the origin to
their centre in world-aligned axes, so their texture stays fixed in the world.
"""

from dataclasses import dataclass

import numpy as np

from tfdepth.data.synthetic.textures import MAT_LEN, WAVES, Material

PLANE, BOX, SPHERE, CYLINDER = range(4)
KIND_NAMES = ("plane", "box", "sphere", "cylinder")


@dataclass
class Primitive:
    kind: int
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray
    class_id: int
    instance_id: int
    material: object
    texture_origin: np.ndarray


def _rotation(yaw, rotation):
    if rotation is not None:
        rot = np.asarray(rotation, np.float64)
        if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
            raise ValueError(f"rotation must be a 3x3 orthonormal matrix, got {rot!r}")
        return rot
    c, s = np.cos(yaw), np.sin(yaw)
    # Yaw about the world y axis (y points down in the OpenCV-style world frame used by the presets).
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _make(kind, center, rot, size, class_id, instance_id, material, texture_origin):
    if not isinstance(material, Material):
        raise TypeError(f"material must be a textures.Material, got {type(material).__name__}")
    if kind in (SPHERE, CYLINDER) and material.family != WAVES:
        raise ValueError(f"{KIND_NAMES[kind]} primitives need a solid (WAVES) material: 2D families have no seamless "
                         "parameterisation on curved surfaces")
    center = np.asarray(center, np.float64).reshape(3)
    size = np.asarray(size, np.float64).reshape(3)
    if not np.all(np.isfinite(center)) or not np.all(size > 0):
        raise ValueError(f"primitive needs a finite center and positive size, got center={center}, size={size}")
    origin = np.zeros(3) if texture_origin is None else np.asarray(texture_origin, np.float64).reshape(3)
    return Primitive(kind, center, rot, size, int(class_id), int(instance_id), material, origin)


def make_box(center, half_size, class_id, instance_id, material, *, yaw=0.0, rotation=None, texture_origin=None):
    """An oriented box with half extents ``half_size``, rotated by ``yaw`` about world y (or by ``rotation``)."""
    return _make(BOX, center, _rotation(yaw, rotation), half_size, class_id, instance_id, material, texture_origin)


def make_sphere(center, radius, class_id, instance_id, material, *, rotation=None, texture_origin=None):
    """A sphere; ``rotation`` only orients its solid texture."""
    return _make(SPHERE, center, _rotation(0.0, rotation), (radius,) * 3, class_id, instance_id, material,
                 texture_origin)


def make_cylinder(center, radius, half_height, class_id, instance_id, material, *, rotation=None,
                  texture_origin=None):
    """A closed cylinder whose axis is the local y axis (vertical unless ``rotation`` is given)."""
    return _make(CYLINDER, center, _rotation(0.0, rotation), (radius, half_height, radius), class_id, instance_id,
                 material, texture_origin)


def make_plane(point, normal, class_id, instance_id, material, *, texture_origin=None):
    """An infinite plane through ``point`` with unit ``normal`` (becomes the local y axis)."""
    n = np.asarray(normal, np.float64).reshape(3)
    if not np.isfinite(n).all() or np.linalg.norm(n) < 1e-9:
        raise ValueError(f"normal must be a non-zero finite 3-vector, got {normal!r}")
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    x = np.cross(n, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, n)
    rot = np.stack([x, n, z], axis=1)
    return _make(PLANE, point, rot, (1.0, 1.0, 1.0), class_id, instance_id, material, texture_origin)


class PrimitiveSet:
    """Structure-of-arrays view of a list of primitives (vectorised transforms and culling)."""

    def __init__(self, prims):
        prims = list(prims)
        for p in prims:
            if not isinstance(p, Primitive):
                raise TypeError(f"primitives must be Primitive objects (use make_box etc.), got {type(p).__name__}")
        n = len(prims)
        self.kind = np.array([p.kind for p in prims], np.int8).reshape(n)
        self.center = np.array([p.center for p in prims], np.float64).reshape(n, 3)
        self.rotation = np.array([p.rotation for p in prims], np.float64).reshape(n, 3, 3)
        self.size = np.array([p.size for p in prims], np.float64).reshape(n, 3)
        self.class_id = np.array([p.class_id for p in prims], np.uint8).reshape(n)
        self.instance_id = np.array([p.instance_id for p in prims], np.int32).reshape(n)
        self.texture_origin = np.array([p.texture_origin for p in prims], np.float64).reshape(n, 3)
        self.mat_rows = np.array([p.material.row for p in prims], np.float64).reshape(n, MAT_LEN)

    def __len__(self):
        return len(self.kind)

    @classmethod
    def concat(cls, sets):
        """One PrimitiveSet holding the primitives of ``sets`` in order."""
        out = cls([])
        for name in ("kind", "center", "rotation", "size", "class_id", "instance_id", "texture_origin", "mat_rows"):
            setattr(out, name, np.concatenate([getattr(s, name) for s in sets]))
        return out

    def translated(self, offset):
        """A copy moved rigidly by ``offset`` (world metres); textures move with the objects."""
        out = PrimitiveSet.concat([self])
        out.center = self.center + np.asarray(offset, np.float64)
        return out


_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


def to_camera(pset, T_world_from_cam):
    """Primitive frames in camera coordinates: (R_cam_from_local [P,3,3], centre_cam [P,3]) in float64."""
    T = np.asarray(T_world_from_cam, np.float64)
    r_cw = T[:3, :3].T
    rot = np.einsum("ij,pjk->pik", r_cw, pset.rotation)
    center = (pset.center - T[:3, 3]) @ r_cw.T
    return rot, center


def screen_bounds(pset, rot, center, K, height, width, near):
    """Conservative pixel rectangles of every primitive and its nearest depth.

    Returns ``rects [P, 4] int64`` (v0, v1, u0, u1), half-open, clipped to the image; ``zmin [P]`` (the nearest
    z of the bounding box in front of the near plane; planes get +inf so they are drawn last), and ``visible [P]``.
    Bounding-box corners behind the near plane are replaced by the points where the box edges cross it, so the
    rectangle stays exact-but-conservative for boxes that straddle the camera.
    """
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    n = len(pset)
    rects = np.zeros((n, 4), np.int64)
    zmin = np.full(n, np.inf)
    visible = np.zeros(n, bool)
    if n == 0:
        return rects, zmin, visible
    local = _SIGNS[None, :, :] * pset.size[:, None, :]  # [P, 8, 3]
    corners = np.einsum("pij,pkj->pki", rot, local) + center[:, None, :]
    z = corners[..., 2]
    front = z > near
    a, b = _EDGES[:, 0], _EDGES[:, 1]
    za, zb = z[:, a], z[:, b]
    cross = front[:, a] != front[:, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(cross, (near - za) / (zb - za), 0.0)
    crossing = corners[:, a] + w[..., None] * (corners[:, b] - corners[:, a])
    pts = np.concatenate([corners, crossing], axis=1)  # [P, 20, 3]
    ok = np.concatenate([front, cross], axis=1)
    pz = np.where(ok, np.maximum(pts[..., 2], near), 1.0)
    u = fx * pts[..., 0] / pz + cx
    v = fy * pts[..., 1] / pz + cy
    big = 1e9
    umin = np.where(ok, u, big).min(1)
    umax = np.where(ok, u, -big).max(1)
    vmin = np.where(ok, v, big).min(1)
    vmax = np.where(ok, v, -big).max(1)
    any_ok = ok.any(1)
    # Pixel centres sit at integer coordinates; one pixel of margin absorbs rounding of the projection.
    rects[:, 0] = np.clip(np.floor(vmin) - 1, 0, height)
    rects[:, 1] = np.clip(np.floor(vmax) + 2, 0, height)
    rects[:, 2] = np.clip(np.floor(umin) - 1, 0, width)
    rects[:, 3] = np.clip(np.floor(umax) + 2, 0, width)
    zmin = np.where(ok, pz, np.inf).min(1)
    visible = any_ok & (rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2])
    planes = pset.kind == PLANE
    rects[planes] = (0, height, 0, width)
    zmin[planes] = np.inf
    visible[planes] = True
    return rects, zmin, visible
