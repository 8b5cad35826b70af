"""SDDR for users (tfdepth/refine.py, evaluate.py's high-resolution protocol): base maps from files and from a
tfdepth model, the refiner from a run directory, and evaluate.py on the real Middlebury 2003 Cones sample laid out
as a dense folder with precomputed base maps; every bad input is one clear error."""

import json
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

import evaluate as evaluate_cli
from tfdepth.config import load_config, save_config
from tfdepth.data.middlebury import write_pfm
from tfdepth.models import build_model
from tfdepth.refine import DepthRefiner, TfdepthBase, read_base_map, to_inverse_depth

CONES = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "middlebury2003_cones_pandora"


def test_depth_maps_are_inverted_and_disparity_kept():
    depth = np.array([[2.0, 4.0], [0.0, -1.0]], np.float32)
    np.testing.assert_allclose(to_inverse_depth(depth, "depth"), [[0.5, 0.25], [0.0, 0.0]])
    np.testing.assert_array_equal(to_inverse_depth(depth, "disparity"), depth)
    with pytest.raises(ValueError, match="my map has 1 non-finite"):
        to_inverse_depth(np.array([[1.0, np.nan]]), "depth", "my map")
    with pytest.raises(ValueError, match="kind must be one of"):
        to_inverse_depth(depth, "metres")


