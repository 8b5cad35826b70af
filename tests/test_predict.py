"""predict.py (issue 10 items 6-7): every output option, images, folders, videos, float TIFFs, and every bad input a
new user meets; plus the tfdepth.viz pieces it writes (colour bar, 16-bit PNG, PLY).

The CLI runs on a real run directory (config.yaml + depth_net.keras) whose depth network is a small functional
Keras model with the depth net's output contract (``disp_0``, a sigmoid), so each call loads in a fraction of a
second; the ResNet depth net through the same code is covered by tests/test_inference.py and tests/test_cli.py.
Fixtures are written here: a truncated JPEG is the first half of a real JPEG's bytes, a "huge" PNG a valid IHDR
claiming 20000x20000 with a tiny body.
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tifffile

from tfdepth import viz
from tfdepth.config import load_config, save_config
from tfdepth.inference import DepthPredictor, depth_to_points

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import predict  # noqa: E402

H, W = 64, 192
REALDATA = ROOT.parent / "shared" / "realdata"
INTRINSICS = (0.58, 1.92, 0.5, 0.5)  # the run's normalised camera (fx/W, fy/H, cx/W, cy/H)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="elu")(image)
    disp = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="disp_0")(x)
    keras.Model(image, {"disp_0": disp}, name="small_depth_net").save(run / "depth_net.keras")
    config = load_config(None, [f"data.height={H}", f"data.width={W}", "data.dataset=folders",
                                f"data.intrinsics=[{', '.join(map(str, INTRINSICS))}]"])
    save_config(config, run / "config.yaml")
    return run


@pytest.fixture(scope="module")
def predictor(run_dir):
    return DepthPredictor.from_run_dir(run_dir)


def _photo(h, w, seed=0, channels=3, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / max(w, 1), y / max(h, 1), 0.5 + 0.5 * np.sin(x / 5.0)], -1)[..., :channels]
    top = np.iinfo(dtype).max
    return np.clip(base * top * 0.8 + rng.normal(0, top * 0.02, base.shape), 0, top).astype(dtype)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _fake_huge_png(path, width=20000, height=20000):
    """A valid PNG header claiming width x height RGB with a tiny (wrong) body: 74 bytes claiming 400 MP."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _png_chunk(b"IEND", b""))
    return path


def _run(run_dir, *args):
    return predict.main(["--run-dir", str(run_dir), *map(str, args)])


