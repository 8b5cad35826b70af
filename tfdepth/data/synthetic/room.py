"""The ``room`` preset (NYU-like): a closed box room 3-8 m across, furniture along the walls, objects on top.

World frame: floor surface at y = 0, y points down (so the ceiling is at y = -height), room centred on x = z = 0.
Floor, walls and ceiling are slabs outside the room (the inner faces are visible); the four walls share one
instance id (they meet at corners with continuous depth and the same class). Furniture stays within 0.9 m of the
walls, and each wall leaves 1 m free at its end corner, which the next wall may use (pieces on adjacent walls never
collide). The camera moves 1.3-1.65 m above the floor and at least 1.25 m from the walls (trajectory.py), above any
central table. Floor objects (balls, boxes, cylinders) oscillate along the floor when ``moving_objects`` is on.
"""

import math

import numpy as np

from tfdepth.data.synthetic import classes as C
from tfdepth.data.synthetic import textures as tx
from tfdepth.data.synthetic.primitives import PrimitiveSet, make_box, make_cylinder, make_sphere
from tfdepth.data.synthetic.render import Lighting
from tfdepth.data.synthetic.trajectory import RoomTrajectory

_TAG_SCENE, _TAG_TRAJ = 201, 202
_FLOOR_ID, _WALL_ID, _CEILING_ID = 1, 2, 3
_WOODS = ((0.55, 0.36, 0.2), (0.7, 0.52, 0.32), (0.4, 0.26, 0.15), (0.85, 0.8, 0.7), (0.3, 0.3, 0.32),
          (0.6, 0.15, 0.12), (0.2, 0.3, 0.5), (0.75, 0.75, 0.72))
_WALLS = ((0.85, 0.82, 0.75), (0.75, 0.8, 0.85), (0.8, 0.7, 0.6), (0.7, 0.78, 0.68), (0.9, 0.88, 0.85))
_BRIGHT = ((0.85, 0.2, 0.15), (0.15, 0.45, 0.8), (0.9, 0.75, 0.1), (0.2, 0.65, 0.3), (0.6, 0.3, 0.7),
           (0.9, 0.5, 0.2), (0.9, 0.9, 0.9))


def _uniform_within(rng, low, high):
    """U(low, high), or the interval's centre without a draw when it is empty (a small room leaves no room for a
    large object away from the walls: the object goes to the middle). Non-empty intervals draw exactly as before,
    so every scene that rendered keeps its numbers."""
    return rng.uniform(low, high) if high > low else 0.5 * (low + high)


def _jitter(rng, rgb, amount=0.06):
    return np.clip(np.asarray(rgb) + rng.uniform(-amount, amount, 3), 0.03, 0.97)


def _two_tone(rng, base, lo=0.45, hi=0.7):
    return base, np.clip(np.asarray(base) * rng.uniform(lo, hi), 0.02, 1.0)


def _surface_material(rng, palette, scale_range):
    c0, c1 = _two_tone(rng, _jitter(rng, palette[rng.integers(len(palette))]))
    family = (tx.NOISE, tx.STRIPES, tx.CHECKER, tx.BRICKS)[rng.integers(4)]
    return tx.random_material(rng, family, c0, c1, rng.uniform(*scale_range), aspect=rng.uniform(1.5, 4.0),
                              duty=rng.uniform(0.12, 0.5), overlay=rng.uniform(0.12, 0.25),
                              overlay_scale=rng.uniform(0.1, 0.3))


def _curved_material(rng, palette):
    c0, c1 = _two_tone(rng, _jitter(rng, palette[rng.integers(len(palette))]), 0.3, 0.6)
    return tx.random_material(rng, tx.WAVES, c0, c1, rng.uniform(0.08, 0.3))


