"""Tests of the synthetic scene engine (tfdepth.data.synthetic): geometry against independent NumPy references,
determinism, labels, trajectories, photometric consistency and the SDDR degradation model."""

import math

import cv2
import numpy as np
import pytest

from tfdepth.data import synthetic as syn
from tfdepth.data.synthetic import textures as tx
from tfdepth.data.synthetic.raycast import intersect, planar_geometry, prim_params
from tfdepth.data.synthetic.render import render_frame
from tfdepth.data.synthetic.room import RoomScene
from tfdepth.data.synthetic.street import StreetScene

H, W = 48, 160


@pytest.fixture(scope="module")
def street():
    return syn.render_sequence("street", 3, 4, H, W)


@pytest.fixture(scope="module")
def room():
    return syn.render_sequence("room", 5, 4, H, W)


def _mat(rng, family=tx.NOISE):
    return tx.random_material(rng, family, (0.8, 0.5, 0.3), (0.2, 0.3, 0.6), 0.5)


def _camera(yaw_deg=20.0, pitch_deg=-10.0, position=(1.0, -0.5, 2.0)):
    from tfdepth.data.synthetic.trajectory import rotation_ypr

    T = np.eye(4)
    T[:3, :3] = rotation_ypr(np.array([math.radians(yaw_deg)]), np.array([math.radians(pitch_deg)]),
                             np.array([0.1]))[0]
    T[:3, 3] = position
    return T


def _rays(K, h, w):
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)


K_TEST = np.array([[120.0, 0.0, 70.3], [0.0, 110.0, 33.1], [0.0, 0.0, 1.0]])


# ---- geometry against analytic / independent references ------------------------------------------------------
def test_fronto_parallel_wall_has_constant_z_depth(rng):
    """A wall facing the camera at distance d has depth d at EVERY pixel: z-depth, not ray length."""
    T = _camera()
    d = 3.7
    centre = T[:3, :3] @ np.array([0.0, 0.0, d + 0.25]) + T[:3, 3]  # box front face at z_cam = d
    wall = syn.make_box(centre, (50.0, 50.0, 0.25), 8, 1, _mat(rng), rotation=T[:3, :3])
    out = syn.render_view([wall], K_TEST, T, H, W)
    np.testing.assert_allclose(out["depth"], d, rtol=2e-6)
    ray_length = d * np.linalg.norm(_rays(K_TEST, H, W), axis=-1)
    assert ray_length.max() > d * 1.2  # the corners' rays are much longer than d: depth is not ray length
    assert (out["instance"] == 1).all() and (out["semantic"] == 8).all()


