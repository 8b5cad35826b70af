"""Procedural, surface-anchored, analytically prefiltered textures, evaluated for many surfaces at once.

Every pattern is a sum of components with a known spatial frequency (pulse-train harmonics, value-noise octaves,
3D sinusoids). Each component is multiplied by the Gaussian gain ``exp(-0.5 * FILTER_WIDTH**2 * k**2 * var)``,
``k`` its wavenumber (rad/m) and ``var`` the squared footprint of one pixel along its direction (m^2, from the
screen-space Jacobian of the surface coordinates). This is analytic prefiltering (what mip-mapping approximates): a
component whose wavelength falls under ~2-3 pixels fades to its mean instead of aliasing, so neighbouring frames
sample the same band-limited signal and bilinear warping between them is accurate (synthetic.md "Appearance").

Evaluation is batched: points arrive sorted by surface, with per-surface ("key") material rows and texture
origins; per-key quantities are computed once in float64 (phases reduced modulo their period, so textures stay
crisp far from the world origin) and repeated to the points. One call shades every surface of a family.
"""

import math
from dataclasses import dataclass, field

import numpy as np

# Width (in pixels) of the Gaussian prefilter: a 3-pixel wavelength keeps ~3% of its contrast, a 10-pixel one ~74%.
FILTER_WIDTH = 1.5
_ATT = 0.5 * FILTER_WIDTH**2
_TWO_PI = 2.0 * math.pi

NOISE, STRIPES, BRICKS, CHECKER, WAVES = range(5)
FAMILY_NAMES = ("noise", "stripes", "bricks", "checker", "waves")

# Value noise: a fixed 256x256 lattice of uniform values in [-1, 1]. Each cell stores (a, b, c, d) of
# v = a + b*ux + c*uy + d*ux*uy, so one gather per octave gives the blend of the 4 corners.
_LATTICE = 256


def _make_noise_table():
    values = np.random.default_rng(20240611).uniform(-1.0, 1.0, size=(_LATTICE, _LATTICE)).astype(np.float32)
    v10 = np.roll(values, -1, axis=1)  # neighbour at x + 1 (axis 1 is the x lattice index)
    v01 = np.roll(values, -1, axis=0)
    v11 = np.roll(v10, -1, axis=0)
    coef = np.stack([values, v10 - values, v01 - values, values - v10 - v01 + v11])
    return np.ascontiguousarray(coef.reshape(4, -1))


_NOISE_COEF = _make_noise_table()
# Value noise has most of its energy below the lattice frequency: the effective wavenumber used for prefiltering
# is this fraction of 2*pi/L (tuned with the warp-consistency test).
_NOISE_FREQ = 0.9
_MAIN_AMPS = (0.62, 0.34, 0.19, 0.1)  # 4 octaves for NOISE (sum of gains keeps P std ~0.2)
_GRAIN_AMPS = (0.6, 0.34, 0.2, 0.11)  # 4 octaves of brightness grain on every 2D family
# Each octave's lattice is rotated by its own angle: hides the axis-aligned look of value noise.
_ROT = tuple((math.cos(0.55 + 1.1 * o), math.sin(0.55 + 1.1 * o)) for o in range(4))
# Lanczos sigma factors for the harmonics of a pulse train: tame the Gibbs ringing of the truncated series.
_HARMONICS = 6
_LANCZOS = tuple(math.sin(math.pi * n / (_HARMONICS + 1)) / (math.pi * n / (_HARMONICS + 1))
                 for n in range(1, _HARMONICS + 1))
_N_WAVES = 6
MAT_LEN = 20 + 5 * _N_WAVES  # length of an encoded material row