def test_every_output_option_for_one_image(run_dir, predictor, tmp_path, capsys):
    rgb = _photo(50, 77)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    out = tmp_path / "out"
    assert _run(run_dir, tmp_path / "a.png", "--out", out, "--save", "all") == 0
    assert "a.png ->" in capsys.readouterr().out
    expected = predictor.predict(rgb)
    depth = np.load(out / "a.npy")
    assert depth.dtype == np.float32 and depth.shape == (50, 77)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    # png: the colourised depth (same colours as viz.colorize_depth with the 2nd/98th percentile range) + colour bar.
    coloured = cv2.imread(str(out / "a.png"))[..., ::-1]
    assert coloured.shape[0] == 50 and coloured.shape[1] > 77 + 20
    np.testing.assert_array_equal(coloured[:, :77], viz.colorize_depth(depth))
    # png16 + its sidecar: value = round(depth * scale), relative depth normalised to 65535 at the farthest pixel.
    sidecar = json.loads((out / "a_depth16.json").read_text())
    assert sidecar["depth_kind"] == "relative" and sidecar["file"] == "a_depth16.png"
    assert sidecar["scale"] == pytest.approx(65535 / depth.max())
    values = cv2.imread(str(out / "a_depth16.png"), cv2.IMREAD_UNCHANGED)
    assert values.dtype == np.uint16 and values.max() == 65535
    np.testing.assert_allclose(values / sidecar["scale"], depth, atol=0.5 / sidecar["scale"] + 1e-7)
    # panel: RGB | depth | bar at the input's height.
    panel = cv2.imread(str(out / "a_panel.png"))[..., ::-1]
    np.testing.assert_array_equal(panel[:, :77], rgb)
    np.testing.assert_array_equal(panel[:, 81:81 + 77], viz.colorize_depth(depth))
    # ply: the run's normalised camera scaled to this image, back-projected through tfdepth.geometry.
    points, colors, comments = viz.read_ply(out / "a.ply")
    fx, fy, cx, cy = INTRINSICS
    K = np.array([[fx * 77, 0, cx * 77 - 0.5], [0, fy * 50, cy * 50 - 0.5], [0, 0, 1]])
    ref_points, ref_colors, _ = depth_to_points(depth, K, rgb)
    np.testing.assert_allclose(points, ref_points, rtol=1e-6)
    np.testing.assert_array_equal(colors, ref_colors)
    assert any("relative" in c for c in comments) and any("data.intrinsics" in c for c in comments)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a.npy", "a.png", "a_depth16.png", "a_depth16.json", "a_panel.png", "a.ply"])  # nothing temporary left
    # --intrinsics overrides the run's camera; the default --save is png + npy.
    out2 = tmp_path / "out2"
    assert _run(run_dir, tmp_path / "a.png", "--out", out2, "--save", "ply", "--intrinsics", "60,70,38,24.5") == 0
    points, _, _ = viz.read_ply(out2 / "a.ply")
    np.testing.assert_allclose(points, depth_to_points(depth, [[60, 0, 38], [0, 70, 24.5], [0, 0, 1]])[0], rtol=1e-6)
    out3 = tmp_path / "out3"
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb[..., ::-1])
    assert _run(run_dir, tmp_path / "a.png", tmp_path / "a.jpg", "--out", out3) == 0  # same stem: no overwrite
    assert sorted(p.name for p in out3.iterdir()) == ["a.npy", "a.png", "a_2.npy", "a_2.png"]