def test_plane_sphere_box_cylinder_match_numpy_reference(rng):
    """Depth of each primitive kind equals an independent float64 reference (different algorithms)."""
    T = _camera()
    r_wc, c_w = T[:3, :3], T[:3, 3]
    to_world = lambda p: r_wc @ np.asarray(p, float) + c_w  # noqa: E731
    rays_w = _rays(K_TEST, H, W) @ r_wc.T  # world directions whose camera z component is 1
    # Tilted plane: n . X = n . p0  ->  t = n.(p0 - c) / n.d
    n = np.array([0.2, -1.0, -0.3]) / np.linalg.norm([0.2, -1.0, -0.3])
    p0 = to_world((0.0, 0.8, 3.0))
    ref = (n @ (p0 - c_w)) / (rays_w @ n)
    ref = np.where(ref > 0.05, ref, 0.0)
    out = syn.render_view([syn.make_plane(p0, n, 1, 1, _mat(rng))], K_TEST, T, H, W, supersample=1)
    hit = (ref > 0) & (out["depth"] > 0) & (ref < 200)  # beyond that the grazing rays are ill-conditioned
    assert hit.mean() > 0.3 and ((ref > 0) != (out["depth"] > 0)).mean() < 0.01
    np.testing.assert_allclose(out["depth"][hit], ref[hit], rtol=1e-4)

    # Sphere: smallest positive root of |c_w + t d - s|^2 = r^2.
    s, r = to_world((0.3, -0.1, 4.0)), 1.1
    oc = c_w - s
    a = (rays_w**2).sum(-1)
    b = rays_w @ oc
    disc = b * b - a * (oc @ oc - r * r)
    ref = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, 0.0)
    out = syn.render_view([syn.make_sphere(s, r, 11, 2, _mat(rng, tx.WAVES))], K_TEST, T, H, W, supersample=1)
    _compare(out["depth"], ref)

    # Oriented box: test the 6 face planes and keep the nearest hit inside the face (not the slab method).
    rot = _camera(35.0, 15.0)[:3, :3]
    centre, half = to_world((-0.4, 0.2, 5.0)), np.array([0.9, 0.6, 1.3])
    ref = np.full((H, W), np.inf)
    for axis in range(3):
        for sign in (-1, 1):
            normal = rot[:, axis] * sign
            t = (normal @ (centre + normal * half[axis] - c_w)) / (rays_w @ normal)
            local = (c_w + t[..., None] * rays_w - centre) @ rot
            inside = np.all(np.abs(local) <= half + 1e-9, axis=-1) & (t > 0)
            ref = np.where(inside & (t < ref), t, ref)
    ref = np.where(np.isfinite(ref), ref, 0.0)
    box = syn.make_box(centre, half, 10, 3, _mat(rng), rotation=rot)
    _compare(syn.render_view([box], K_TEST, T, H, W, supersample=1)["depth"], ref)

    # Closed cylinder (axis = local y): side quadric + the two cap discs.
    centre, radius, hh = to_world((0.5, 0.0, 3.5)), 0.7, 0.9
    o = (c_w - centre) @ rot
    dl = rays_w @ rot
    qa = dl[..., 0] ** 2 + dl[..., 2] ** 2
    qb = o[0] * dl[..., 0] + o[2] * dl[..., 2]
    qc = o[0] ** 2 + o[2] ** 2 - radius**2
    disc = qb**2 - qa * qc
    ts = (-qb - np.sqrt(np.maximum(disc, 0))) / qa
    ok = (disc >= 0) & (np.abs(o[1] + ts * dl[..., 1]) <= hh) & (ts > 0)
    ref = np.where(ok, ts, np.inf)
    for cap in (-hh, hh):
        tc = (cap - o[1]) / dl[..., 1]
        px, pz = o[0] + tc * dl[..., 0], o[2] + tc * dl[..., 2]
        ref = np.where((px**2 + pz**2 <= radius**2) & (tc > 0) & (tc < ref), tc, ref)
    ref = np.where(np.isfinite(ref), ref, 0.0)
    cyl = syn.make_cylinder(centre, radius, hh, 5, 4, _mat(rng, tx.WAVES), rotation=rot)
    _compare(syn.render_view([cyl], K_TEST, T, H, W, supersample=1)["depth"], ref)


def _compare(depth, ref):
    both = (depth > 0) & (ref > 0)
    assert both.sum() > 50
    assert ((depth > 0) != (ref > 0)).sum() <= 3  # float32 vs float64 may flip a pixel exactly on a silhouette
    np.testing.assert_allclose(depth[both], ref[both], rtol=1e-4)


def test_nearest_hit_wins_and_labels_follow(rng):
    T = np.eye(4)
    far = syn.make_box((0, 0, 6.0), (20, 20, 0.1), 8, 7, _mat(rng))
    near = syn.make_sphere((0, 0, 3.0), 0.5, 11, 9, _mat(rng, tx.WAVES))
    out = syn.render_view([far, near], K_TEST, T, H, W)
    v, u = int(round(K_TEST[1, 2])), int(round(K_TEST[0, 2]))
    assert out["instance"][v, u] == 9 and out["semantic"][v, u] == 11
    assert abs(out["depth"][v, u] - 2.5) < 0.01
    assert out["instance"][0, 0] == 7 and abs(out["depth"][0, 0] - 5.9) < 1e-5


