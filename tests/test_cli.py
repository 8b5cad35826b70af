"""End-to-end smoke test of the CLIs on a tiny synthetic dataset: train -> evaluate -> predict, and their errors."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import predict  # noqa: E402
import train  # noqa: E402

# The `trained_run` fixture (a 2-step run of train.py on a tiny synthetic set) lives in conftest.py.


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "run.json", "depth_net.keras", "pose_net.keras", "metrics.json"):
        assert (trained_run / name).is_file(), name
    assert json.loads((trained_run / "run.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir() if p.name != "checkpoint") == [
        "ckpt-2.data-00000-of-00001", "ckpt-2.index"]  # numbered by step; one complete checkpoint kept
    assert list((trained_run / "logs").rglob("events.out.tfevents*"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ate_mean"):
        assert np.isfinite(metrics[key]), key
    assert metrics["num_images"] == 5  # 1 test scene x 5 frames
    assert not list(trained_run.glob(".*tmp*"))  # atomic writes left no temporary files


def test_evaluate_writes_json(trained_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert evaluate.main(["--run-dir", str(trained_run), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "test" and 0 < metrics["abs_rel"] < 10
    assert json.loads(capsys.readouterr().out)["abs_rel"] == metrics["abs_rel"]


def test_predict_handles_files_folders_and_bad_inputs(trained_run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "a.png"), rng.integers(0, 255, (50, 77, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "b.jpg"), rng.integers(0, 255, (120, 90, 3), dtype=np.uint8))
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    (images / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])  # truncated: no end-of-image marker
    cv2.imwrite(str(images / "a_depth.png"), rng.integers(0, 65535, (50, 77), dtype=np.uint16))  # a depth map
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = predict.main(["--run-dir", str(trained_run), str(images), str(tmp_path / "missing.png"), "--out", str(out),
                         "--save", "png,npy,panel"])
    assert code == 1  # some inputs were skipped, the rest were processed
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    for name in ("broken.png", "missing.png", "cut.jpg", "a_depth.png"):
        assert sum(name in line for line in err) == 1, (name, err)  # one line naming each skipped input
    assert len(err) == 4
    depth_a, depth_b = np.load(out / "a.npy"), np.load(out / "b.npy")
    assert depth_a.shape == (50, 77) and depth_b.shape == (120, 90)  # the input's resolution
    assert np.all(depth_a > 0) and np.all(np.isfinite(depth_b))
    png = cv2.imread(str(out / "a.png"))
    assert png.shape[0] == 50 and png.shape[1] > 77  # colourised depth + colour bar
    assert cv2.imread(str(out / "a_panel.png")).shape[1] > 2 * 77
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.png", "a_panel.png", "b.npy", "b.png",
                                                     "b_panel.png"]
    assert predict.main(["--run-dir", str(trained_run), str(images / "a.png"), "--out", str(out / "a.npy")]) == 2


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert train.main(["--set", "data.heigth=64", "--run-dir", str(tmp_path / "r")]) == 2
    assert "heigth" in capsys.readouterr().err
    assert train.main(["--set", "data.height=100", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "data.height=100" in capsys.readouterr().err
    assert evaluate.main(["--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "train.py" in capsys.readouterr().err
