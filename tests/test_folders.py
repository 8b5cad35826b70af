"""Tests for tfdepth.data.folders: a user's videos as folders of frames, with intrinsics given three ways."""

import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.data import folders
from tfdepth.data.pipeline import make_video_dataset
from tfdepth.geometry import intrinsics_from_normalized, scale_intrinsics

K_A = np.array([[25.0, 0.0, 14.2], [0.0, 24.0, 9.7], [0.0, 0.0, 1.0]])  # video "a": 20x30 PNG
K_B = np.array([[31.0, 0.0, 20.5], [0.0, 30.5, 11.0], [0.0, 0.0, 1.0]])  # video "b": 24x40 JPEG


def _write_frames(folder, count, hw, ext, rng, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(count):
        image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        path = folder / f"{names[i] if names else f'{i:06d}'}{ext}"
        cv2.imwrite(str(path), image[..., ::-1])
        images.append(cv2.imread(str(path))[..., ::-1])  # what a decoder returns (JPEG is lossy)
    return images


def _write_matrix(path, K, four_by_four=False):
    M = np.eye(4) if four_by_four else np.eye(3)
    M[:3, :3] = K
    path.write_text("\n".join(" ".join(f"{v:.10g}" for v in row) for row in M))


@pytest.fixture
def tree(tmp_path, rng):
    """Video a: 4 PNG frames 20x30 with 3x3 per-image K; video b: 3 JPEG frames 24x40 with 4x4 per-image K."""
    a = _write_frames(tmp_path / "a", 4, (20, 30), ".png", rng)
    b = _write_frames(tmp_path / "b", 3, (24, 40), ".jpg", rng)
    for i in range(4):
        _write_matrix(tmp_path / "a" / f"{i:06d}.txt", K_A)
    for i in range(3):
        _write_matrix(tmp_path / "b" / f"{i:06d}.txt", K_B, four_by_four=True)
    (tmp_path / "notes.txt").write_text("files in root are ignored")
    return tmp_path, {"a": a, "b": b}


def _elements(ds):
    return list(ds.as_numpy_iterator())


def test_per_image_intrinsics_two_sizes_through_make_video_dataset(tree):
    root, frames = tree
    sequences = folders.folder_sequences(root)
    elements = _elements(sequences)
    assert [e["image"].shape for e in elements] == [(4, 20, 30, 3), (3, 24, 40, 3)]
    for element, name in zip(elements, ("a", "b")):
        np.testing.assert_array_equal(element["image"], np.stack(frames[name]))
    h, w = 16, 32
    batch = next(make_video_dataset(sequences, batch_size=3, height=h, width=w).as_numpy_iterator())
    assert batch["image"].shape == (3, h, w, 3)
    # Scenes a (centres 1, 2) and b (centre 1): each sample's K is its file's K rescaled to the network size.
    for i, (K, (H, W)) in enumerate([(K_A, (20, 30)), (K_A, (20, 30)), (K_B, (24, 40))]):
        expected = scale_intrinsics(tf.constant(K, tf.float32), w / W, h / H).numpy()
        np.testing.assert_allclose(batch["intrinsics"][i], expected, rtol=1e-6)
    np.testing.assert_array_equal(batch["scene_seed"], [0, 0, 1])
    np.testing.assert_array_equal(batch["frame_index"], [1, 2, 1])
    assert np.isnan(batch["pose_prev"]).all()  # no poses.txt: unknown, not an identity placeholder
    assert sum(len(v.frames) - 2 for v in folders.scan_folders(root)) == 3  # the epoch size a factory computes


def test_global_normalised_intrinsics_follow_each_size(tmp_path, rng):
    _write_frames(tmp_path / "small", 3, (20, 30), ".png", rng)
    _write_frames(tmp_path / "large", 3, (48, 64), ".png", rng)
    normalised = (0.58, 1.92, 0.5, 0.5)
    elements = _elements(folders.folder_sequences(tmp_path, intrinsics=normalised))
    for element, (H, W) in zip(elements, [(48, 64), (20, 30)]):  # natural order: "large" before "small"
        expected = intrinsics_from_normalized(*normalised, H, W).numpy()
        np.testing.assert_allclose(element["intrinsics"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="a pixel intrinsics matrix fits one image size"):
        folders.folder_sequences(tmp_path, intrinsics=K_A)


def test_per_video_files_and_precedence(tmp_path, rng):
    _write_frames(tmp_path / "json_px", 3, (20, 30), ".png", rng)
    _write_frames(tmp_path / "json_norm", 3, (20, 30), ".png", rng)
    _write_frames(tmp_path / "txt", 3, (20, 30), ".png", rng)
    # Measured at 40x60, the frames were stored at 20x30: K is rescaled like a half-pixel resize.
    (tmp_path / "json_px" / "intrinsics.json").write_text(
        json.dumps({"fx": 50.0, "fy": 48.0, "cx": 29.5, "cy": 19.5, "width": 60, "height": 40}))
    (tmp_path / "json_norm" / "intrinsics.json").write_text(
        json.dumps({"fx": 0.9, "fy": 1.2, "cx": 0.5, "cy": 0.45, "normalized": True}))
    _write_matrix(tmp_path / "txt" / "intrinsics.txt", K_A, four_by_four=True)
    _write_matrix(tmp_path / "txt" / "000001.txt", K_B)  # per image beats per video
    ds = folders.folder_sequences(tmp_path, intrinsics=(1.0, 1.0, 0.5, 0.5), frame_offsets=(-1, 0, 1))
    by_video = {int(e["seed"]): e["intrinsics"] for e in _elements(ds)}
    # Elements in natural folder order: json_norm, json_px, txt (one triplet each).
    np.testing.assert_allclose(by_video[0], intrinsics_from_normalized(0.9, 1.2, 0.5, 0.45, 20, 30).numpy(),
                               rtol=1e-6)
    px = np.array([[50.0, 0, 29.5], [0, 48.0, 19.5], [0, 0, 1]])
    np.testing.assert_allclose(by_video[1], scale_intrinsics(tf.constant(px), 0.5, 0.5).numpy(), rtol=1e-6)
    np.testing.assert_allclose(by_video[2], K_B, rtol=1e-6)  # the target frame 000001 has its own file


def test_varying_per_image_intrinsics_need_frame_offsets(tmp_path, rng):
    _write_frames(tmp_path / "zoom", 4, (20, 30), ".png", rng)
    for i in range(4):
        _write_matrix(tmp_path / "zoom" / f"{i:06d}.txt", K_A * [[1 + i / 10], [1 + i / 10], [1]])
    with pytest.raises(ValueError, match=r"differ between frames.*frame_offsets=\(-1, 0, 1\)"):
        folders.folder_sequences(tmp_path)
    elements = _elements(folders.folder_sequences(tmp_path, frame_offsets=(-1, 0, 1)))
    assert len(elements) == 2
    for element, t in zip(elements, (1, 2)):
        np.testing.assert_allclose(element["intrinsics"][0, 0], K_A[0, 0] * (1 + t / 10), rtol=1e-6)


def test_depth_and_poses_files(tmp_path, rng):
    _write_frames(tmp_path / "v", 3, (20, 30), ".png", rng, names=["f2", "f10", "f1"])  # natural order f1 f2 f10
    (tmp_path / "v" / "depth").mkdir()
    metres = rng.uniform(0.5, 9.0, (20, 30)).astype(np.float32)
    metres[0, 0] = np.nan
    np.save(tmp_path / "v" / "depth" / "f1.npy", metres)
    raw = rng.integers(0, 5000, (20, 30)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "v" / "depth" / "f10.png"), raw)
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, 0, 3] = [0.0, 0.5, 1.0]
    (tmp_path / "v" / "poses.txt").write_text("\n".join(" ".join(map(str, p[:3].ravel())) for p in poses))
    (element,) = _elements(folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5), depth_scale=1000.0))
    expected = np.where(np.isfinite(metres), metres, 0)
    np.testing.assert_array_equal(element["depth"][0], expected)  # f1
    assert not element["depth"][1].any()  # f2 has no depth file
    np.testing.assert_allclose(element["depth"][2], raw / 1000.0, rtol=1e-6)  # f10
    np.testing.assert_allclose(element["poses"], poses)
    batch = next(make_video_dataset(folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5)),
                                    batch_size=1).as_numpy_iterator())
    np.testing.assert_allclose(batch["pose_next"][0][0, 3], -0.5, atol=1e-6)  # T_next_from_t: points move back


