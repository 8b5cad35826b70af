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

TINY = [
    "data.render_height=64", "data.render_width=192", "data.height=64", "data.width=192",
    "data.train_scenes=2", "data.validation_scenes=1", "data.test_scenes=1", "data.frames_per_scene=5",
    "data.batch_size=2", "train.validation_steps=1", "train.epochs=1",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    run_dir = base / "run"
    args = ["--run-dir", str(run_dir), "--steps", "2", "--set", f"data.data_dir={base / 'tfds'}"]
    for item in TINY:
        args += ["--set", item]
    assert train.main(args) == 0
    return run_dir


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "depth_net.keras", "pose_net.keras", "metrics.json"):
        assert (trained_run / name).is_file(), name
    assert list((trained_run / "checkpoints").glob("ckpt-1*"))
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
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = predict.main(["--run-dir", str(trained_run), str(images), str(tmp_path / "missing.png"), "--out", str(out)])
    assert code == 1  # some inputs failed, the rest were processed
    err = capsys.readouterr().err
    assert "broken.png" in err and "missing.png" in err
    depth_a, depth_b = np.load(out / "a.npy"), np.load(out / "b.npy")
    assert depth_a.shape == (50, 77) and depth_b.shape == (120, 90)  # the input's resolution
    assert np.all(depth_a > 0) and np.all(np.isfinite(depth_b))
    assert cv2.imread(str(out / "a.png")).shape == (50, 77, 3)


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert train.main(["--set", "data.heigth=64", "--run-dir", str(tmp_path / "r")]) == 2
    assert "heigth" in capsys.readouterr().err
    assert train.main(["--set", "data.height=100", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "data.height=100" in capsys.readouterr().err
    assert evaluate.main(["--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "train.py" in capsys.readouterr().err
