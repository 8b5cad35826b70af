"""Tests for tfdepth.data.kitti on a tiny KITTI raw tree in the official on-disk format, plus one real frame.

The calibration uses KITTI's 2011_09_26 numbers (P_rect_02/03, R_rect_00 and Tr_velo_to_cam match the real frame's
calibration in /work/shared/realdata; the IMU-to-Velodyne numbers are KITTI-like), rescaled to 24x80 images.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.data import kitti
from tfdepth.data.pipeline import make_video_dataset
from tfdepth.geometry import scale_intrinsics

H, W = 24, 80
NATIVE_H, NATIVE_W = 375, 1242
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
P2 = np.array([[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791], [0, 0, 1, 0.002745884]])
P3 = np.array([[721.5377, 0, 609.5593, -339.5242], [0, 721.5377, 172.854, 2.199936], [0, 0, 1, 0.002729905]])
R_RECT = np.array([[9.999239e-01, 9.837760e-03, -7.445048e-03], [-9.869795e-03, 9.999421e-01, -4.278459e-03],
                   [7.402527e-03, 4.351614e-03, 9.999631e-01]])
VELO_R = np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04], [1.480249e-02, 7.280733e-04, -9.998902e-01],
                   [9.998621e-01, 7.523790e-03, 1.480755e-02]])
VELO_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
IMU_R = np.array([[9.999976e-01, 7.553071e-04, -2.035826e-03], [-7.854027e-04, 9.998898e-01, -1.482298e-02],
                  [2.024406e-03, 1.482454e-02, 9.998881e-01]])
IMU_T = np.array([-8.086759e-01, 3.195559e-01, -7.997231e-01])
LAT0, LON0, STEP_M = 49.015, 8.43, 0.8  # Karlsruhe; the car drives STEP_M metres east per frame
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "kitti_object_000008_mmdet3d"


def _scaled(P, sx, sy):
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])  # half-pixel resize of pixels
    return S @ P


def _fmt(values):
    return " ".join(f"{v:.9e}" for v in np.ravel(values))


def _oxts_packet(k, yaw=0.0):
    lon = LON0 + np.rad2deg(k * STEP_M / (np.cos(np.deg2rad(LAT0)) * kitti.EARTH_RADIUS))
    return [LAT0, lon, 110.0, 0.0, 0.0, yaw] + [0.0] * 24


def _write_tree(root, *, frames=5, native_calib=False, velodyne_frames=(0, 1, 2, 3), rng=None):
    """Write calib files, `frames` PNGs per camera, Velodyne scans and OXTS packets; return the data written."""
    rng = rng or np.random.default_rng(0)
    date = root / "2011_09_26"
    date.mkdir(parents=True)
    sx, sy = (1.0, 1.0) if native_calib else (W / NATIVE_W, H / NATIVE_H)
    size = (NATIVE_W, NATIVE_H) if native_calib else (W, H)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"R_rect_00: {_fmt(R_RECT)}\nS_rect_02: {_fmt(size)}\nP_rect_02: {_fmt(_scaled(P2, sx, sy))}\n"
        f"S_rect_03: {_fmt(size)}\nP_rect_03: {_fmt(_scaled(P3, sx, sy))}\n")
    (date / "calib_velo_to_cam.txt").write_text(f"calib_time: 15-Mar-2012 11:37:16\nR: {_fmt(VELO_R)}\n"
                                                f"T: {_fmt(VELO_T)}\ndelta_f: 0 0\ndelta_c: 0 0\n")
    (date / "calib_imu_to_velo.txt").write_text(f"calib_time: 25-May-2012 16:47:16\nR: {_fmt(IMU_R)}\n"
                                                f"T: {_fmt(IMU_T)}\n")
    drive = root / DRIVE
    data = {"images": {}, "velodyne": {}}
    for cam in (2, 3):
        (drive / f"image_{cam:02d}" / "data").mkdir(parents=True)
        for k in range(frames):
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            cv2.imwrite(str(drive / f"image_{cam:02d}" / "data" / f"{k:010d}.png"), image[..., ::-1])
            data["images"][cam, k] = image
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    for k in velodyne_frames:
        n = 400
        points = np.stack([rng.uniform(-3, 40, n), rng.uniform(-15, 15, n), rng.uniform(-2, 1, n),
                           rng.uniform(0, 1, n)], axis=1).astype(np.float32)
        points[1] = points[0] * [1.5, 1.5, 1.5, 1]  # the same ray, farther: the nearer point must win
        points.tofile(drive / "velodyne_points" / "data" / f"{k:010d}.bin")
        data["velodyne"][k] = points
    (drive / "oxts" / "data").mkdir(parents=True)
    for k in range(frames):
        (drive / "oxts" / "data" / f"{k:010d}.txt").write_text(" ".join(f"{v:.15g}" for v in _oxts_packet(k)))
    return data


def _reference_depth(points, P, h, w, depth_from, offset):
    """Loop-by-loop reference of Monodepth2's generate_depth_map for a 3x4 velo->image projection P."""
    best = {}
    for x, y, z, _ in np.asarray(points, np.float64):
        if x < 0:
            continue
        p = P @ np.array([x, y, z, 1.0])
        col, row = int(np.round(p[0] / p[2])) - offset, int(np.round(p[1] / p[2])) - offset
        if 0 <= col < w and 0 <= row < h:
            d = p[2] if depth_from == "camera" else x
            best[row, col] = min(best.get((row, col), np.inf), d)
    out = np.zeros((h, w), np.float32)
    for (row, col), d in best.items():
        out[row, col] = max(d, 0.0)
    return out