@dataclass(frozen=True)
class Material:
    """Surface appearance: ``albedo = (color0 + (color1 - color0) * P) * grain`` with a pattern P (mostly [0, 1]).

    family: NOISE, STRIPES, BRICKS, CHECKER (2D; boxes and planes) or WAVES (solid 3D; required on spheres and
        cylinders, allowed everywhere).
    scale: main period in metres (noise lattice spacing, stripe period, brick height, checker period).
    aspect: brick width / height; for STRIPES, < 0.5 means stripes vary along s (across), else along t.
    duty: stripe or mortar width as a fraction of the period.
    overlay: strength of the 4-octave value-noise brightness modulation "grain" (STRIPES, BRICKS, CHECKER; NOISE
        already is 4 octaves of the same noise and ignores it).
    overlay_scale: lattice spacing of the grain (metres).
    offsets: 8 lattice offsets (x, y per noise octave; the grain uses them reversed).
    waves: for WAVES, array [6, 5] of (kx, ky, kz, phase, amplitude) in local object coordinates (rad/m).
    """

    family: int
    color0: tuple
    color1: tuple
    scale: float = 1.0
    aspect: float = 2.0
    duty: float = 0.5
    overlay: float = 0.3
    overlay_scale: float = 0.5
    offsets: tuple = (0.0,) * 8
    waves: np.ndarray = field(default=None, compare=False)

    def __post_init__(self):
        if self.family not in range(5):
            raise ValueError(f"family must be one of {FAMILY_NAMES} (0-4), got {self.family!r}")
        if not self.scale > 0 or not self.overlay_scale > 0:
            raise ValueError(f"scale and overlay_scale must be positive, got {self.scale}, {self.overlay_scale}")
        if self.family == WAVES and (self.waves is None or np.shape(self.waves) != (_N_WAVES, 5)):
            raise ValueError(f"a WAVES material needs waves of shape ({_N_WAVES}, 5); build it with random_material")
        row = np.zeros(MAT_LEN)
        row[0] = self.family
        row[1:4], row[4:7] = self.color0, self.color1
        row[7:10] = self.scale, self.aspect, self.duty
        row[10:12] = self.overlay, self.overlay_scale
        offsets = np.asarray(self.offsets, np.float64).ravel()
        if offsets.shape != (8,):
            raise ValueError(f"offsets must hold 8 values, got {offsets.shape[0]}")
        row[12:20] = offsets
        if self.family == WAVES:
            row[20:] = np.asarray(self.waves, np.float64).ravel()
        object.__setattr__(self, "row", row)  # numeric encoding used by the batched evaluators