def test_base_map_files_in_every_format(tmp_path):
    disparity = np.linspace(1.0, 60.0, 12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", disparity)
    write_pfm(tmp_path / "a.pfm", disparity)
    cv2.imwrite(str(tmp_path / "a.png"), np.round(disparity * 256).astype(np.uint16))
    for name, scale in (("a.npy", 1.0), ("a.pfm", 1.0), ("a.png", 256.0)):
        np.testing.assert_allclose(read_base_map(tmp_path / name, "disparity", scale), disparity, atol=1 / 512)
    np.testing.assert_allclose(read_base_map(tmp_path / "a.npy", "depth"), 1.0 / disparity, rtol=1e-6)
    (tmp_path / "bad.pfm").write_bytes(b"PX\n4 3\n-1\n")
    with pytest.raises(ValueError, match="bad.pfm"):
        read_base_map(tmp_path / "bad.pfm")


@pytest.fixture(scope="module")
def sddr_run(tmp_path_factory):
    """An (untrained) SDDR run directory at 128x128 with one attention block."""
    run = tmp_path_factory.mktemp("sddr_run")
    config = load_config("configs/sddr_synthetic.yaml", ["data.height=128", "data.width=128",
                                                          "model.attention_blocks=1"])
    keras.utils.set_random_seed(0)
    net = build_model({"name": "sddr", "height": 128, "width": 128, "attention_blocks": 1})["sddr"]
    net.save(run / "sddr_net.keras")
    save_config(config, run / "config.yaml")
    return run


def test_refiner_from_a_run_and_its_errors(sddr_run, tmp_path):
    refiner = DepthRefiner.from_run_dir(sddr_run)
    assert (refiner.size, refiner.window_size) == (128, 128) and refiner.net.height is None
    y = np.linspace(0, 1, 96, dtype=np.float32)[:, None] * np.ones((1, 160), np.float32)
    out = refiner.refine(y, y, output_size=(96, 160))
    assert out.shape == (96, 160) and out.min() == 0.0 and out.max() == 1.0
    assert not refiner.refine(np.ones((8, 8)), np.ones((8, 8))).any()  # constant base: the documented 0 map
    with pytest.raises(ValueError, match="another aspect ratio"):
        refiner.refine(y, y[:, :80])
    with pytest.raises(ValueError, match="non-finite"):
        refiner.refine(np.full((8, 8), np.nan), y)
    with pytest.raises(ValueError, match="mode must be one of"):
        refiner.refine(y, y, mode="three_stage")
    with pytest.raises(ValueError, match="size=200 is not a multiple of 128"):
        DepthRefiner.from_run_dir(sddr_run, size=200)
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        DepthRefiner.from_run_dir(tmp_path)
    other = tmp_path / "rsn"
    other.mkdir()
    save_config(load_config("configs/rsn_synthetic.yaml"), other / "config.yaml")
    with pytest.raises(ValueError, match="is a rsn run, not an SDDR run"):
        DepthRefiner.from_run_dir(other)


def test_a_tfdepth_model_is_a_base_predictor_at_two_resolutions(tmp_path, sddr_run):
    config = load_config(None, ["name=tiny", "data.height=64", "data.width=96"])
    keras.utils.set_random_seed(0)
    build_model(config.model)["depth"].save(tmp_path / "depth_net.keras")
    save_config(config, tmp_path / "config.yaml")
    base = TfdepthBase(tmp_path, high_scale=2.0)
    assert base.low.network_size == (64, 96) and base.high.network_size == (128, 192)
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    low, high = base(image)
    assert low.shape == high.shape == (90, 120) and (low > 0).all() and (high > 0).all()
    np.testing.assert_allclose(low, 1.0 / base.low.predict(image), rtol=1e-5)  # inverse depth
    with pytest.raises(ValueError, match="is an SDDR run"):
        TfdepthBase(sddr_run)


def _cones_folder(tmp_path):
    """The real Cones pair as a dense folder, plus base maps: the truth blurred (low) and noisy (high)."""
    folder = tmp_path / "cones"
    (folder / "images").mkdir(parents=True)
    (folder / "disparity").mkdir()
    shutil.copy(CONES / "cones_left_rgb.tif", folder / "images" / "cones.tif")
    shutil.copy(CONES / "cones_left_gt_disparity.tif", folder / "disparity" / "cones.tif")
    from tfdepth.data.middlebury import read_map_file

    disparity = read_map_file(CONES / "cones_left_gt_disparity.tif")
    base = tmp_path / "base"
    base.mkdir()
    np.save(base / "cones_low.npy", cv2.GaussianBlur(disparity, (0, 0), 6.0))
    noisy = disparity + np.random.default_rng(0).normal(0, 0.5, disparity.shape).astype(np.float32)
    write_pfm(base / "cones_high.pfm", noisy)
    return folder, base


def test_evaluate_cli_on_the_real_cones_sample_with_precomputed_base_maps(sddr_run, tmp_path, capsys):
    assert CONES.is_dir(), f"the real Middlebury sample must lie beside the repository at {CONES}"
    folder, base = _cones_folder(tmp_path)
    out = tmp_path / "metrics.json"
    code = evaluate_cli.main(["--run-dir", str(sddr_run), "--dense-folder", str(folder), "--base-dir", str(base),
                              "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(out.read_text())
    assert metrics["frames"] == 1 and "files in" in metrics["base_predictor"]
    for name in ("base", "one_stage", "two_stage"):
        assert set(metrics[name]) == {"delta1", "rel", "ord", "d3r", "ord_rank"}
        assert all(np.isfinite(v) for v in metrics[name].values()), metrics[name]
    # The blurred truth as the base map: depth after the least-squares fit is close, edges are not perfect.
    assert metrics["base"]["delta1"] > 0.9 and metrics["base"]["d3r"] > 0.0

    (base / "cones_high.pfm").unlink()
    assert evaluate_cli.main(["--run-dir", str(sddr_run), "--dense-folder", str(folder), "--base-dir",
                              str(base)]) == 2
    assert "no base map" in capsys.readouterr().err
    assert evaluate_cli.main(["--run-dir", str(sddr_run), "--dense-folder", str(folder)]) == 2
    assert "exactly one base predictor" in capsys.readouterr().err


def test_predict_cli_refines_an_image_with_base_map_files(sddr_run, tmp_path, capsys):
    import predict as predict_cli

    image = np.zeros((60, 80, 3), np.uint8)
    image[:, 40:] = 200
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    disparity = np.where(np.arange(80)[None, :] < 40, 0.2, 0.8) * np.ones((60, 1), np.float32)
    np.save(tmp_path / "low.npy", cv2.GaussianBlur(disparity.astype(np.float32), (0, 0), 3.0))
    np.save(tmp_path / "high.npy", disparity.astype(np.float32))
    out = tmp_path / "out"
    code = predict_cli.main(["--run-dir", str(sddr_run), str(tmp_path / "photo.png"), "--out", str(out),
                             "--base-low", str(tmp_path / "low.npy"), "--base-high", str(tmp_path / "high.npy"),
                             "--refine-mode", "one_stage"])
    assert code == 0, capsys.readouterr().err
    refined = np.load(out / "photo_refined.npy")
    assert refined.shape == (60, 80) and refined.dtype == np.float32 and refined.min() == 0 and refined.max() == 1
    png16 = cv2.imread(str(out / "photo_refined16.png"), cv2.IMREAD_UNCHANGED)
    assert png16.dtype == np.uint16 and png16.shape == (60, 80)
    np.testing.assert_array_equal(png16, np.round(refined * 65535).astype(np.uint16))
    panel = cv2.imread(str(out / "photo_refined_panel.png"))
    assert panel.shape == (60, 3 * 80 + 2 * 4, 3)

    # Bad input: one line naming the option, exit 2, nothing written.
    for argv, message in (
            ([], "give exactly one of --base-model"),
            (["--base-low", str(tmp_path / "low.npy")], "--base-low and --base-high go together"),
            (["--base-low", str(tmp_path / "missing.npy"), "--base-high", str(tmp_path / "high.npy")],
             "missing.npy does not exist")):
        capsys.readouterr()
        assert predict_cli.main(["--run-dir", str(sddr_run), str(tmp_path / "photo.png"),
                                 "--out", str(tmp_path / "o2")] + argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()


def test_evaluate_cli_on_a_middlebury_2021_scene_with_both_views(sddr_run, tmp_path, capsys):
    """A fixture scene in the Middlebury 2021 layout (im0/im1.png, disp0/disp1.pfm, calib.txt): both views are
    evaluated, with their base maps found by the element names <scene>_l and <scene>_r."""
    scene = tmp_path / "mid" / "artroom1"
    scene.mkdir(parents=True)
    base = tmp_path / "base"
    base.mkdir()
    y, x = np.mgrid[0:64, 0:96]
    # Three depths (far ramp, a middle box, a near box): Boost's D3R leaves the nearest depth out, so two are needed.
    disparity = (20.0 + 10.0 * y / 64 + 25.0 * ((np.abs(x - 30) < 14) & (np.abs(y - 32) < 14))
                 + 50.0 * ((np.abs(x - 72) < 12) & (np.abs(y - 32) < 12))).astype(np.float32)
    for view, side in ((0, "l"), (1, "r")):
        cv2.imwrite(str(scene / f"im{view}.png"), np.stack([disparity * 3] * 3, -1).clip(0, 255).astype(np.uint8))
        write_pfm(scene / f"disp{view}.pfm", disparity)
        np.save(base / f"artroom1_{side}_low.npy", cv2.GaussianBlur(disparity, (0, 0), 3.0))
        np.save(base / f"artroom1_{side}_high.npy", disparity)
    (scene / "calib.txt").write_text("cam0=[100 0 48; 0 100 32; 0 0 1]\ncam1=[100 0 48; 0 100 32; 0 0 1]\n"
                                     "doffs=5\nbaseline=170\nwidth=96\nheight=64\nndisp=100\n")
    out = tmp_path / "metrics.json"
    code = evaluate_cli.main(["--run-dir", str(sddr_run), "--middlebury", str(tmp_path / "mid"), "--base-dir",
                              str(base), "--output", str(out), "--superpixel-scale", "1"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(out.read_text())
    assert metrics["frames"] == 2 and "superpixels at scale 1" in metrics["protocol"]
    assert all(np.isfinite(v) for name in ("base", "one_stage", "two_stage") for v in metrics[name].values())


def test_a_metric_undefined_on_an_image_is_left_out_of_its_mean_never_nan():
    from tfdepth.recipes.sddr import mean_metrics

    rows = [{"d3r": 0.2, "ord": float("nan")}, {"d3r": float("nan"), "ord": float("nan")}, {"d3r": 0.4, "ord": float("nan")}]
    assert mean_metrics(rows) == {"d3r": pytest.approx(0.3), "ord": None, "undefined": {"d3r": 1, "ord": 3}}
    assert mean_metrics([{"d3r": 0.5}]) == {"d3r": 0.5}
