"""The ``street`` preset (KITTI-like): an endless straight street generated lazily in 40 m segments.

Layout across the road (world x, right positive): optional parking strip | oncoming lane | camera lane | optional
parking strip, then a raised sidewalk (ground continues under the buildings), then buildings of varying setback
with gaps between them (so two buildings never share a facade plane). Objects: parked cars (body + cabin + 4
wheels, one instance), cars in the oncoming lane (moving towards the camera when ``moving_objects``), poles (some
with a lamp arm), trees (trunk + spherical crown). Sky beyond.

Segment j is drawn from ``default_rng([seed, TAG, j])`` alone, so frame k never depends on how many frames are
rendered, and the scene is unbounded in length. Oncoming cars live in a lane frame that slides by ``-v k``.
"""

import math

import numpy as np

from tfdepth.data.synthetic import classes as C
from tfdepth.data.synthetic import textures as tx
from tfdepth.data.synthetic.primitives import PrimitiveSet, make_box, make_cylinder, make_sphere
from tfdepth.data.synthetic.render import Lighting
from tfdepth.data.synthetic.trajectory import CAMERA_HEIGHT_STREET, StreetTrajectory

SEGMENT = 40.0  # metres of street per lazily generated segment
VIEW = 160.0  # content is generated up to this distance ahead of the camera
ROAD_Y = CAMERA_HEIGHT_STREET  # the road surface (y points down; the camera is at y = 0)
_OFFSET = 1 << 12  # keeps seed entropy non-negative for segments behind the start
_TAG_SCENE, _TAG_TRAJ, _TAG_SEG, _TAG_LANE = 101, 102, 103, 104
_INSTANCES_PER_SEGMENT = 128
_LANE_INSTANCE_BASE = 1 << 28
_WHEEL_ROT = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # local y (cylinder axis) -> world x


def _jitter(rng, rgb, amount=0.06):
    return np.clip(np.asarray(rgb) + rng.uniform(-amount, amount, 3), 0.03, 0.97)


def _darker(rng, rgb, lo=0.35, hi=0.6):
    return np.clip(np.asarray(rgb) * rng.uniform(lo, hi), 0.02, 1.0)


_BUILDING_COLOURS = ((0.72, 0.45, 0.35), (0.8, 0.75, 0.62), (0.6, 0.6, 0.62), (0.85, 0.8, 0.7), (0.55, 0.42, 0.32),
                     (0.7, 0.68, 0.55), (0.5, 0.55, 0.6))
_CAR_COLOURS = ((0.75, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.15, 0.15, 0.15), (0.55, 0.55, 0.6),
                (0.1, 0.45, 0.2), (0.85, 0.7, 0.15))


def _building_material(rng):
    base = _jitter(rng, _BUILDING_COLOURS[rng.integers(len(_BUILDING_COLOURS))])
    family = (tx.BRICKS, tx.STRIPES, tx.CHECKER, tx.NOISE)[rng.integers(4)]
    if family == tx.BRICKS:
        return tx.random_material(rng, family, base, _darker(rng, base, 0.5, 0.75), rng.uniform(0.15, 0.35),
                                  aspect=rng.uniform(1.8, 3.0), duty=rng.uniform(0.1, 0.2), overlay=0.12,
                                  overlay_scale=rng.uniform(0.4, 1.2))
    if family == tx.STRIPES:  # floors / window bands
        return tx.random_material(rng, family, base, _darker(rng, base), rng.uniform(1.5, 3.5), aspect=1.0,
                                  duty=rng.uniform(0.3, 0.5), overlay=0.15, overlay_scale=rng.uniform(0.5, 1.5))
    if family == tx.CHECKER:  # window grid
        return tx.random_material(rng, family, base, _darker(rng, base), rng.uniform(1.5, 3.0), overlay=0.15,
                                  overlay_scale=rng.uniform(0.4, 1.0))
    return tx.random_material(rng, family, base, _darker(rng, base, 0.4, 0.7), rng.uniform(1.0, 3.0), overlay=0.15,
                              overlay_scale=0.3)