def test_progress_bar_redraws_in_place_on_a_terminal():
    class Terminal(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass

        def isatty(self):
            return True

    stream = Terminal()
    bar = predict.Progress(4, "images", stream=stream)
    for name in "abcd":
        bar.update(name)
    bar.clear()
    bar.close()
    drawn = [s for s in stream if s.startswith("\r") and "images [" in s]
    assert len(drawn) == 4 and "2/4  50%" in drawn[1] and "4/4 100%" in drawn[3]
    assert all("\n" not in s for s in drawn)  # redrawn on one line, not scrolled


def test_bad_inputs_each_get_one_line_and_the_rest_is_predicted(run_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "rgbd"
    folder.mkdir()
    ok, jpeg = cv2.imencode(".jpg", _photo(60, 80, 1))
    jpeg = jpeg.tobytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a download cut in the middle
    (folder / "whole.jpg").write_bytes(jpeg + b"trailer data after the end marker")  # fine: data after EOI
    cv2.imwrite(str(folder / "0001_depth.png"), _photo(40, 60, 2, channels=1, dtype=np.uint16))  # RGB-D depth map
    cv2.imwrite(str(folder / "0001_rgb.png"), _photo(40, 60, 3)[..., ::-1])
    cv2.imwrite(str(folder / "rgba.png"), _photo(40, 60, 4, channels=3)[..., ::-1])
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([_photo(40, 60, 4), np.full((40, 60), 128, np.uint8)]))
    cv2.imwrite(str(folder / "grey.png"), _photo(40, 60, 5, channels=1))
    cv2.imwrite(str(folder / "colour16.png"), _photo(40, 60, 6, dtype=np.uint16))
    cv2.imwrite(str(folder / "strip.png"), _photo(50, 2000, 7))  # 40:1 against the network's 3:1
    _fake_huge_png(folder / "bomb.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "clip.mp4").write_bytes(b"not really a video" * 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    decoded = []
    real_decode = predict.decode_image
    monkeypatch.setattr(predict, "decode_image", lambda path, header: decoded.append(path.name) or
                        real_decode(path, header))

    out = tmp_path / "out"
    code = _run(run_dir, folder, empty, tmp_path / "missing.jpg", "--out", out)
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    expect = [
        ("skipped", folder / "cut.jpg", "truncated JPEG (no end-of-image marker FFD9"),
        ("skipped", folder / "0001_depth.png", "16-bit single-channel image, a depth map rather than a photo; pass "
                                               "--include-non-photos"),
        ("skipped", folder / "bomb.png", "20000x20000 = 400.0 MP is over the limit of 50 MP (read from the header"),
        ("skipped", folder / "broken.png", "damaged PNG"),
        ("skipped", folder / "clip.mp4", "OpenCV cannot open this video"),
        ("skipped", empty, "no images or videos in this folder"),
        ("skipped", tmp_path / "missing.jpg", "no such file or folder"),
        ("warning:", folder / "strip.png", "aspect ratio 2000x50 (40:1) is 13.3x wider than the network's 192x64"),
    ]
    for kind, path, fragment in expect:
        found = [line for line in err if line.startswith(f"{kind} {path}: ")]
        assert len(found) == 1 and fragment in found[0], (path, err)
    assert sum(line.startswith("skipped") for line in err) == 7  # one line each, nothing else
    assert "bomb.png" not in decoded and "cut.jpg" not in decoded  # refused before decoding
    predicted = {"whole", "0001_rgb", "rgba", "grey", "colour16", "strip"}
    assert {p.stem for p in out.glob("*.npy")} == predicted
    assert np.load(out / "strip.npy").shape == (50, 2000) and np.load(out / "colour16.npy").shape == (40, 60)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files

    # The depth map is predicted when asked for; 16-bit colour equals its 8-bit version to rounding.
    out2 = tmp_path / "out2"
    assert _run(run_dir, folder / "0001_depth.png", "--out", out2, "--include-non-photos") == 0
    assert np.load(out2 / "0001_depth.npy").shape == (40, 60)
    # A higher --max-pixels lets a big (real) image through; a lower one refuses it.
    cv2.imwrite(str(tmp_path / "big.png"), _photo(300, 400, 8))
    assert _run(run_dir, tmp_path / "big.png", "--out", tmp_path / "out3", "--max-pixels", "100000") == 1
    assert "over the limit of 0.1 MP" in capsys.readouterr().err
    assert _run(run_dir, tmp_path / "big.png", "--out", tmp_path / "out3") == 0


def test_usage_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), _photo(20, 30))
    (tmp_path / "taken").write_text("a file")
    cases = [
        (["--out", tmp_path / "taken"], "--out {} is an existing file".format(tmp_path / "taken")),
        (["--out", tmp_path / "o", "--save", "png,jpeg"], "--save 'png,jpeg': choose from"),
        (["--out", tmp_path / "o", "--save", "ply", "--intrinsics", "1,2,3"], "give fx,fy,cx,cy"),
        (["--out", tmp_path / "o", "--every", "0"], "--every must be >= 1"),
    ]
    for extra, fragment in cases:
        assert _run(run_dir, image, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert predict.main(["--model", str(tmp_path / "nowhere"), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing created by a failed start
    # A run without a camera: --save ply asks for --intrinsics.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "depth_net.keras").write_bytes((run_dir / "depth_net.keras").read_bytes())
    save_config(load_config(None, [f"data.height={H}", f"data.width={W}", "data.dataset=folders"]),
                bare / "config.yaml")
    assert _run(bare, image, "--out", tmp_path / "o", "--save", "ply") == 2
    assert "--save ply needs the camera: pass --intrinsics" in capsys.readouterr().err


def test_jpeg_end_marker_check_is_not_fooled_by_an_embedded_thumbnail(tmp_path):
    """A cut JPEG whose EXIF thumbnail (inside APP1, before the image data) has its own FFD9: a search for FFD9
    anywhere in the file would call it whole."""
    ok, thumb = cv2.imencode(".jpg", _photo(8, 8, 1))
    ok, main = cv2.imencode(".jpg", _photo(64, 64, 2))
    thumb, main = thumb.tobytes(), main.tobytes()
    app1 = b"Exif\0\0" + thumb
    with_thumb = main[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + main[2:]
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(with_thumb)
    header = predict.read_header(whole)
    assert (header.format, header.width, header.height, header.channels, header.sample) == ("JPEG", 64, 64, 3,
                                                                                           "uint8")
    assert cv2.imread(str(whole)).shape == (64, 64, 3)  # a valid JPEG
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(with_thumb[: len(with_thumb) - 200])
    assert b"\xff\xd9" in cut.read_bytes()  # the thumbnail's end marker is still there
    with pytest.raises(predict.Skip, match="truncated JPEG"):
        predict.read_header(cut)


def test_headers_are_read_without_decoding(tmp_path):
    cases = {
        "a.png": (_photo(21, 33), "PNG", 3, "uint8"),
        "g.png": (_photo(21, 33, channels=1), "PNG", 1, "uint8"),
        "d.png": (_photo(21, 33, channels=1, dtype=np.uint16), "PNG", 1, "uint16"),
        "a.bmp": (_photo(21, 33), "BMP", 3, "uint8"),
        "a.ppm": (_photo(21, 33), "PNM", 3, "uint8"),
        "d.pgm": (_photo(21, 33, channels=1, dtype=np.uint16), "PNM", 1, "uint16"),
        "a.webp": (_photo(21, 33), "WEBP", 3, "uint8"),
    }
    for name, (image, fmt, channels, sample) in cases.items():
        assert cv2.imwrite(str(tmp_path / name), image), name
        header = predict.read_header(tmp_path / name)
        assert (header.format, header.width, header.height, header.channels, header.sample) == (
            fmt, 33, 21, channels, sample), name
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((21, 33, 3), np.float32))
    header = predict.read_header(tmp_path / "f.tif")
    assert (header.format, header.width, header.height, header.channels, header.sample) == ("TIFF", 33, 21, 3,
                                                                                           "float")
    assert predict.photo_problem(header) is None
    assert "float single-channel" in predict.photo_problem(predict.Header("TIFF", 5, 5, 1, "float"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(predict.Skip, match="not an image this tool reads"):
        predict.read_header(tmp_path / "x.txt")


@pytest.mark.skipif(not (REALDATA / "middlebury2003_cones_pandora").is_dir(), reason="needs ../shared/realdata")
def test_float_tiff_photos_are_read_and_float_disparity_is_skipped(run_dir, predictor, tmp_path, capsys):
    """Middlebury's float32 RGB TIFF holds 0..255: predicted like its uint8 rounding; its float disparity map is
    not a photo."""
    folder = REALDATA / "middlebury2003_cones_pandora"
    out = tmp_path / "out"
    assert _run(run_dir, folder / "cones_left_rgb.tif", folder / "cones_left_gt_disparity.tif", "--out", out) == 1
    assert "cones_left_gt_disparity.tif: float single-channel image" in capsys.readouterr().err
    rgb = tifffile.imread(folder / "cones_left_rgb.tif")
    depth = np.load(out / "cones_left_rgb.npy")
    assert depth.shape == rgb.shape[:2]
    np.testing.assert_allclose(depth, predictor.predict(np.round(rgb).astype(np.uint8)), rtol=1e-3)


def test_video_writes_a_depth_video_and_frames_with_a_progress_bar(run_dir, predictor, tmp_path, capsys):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    frames = [np.roll(_photo(64, 96, 1), 4 * i, axis=1) for i in range(7)]
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()
    out = tmp_path / "out"
    assert _run(run_dir, path, "--out", out, "--video-out", "both", "--every", "2", "--save", "npy") == 0
    captured = capsys.readouterr()
    assert "clip.mp4: [" in captured.err and "4/4 100%" in captured.err  # plain-text progress on stderr
    assert "4 frames of 96x64, every 2" in captured.out
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"{i:06d}.npy" for i in (0, 2, 4, 6)]
    capture = cv2.VideoCapture(str(out / "clip_depth.mp4"))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    assert len(decoded) == 4 and decoded[0].shape[0] == 64 and decoded[0].shape[1] > 96
    # Frame 2 as the video decoder gives it (mp4v is lossy) predicts like the saved depth of frame 2.
    reader = cv2.VideoCapture(str(path))
    for _ in range(3):
        ok, frame2 = reader.read()
    np.testing.assert_allclose(np.load(out / "clip" / "000002.npy"), predictor.predict(frame2[..., ::-1]), rtol=1e-5)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ viz pieces


def test_colorbar_shows_the_colours_of_the_depths_it_labels():
    lo, hi = 2.0, 20.0
    bar = viz.depth_colorbar(300, lo, hi, "depth (m)")
    assert bar.dtype == np.uint8 and bar.shape[0] == 300
    column = bar[:, bar.shape[1] // 8 + 2]  # crosses the title text, then the gradient
    coloured = np.concatenate([[False], (column != 255).any(-1), [False]])
    starts, ends = np.where(np.diff(coloured.astype(int)) == 1)[0], np.where(np.diff(coloured.astype(int)) == -1)[0]
    top, bottom = max(zip(starts, ends), key=lambda run: run[1] - run[0])  # the longest run is the bar
    bottom -= 1
    assert bottom - top > 200
    for frac in (0.0, 0.3, 0.7, 1.0):
        row = int(round(top + frac * (bottom - top)))
        level = 1.0 - (row - top) / (bottom - top)
        depth_at_row = 1.0 / (1.0 / hi + level * (1.0 / lo - 1.0 / hi))
        expected = viz.colorize_depth(np.array([[depth_at_row]]), vmin=lo, vmax=hi)[0, 0]
        assert np.abs(column[row].astype(int) - expected.astype(int)).max() <= 2, frac
    luma = column[top:bottom + 1].astype(float) @ [0.299, 0.587, 0.114]
    assert luma[0] > luma[-1] + 100  # near (top, vmin) bright, far dark, as the depth picture
    assert viz.depth_colorbar(40, None, None).shape[0] == 40  # nothing valid: drawn without ticks
    with pytest.raises(ValueError, match="depth_kind"):
        viz.depth_unit_label("metres")


def test_png16_scales_and_ply_round_trip(tmp_path):
    depth = np.array([[0.5, 80.0], [0.0, np.nan]], np.float32)
    assert viz.png16_scale(depth, "metric") == 256.0
    np.testing.assert_array_equal(viz.depth_to_png16(depth, 256.0), [[128, 20480], [0, 0]])
    assert viz.depth_to_png16(np.array([[300.0]]), 256.0)[0, 0] == 0  # does not fit 16 bits: "no depth", not 65535
    rel = viz.png16_scale(depth, "relative")
    assert rel == pytest.approx(65535 / 80.0) and viz.depth_to_png16(depth, rel)[0, 1] == 65535
    points = np.array([[0.0, 1.5, -2.0], [3.25, 4.0, 5.0]], np.float32)
    colors = np.array([[1, 2, 3], [250, 251, 252]], np.uint8)
    (tmp_path / "p.ply").write_bytes(viz.ply_bytes(points, colors, ["units metres"]))
    p, c, comments = viz.read_ply(tmp_path / "p.ply")
    np.testing.assert_array_equal(p, points)
    np.testing.assert_array_equal(c, colors)
    assert comments == ["units metres"]
    with pytest.raises(ValueError, match="colors"):
        viz.ply_bytes(points, colors[:1])
