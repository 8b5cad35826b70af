"""Camera trajectories: closed-form functions of the frame index.

A pose is an analytic function of (scene parameters, k), so frame k is the same whatever the sequence length, and
the per-frame motion bounds below hold by construction (each bound is the sum of the sinusoids' amplitude x
frequency, i.e. their largest per-frame change).

World frame of both presets: OpenCV-like, x right, y DOWN (gravity), z forward. Poses are ``T_world_from_cam``
with OpenCV camera axes; orientation = R_y(yaw) R_x(pitch) R_z(roll) (positive pitch looks up).
"""

import math

import numpy as np

# Per-frame camera motion ranges (translation metres, rotation degrees), guaranteed by the samplers below.
MOTION_RANGES = {
    "street": {"translation": (0.5, 1.5), "rotation": (0.0, 2.0)},
    "room": {"translation": (0.02, 0.10), "rotation": (1.0, 5.0)},
}
CAMERA_HEIGHT_STREET = 1.65  # metres above the road (KITTI)


def rotation_ypr(yaw, pitch, roll):
    """[N, 3, 3] rotations R_y(yaw) @ R_x(pitch) @ R_z(roll) for arrays of angles (radians)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


def _poses(rotation, position):
    n = rotation.shape[0]
    T = np.zeros((n, 4, 4))
    T[:, :3, :3] = rotation
    T[:, :3, 3] = position
    T[:, 3, 3] = 1.0
    return T


def _wobble(rng, max_rate, amp_range, freq_range):
    """(amplitude, frequency, phase) of a sinusoid whose per-frame change is at most ``max_rate``."""
    freq = rng.uniform(*freq_range)
    amp = min(rng.uniform(*amp_range), max_rate / freq)
    return amp, freq, rng.uniform(0.0, 2.0 * math.pi)


def _sin(w, k):
    amp, freq, phase = w
    return amp * (np.sin(freq * k + phase) - np.sin(phase))


class StreetTrajectory:
    """Driving forward along +z in the right lane: 0.55-1.45 m/frame, yaw/pitch/roll jitter (<= ~1.4 deg/frame)."""

    def __init__(self, rng, lane_x):
        self.speed = rng.uniform(0.75, 1.25)
        self.z_wobble = _wobble(rng, 0.9 * min(self.speed - 0.55, 1.45 - self.speed), (0.5, 4.0), (0.05, 0.25))
        self.x0 = lane_x + rng.uniform(-0.3, 0.3)
        self.x_wobble = _wobble(rng, 0.02, (0.0, 0.3), (0.02, 0.08))
        deg = math.radians
        self.yaw = [_wobble(rng, deg(0.4), (0.0, deg(2.0)), (0.03, 0.15)), _wobble(rng, deg(0.3), (0.0, deg(0.6)),
                                                                                     (0.2, 0.6))]
        self.pitch0 = rng.uniform(deg(-1.0), deg(1.0))
        self.pitch = _wobble(rng, deg(0.4), (0.0, deg(1.0)), (0.1, 0.5))
        self.roll = _wobble(rng, deg(0.2), (0.0, deg(0.5)), (0.1, 0.4))

    def poses(self, frames):
        k = np.asarray(frames, np.float64)
        z = self.speed * k + _sin(self.z_wobble, k)
        x = self.x0 + _sin(self.x_wobble, k)
        yaw = _sin(self.yaw[0], k) + _sin(self.yaw[1], k)
        rot = rotation_ypr(yaw, self.pitch0 + _sin(self.pitch, k), _sin(self.roll, k))
        return _poses(rot, np.stack([x, np.zeros_like(k), z], -1))


class RoomTrajectory:
    """Hand-held camera in a room, 1.3-1.65 m above the floor, pitched down.

    "Look-in" mode (rooms with enough free space): the camera circles the room centre at radius r looking inwards
    across the room (yaw = -theta - pi/2 + a slow wobble), so views see the opposite wall and its furniture, as in
    NYU. The orbit rate w (1.4-3.2 deg/frame) is the rotation rate and r * w (0.03-0.08 m) the translation per
    frame. Small rooms, where no orbit keeps 1.25 m from the walls with that speed, use "look-around" mode: a small
    ellipse (0.03-0.075 m/frame) with a steady independent yaw spin (1.3-3.3 deg/frame). Pitch and roll wobbles stay
    within 0.6 and 0.4 deg/frame, so rotations stay in 1-5 deg/frame in both modes.
    """

    def __init__(self, rng, half_x, half_z, height_range=(1.3, 1.65)):
        deg = math.radians
        self.height = rng.uniform(*height_range)
        self.bob = _wobble(rng, 0.005, (0.0, 0.05), (0.05, 0.2))
        self.theta0 = rng.uniform(0, 2 * math.pi)
        sign = 1 if rng.random() < 0.5 else -1
        free = min(half_x, half_z) - 1.25  # furniture stays within 0.9 m of the walls
        omega = rng.uniform(deg(1.4), deg(3.2))
        r_lo, r_hi = 0.03 / omega, min(0.08 / omega, free)
        self.look_in = r_lo <= r_hi
        if self.look_in:
            radius = rng.uniform(r_lo, r_hi)
            self.radii = (radius, radius)
            self.omega = sign * omega
            self.yaw_rate = 0.0
            self.yaw = _wobble(rng, deg(0.3), (0.0, deg(20.0)), (0.01, 0.05))
            self.pitch0 = rng.uniform(deg(-25.0), deg(-10.0))
        else:
            radius = rng.uniform(0.4, 0.9) * max(free, 0.15)
            ecc = rng.uniform(0.75, 1.0)
            self.radii = (radius, radius * ecc) if rng.random() < 0.5 else (radius * ecc, radius)
            self.omega = sign * rng.uniform(0.035, 0.065) / (radius * math.sqrt(ecc))
            self.yaw0 = rng.uniform(0, 2 * math.pi)
            self.yaw_rate = rng.uniform(deg(1.6), deg(3.0)) * (1 if rng.random() < 0.5 else -1)
            self.yaw = _wobble(rng, deg(0.3), (0.0, deg(6.0)), (0.03, 0.1))
            self.pitch0 = rng.uniform(deg(-22.0), deg(-8.0))
        self.pitch = _wobble(rng, deg(0.6), (deg(2.0), deg(8.0)), (0.05, 0.15))
        self.roll = _wobble(rng, deg(0.4), (0.0, deg(3.0)), (0.05, 0.2))

    def poses(self, frames):
        k = np.asarray(frames, np.float64)
        theta = self.theta0 + self.omega * k
        x = self.radii[0] * np.cos(theta)
        z = self.radii[1] * np.sin(theta)
        y = -(self.height + _sin(self.bob, k))  # y points down: negative y is above the floor
        if self.look_in:
            yaw = -theta - math.pi / 2 + _sin(self.yaw, k)  # forward (sin yaw, cos yaw) = towards the centre
        else:
            yaw = self.yaw0 + self.yaw_rate * k + _sin(self.yaw, k)
        rot = rotation_ypr(yaw, self.pitch0 + _sin(self.pitch, k), _sin(self.roll, k))
        return _poses(rot, np.stack([x, y, z], -1))