class RoomScene:
    """Scene parameters of one seed; ``primitives(k, moving)`` gives the PrimitiveSet of frame k."""

    intrinsics_normalised = (0.9, 1.2)  # fx / W, fy / H: fx = fy = 0.9 W at the default 480 x 640
    default_size = (480, 640)

    def __init__(self, seed):
        rng = np.random.default_rng([seed, _TAG_SCENE])
        self.half = (rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0))  # half extents along x and z
        self.height = rng.uniform(2.4, 3.2)
        light = np.array([rng.uniform(-0.5, 0.5), -1.0, rng.uniform(-0.5, 0.5)])
        self.lighting = Lighting(tuple(light / np.linalg.norm(light)), rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.6))
        self._next = 10
        static = self._shell(rng)
        self._footprints = []  # (x0, x1, z0, z1, top height) of furniture, for placing other things
        for wall in range(4):
            static += self._wall_furniture(rng, wall)
        if rng.random() < 0.5:
            static += self._centre_table(rng)
        static += self._pictures(rng)
        self.static = PrimitiveSet(static)
        self.movers = self._floor_objects(rng)
        self.trajectory = RoomTrajectory(np.random.default_rng([seed, _TAG_TRAJ]), *self.half)

    def _id(self):
        self._next += 1
        return self._next

    def primitives(self, k, moving_objects, camera_z=None):
        sets = [self.static]
        for pset, amp, freq, phase in self.movers:
            if moving_objects:
                sets.append(pset.translated(amp * (math.sin(freq * k + phase) - math.sin(phase))))
            else:
                sets.append(pset)
        return PrimitiveSet.concat(sets)

    # ---- shell ------------------------------------------------------------------------------------------------
    def _shell(self, rng):
        hx, hz, h = self.half[0], self.half[1], self.height
        t = 0.15  # slab thickness; slabs overlap at the corners so the room is closed
        floor_mat = _surface_material(rng, _WOODS, (0.15, 0.5))
        ceil_mat = _surface_material(rng, ((0.9, 0.9, 0.88), (0.85, 0.85, 0.9)), (0.4, 0.9))
        prims = [make_box((0, t, 0), (hx + 2 * t, t, hz + 2 * t), C.FLOOR, _FLOOR_ID, floor_mat),
                 make_box((0, -h - t, 0), (hx + 2 * t, t, hz + 2 * t), C.CEILING, _CEILING_ID, ceil_mat)]
        main = _surface_material(rng, _WALLS, (0.2, 0.8))
        for wall in range(4):
            mat = main if rng.random() < 0.7 else _surface_material(rng, _WALLS, (0.2, 0.8))
            if wall < 2:
                sign = 1 if wall == 0 else -1
                prims.append(make_box((sign * (hx + t), -h / 2, 0), (t, h / 2 + 2 * t, hz + 2 * t), C.WALL, _WALL_ID,
                                      mat))
            else:
                sign = 1 if wall == 2 else -1
                prims.append(make_box((0, -h / 2, sign * (hz + t)), (hx + 2 * t, h / 2 + 2 * t, t), C.WALL, _WALL_ID,
                                      mat))
        return prims

    def _wall_frame(self, wall):
        """(yaw, wall half length, distance of the wall from the centre) so that local +z points into the room."""
        hx, hz = self.half
        return [(-math.pi / 2, hz, hx), (math.pi / 2, hz, hx), (math.pi, hx, hz), (0.0, hx, hz)][wall]

    def _to_world(self, wall, along, inward, y):
        """Wall coordinates (along the wall, distance from the wall) to a world point."""
        yaw, _, dist = self._wall_frame(wall)
        c, s = math.cos(yaw), math.sin(yaw)
        # local x = along the wall, local z = into the room; the wall plane sits at local z = -dist
        lx, lz = along, inward - dist
        return np.array([c * lx + s * lz, y, -s * lx + c * lz])

    # ---- furniture ------------------------------------------------------------------------------------------------
    def _wall_furniture(self, rng, wall):
        yaw, half_len, _ = self._wall_frame(wall)
        prims = []
        # Each wall may use the corner at its start (along = -half_len) and keeps 1 m free at its end, where the
        # next wall's start corner is: pieces on adjacent walls (at most 0.9 m deep) can then never collide.
        pos = -half_len + 0.05 + rng.uniform(0.0, 0.5)
        while True:
            width = rng.uniform(0.5, 2.0)
            if pos + width > half_len - 1.0:
                break
            kind = rng.integers(4)
            mat = _surface_material(rng, _WOODS, (0.1, 0.4))
            inst = self._id()
            mid = pos + width / 2
            if kind == 0:  # cabinet / shelf
                depth, height = rng.uniform(0.35, 0.6), rng.uniform(0.6, 2.1)
                prims.append(make_box(self._to_world(wall, mid, depth / 2, -height / 2),
                                      (width / 2, height / 2, depth / 2), C.FURNITURE, inst, mat, yaw=yaw))
                top = height
            elif kind == 1:  # table / desk: top + 4 legs
                depth, height, thick = rng.uniform(0.5, 0.9), rng.uniform(0.7, 0.8), rng.uniform(0.03, 0.05)
                top_centre = self._to_world(wall, mid, depth / 2, -height + thick)
                prims.append(make_box(top_centre, (width / 2, thick, depth / 2), C.FURNITURE, inst, mat, yaw=yaw))
                for sa in (-1, 1):
                    for sd in (-1, 1):
                        p = self._to_world(wall, mid + sa * (width / 2 - 0.05), depth / 2 + sd * (depth / 2 - 0.05),
                                           -(height - thick) / 2)
                        prims.append(make_box(p, (0.03, (height - thick) / 2, 0.03), C.FURNITURE, inst, mat, yaw=yaw))
                top = height
            elif kind == 2:  # sofa / bed: seat + back
                depth, seat, back = rng.uniform(0.7, 0.9), rng.uniform(0.35, 0.5), rng.uniform(0.7, 1.0)
                prims.append(make_box(self._to_world(wall, mid, depth / 2, -seat / 2), (width / 2, seat / 2, depth / 2),
                                      C.FURNITURE, inst, mat, yaw=yaw))
                prims.append(make_box(self._to_world(wall, mid, 0.1, -back / 2), (width / 2, back / 2, 0.1),
                                      C.FURNITURE, inst, mat, yaw=yaw))
                top = None  # nothing is placed on a sofa
            else:  # round side table: cylinder top + leg
                radius = min(width / 2, rng.uniform(0.25, 0.4))
                height = rng.uniform(0.45, 0.75)
                centre = self._to_world(wall, mid, radius + 0.05, 0.0)
                curved = _curved_material(rng, _WOODS)
                prims.append(make_cylinder(centre + (0, -height + 0.025, 0), radius, 0.025, C.FURNITURE, inst, curved))
                prims.append(make_cylinder(centre + (0, -(height - 0.05) / 2, 0), 0.04, (height - 0.05) / 2,
                                           C.FURNITURE, inst, curved))
                depth = 2 * radius + 0.05
                prims += self._objects_on(rng, centre[0] - radius * 0.6, centre[0] + radius * 0.6,
                                          centre[2] - radius * 0.6, centre[2] + radius * 0.6, height)
                top = None  # its objects are placed already (on the disc, not on the bounding rectangle)
            corners = [self._to_world(wall, mid + a * width / 2, d, 0.0) for a in (-1, 1) for d in (0.0, depth)]
            xs, zs = [c[0] for c in corners], [c[2] for c in corners]
            self._footprints.append((min(xs), max(xs), min(zs), max(zs), top if top is not None else 1.0))
            if top is not None and top < 1.7:
                prims += self._objects_on(rng, min(xs) + 0.05, max(xs) - 0.05, min(zs) + 0.05, max(zs) - 0.05, top)
            pos += width + rng.uniform(0.05, 0.6)
        return prims

    def _centre_table(self, rng):
        hx, hz = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.35)
        height, x, z = rng.uniform(0.38, 0.5), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
        inst, mat = self._id(), _surface_material(rng, _WOODS, (0.1, 0.4))
        prims = [make_box((x, -height / 2, z), (hx, height / 2, hz), C.FURNITURE, inst, mat)]
        self._footprints.append((x - hx, x + hx, z - hz, z + hz, height))
        return prims + self._objects_on(rng, x - hx + 0.05, x + hx - 0.05, z - hz + 0.05, z + hz - 0.05, height)

    def _objects_on(self, rng, x0, x1, z0, z1, top):
        """0-3 small objects (boxes, cylinders, spheres) resting on the rectangle [x0,x1]x[z0,z1] at height top."""
        prims, placed = [], []
        for _ in range(rng.integers(0, 4)):
            r = rng.uniform(0.05, 0.14)
            if x1 - x0 < 2 * r or z1 - z0 < 2 * r:
                break
            x, z = rng.uniform(x0 + r, x1 - r), rng.uniform(z0 + r, z1 - r)
            if any((x - px) ** 2 + (z - pz) ** 2 < (r + pr + 0.03) ** 2 for px, pz, pr in placed):
                continue
            placed.append((x, z, r))
            prims += self._object(rng, x, -top, z, r)
        return prims

    def _object(self, rng, x, y_base, z, r):
        inst, shape = self._id(), rng.integers(3)
        if shape == 0:
            h = rng.uniform(0.05, 0.3)
            mat = _surface_material(rng, _BRIGHT, (0.03, 0.1))
            return [make_box((x, y_base - h / 2, z), (r * 0.7, h / 2, r * 0.7), C.OBJECT, inst, mat,
                             yaw=rng.uniform(0, math.pi))]
        mat = _curved_material(rng, _BRIGHT)
        if shape == 1:
            h = rng.uniform(0.08, 0.35)
            return [make_cylinder((x, y_base - h / 2, z), r * 0.8, h / 2, C.OBJECT, inst, mat)]
        return [make_sphere((x, y_base - r, z), r, C.OBJECT, inst, mat)]

    def _pictures(self, rng):
        prims = []
        for wall in range(4):
            if rng.random() > 0.6:
                continue
            yaw, half_len, _ = self._wall_frame(wall)
            w, h = rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.4)
            y = -rng.uniform(1.35, 1.9)
            along = _uniform_within(rng, -half_len + 1.0 + w, half_len - 1.0 - w)
            p = self._to_world(wall, along, 0.015, y)
            # Skip if a tall piece of furniture stands in front of it.
            if any(f[0] - w <= p[0] <= f[1] + w and f[2] - w <= p[2] <= f[3] + w and f[4] > -y - h - 0.05
                   for f in self._footprints):
                continue
            mat = _surface_material(rng, _BRIGHT, (0.05, 0.2))
            prims.append(make_box(p, (w, h, 0.015), C.OBJECT, self._id(), mat, yaw=yaw))
        return prims

    def _floor_objects(self, rng):
        """1-3 objects on the floor, each with an oscillation (amplitude vector, frequency, phase)."""
        hx, hz = self.half
        movers = []
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(0.1, 0.25)
            amp = rng.uniform(0.1, 0.3) * np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), 0.0, math.sin(a)])
            reach = r + np.abs(amp).max() + 0.05
            x = _uniform_within(rng, -hx + 1.0 + reach, hx - 1.0 - reach)
            z = _uniform_within(rng, -hz + 1.0 + reach, hz - 1.0 - reach)
            if any(f[0] - reach < x < f[1] + reach and f[2] - reach < z < f[3] + reach for f in self._footprints):
                continue
            self._footprints.append((x - reach, x + reach, z - reach, z + reach, 2 * r))
            pset = PrimitiveSet(self._object(rng, x, 0.0, z, r))
            movers.append((pset, amp, rng.uniform(0.05, 0.15), rng.uniform(0, 2 * math.pi)))
        return movers