def test_footprint_jacobian_matches_finite_differences():
    """planar_geometry's squared pixel footprints (texture prefilter input) equal finite differences."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_rotvec([0.4, -0.7, 0.3]).as_matrix()
    P = prim_params(rot[None], np.array([[0.3, -0.2, 4.0]]), np.array([[1.0, 0.7, 1.3]]))[:, 0]
    fx, fy = 200.0, 180.0
    u, v = 10.3, -5.2
    t, face = intersect(1, P.tolist(), np.array([u / fx]), np.array([v / fy]), 0.01)
    axes = [[0, 2, 1], [1, 0, 2], [2, 0, 1]][int(face[0])]
    Q = np.concatenate([rot[:, axes].reshape(9), P[9:12][axes]]).tolist()

    def coords(du, dv):
        x, y = np.array([(u + du) / fx]), np.array([(v + dv) / fy])
        return planar_geometry(Q, x, y, intersect(1, P.tolist(), x, y, 0.01)[0], 1 / fx, 1 / fy)

    s0, t0, var_s, var_t = coords(0, 0)
    e = 1e-3
    ds = [(coords(e, 0)[i] - coords(-e, 0)[i]) / (2 * e) for i in (0, 1)]
    dt = [(coords(0, e)[i] - coords(0, -e)[i]) / (2 * e) for i in (0, 1)]
    np.testing.assert_allclose(var_s, ds[0] ** 2 + dt[0] ** 2, rtol=1e-6)
    np.testing.assert_allclose(var_t, ds[1] ** 2 + dt[1] ** 2, rtol=1e-6)


def test_texture_prefilter_removes_unresolvable_detail(rng):
    """A fine checker far away averages to its mean colour instead of aliasing into high-contrast noise."""
    mat = tx.random_material(rng, tx.CHECKER, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 0.05, overlay=0.0)
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 23.5], [0, 0, 1]])
    wall_far = syn.make_box((0, 0, 200.0), (500, 500, 0.1), 8, 1, mat)
    far = syn.render_view([wall_far], K, np.eye(4), H, W, lighting=syn.Lighting(ambient=1.0, diffuse=0.0))
    assert far["image"].std() < 2.0 and abs(far["image"].mean() - 127.5) < 3  # a 0.05 m period at 200 m: 0.025 px
    wall_near = syn.make_box((0, 0, 0.35), (500, 500, 0.1), 8, 1, mat)
    near = syn.render_view([wall_near], K, np.eye(4), H, W, lighting=syn.Lighting(ambient=1.0, diffuse=0.0))
    assert near["image"].std() > 60  # a 20 px period at 0.25 m is resolved: the pattern keeps its contrast


# ---- sequences: determinism, labels, intrinsics, poses ----------------------------------------------------------
def test_same_seed_same_bytes_and_different_seeds_differ(street):
    again = syn.render_sequence("street", 3, 4, H, W)
    for key in ("image", "depth", "semantic", "instance", "intrinsics", "poses"):
        assert np.array_equal(street[key], again[key]), key
    other = syn.render_sequence("street", 4, 4, H, W)
    assert not np.array_equal(street["depth"], other["depth"])
    assert not np.array_equal(street["image"], other["image"])


@pytest.mark.parametrize("preset,options", [("street", {}), ("room", {"moving_objects": True})])
def test_frame_k_does_not_depend_on_num_frames(preset, options):
    short = syn.render_sequence(preset, 11, 2, H, W, **options)
    long = syn.render_sequence(preset, 11, 5, H, W, **options)
    for key in ("image", "depth", "semantic", "instance", "poses"):
        assert np.array_equal(short[key], long[key][:2]), key


def test_output_contract(street):
    n = 4
    assert street["image"].shape == (n, H, W, 3) and street["image"].dtype == np.uint8
    assert street["depth"].shape == (n, H, W) and street["depth"].dtype == np.float32
    assert street["semantic"].dtype == np.uint8 and street["instance"].dtype == np.int32
    assert street["intrinsics"].shape == (3, 3) and street["intrinsics"].dtype == np.float32
    assert street["poses"].shape == (n, 4, 4) and street["poses"].dtype == np.float64
    assert street["class_names"] == syn.CLASS_NAMES
    assert set(syn.FOREGROUND_CLASS_IDS) == {syn.CLASS_NAMES.index(c) for c in ("car", "furniture", "object")}


@pytest.mark.parametrize("name", ["street", "room"])
def test_labels_consistent_with_depth(name, street, room):
    seq = {"street": street, "room": room}[name]
    depth, sem, inst = seq["depth"], seq["semantic"], seq["instance"]
    sky = depth == 0
    assert (sem[sky] == 0).all() and (inst[sky] == 0).all()
    assert (sem[~sky] > 0).all() and (inst[~sky] > 0).all() and (depth[~sky] > 0.05).all()
    if name == "street":
        assert sky.any()  # the street has sky
    # Each instance id has exactly one semantic class, in every frame.
    pairs = np.unique(np.stack([inst.ravel(), sem.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1]
    # Instance boundaries coincide with semantic or depth discontinuities (distinct objects never touch).
    for axis in (1, 2):
        a = [np.moveaxis(x, axis, 0) for x in (inst, sem, depth)]
        i0, i1 = a[0][:-1], a[0][1:]
        s0, s1 = a[1][:-1], a[1][1:]
        d0, d1 = a[2][:-1], a[2][1:]
        boundary = i0 != i1
        explained = (s0 != s1) | (np.abs(d0 - d1) > 2e-3 * np.maximum(d0, d1)) | (d0 == 0) | (d1 == 0)
        assert boundary.any() and explained[boundary].all()


@pytest.mark.parametrize("preset,h,w,fxn,fyn", [("street", 192, 640, 0.58, 1.92), ("street", 48, 160, 0.58, 1.92),
                                               ("room", 480, 640, 0.9, 1.2), ("room", 60, 80, 0.9, 1.2)])
def test_intrinsics(preset, h, w, fxn, fyn):
    K = syn.intrinsics_for(preset, h, w)
    expected = np.array([[fxn * w, 0, (w - 1) / 2], [0, fyn * h, (h - 1) / 2], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(K, expected, rtol=1e-6)
    if preset == "room" and (h, w) == (480, 640):
        assert K[0, 0] == K[1, 1] == pytest.approx(0.9 * 640)
    assert syn.DEFAULT_SIZES[preset] in ((192, 640), (480, 640))


def _relative_motion(poses):
    rel = np.linalg.inv(poses[:-1]) @ poses[1:]
    trans = np.linalg.norm(rel[:, :3, 3], axis=1)
    angle = np.degrees(np.arccos(np.clip((np.trace(rel[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return trans, angle


@pytest.mark.parametrize("preset,scene_cls", [("street", StreetScene), ("room", RoomScene)])
def test_poses_rigid_and_motion_within_preset_ranges(preset, scene_cls):
    ranges = syn.MOTION_RANGES[preset]
    for seed in range(12):
        poses = scene_cls(seed).trajectory.poses(np.arange(300))
        rot = poses[:, :3, :3]
        np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
        assert (poses[:, 3] == [0, 0, 0, 1]).all()
        trans, angle = _relative_motion(poses)
        assert ranges["translation"][0] <= trans.min() and trans.max() <= ranges["translation"][1], (seed, trans)
        assert ranges["rotation"][0] <= angle.min() and angle.max() <= ranges["rotation"][1], (seed, angle)
    if preset == "street":  # camera 1.65 m above the road (y down: road at y = +1.65)
        np.testing.assert_allclose(poses[:, 1, 3], 0.0)
        np.testing.assert_allclose(StreetScene(0)._ground(0, 10).center[0, 1] - 0.1, 1.65)


@pytest.mark.parametrize("seed", [192, 592])
def test_small_rooms_keep_floor_objects_inside(seed):
    # These seeds draw a 1.5 m half-width room and an object whose reach leaves no interval away from the walls:
    # rendering them raised numpy's "high - low < 0" (a 400-scene room dataset could not be built).
    scene = RoomScene(seed)
    (hx, hz) = scene.half
    for x0, x1, z0, z1, _ in scene._footprints:  # furniture and floor objects (skipped if they would collide)
        assert -hx - 1e-9 <= x0 < x1 <= hx + 1e-9 and -hz - 1e-9 <= z0 < z1 <= hz + 1e-9, (seed, (x0, x1, z0, z1), scene.half)
    assert syn.render_sequence("room", seed, 1, 12, 16)["depth"].min() > 0


def test_static_camera_gives_identical_poses_and_frames():
    seq = syn.render_sequence("street", 2, 3, H, W, static_camera=True)
    assert (seq["poses"] == seq["poses"][0]).all()
    assert (seq["image"] == seq["image"][0]).all() and (seq["depth"] == seq["depth"][0]).all()
    moving = syn.render_sequence("room", 5, 3, H, W, static_camera=True, moving_objects=True)
    changed = (moving["instance"][0] != moving["instance"][2]) | (moving["depth"][0] != moving["depth"][2])
    assert changed.any()  # objects move while the camera stands still
    movers = np.union1d(moving["instance"][0][changed], moving["instance"][2][changed])
    classes = np.unique(moving["semantic"][0][np.isin(moving["instance"][0], movers)])
    assert set(classes) <= {syn.CLASS_NAMES.index("object"), syn.CLASS_NAMES.index("floor")}


def test_moving_cars_keep_their_instance_ids():
    seq = syn.render_sequence("street", 6, 3, 96, 320, moving_objects=True, static_camera=True)
    car = syn.CLASS_NAMES.index("car")
    ids = [set(np.unique(seq["instance"][k][seq["semantic"][k] == car])) for k in range(3)]
    assert ids[0] & ids[2]  # the same cars, same ids, in the first and last frame
    assert not np.array_equal(seq["depth"][0], seq["depth"][2])


def test_exposure_and_noise_change_only_the_image():
    base = syn.render_sequence("room", 1, 2, H, W)
    varied = syn.render_sequence("room", 1, 2, H, W, exposure_change=True, sensor_noise=0.02)
    assert np.array_equal(base["depth"], varied["depth"]) and np.array_equal(base["instance"], varied["instance"])
    diff = varied["image"].astype(int) - base["image"].astype(int)
    assert np.abs(diff).mean() > 2
    assert np.array_equal(varied["image"], syn.render_sequence("room", 1, 2, H, W, exposure_change=True,
                                                                sensor_noise=0.02)["image"])


def test_reprojection_lands_on_the_same_instance(street):
    """A world point seen in frame t projects, with K and the poses, onto a pixel of the same instance in t+1."""
    K = street["intrinsics"].astype(np.float64)
    d = street["depth"][0].astype(np.float64)
    points = _rays(K, H, W) * d[..., None]
    T = np.linalg.inv(street["poses"][1]) @ street["poses"][0]  # T_{1 from 0}
    p1 = points @ T[:3, :3].T + T[:3, 3]
    u = np.round(K[0, 0] * p1[..., 0] / p1[..., 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * p1[..., 1] / p1[..., 2] + K[1, 2]).astype(int)
    inside = (d > 0) & (p1[..., 2] > 0.1) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    uc, vc = np.clip(u, 0, W - 1), np.clip(v, 0, H - 1)
    seen = inside & (np.abs(street["depth"][1][vc, uc] - p1[..., 2]) < 0.02 * p1[..., 2])  # co-visible
    assert seen.mean() > 0.3
    same = street["instance"][1][vc, uc] == street["instance"][0]
    assert same[seen].mean() > 0.99


def _warp_error(seq, t, s):
    """Mean abs error (0-255) of frame t re-rendered from frame s by bilinear sampling with GT depth and pose,
    on co-visible pixels at least 3 px away from depth edges (the photometric assumption of self-supervision)."""
    K = seq["intrinsics"].astype(np.float64)
    d = seq["depth"][t].astype(np.float64)
    h, w = d.shape
    T = np.linalg.inv(seq["poses"][s]) @ seq["poses"][t]
    p = (_rays(K, h, w) * d[..., None]) @ T[:3, :3].T + T[:3, 3]
    z = np.where(p[..., 2] > 0.1, p[..., 2], np.nan)
    us = (K[0, 0] * p[..., 0] / z + K[0, 2]).astype(np.float32)
    vs = (K[1, 1] * p[..., 1] / z + K[1, 2]).astype(np.float32)
    warped = cv2.remap(seq["image"][s].astype(np.float32), us, vs, cv2.INTER_LINEAR, borderValue=-1.0)
    depth_s = cv2.remap(seq["depth"][s], us, vs, cv2.INTER_NEAREST, borderValue=0.0)
    gy, gx = np.gradient(np.log(np.maximum(d, 1e-6)))
    edges = cv2.dilate(((np.hypot(gx, gy) > 0.05) | (d == 0)).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    valid = ~edges & (np.abs(depth_s - z) < 0.03 * z) & (warped >= 0).all(-1)
    assert valid.mean() > 0.25
    return np.abs(warped - seq["image"][t]).mean(-1)[valid].mean()


@pytest.mark.parametrize("preset,size", [("street", (96, 320)), ("room", (96, 128))])
def test_warping_next_frame_reproduces_frame(preset, size):
    seq = syn.render_sequence(preset, 0, 2, *size)
    assert _warp_error(seq, 0, 1) < 2.0


def test_antialiasing_changes_only_edge_pixels():
    prims, K, T = _scene_frame()
    plain = render_frame(prims, K, T, 96, 320, supersample=1)
    aa = render_frame(prims, K, T, 96, 320, supersample=2)
    for key in ("depth", "semantic", "instance", "surface_key"):
        assert np.array_equal(plain[key], aa[key])  # labels and depth keep the single centre ray
    keys = aa["surface_key"]
    edge = np.zeros(keys.shape, bool)
    edge[:, 1:] |= keys[:, 1:] != keys[:, :-1]
    edge[:, :-1] |= keys[:, 1:] != keys[:, :-1]
    edge[1:] |= keys[1:] != keys[:-1]
    edge[:-1] |= keys[1:] != keys[:-1]
    changed = (plain["image"] != aa["image"]).any(-1)
    assert changed.any() and not (changed & ~edge).any()


def _scene_frame():
    scene = StreetScene(1)
    pose = scene.trajectory.poses([3])[0]
    return scene.primitives(3, False, pose[2, 3]), syn.intrinsics_for("street", 96, 320), pose


# ---- splits and argument checking -----------------------------------------------------------------------------
def test_split_seeds_are_disjoint():
    seeds = {s: set(syn.split_seeds(s, 500)) for s in ("train", "validation", "test")}
    assert not (seeds["train"] & seeds["validation"]) and not (seeds["train"] & seeds["test"])
    assert not (seeds["validation"] & seeds["test"])
    for split, (lo, hi) in syn.SPLIT_SEED_RANGES.items():
        assert min(seeds[split]) == lo and max(seeds[split]) < hi
    with pytest.raises(ValueError, match="split"):
        syn.split_seeds("val", 3)
    with pytest.raises(ValueError, match="num_scenes"):
        syn.split_seeds("validation", 100_001)


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "forest"}, "preset"), ({"num_frames": 0}, "num_frames"), ({"num_frames": 2.5}, "num_frames"),
    ({"seed": -1}, "seed"), ({"height": 0}, "height"), ({"width": 12.0}, "width"), ({"supersample": 0}, "supersample"),
    ({"sensor_noise": -0.1}, "sensor_noise"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"preset": "street", "seed": 0, "num_frames": 1, "height": 8, "width": 16}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        syn.render_sequence(args.pop("preset"), args.pop("seed"), args.pop("num_frames"), **args)


def test_bad_primitives_raise(rng):
    with pytest.raises(ValueError, match="WAVES"):
        syn.make_sphere((0, 0, 1), 1.0, 1, 1, _mat(rng, tx.CHECKER))
    with pytest.raises(ValueError, match="size"):
        syn.make_box((0, 0, 1), (1.0, 0.0, 1.0), 1, 1, _mat(rng))
    with pytest.raises(TypeError, match="material"):
        syn.make_box((0, 0, 1), (1.0, 1.0, 1.0), 1, 1, "red")


# ---- SDDR degradation ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def depth_map():
    return syn.render_sequence("room", 5, 1, 384, 384)["depth"][0]  # the spec's example size


def test_degrade_depth_contract_and_determinism(depth_map):
    out = syn.degrade_depth(depth_map, 7)
    assert set(out) == {"depth_low", "depth_high"}
    for v in out.values():
        assert v.shape == depth_map.shape and v.dtype == np.float32
        assert v.min() == 0.0 and v.max() == 1.0
    again = syn.degrade_depth(depth_map, 7)
    assert all(np.array_equal(out[k], again[k]) for k in out)
    assert not np.array_equal(out["depth_high"], syn.degrade_depth(depth_map, 8)["depth_high"])
    # Relative inverse depth: strongly correlated with 1/depth (larger = nearer).
    inv = 1.0 / depth_map
    for v in out.values():
        assert np.corrcoef(v.ravel(), inv.ravel())[0, 1] > 0.9


def _edge_band(depth_map, width):
    gy, gx = np.gradient(np.log(depth_map))
    return cv2.dilate((np.hypot(gx, gy) > 0.05).astype(np.uint8), np.ones((width, width), np.uint8)) > 0


def test_degrade_low_is_blurrier_and_high_less_consistent(depth_map):
    out = syn.degrade_depth(depth_map, 3)
    inv = 1.0 / depth_map
    inv = (inv - inv.min()) / (inv.max() - inv.min())
    edges = _edge_band(depth_map, 3)

    def sharpness(x):  # gradient magnitude on the depth edges
        gy, gx = np.gradient(x)
        return np.hypot(gx, gy)[edges].mean()

    assert sharpness(out["depth_low"]) < 0.7 * sharpness(out["depth_high"])

    def local_deviation(x):  # residual of a global affine fit, away from edges
        far = ~_edge_band(depth_map, 15)
        A = np.stack([inv[far], np.ones(far.sum())], 1)
        coef = np.linalg.lstsq(A, x[far], rcond=None)[0]
        return np.abs(A @ coef - x[far]).mean()

    assert local_deviation(out["depth_high"]) > 1.5 * local_deviation(out["depth_low"])


def test_degrade_sky_and_bad_input():
    depth = np.full((64, 64), 4.0, np.float32)
    depth[:20] = 0.0  # sky
    depth[40:, 30:] = 2.0
    out = syn.degrade_depth(depth, 0, low_size=(16, 16), high_size=64)
    for v in out.values():
        assert np.isfinite(v).all() and v[:10].mean() < v[30:].mean()  # sky is the far end of the range
    for bad, match in [(np.zeros((4,)), "depth"), (np.full((8, 8), -1.0), "depth"), (np.full((8, 8), np.nan), "depth")]:
        with pytest.raises(ValueError, match=match):
            syn.degrade_depth(bad, 0)
    with pytest.raises(ValueError, match="seed"):
        syn.degrade_depth(depth, -3)
    with pytest.raises(ValueError, match="low_size"):
        syn.degrade_depth(depth, 0, low_size=0)
    with pytest.raises(ValueError, match="scale_std_high"):
        syn.degrade_depth(depth, 0, scale_std_high=-1.0)


def test_preview_cli(tmp_path, capsys):
    from tfdepth.data.synthetic.__main__ import main

    out = tmp_path / "p.png"
    assert main(["--preset", "room", "--seed", "2", "--out", str(out), "--frames", "2", "--height", "24",
                 "--width", "32"]) == 0
    panel = cv2.imread(str(out))
    assert panel.shape == (2 * 24 + 2, 3 * 32 + 4, 3)  # 2 rows x (RGB | depth | semantics), 2 px gaps
    assert main(["--preset", "moon", "--out", str(out)]) == 2
    assert main(["--out", str(tmp_path / "missing" / "p.png")]) == 2
    assert "error" in capsys.readouterr().err