def _velo_projection(P):
    R4, V = np.eye(4), np.eye(4)
    R4[:3, :3] = R_RECT
    V[:3, :3], V[:3, 3] = VELO_R, VELO_T
    return P @ R4 @ V


@pytest.fixture
def tree(tmp_path):
    data = _write_tree(tmp_path)
    split = tmp_path / "train_files.txt"
    split.write_text(f"{DRIVE} 1 l\n{DRIVE} 2 r\n\n{DRIVE} 3 l\n")
    return tmp_path, split, data


# ----------------------------------------------------------------------------------------------- split files
def test_read_split_file_parses_lines(tree):
    _, split, _ = tree
    lines = kitti.read_split_file(split)
    assert [(s.folder, s.frame_index, s.side, s.camera, s.line_number) for s in lines] == [
        (DRIVE, 1, "l", 2, 1), (DRIVE, 2, "r", 3, 2), (DRIVE, 3, "l", 2, 4)]


@pytest.mark.parametrize("line, message", [
    (f"{DRIVE} 5", "expected 3 fields"),
    (f"{DRIVE} five l", "frame_index must be a non-negative integer"),
    (f"{DRIVE} 5 s", "side must be 'l'"),
    ("2011_09_26_drive_0001_sync 5 l", "folder must be '<date>/<drive>'"),
])
def test_read_split_file_names_file_and_line(tmp_path, line, message):
    split = tmp_path / "bad.txt"
    split.write_text(f"{DRIVE} 1 l\n{line}\n")
    with pytest.raises(ValueError, match=message) as info:
        kitti.read_split_file(split)
    assert f"{split}, line 2" in str(info.value)