def test_missing_intrinsics_names_the_three_ways(tmp_path, rng):
    _write_frames(tmp_path / "v", 3, (20, 30), ".png", rng)
    with pytest.raises(ValueError, match=r"no intrinsics for frame .*000000.png.*\(a\).*\(b\).*\(c\)"):
        folders.folder_sequences(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("1 0 2\n0 1 2", "3x3 .* or 4x4 .* got 6 numbers"),
    ("1 0 2 0\n0 1 2 0\n0 0 1 0\n0 0 1 1", "last row 0 0 0 1"),
    ("1 0 2\n0 1 2\n0.5 0 1", r"\[0, 0, 1\]"),
    ("-1 0 2\n0 1 2\n0 0 1", "must be finite and > 0"),
    ("1 0 x\n0 1 2\n0 0 1", "not a whitespace/comma-separated list of numbers"),
])
def test_malformed_intrinsics_files(tmp_path, rng, content, message):
    _write_frames(tmp_path / "v", 3, (20, 30), ".png", rng)
    (tmp_path / "v" / "000001.txt").write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
    assert "000001.txt" in str(info.value)


def test_bad_videos_fail_clearly(tmp_path, rng):
    _write_frames(tmp_path / "short", 2, (20, 30), ".png", rng)
    with pytest.raises(ValueError, match="video 'short' has 2 frame"):
        folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
    _write_frames(tmp_path / "short", 1, (20, 30), ".png", rng, names=["000002"])
    (tmp_path / "short" / "000003.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"unreadable image .*000003.png"):
        folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
    (tmp_path / "short" / "000003.png").unlink()
    _write_frames(tmp_path / "short", 1, (22, 30), ".png", rng, names=["000004"])
    with pytest.raises(ValueError, match="frames differ in size"):
        folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
    with pytest.raises(ValueError, match="not a directory"):
        folders.folder_sequences(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no video folders"):
        folders.folder_sequences(tmp_path / "short")


def test_truncated_image_fails_when_decoded(tmp_path, rng):
    _write_frames(tmp_path / "v", 3, (20, 30), ".png", rng)
    path = tmp_path / "v" / "000002.png"
    path.write_bytes(path.read_bytes()[:40])  # the header survives, the pixels do not
    ds = folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
    with pytest.raises(tf.errors.OpError, match=r"unreadable image .*000002.png"):
        _elements(ds)


def test_image_size_reads_png_and_jpeg_headers(tmp_path, rng):
    for ext in (".png", ".jpg"):
        _write_frames(tmp_path, 1, (13, 27), ext, rng, names=[f"x{ext[1:]}"])
        assert folders.image_size(tmp_path / f"x{ext[1:]}{ext}") == (13, 27)


@pytest.mark.parametrize("content, message", [
    ("0 0 0 0 0 0 0 0 0 0 0 0\n" * 2, "2 pose lines for 3 frames"),
    ("1 0 0 0 0 1 0 0 0 0 1 0\n" * 2 + "1 0 0\n", r"line 3: expected 12 numbers"),
])
def test_malformed_poses_file(tmp_path, rng, content, message):
    _write_frames(tmp_path / "v", 3, (20, 30), ".png", rng)
    (tmp_path / "v" / "poses.txt").write_text(content)
    with pytest.raises(ValueError, match=message):
        folders.folder_sequences(tmp_path, intrinsics=(1, 1, 0.5, 0.5))