def _car(rng, x, z, yaw, instance):
    """Body + cabin + 4 wheels sharing one instance id."""
    length, width = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9)
    body_h, cab_h = rng.uniform(0.6, 0.8), rng.uniform(0.45, 0.6)
    paint = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 0.05)
    body = tx.random_material(rng, tx.NOISE, paint, _darker(rng, paint, 0.55, 0.75), rng.uniform(0.5, 1.0),
                              overlay=0.2, overlay_scale=0.2)
    glass = tx.random_material(rng, tx.NOISE, (0.12, 0.14, 0.18), (0.35, 0.4, 0.45), rng.uniform(0.6, 1.2),
                               overlay=0.15, overlay_scale=0.3)
    tyre = tx.random_material(rng, tx.WAVES, (0.05, 0.05, 0.05), (0.3, 0.3, 0.3), 0.25)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    def at(dx, dy, dz):  # car-local offset -> world
        return np.array([x, ROAD_Y, z]) + rot @ np.array([dx, dy, dz])

    clearance = 0.22
    prims = [make_box(at(0, -clearance - body_h / 2, 0), (width / 2, body_h / 2, length / 2), C.CAR, instance, body,
                      rotation=rot)]
    cab_len = length * rng.uniform(0.45, 0.6)
    prims.append(make_box(at(0, -clearance - body_h - cab_h / 2, -0.1 * length), (width * 0.42, cab_h / 2, cab_len / 2),
                          C.CAR, instance, glass, rotation=rot))
    for sx in (-1, 1):
        for sz in (-1, 1):
            prims.append(make_cylinder(at(sx * (width / 2 - 0.12), -0.31, sz * (length / 2 - 0.75)), 0.31, 0.11,
                                       C.CAR, instance, tyre, rotation=rot @ _WHEEL_ROT))
    return prims, length