def random_material(rng, family, color0, color1, scale, **kwargs):
    """A material with random lattice offsets (and, for WAVES, random 3D waves around ``scale``) from ``rng``."""
    offsets = tuple(float(v) for v in rng.uniform(0.0, _LATTICE, size=8))
    waves = None
    if family == WAVES:
        direction = rng.normal(size=(_N_WAVES, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        # Three scales, two waves each: blobs around `scale`, ripples at scale / 2.5 and fine grain at scale / 6.
        tier = np.arange(_N_WAVES) // 2
        wavelength = scale * np.array([1.0, 0.4, 0.16])[tier] * rng.uniform(0.8, 1.25, size=_N_WAVES)
        amp = np.array([0.2, 0.12, 0.07])[tier]
        waves = np.concatenate([direction * (_TWO_PI / wavelength)[:, None],
                                rng.uniform(0, _TWO_PI, (_N_WAVES, 1)), amp[:, None]], axis=1)
    return Material(family, tuple(map(float, color0)), tuple(map(float, color1)), float(scale),
                    offsets=offsets, waves=waves, **kwargs)


class _Expander:
    """Repeats per-key values to the points (points are sorted by key, ``counts`` per key)."""

    def __init__(self, counts):
        self.counts = counts

    def __call__(self, values):
        return np.repeat(np.asarray(values, np.float32), self.counts, axis=0)


def _value_noise(x, y):
    """Smooth value noise in [-1, 1] on the unit lattice (x, y float32, already scaled and offset)."""
    xf = np.floor(x)
    yf = np.floor(y)
    fx = x - xf
    fy = y - yf
    idx = (yf.astype(np.int32) & (_LATTICE - 1)) * _LATTICE + (xf.astype(np.int32) & (_LATTICE - 1))
    c = _NOISE_COEF.take(idx, axis=1)
    ux = fx * fx * (3.0 - 2.0 * fx)  # smoothstep keeps the noise C1 across lattice cells
    uy = fy * fy * (3.0 - 2.0 * fy)
    return c[0] + ux * c[1] + uy * (c[2] + ux * c[3])


def _fractal(rep, s, t, var, s0, t0, spacing, offsets, amps):
    """Prefiltered fractal value noise (zero mean) at surface coords (s0 + s, t0 + t); per-key spacing/offsets.

    Octave o has lattice spacing spacing / 2**o and effective wavenumber NOISE_FREQ * 2 pi / L; an octave whose gain
    is negligible at every point is skipped (finer ones too).
    """
    total = np.zeros_like(s)
    for o, amp in enumerate(amps):
        lattice = spacing / 2.0**o
        expo = rep(_ATT * (_NOISE_FREQ * _TWO_PI / lattice) ** 2) * var
        live = expo < 7.0  # gain above 1e-3
        n_live = int(np.count_nonzero(live))
        if n_live == 0:
            break  # finer octaves are attenuated even more
        c, sn = _ROT[o]
        bx = rep(np.fmod((c * s0 - sn * t0) / lattice + offsets[:, 2 * o], _LATTICE))
        by = rep(np.fmod((sn * s0 + c * t0) / lattice + offsets[:, 2 * o + 1], _LATTICE))
        cl, sl = rep(c / lattice), rep(sn / lattice)
        if n_live < 0.6 * len(s):  # fine octaves are often alive on near surfaces only: evaluate those points
            idx = np.flatnonzero(live)
            ss, tt, cl, sl, bx, by, expo = s[idx], t[idx], cl[idx], sl[idx], bx[idx], by[idx], expo[idx]
        else:
            idx, ss, tt = None, s, t
        # Gains below 1e-3 are set to exactly 0 so a point's colour never depends on which other points share
        # the batch (the skipping above would otherwise make it so).
        gain = np.where(expo < 7.0, np.exp(-expo), np.float32(0.0))
        n = (np.float32(amp) * gain) * _value_noise(ss * cl - tt * sl + bx, ss * sl + tt * cl + by)
        if idx is None:
            total += n
        else:
            total[idx] += n
    return total


def _pulse(rep, x, var, x0, period, duty):
    """Band-limited pulse train in [0, 1] (6 prefiltered harmonics): 1 on an interval of ``duty * period`` centred
    on multiples of ``period``, at coordinate x0 + x. Per-key x0, period, duty; per-point x, var.

    Harmonic n has wavenumber n k, so its gain is g ** (n * n) with g = exp(-0.5 w^2 k^2 var): powers by
    multiplication instead of one exp per harmonic. All harmonics are always evaluated, so a point's colour does not
    depend on the other points of the batch."""
    k = _TWO_PI / period
    theta = x * rep(k) + rep(np.fmod(x0 * k, _TWO_PI))
    c1 = np.cos(theta)
    g1 = np.exp(-(rep(_ATT * k * k) * var))
    g4 = g1 * g1
    g4 *= g4
    g9 = g4 * g4 * g1
    g16 = g4 * g4
    g16 *= g16
    gains = (g1, g4, g9, g16, g16 * g9, (g9 * g9) * (g9 * g9))  # g^1, g^4, g^9, g^16, g^25, g^36
    out = np.full_like(x, 0.0) + rep(duty)
    c_prev, c_n = np.ones_like(c1), c1
    for n in range(1, _HARMONICS + 1):
        coef = rep(2.0 / (n * math.pi) * np.sin(n * math.pi * duty) * _LANCZOS[n - 1])
        out += coef * gains[n - 1] * c_n
        c_prev, c_n = c_n, 2.0 * c1 * c_n - c_prev  # Chebyshev: cos((n+1) t) = 2 cos t cos(n t) - cos((n-1) t)
    return out


def albedo_2d(rows, s0, t0, counts, s, t, var_s, var_t):
    """[N, 3] albedo of points on planar faces, all materials of ONE 2D family.

    rows: [K, MAT_LEN] material rows per key; s0, t0: [K] float64 texture origins of the keys; counts: [K] points per
    key (points sorted by key); s, t: [N] float32 local texture coordinates; var_s, var_t: [N] squared footprints.
    """
    rep = _Expander(counts)
    fam = int(rows[0, 0])
    scale, aspect, duty = rows[:, 7], rows[:, 8], rows[:, 9]
    var_iso = np.maximum(var_s, var_t)
    if fam == NOISE:
        pattern = 0.5 + _fractal(rep, s, t, var_iso, s0, t0, scale, rows[:, 12:20], _MAIN_AMPS)
    elif fam == STRIPES:
        along_s = aspect < 0.5
        ws = rep(along_s.astype(np.float64))
        x = t + ws * (s - t)
        var = var_t + ws * (var_s - var_t)
        pattern = _pulse(rep, x, var, np.where(along_s, s0, t0), scale, duty)
    elif fam == CHECKER:
        cs = 2.0 * _pulse(rep, s, var_s, s0, scale, np.full_like(scale, 0.5)) - 1.0
        ct = 2.0 * _pulse(rep, t, var_t, t0, scale, np.full_like(scale, 0.5)) - 1.0
        pattern = 0.5 + 0.5 * cs * ct
    elif fam == BRICKS:
        h, w = scale, scale * aspect
        half = np.full_like(scale, 0.5)
        mortar = _pulse(rep, t, var_t, t0, h, duty)
        # Rows alternate their joint offset. A band-limited row-parity wave switches between the two joint
        # patterns exactly under the horizontal mortar, so the pattern has no discontinuity to alias.
        parity = _pulse(rep, t, var_t, t0 - 0.5 * h, 2.0 * h, half)
        joints = parity * _pulse(rep, s, var_s, s0, w, duty / aspect)
        joints += (1.0 - parity) * _pulse(rep, s, var_s, s0 - 0.5 * w, w, duty / aspect)
        pattern = mortar + (1.0 - mortar) * joints
    else:
        raise ValueError(f"material family {FAMILY_NAMES[fam]!r} is not a 2D family")
    c0 = rep(rows[:, 1:4])
    colour = c0 + pattern[:, None] * (rep(rows[:, 4:7]) - c0)
    if fam != NOISE and rows[:, 10].max() > 0:  # NOISE already has its own 4 octaves of the same kind
        # Brightness grain (dirt, wear): multiplicative, so it adds 2D structure to stripes and mortar alike.
        grain = _fractal(rep, s, t, var_iso, s0, t0, rows[:, 11], rows[:, 19:11:-1], _GRAIN_AMPS)
        colour *= (1.0 + rep(2.0 * rows[:, 10]) * grain)[:, None]
    return colour


def albedo_3d(rows, q0, counts, q, ju, jv):
    """[N, 3] albedo from solid patterns (sums of prefiltered 3D sinusoids) for WAVES materials.

    rows: [K, MAT_LEN]; q0: [K, 3] float64 texture origins; counts: [K]; q, ju, jv: lists of 3 [N] arrays (local
    point and its derivatives w.r.t. pixel u and v).
    """
    rep = _Expander(counts)
    waves = rows[:, 20:].reshape(-1, _N_WAVES, 5)
    pattern = np.full_like(q[0], 0.5)
    for i in range(_N_WAVES):
        k = waves[:, i, :3]
        kx, ky, kz = rep(k[:, 0]), rep(k[:, 1]), rep(k[:, 2])
        arg = q[0] * kx + q[1] * ky + q[2] * kz + rep(np.fmod(np.sum(k * q0, axis=1) + waves[:, i, 3], _TWO_PI))
        du = ju[0] * kx + ju[1] * ky + ju[2] * kz  # phase change per pixel along u: k . dq/du
        dv = jv[0] * kx + jv[1] * ky + jv[2] * kz
        pattern += rep(waves[:, i, 4]) * np.exp((du * du + dv * dv) * np.float32(-_ATT)) * np.sin(arg)
    c0 = rep(rows[:, 1:4])
    return c0 + pattern[:, None] * (rep(rows[:, 4:7]) - c0)
