"""Procedural 3D scene engine: the embedded default dataset (specs/synthetic.md).

``render_sequence(preset, seed, num_frames)`` renders a camera sequence of a scene drawn from ``seed`` with exact
depth (z, metres), semantics, instance ids, intrinsics and poses (``T_world_from_cam``, OpenCV axes; conventions in
``tfdepth.geometry``). Everything is NumPy: analytic ray casting of planes, oriented boxes, spheres and cylinders
(``raycast``), prefiltered procedural textures (``textures``), edge-only supersampling (``render``), presets
``street`` and ``room`` (``street``, ``room``), closed-form trajectories (``trajectory``) and the SDDR degradation
model (``degrade``).

Decisions where the spec is silent:

* Intrinsics are normalised (a fraction of the image size), so another ``height``/``width`` is the same camera
  resized: street fx = 0.58 W, fy = 1.92 H; room fx = 0.9 W, fy = 1.2 H (= 0.9 W at the default 480x640); the
  principal point is the image centre, cx = (W - 1) / 2, cy = (H - 1) / 2 (pixel centres at integer coordinates).
* World frames are OpenCV-like with y pointing DOWN (gravity): street camera at y = 0 above the road plane
  y = 1.65, driving along +z; room floor at y = 0, ceiling at y = -height.
* Instance ids are stable per object across frames and sequences of one seed, but not dense: street objects are
  numbered per 40 m segment (100 + 128 * (segment + 4096) + k), oncoming cars from 2**28; road = 1, sidewalks 2-3,
  room floor 1, walls 2 (one instance: the walls meet with continuous depth), ceiling 3, objects from 11.
* Anti-aliasing re-casts edge pixels against the primitives seen by the 3x3 neighbourhood's centre rays plus every
  small primitive whose screen rectangle contains them; a big surface hidden from all nine centre rays is not
  searched for (only a sub-pixel gap could show it).
* Determinism: bytes are identical on every run on one machine and NumPy version; depth, labels and poses use
  only IEEE-exact operations, while image bytes go through float32 sin/cos/exp, whose last bit may differ between
  CPU instruction sets (a rare +-1 in a uint8 pixel on another machine).
* The first render tunes glibc's allocator (see ``allocator.py``): a ~15-20% speed-up, process-wide.
"""

import numbers

import numpy as np

from tfdepth.data.synthetic.allocator import keep_freed_memory
from tfdepth.data.synthetic.classes import CLASS_NAMES, FOREGROUND_CLASS_IDS
from tfdepth.data.synthetic.degrade import degrade_depth
from tfdepth.data.synthetic.primitives import make_box, make_cylinder, make_plane, make_sphere
from tfdepth.data.synthetic.render import Lighting, render_frame
from tfdepth.data.synthetic.room import RoomScene
from tfdepth.data.synthetic.street import StreetScene
from tfdepth.data.synthetic.textures import Material, random_material
from tfdepth.data.synthetic.trajectory import MOTION_RANGES

PRESETS = ("street", "room")
_SCENES = {"street": StreetScene, "room": RoomScene}
DEFAULT_SIZES = {name: cls.default_size for name, cls in _SCENES.items()}
SPLIT_SEED_RANGES = {"train": (0, 1_000_000), "validation": (1_000_000, 1_100_000), "test": (2_000_000, 2_100_000)}
_TAG_EXPOSURE, _TAG_NOISE = 301, 302

__all__ = [
    "render_sequence", "render_view", "degrade_depth", "split_seeds", "intrinsics_for", "CLASS_NAMES",
    "FOREGROUND_CLASS_IDS", "PRESETS", "DEFAULT_SIZES", "SPLIT_SEED_RANGES", "MOTION_RANGES", "Lighting", "Material",
    "random_material", "make_box", "make_cylinder", "make_plane", "make_sphere",
]


def _check_int(name, value, minimum, allowed):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def split_seeds(split, num_scenes):
    """The first ``num_scenes`` scene seeds of ``split`` ("train", "validation", "test"; disjoint ranges)."""
    if split not in SPLIT_SEED_RANGES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEED_RANGES)}, got {split!r}")
    lo, hi = SPLIT_SEED_RANGES[split]
    num_scenes = _check_int("num_scenes", num_scenes, 0, f">= 0 and <= {hi - lo} for split {split!r}")
    if num_scenes > hi - lo:
        raise ValueError(f"num_scenes must be <= {hi - lo} for split {split!r}, got {num_scenes}")
    return list(range(lo, lo + num_scenes))


def intrinsics_for(preset, height, width):
    """[3, 3] float32 pixel intrinsics of ``preset`` at ``height`` x ``width`` (normalised intrinsics x size)."""
    fxn, fyn = _SCENES[preset].intrinsics_normalised
    return np.array([[fxn * width, 0.0, (width - 1) / 2.0], [0.0, fyn * height, (height - 1) / 2.0], [0, 0, 1]],
                    np.float32)