class StreetScene:
    """Scene parameters of one seed; ``primitives(k, moving)`` gives the PrimitiveSet of frame k."""

    intrinsics_normalised = (0.58, 1.92)  # fx / W, fy / H (KITTI-like)
    default_size = (192, 640)

    def __init__(self, seed):
        self.seed = seed
        rng = np.random.default_rng([seed, _TAG_SCENE])
        self.lane_w = rng.uniform(3.0, 3.6)
        park = rng.random(2) < 0.7
        self.park = (2.2 * park[0], 2.2 * park[1])  # left, right parking strip widths
        self.road = (-(self.lane_w + self.park[0]), self.lane_w + self.park[1])
        self.walk = tuple(rng.uniform(1.8, 4.0, 2))
        self.curb = rng.uniform(0.1, 0.18)
        self.p_parked = rng.uniform(0.3, 0.85)
        self.p_lane_car = rng.uniform(0.3, 0.9)
        self.lane_speed = rng.uniform(0.4, 1.4)
        self.tree_rate = rng.uniform(0.0, 2.5)
        self.pole_rate = rng.uniform(0.8, 2.5)
        sun = np.array([rng.uniform(-0.8, 0.8), -rng.uniform(0.5, 1.2), rng.uniform(-0.8, 0.3)])
        zenith = _jitter(rng, (0.3, 0.5, 0.85), 0.08)
        # Moderate diffuse share: faces of one box differ in brightness (creases are visible) without creating
        # very high-contrast crease lines that dominate photometric warping errors.
        self.lighting = Lighting(tuple(sun / np.linalg.norm(sun)), rng.uniform(0.45, 0.55), rng.uniform(0.4, 0.55),
                                 tuple(zenith), tuple(_jitter(rng, (0.8, 0.85, 0.9), 0.05)))
        grey = rng.uniform(0.28, 0.4)
        # Asphalt wear at 0.8-2 m with strong contrast: the road is seen at grazing angles, where the texture
        # filter (pixel footprint up to ~0.3 m along the road at 10 m and 96x320) removes finer grain; without
        # metre-scale structure the road gives no photometric signal and self-supervised depth leaves it a hole.
        self.road_mat = tx.random_material(rng, tx.STRIPES, (grey, grey, grey * 1.03), (0.9, 0.9, 0.88), self.lane_w,
                                           aspect=0.0, duty=0.045, overlay=0.7, overlay_scale=rng.uniform(0.8, 2.0))
        walk_fams = (tx.CHECKER, tx.BRICKS)
        self.walk_mat = []
        for _ in range(2):
            base = _jitter(rng, (0.62, 0.6, 0.56), 0.08)
            fam = walk_fams[rng.integers(2)]
            self.walk_mat.append(tx.random_material(rng, fam, base, _darker(rng, base, 0.6, 0.8), rng.uniform(0.3, 0.6),
                                                    aspect=rng.uniform(1.0, 2.0), duty=0.12, overlay=0.2,
                                                    overlay_scale=0.25))
        self.trajectory = StreetTrajectory(np.random.default_rng([seed, _TAG_TRAJ]), self.lane_w / 2)
        self._segments = {}
        self._lane_segments = {}

    # ---- per-frame assembly -------------------------------------------------------------------------------------
    def primitives(self, k, moving_objects, camera_z):
        z_lo, z_hi = camera_z - 20.0, camera_z + VIEW
        sets = [self._ground(z_lo, z_hi)]
        for j in range(math.floor(z_lo / SEGMENT), math.floor(z_hi / SEGMENT) + 1):
            if j not in self._segments:
                self._segments[j] = PrimitiveSet(self._segment(j))
            sets.append(self._segments[j])
        shift = self.lane_speed * k if moving_objects else 0.0
        for m in range(math.floor((z_lo + shift) / SEGMENT), math.floor((z_hi + shift) / SEGMENT) + 1):
            if m not in self._lane_segments:
                self._lane_segments[m] = PrimitiveSet(self._lane_segment(m))
            sets.append(self._lane_segments[m].translated((0.0, 0.0, -shift)))
        # Drop cached segments far behind the camera (sequences only move forward); lane segments live in the
        # lane's sliding coordinate, shifted by `shift`.
        for cache, start in ((self._segments, z_lo), (self._lane_segments, z_lo + shift)):
            for key in [key for key in cache if (key + 2) * SEGMENT < start - 200.0]:
                del cache[key]
        return PrimitiveSet.concat(sets)

    def _ground(self, z_lo, z_hi):
        zc, half = 0.5 * (z_lo + z_hi), 0.5 * (z_hi - z_lo)
        left, right = self.road
        prims = [make_box((0.5 * (left + right), ROAD_Y + 0.1, zc), (0.5 * (right - left), 0.1, half), C.ROAD, 1,
                          self.road_mat, texture_origin=(0.5 * (left + right), ROAD_Y + 0.1, zc))]
        for side, (edge, walk) in enumerate(((left, self.walk[0]), (right, self.walk[1]))):
            sign = -1.0 if side == 0 else 1.0
            width = walk + 30.0  # the ground continues under and behind the buildings
            cx = edge + sign * width / 2
            cy = ROAD_Y + 0.1 - self.curb / 2
            # texture_origin = the box centre in world axes: texture coordinates are world coordinates, so the
            # strip can be regenerated around the camera every frame without the pattern moving.
            prims.append(make_box((cx, cy, zc), (width / 2, 0.1 + self.curb / 2, half), C.SIDEWALK, 2 + side,
                                  self.walk_mat[side], texture_origin=(cx, cy, zc)))
        return PrimitiveSet(prims)

    # ---- content generation ----------------------------------------------------------------------------------
    def _segment(self, j):
        rng = np.random.default_rng([self.seed, _TAG_SEG, j + _OFFSET])
        next_id = iter(range(100 + (j + _OFFSET) * _INSTANCES_PER_SEGMENT, 10**9))
        z0 = j * SEGMENT
        prims = []
        for side in (0, 1):
            sign = -1.0 if side == 0 else 1.0
            edge = abs(self.road[side])
            facade = edge + self.walk[side]
            walk_top = ROAD_Y - self.curb
            z = z0 + rng.uniform(0.75, 4.0)
            while True:
                width = rng.uniform(6.0, 22.0)
                if z + width > z0 + SEGMENT - 0.75:
                    width = z0 + SEGMENT - 0.75 - z
                    if width < 5.0:
                        break
                setback, depth, height = rng.uniform(0.0, 3.5), rng.uniform(8.0, 16.0), rng.uniform(5.0, 24.0)
                inst = next(next_id)
                mat = _building_material(rng)
                x_in = facade + setback
                prims.append(make_box((sign * (x_in + depth / 2), walk_top - height / 2, z + width / 2),
                                      (depth / 2, height / 2, width / 2), C.BUILDING, inst, mat))
                if height > 10 and rng.random() < 0.35:  # stepped-back upper storeys
                    h2 = rng.uniform(2.5, 6.0)
                    prims.append(make_box((sign * (x_in + 1.5 + depth / 2), walk_top - height - h2 / 2, z + width / 2),
                                          (depth / 2 - 1.0, h2 / 2, width / 2 - 1.0), C.BUILDING, inst, mat))
                z += width + rng.uniform(1.5, 6.0)
            # Parked cars along this side's parking strip.
            if self.park[side] > 0:
                # Cars span [z + 0.1, z + 4.9]; starting >= 1 m into the segment and stopping 6 m before its end
                # keeps >= 1 m between cars of neighbouring segments (distinct instances must not touch).
                z = z0 + rng.uniform(1.0, 3.0)
                while z < z0 + SEGMENT - 6.0:
                    if rng.random() < self.p_parked:
                        car, length = _car(rng, sign * (self.lane_w + 1.1), z + 2.5,
                                           math.radians(rng.uniform(-3, 3)), next(next_id))
                        prims += car
                        z += 5.0 + rng.uniform(0.8, 4.0)
                    else:
                        z += rng.uniform(3.0, 8.0)
            # Trees (sidewalk middle) and poles (at the curb). Crowns (radius <= 2.2 m) stay inside their segment and
            # 5 m apart so two crowns never intersect; poles keep 2.5 m from trees and from each other.
            taken = []
            for _ in range(rng.poisson(self.tree_rate)):
                zt = z0 + rng.uniform(2.5, SEGMENT - 2.5)
                if any(abs(zt - o) < 5.0 for o in taken):
                    continue
                taken.append(zt)
                inst = next(next_id)
                xt = sign * (edge + self.walk[side] * 0.5)
                trunk_r, trunk_h, crown_r = rng.uniform(0.12, 0.22), rng.uniform(2.0, 3.5), rng.uniform(1.0, 2.2)
                bark = tx.random_material(rng, tx.WAVES, (0.35, 0.25, 0.15), (0.15, 0.1, 0.06), 0.4)
                leaves = tx.random_material(rng, tx.WAVES, _jitter(rng, (0.25, 0.45, 0.15)), (0.08, 0.2, 0.05),
                                            rng.uniform(0.6, 1.2))
                prims.append(make_cylinder((xt, walk_top - trunk_h / 2, zt), trunk_r, trunk_h / 2, C.VEGETATION, inst,
                                           bark))
                prims.append(make_sphere((xt, walk_top - trunk_h - 0.6 * crown_r, zt), crown_r, C.VEGETATION, inst,
                                         leaves))
            for _ in range(rng.poisson(self.pole_rate)):
                zp = z0 + rng.uniform(0.5, SEGMENT - 0.5)
                if any(abs(zp - o) < 2.5 for o in taken):
                    continue
                taken.append(zp)
                inst = next(next_id)
                xp = sign * (edge + 0.45)
                radius, height = rng.uniform(0.06, 0.14), rng.uniform(3.0, 8.0)
                metal = tx.random_material(rng, tx.WAVES, _jitter(rng, (0.5, 0.5, 0.5), 0.15), (0.2, 0.2, 0.22),
                                           rng.uniform(0.3, 0.8))
                prims.append(make_cylinder((xp, walk_top - height / 2, zp), radius, height / 2, C.POLE, inst, metal))
                if height > 5 and rng.random() < 0.6:  # lamp arm over the road
                    arm = rng.uniform(1.0, 2.0)
                    prims.append(make_box((xp - sign * arm / 2, walk_top - height + 0.1, zp), (arm / 2, 0.07, 0.1),
                                          C.POLE, inst, _arm_material(rng)))
        return prims

    def _lane_segment(self, m):
        """Cars of the oncoming lane, positioned in the lane's sliding frame (z = sigma - v k)."""
        rng = np.random.default_rng([self.seed, _TAG_LANE, m + _OFFSET])
        next_id = iter(range(_LANE_INSTANCE_BASE + (m + _OFFSET) * 16, 10**10))
        prims = []
        z = m * SEGMENT + rng.uniform(0.0, 6.0)
        while z < (m + 1) * SEGMENT - 5.0:
            if rng.random() < self.p_lane_car:
                car, _ = _car(rng, -self.lane_w / 2 + rng.uniform(-0.2, 0.2), z + 2.5,
                              math.pi + math.radians(rng.uniform(-2, 2)), next(next_id))
                prims += car
                z += 5.0 + rng.uniform(6.0, 20.0)
            else:
                z += rng.uniform(8.0, 20.0)
        return prims


def _arm_material(rng):
    grey = _jitter(rng, (0.55, 0.55, 0.55), 0.1)
    return tx.random_material(rng, tx.STRIPES, grey, _darker(rng, grey), 0.3, aspect=0.0, duty=0.5, overlay=0.2,
                              overlay_scale=0.1)