def test_read_split_file_missing(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        kitti.read_split_file(tmp_path / "nope.txt")


# ----------------------------------------------------------------------------------------------- calibration
def test_read_calib_matches_files(tree):
    root, _, _ = tree
    calib = kitti.read_calib(root / "2011_09_26")
    sx, sy = W / NATIVE_W, H / NATIVE_H
    np.testing.assert_allclose(calib.P_rect[2], _scaled(P2, sx, sy), rtol=1e-8)
    np.testing.assert_allclose(calib.intrinsics(3), _scaled(P3, sx, sy)[:, :3], rtol=1e-8)
    assert calib.image_sizes == {2: (H, W), 3: (H, W)}
    np.testing.assert_allclose(calib.projection(2), _velo_projection(_scaled(P2, sx, sy)), rtol=1e-8)
    # T_cam_from_velo puts a point where P_rect projects it: K @ (T X)[:3] == P_rect R_rect T_velo X.
    X = np.array([12.0, -1.5, 0.4, 1.0])
    cam = calib.T_cam_from_velo(2) @ X
    np.testing.assert_allclose(calib.intrinsics(2) @ cam[:3], calib.projection(2) @ X, rtol=1e-10)


def test_read_calib_errors(tmp_path):
    (tmp_path / "calib_cam_to_cam.txt").write_text(f"R_rect_00: {_fmt(R_RECT)}\nP_rect_02: 1 2 3\n")
    with pytest.raises(ValueError, match="calib_velo_to_cam.txt is missing"):
        kitti.read_calib(tmp_path)
    (tmp_path / "calib_velo_to_cam.txt").write_text(f"R: {_fmt(VELO_R)}\nT: {_fmt(VELO_T)}\n")
    with pytest.raises(ValueError, match=r"calib_cam_to_cam.txt: entry 'P_rect_02' must have 12 numbers"):
        kitti.read_calib(tmp_path)


def test_read_velodyne_rejects_truncated_file(tmp_path):
    path = tmp_path / "0000000000.bin"
    np.arange(10, dtype=np.float32).tofile(path)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        kitti.read_velodyne(path)


# ----------------------------------------------------------------------------------------------- depth maps
@pytest.mark.parametrize("depth_from", ["camera", "velodyne"])
@pytest.mark.parametrize("indexing", [True, False])
def test_velodyne_depth_map_matches_loop_reference(tree, depth_from, indexing):
    root, _, data = tree
    calib = kitti.read_calib(root / "2011_09_26")
    points = data["velodyne"][0]
    depth = kitti.velodyne_depth_map(points, calib, (H, W), 2, depth_from=depth_from, monodepth2_indexing=indexing)
    P = _velo_projection(_scaled(P2, W / NATIVE_W, H / NATIVE_H))
    expected = _reference_depth(points, P, H, W, depth_from, 1 if indexing else 0)
    assert (expected > 0).sum() > 20
    np.testing.assert_allclose(depth, expected, rtol=1e-6)


def test_velodyne_depth_map_rescales_to_other_image_size(tree):
    root, _, _ = tree
    calib = kitti.read_calib(root / "2011_09_26")
    # One point seen at pixel (u, v) of the calibrated 24x80 image lands at (u + 0.5) * 2 - 0.5 in a 48x160 one.
    X = np.array([[15.0, 2.0, -0.5, 0.0]], np.float32)
    p = calib.projection(2) @ np.r_[X[0, :3], 1.0]
    u, v = p[0] / p[2], p[1] / p[2]
    depth = kitti.velodyne_depth_map(X, calib, (2 * H, 2 * W), 2, monodepth2_indexing=False)
    row, col = np.argwhere(depth > 0)[0]
    assert (row, col) == (np.round((v + 0.5) * 2 - 0.5), np.round((u + 0.5) * 2 - 0.5))
    assert depth[row, col] == pytest.approx(p[2], rel=1e-6)


def test_velodyne_depth_map_reproduces_real_kitti_frame():
    if not REAL.is_dir():
        raise FileNotFoundError(f"shared real-data folder {REAL} is missing: it holds the KITTI frame 000008 this "
                                "test checks against (see /work/shared/realdata/README.md)")
    cal = json.loads((REAL / "000008_calib.json").read_text())
    # lidar2cam already includes R0_rect, so R_rect is the identity here; P @ lidar2cam must equal lidar2img.
    calib = kitti.KittiCalib({2: np.array(cal["cam2img"])[:3]}, np.eye(3), np.array(cal["lidar2cam"]),
                             {2: (cal["height"], cal["width"])})
    np.testing.assert_allclose(calib.projection(2), np.array(cal["lidar2img"])[:3], atol=1e-9)
    points = kitti.read_velodyne(REAL / "000008_velodyne_reduced.bin")
    reference = cv2.imread(str(REAL / "000008_sparse_depth_DERIVED_uint16_x256.png"), cv2.IMREAD_UNCHANGED)
    assert reference.dtype == np.uint16 and reference.shape == (375, 1242)

    def encode(depth):
        return np.round(depth.astype(np.float64) * 256).astype(np.int64)

    # The derived PNG put points at round(u), round(v): our map without Monodepth2's -1 matches it pixel for pixel
    # (17,107 valid pixels); values agree to one unit of 1/256 m (our float32 output vs its float64 rounding).
    exact = kitti.velodyne_depth_map(points, calib, reference.shape, 2, monodepth2_indexing=False)
    assert ((exact > 0) == (reference > 0)).all() and (reference > 0).sum() == 17107
    diff = np.abs(encode(exact) - reference)
    assert diff.max() <= 1 and (diff > 0).sum() <= 10
    # Monodepth2's indexing is the same map shifted one pixel up-left (28 more points enter at the bottom/right
    # border, those of row/column 0 leave).
    shifted = kitti.velodyne_depth_map(points, calib, reference.shape, 2)
    assert ((shifted[:-1, :-1] > 0) == (reference[1:, 1:] > 0)).all()
    assert np.abs(encode(shifted[:-1, :-1]) - reference[1:, 1:]).max() <= 1
    assert (shifted > 0).sum() == 17135
    # Eigen GT depth (velodyne x) is the camera z-depth plus the 0.27 m Velodyne-to-camera offset (A.8).
    lidar_x = kitti.velodyne_depth_map(points, calib, reference.shape, 2, depth_from="velodyne",
                                       monodepth2_indexing=False)
    offset = lidar_x[reference > 0] - reference[reference > 0] / 256.0
    assert 0.24 < offset.min() and offset.max() < 0.32


# ----------------------------------------------------------------------------------------------- sequences
def _pose_delta_expected():
    """T_next_from_t of the camera for the car driving STEP_M metres along the IMU's x axis (independent algebra)."""
    V, I4, R4 = np.eye(4), np.eye(4), np.eye(4)
    V[:3, :3], V[:3, 3] = VELO_R, VELO_T
    I4[:3, :3], I4[:3, 3] = IMU_R, IMU_T
    R4[:3, :3] = R_RECT
    K = _scaled(P2, W / NATIVE_W, H / NATIVE_H)
    shift = np.eye(4)
    shift[:3, 3] = np.linalg.inv(K[:, :3]) @ K[:, 3]
    cam_from_imu = shift @ R4 @ V @ I4
    motion = np.eye(4)
    motion[0, 3] = -STEP_M  # a static point moves back by the distance driven, in the IMU frame
    return cam_from_imu @ motion @ np.linalg.inv(cam_from_imu)


def test_kitti_sequences_triplets_through_make_video_dataset(tree):
    root, split, data = tree
    sequences = kitti.kitti_sequences(root, split)
    assert sequences.element_spec["image"].shape.as_list() == [3, H, W, 3]
    first = next(sequences.as_numpy_iterator())  # ground truth for the listed (centre) frame only
    assert (first["depth"][1] > 0).any() and not first["depth"][[0, 2]].any()
    batches = list(make_video_dataset(sequences, batch_size=3).as_numpy_iterator())
    assert len(batches) == 1
    batch = batches[0]
    calib = kitti.read_calib(root / "2011_09_26")
    for i, (t, cam) in enumerate([(1, 2), (2, 3), (3, 2)]):
        for key, k in (("image_prev", t - 1), ("image", t), ("image_next", t + 1)):
            np.testing.assert_allclose(batch[key][i], data["images"][cam, k] / 255.0, atol=1e-6)
        np.testing.assert_allclose(batch["intrinsics"][i], calib.intrinsics(cam), rtol=1e-6)
        expected_depth = kitti.velodyne_depth_map(data["velodyne"][t], calib, (H, W), cam, depth_from="velodyne")
        np.testing.assert_array_equal(batch["depth"][i, ..., 0], expected_depth)
        assert (expected_depth > 0).any()
    # Driving straight ahead: the relative camera poses are pure translations of STEP_M, mostly along -z.
    expected = _pose_delta_expected()
    for key, sign in (("pose_next", 1), ("pose_prev", -1)):
        for i in (0, 2):  # the left camera
            want = expected if sign > 0 else np.linalg.inv(expected)
            np.testing.assert_allclose(batch[key][i], want, atol=2e-5)
    assert np.linalg.norm(batch["pose_next"][0][:3, 3]) == pytest.approx(STEP_M, abs=1e-4)
    assert batch["pose_next"][0][2, 3] < -0.99 * STEP_M
    assert (batch["semantic"] == 0).all()


def test_kitti_sequences_frame_offsets_depth_zeros_and_no_poses(tree):
    root, _, data = tree
    split = root / "test_files.txt"
    split.write_text(f"{DRIVE} 4 l\n{DRIVE} 0 l\n")  # frame 4 has no Velodyne scan
    elements = list(kitti.kitti_sequences(root, split, frame_offsets=(0,), poses="none").as_numpy_iterator())
    assert [e["image"].shape for e in elements] == [(1, H, W, 3)] * 2
    np.testing.assert_array_equal(elements[0]["image"][0], data["images"][2, 4])
    assert (elements[0]["depth"] == 0).all() and (elements[1]["depth"] > 0).any()
    assert np.isnan(elements[0]["poses"]).all()


def test_kitti_sequences_rescales_intrinsics_of_resized_images(tmp_path):
    _write_tree(tmp_path, native_calib=True)  # calib for 1242x375, images stored at 80x24
    split = tmp_path / "s.txt"
    split.write_text(f"{DRIVE} 2 l\n")
    element = next(kitti.kitti_sequences(tmp_path, split, poses="none").as_numpy_iterator())
    expected = scale_intrinsics(tf.constant(P2[:, :3]), W / NATIVE_W, H / NATIVE_H).numpy()
    np.testing.assert_allclose(element["intrinsics"], expected, rtol=1e-6)


def test_kitti_sequences_resize_at_source_equals_pipeline_resize(tree):
    root, split, _ = tree
    h, w = 16, 48
    at_source = make_video_dataset(kitti.kitti_sequences(root, split, height=h, width=w), batch_size=3)
    in_pipeline = make_video_dataset(kitti.kitti_sequences(root, split), batch_size=3, height=h, width=w)
    a, b = next(at_source.as_numpy_iterator()), next(in_pipeline.as_numpy_iterator())
    np.testing.assert_allclose(a["image"], b["image"], atol=0.5 / 255 + 1e-6)  # uint8 rounding at the source
    np.testing.assert_allclose(a["intrinsics"], b["intrinsics"], rtol=1e-6)
    np.testing.assert_array_equal(a["depth"], b["depth"])


def test_kitti_sequences_shuffle_permutes_lines(tree):
    root, split, _ = tree
    seeds = [int(e["seed"]) for e in kitti.kitti_sequences(root, split, shuffle=True, seed=3).as_numpy_iterator()]
    assert sorted(seeds) == [0, 1, 2]


def test_kitti_sequences_segmentation_masks(tree):
    root, split, _ = tree
    for cam, k in ((2, 0), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (2, 3), (2, 4)):
        mask = np.zeros((1, 2 * H, 2 * W), np.uint8)  # stored at another size, as SegDepth's 640x192 masks
        mask[0, : 2 * k + 2, :] = 1
        np.save(root / DRIVE / f"image_{cam:02d}" / "data" / f"{k:010d}.npy", mask)
    element = next(kitti.kitti_sequences(root, split, segmentation_masks=True).as_numpy_iterator())
    for j, k in enumerate((0, 1, 2)):  # the first line: frame 1 of the left camera and its neighbours
        expected = np.zeros((H, W), np.uint8)
        expected[: k + 1] = 1  # rows [0, 2k + 2) of 48 -> rows [0, k + 1) of 24 (nearest)
        np.testing.assert_array_equal(element["semantic"][j], expected)
    np.testing.assert_array_equal(element["instance"], element["semantic"].astype(np.int32))
    (root / DRIVE / "image_02" / "data" / f"{4:010d}.npy").unlink()
    with pytest.raises(ValueError, match="segmentation mask .*0000000004.npy is missing"):
        kitti.kitti_sequences(root, split, segmentation_masks=True)


@pytest.mark.parametrize("line, message", [
    (f"{DRIVE} 4 l", r"0000000005.png does not exist \(needed for offset 1"),
    ("2011_09_26/2011_09_26_drive_0002_sync 2 l", "does not exist"),
])
def test_kitti_sequences_missing_frames_name_file_and_line(tree, line, message):
    root, _, _ = tree
    split = root / "bad.txt"
    split.write_text(f"{DRIVE} 2 l\n{line}\n")
    with pytest.raises(ValueError, match=message) as info:
        kitti.kitti_sequences(root, split)
    assert "line 2" in str(info.value)


def test_kitti_sequences_missing_oxts_and_bad_arguments(tree):
    root, split, _ = tree
    (root / DRIVE / "oxts" / "data" / f"{2:010d}.txt").unlink()
    with pytest.raises(ValueError, match="OXTS file .*0000000002.txt is missing.*poses='none'"):
        kitti.kitti_sequences(root, split)
    assert len(list(kitti.kitti_sequences(root, split, poses="none"))) == 3
    with pytest.raises(ValueError, match="frame_offsets"):
        kitti.kitti_sequences(root, split, frame_offsets=(1, -1, 0))
    with pytest.raises(ValueError, match="poses"):
        kitti.kitti_sequences(root, split, poses="identity")
    with pytest.raises(ValueError, match="not a directory"):
        kitti.kitti_sequences(root / "missing", split)
    (root / "2011_09_26" / "calib_imu_to_velo.txt").unlink()
    (root / DRIVE / "oxts" / "data" / f"{2:010d}.txt").write_text(" ".join(f"{v:.15g}" for v in _oxts_packet(2)))
    with pytest.raises(ValueError, match="poses='oxts' needs .*calib_imu_to_velo.txt"):
        kitti.kitti_sequences(root, split)
    (root / "2011_09_26" / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(ValueError, match="calib_cam_to_cam.txt is missing"):
        kitti.kitti_sequences(root, split, poses="none")


def test_oxts_poses_mercator_heading_and_turn(tree):
    d = 3.0
    north = np.rad2deg(d / kitti.EARTH_RADIUS)
    packets = np.array([_oxts_packet(0), _oxts_packet(STEP_M / STEP_M), _oxts_packet(0, yaw=np.pi / 2)])[:, :6]
    packets[2, 0] += north
    poses = kitti.oxts_poses(packets)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)  # origin at the first packet
    np.testing.assert_allclose(poses[1, :3, 3], [STEP_M, 0, 0], atol=1e-6)  # east = Mercator x
    # North: Mercator y grows by d * cos(lat0) / cos(lat) ~ d (the scale is fixed by the first latitude).
    assert poses[2, 1, 3] == pytest.approx(d, rel=1e-6)
    np.testing.assert_allclose(poses[2, :3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw 90 deg: forward = north
    # A left turn (yaw grows) in camera terms: a point straight ahead of camera t is to the right in camera t+1.
    root, _, _ = tree
    calib = kitti.read_calib(root / "2011_09_26")
    turn = kitti.oxts_poses(np.array([_oxts_packet(0), _oxts_packet(0, yaw=0.1)])[:, :6])
    world_from_cam = turn @ np.linalg.inv(calib.T_cam_from_imu(2))
    ahead = np.linalg.inv(world_from_cam[1]) @ world_from_cam[0] @ [0, 0, 10, 1]
    assert ahead[0] > 0.9 and ahead[2] > 9.9


def test_kitti_sequences_reads_jpg_frames(tree):
    root, split, data = tree
    for k in range(5):
        png = root / DRIVE / "image_02" / "data" / f"{k:010d}.png"
        cv2.imwrite(str(png.with_suffix(".jpg")), data["images"][2, k][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        png.unlink()
    element = next(kitti.kitti_sequences(root, split, poses="none").as_numpy_iterator())
    decoded = [cv2.imread(str(root / DRIVE / "image_02" / "data" / f"{k:010d}.jpg"))[..., ::-1] for k in (0, 1, 2)]
    np.testing.assert_array_equal(element["image"], np.stack(decoded))
    with pytest.raises(ValueError, match=r"0000000000.png does not exist"):
        kitti.kitti_sequences(root, split, image_ext=".png")