def _to_uint8(image):
    return np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def render_view(primitives, intrinsics, pose, height, width, *, supersample=2, lighting=None):
    """Render primitives (``make_box`` etc.) seen by a camera ``intrinsics`` [3,3] at ``pose`` (T_world_from_cam).

    The lower-level entry point (used by tests with hand-built scenes). Returns ``image`` [H,W,3] uint8, ``depth``
    [H,W] float32 (z, 0 = nothing hit), ``semantic`` [H,W] uint8 and ``instance`` [H,W] int32.
    """
    height = _check_int("height", height, 1, ">= 1")
    width = _check_int("width", width, 1, ">= 1")
    supersample = _check_int("supersample", supersample, 1, ">= 1 (1 = no anti-aliasing)")
    K = np.asarray(intrinsics, np.float64)
    T = np.asarray(pose, np.float64)
    if K.shape != (3, 3) or T.shape != (4, 4):
        raise ValueError(f"intrinsics must be [3, 3] and pose [4, 4], got {K.shape} and {T.shape}")
    keep_freed_memory()
    out = render_frame(primitives, K, T, height, width, supersample=supersample, lighting=lighting or Lighting())
    out["image"] = _to_uint8(out["image"])
    return out


def render_sequence(preset, seed, num_frames, height=None, width=None, *, supersample=2, moving_objects=False,
                    exposure_change=False, sensor_noise=0.0, static_camera=False):
    """Render ``num_frames`` frames of the scene ``(preset, seed)``.

    Args:
        preset: "street" (KITTI-like, default 192x640) or "room" (NYU-like, default 480x640).
        seed: non-negative scene seed; scene and trajectory depend on it alone, so frame k is identical whatever
            ``num_frames`` is.
        num_frames, height, width: positive integers (height/width default to the preset's size).
        supersample: n for the n x n sub-pixel grid cast at edge pixels (1 disables anti-aliasing).
        moving_objects: oncoming cars drive (street) / floor objects oscillate (room).
        exposure_change: per-frame global gain exp(U(-0.2, 0.2)) on the image.
        sensor_noise: std of additive Gaussian noise on the [0, 1] image before quantisation.
        static_camera: every frame uses the pose of frame 0 (for auto-masking tests).

    Returns:
        dict of NumPy arrays: image [N,H,W,3] uint8, depth [N,H,W] float32 (z-depth in metres, 0 = sky),
        semantic [N,H,W] uint8 (index into CLASS_NAMES), instance [N,H,W] int32 (0 = none; ids constant across
        frames), intrinsics [3,3] float32, poses [N,4,4] float64 (T_world_from_cam), class_names (tuple of str).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    seed = _check_int("seed", seed, 0, ">= 0")
    num_frames = _check_int("num_frames", num_frames, 1, ">= 1")
    default_h, default_w = DEFAULT_SIZES[preset]
    height = default_h if height is None else _check_int("height", height, 1, ">= 1 (or None for the default)")
    width = default_w if width is None else _check_int("width", width, 1, ">= 1 (or None for the default)")
    supersample = _check_int("supersample", supersample, 1, ">= 1 (1 = no anti-aliasing)")
    if not isinstance(sensor_noise, numbers.Real) or not 0.0 <= sensor_noise <= 1.0:
        raise ValueError(f"sensor_noise must be a standard deviation in [0, 1], got {sensor_noise!r}")

    keep_freed_memory()  # see allocator.py: large NumPy temporaries otherwise page-fault on every frame
    scene = _SCENES[preset](seed)
    K = intrinsics_for(preset, height, width)
    frames = np.arange(num_frames)
    poses = scene.trajectory.poses(np.zeros_like(frames) if static_camera else frames)
    out = {
        "image": np.empty((num_frames, height, width, 3), np.uint8),
        "depth": np.empty((num_frames, height, width), np.float32),
        "semantic": np.empty((num_frames, height, width), np.uint8),
        "instance": np.empty((num_frames, height, width), np.int32),
    }
    for k in range(num_frames):
        prims = scene.primitives(k, moving_objects, camera_z=poses[k, 2, 3])
        frame = render_frame(prims, K, poses[k], height, width, supersample=supersample, lighting=scene.lighting)
        image = frame["image"]
        if exposure_change:
            image *= np.float32(np.exp(np.random.default_rng([seed, _TAG_EXPOSURE, k]).uniform(-0.2, 0.2)))
        if sensor_noise > 0:
            rng = np.random.default_rng([seed, _TAG_NOISE, k])
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sensor_noise)
        out["image"][k] = _to_uint8(image)
        for key in ("depth", "semantic", "instance"):
            out[key][k] = frame[key]
    out["intrinsics"] = K
    out["poses"] = poses
    out["class_names"] = CLASS_NAMES
    return out
