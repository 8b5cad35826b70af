"""High-resolution evaluation data (tfdepth.data.middlebury): PFM reading/writing and its errors, the Middlebury 2021
scene layout on a fixture written here, the generic image + dense map folders, and the real Middlebury 2003 Cones
sample from the shared data."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tfdepth.data.middlebury import (
    disparity_to_depth,
    list_middlebury_scenes,
    load_dense_folder,
    load_image_and_map,
    load_middlebury_scene,
    parse_calib,
    read_pfm,
    write_pfm,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONES = SHARED / "realdata" / "middlebury2003_cones_pandora"


def test_pfm_round_trip_both_byte_orders_and_channel_counts(tmp_path, rng):
    grey = rng.random((5, 7)).astype(np.float32)
    grey[1, 2] = np.inf  # Middlebury's "no disparity"
    colour = rng.random((4, 3, 3)).astype(np.float32)
    for little in (True, False):
        write_pfm(tmp_path / "g.pfm", grey, little_endian=little)
        write_pfm(tmp_path / "c.pfm", colour, little_endian=little)
        np.testing.assert_array_equal(read_pfm(tmp_path / "g.pfm"), grey)
        np.testing.assert_array_equal(read_pfm(tmp_path / "c.pfm"), colour)
    # Rows are stored bottom to top: the first data row of the file is the image's last row.
    raw = (tmp_path / "g.pfm").read_bytes()
    header_end = raw.index(b"1.0\n") + 4
    first = np.frombuffer(raw[header_end:header_end + 28], dtype=">f4")
    np.testing.assert_array_equal(first, grey[-1])


def test_pfm_errors_name_the_file(tmp_path):
    cases = {
        "magic.pfm": b"P6\n2 2\n-1.0\n" + bytes(16),
        "size.pfm": b"Pf\n2 x\n-1.0\n" + bytes(16),
        "scale.pfm": b"Pf\n2 2\nabc\n" + bytes(16),
        "short.pfm": b"Pf\n2 2\n-1.0\n" + bytes(12),
        "empty.pfm": b"",
    }
    messages = {"magic.pfm": "not a PFM file", "size.pfm": "size line", "scale.pfm": "scale line",
                "short.pfm": "truncated PFM data", "empty.pfm": "truncated PFM header"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=messages[name]) as info:
            read_pfm(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_pfm(tmp_path / "missing.pfm")


def _write_scene(root, name="artroom1", size=(6, 8)):
    scene = root / name
    scene.mkdir(parents=True)
    h, w = size
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 200  # red in RGB -> stored BGR by OpenCV
    cv2.imwrite(str(scene / "im0.png"), image[..., ::-1])
    disp = np.full((h, w), 90.0, np.float32)
    disp[0, 0] = np.inf
    disp[1, 1] = -10.0  # disparity + doffs = 0: invalid too
    write_pfm(scene / "disp0.pfm", disp)
    (scene / "calib.txt").write_text(
        "cam0=[1000 0 4; 0 1000 3; 0 0 1]\ncam1=[1000 0 5; 0 1000 3; 0 0 1]\ndoffs=10\nbaseline=100\n"
        f"width={w}\nheight={h}\nndisp=290\nvmin=10\nvmax=200\n")
    return scene


def test_middlebury_scene_depth_and_validity(tmp_path):
    scene = _write_scene(tmp_path)
    element = load_middlebury_scene(scene)
    # depth = f * baseline / (d + doffs) = 1000 * 100 mm / (90 + 10) = 1000 mm = 1 m
    assert element["depth"][2, 3] == pytest.approx(1.0)
    assert not element["valid"][0, 0] and not element["valid"][1, 1] and element["valid"].sum() == 46
    assert element["depth"][0, 0] == 0.0 and element["disparity"][0, 0] == 0.0
    assert element["image"].shape == (6, 8, 3) and element["image"][0, 0, 0] == pytest.approx(200 / 255)
    assert element["name"] == "artroom1_l" and element["calib"]["ndisp"] == 290
    assert list_middlebury_scenes(tmp_path) == [scene]
    depth, valid = disparity_to_depth(np.array([[0.0, 20.0]]), focal=50.0, baseline=2.0, doffs=0.0)
    np.testing.assert_allclose(depth, [[0.0, 5.0]])
    np.testing.assert_array_equal(valid, [[False, True]])


def test_middlebury_layout_errors(tmp_path):
    scene = _write_scene(tmp_path)
    (scene / "calib.txt").write_text("cam0=[1 0 0; 0 1 0]\nbaseline=1\ndoffs=0\n")
    with pytest.raises(ValueError, match="3x3"):
        parse_calib(scene / "calib.txt")
    (scene / "calib.txt").write_text("baseline=1\n")
    with pytest.raises(ValueError, match="cam0"):
        load_middlebury_scene(scene)
    (scene / "disp0.pfm").unlink()
    with pytest.raises(FileNotFoundError, match="disp0.pfm"):
        load_middlebury_scene(scene)
    with pytest.raises(FileNotFoundError, match="no Middlebury 2021 scene"):
        list_middlebury_scenes(tmp_path)


def test_generic_folder_with_every_map_format(tmp_path, rng):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "disparity").mkdir()
    maps = {}
    for stem, ext in (("a", ".npy"), ("b", ".pfm"), ("c", ".png")):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), (rng.random((4, 5, 3)) * 255).astype(np.uint8))
        values = (rng.random((4, 5)) * 50 + 1).astype(np.float32)
        values[0, 0] = 0.0  # no data
        if ext == ".npy":
            np.save(root / "disparity" / "a.npy", values)
        elif ext == ".pfm":
            write_pfm(root / "disparity" / "b.pfm", values)
        else:
            values = np.round(values * 256) / 256
            cv2.imwrite(str(root / "disparity" / "c.png"), (values * 256).astype(np.uint16))
        maps[stem] = values
    elements = load_dense_folder(root, png_scale=256.0)
    assert [e["name"] for e in elements] == ["a", "b", "c"]
    for element in elements:
        np.testing.assert_allclose(element["disparity"], maps[element["name"]], atol=1e-6)
        assert "depth" not in element and not element["valid"][0, 0] and element["valid"].sum() == 19
    (root / "depth").mkdir()
    with pytest.raises(ValueError, match="exactly one of depth/ and disparity/"):
        load_dense_folder(root)
    (root / "depth").rmdir()
    (root / "disparity" / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match="c.png has no disparity map"):
        load_dense_folder(root)
    np.save(tmp_path / "small.npy", np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="image's size"):
        load_image_and_map(root / "images" / "a.png", tmp_path / "small.npy", "depth")


def test_real_middlebury_2003_cones_sample():
    assert CONES.is_dir(), f"the real Middlebury sample must lie beside the repository at {CONES}"
    element = load_image_and_map(CONES / "cones_left_rgb.tif", CONES / "cones_left_gt_disparity.tif",
                                 kind="disparity")
    image, disp, valid = element["image"], element["disparity"], element["valid"]
    assert image.shape == (375, 450, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.9  # 0..255 float TIFF -> [0, 1]
    # SOURCE.txt: positive disparity in pixels, 0..55 in 0.25 px steps, 0 = unknown on 3.2 % of the pixels.
    assert disp.shape == (375, 450)
    assert abs((~valid).mean() - 0.032) < 0.001
    assert disp[valid].min() > 0 and disp.max() == 55.0
    np.testing.assert_array_equal(np.mod(disp[valid] * 4, 1), 0.0)
