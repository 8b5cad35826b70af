"""Run directories through train.py: refusal of a different config, completed and killed runs, values rejected before
any work, training on a user's folders without ground truth."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402


def snapshot(directory):
    """path -> (size, mtime_ns) of every file below ``directory``."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(directory).rglob("*") if p.is_file()}


def test_a_different_config_is_refused_before_anything_is_touched(trained_run, tiny_data_dir, tiny_run, capsys):
    before = snapshot(trained_run)
    args = tiny_run.args(trained_run, tiny_data_dir, "data.height=128", "train.learning_rate=3e-4") + ["--steps", "2"]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "data.height" in err and "train.learning_rate" in err and "--run-dir" in err, err
    assert len(err.splitlines()) == 1
    assert snapshot(trained_run) == before  # config.yaml, weights, logs: nothing rewritten


def test_a_finished_run_says_it_is_complete(trained_run, tiny_data_dir, tiny_run, capsys):
    before = snapshot(trained_run)
    assert train.main(tiny_run.args(trained_run, tiny_data_dir) + ["--steps", "2"]) == 0
    assert "is complete" in capsys.readouterr().out
    assert snapshot(trained_run) == before


def test_another_step_plan_is_refused(trained_run, tiny_data_dir, tiny_run, capsys):
    assert train.main(tiny_run.args(trained_run, tiny_data_dir) + ["--steps", "1"]) == 2
    assert "--steps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=-3", "train.epochs"),
        ("train.precision=float64", "train.precision"),
        ("train.on_nonfinite=ignore", "train.on_nonfinite"),
        ("data.intrinsics=[.inf, 1.9, 0.5, 0.5]", "data.intrinsics"),
        ("data.intrinsics=[.nan, 1.9, 0.5, 0.5]", "data.intrinsics"),
        ("data.height=100", "data.height"),
        ("train.strategy=multi_worker", "TF_CONFIG"),
    ],
)
def test_bad_values_fail_before_any_work(tmp_path, tiny_data_dir, tiny_run, capsys, override, key, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    run_dir = tmp_path / "run"
    assert train.main(tiny_run.args(run_dir, tiny_data_dir, override)) == 2
    err = capsys.readouterr().err.strip()
    assert key in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()  # no stray config.yaml


def test_malformed_tf_config_is_one_line(tmp_path, tiny_data_dir, tiny_run, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 4}}')
    assert train.main(tiny_run.args(tmp_path / "r", tiny_data_dir, "train.strategy=multi_worker")) == 2
    assert "task.index" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert train.main(tiny_run.args(tmp_path / "r", tiny_data_dir, "train.strategy=multi_worker")) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_mirrored_with_more_gpus_than_present_is_refused(tmp_path, tiny_data_dir, tiny_run, capsys):
    assert train.main(tiny_run.args(tmp_path / "r", tiny_data_dir, "train.strategy=mirrored", "train.gpus=4")) == 2
    err = capsys.readouterr().err
    assert "train.gpus=4" in err and "0 GPU" in err


def _write_folder_videos(root, frames=5, height=64, width=192):
    """A user's videos without depth maps: root/<split>/<video>/000000.png ..., one intrinsics.txt each."""
    from tfdepth.data.synthetic import render_sequence

    for i, split in enumerate(("train", "train", "validation", "test")):
        seq = render_sequence("street", 100 + i, frames, height, width)
        folder = root / split / f"walk{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for f, image in enumerate(seq["image"]):
            cv2.imwrite(str(folder / f"{f:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        np.savetxt(folder / "intrinsics.txt", seq["intrinsics"][:3, :3])


def test_training_on_folders_without_ground_truth_claims_no_depth_metric(tmp_path, tiny_run, capsys):
    root = tmp_path / "videos"
    _write_folder_videos(root)
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), "--steps", "2", "--set", "data.dataset=folders", "--set", f"data.root={root}"]
    for item in ("data.height=64", "data.width=192", "data.batch_size=2", "train.validation_steps=1",
                 "train.epochs=1"):
        args += ["--set", item]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "depth evaluation skipped" in out and "no ground-truth depth" in out
    assert "abs_rel" not in out  # neither monitored in validation nor reported
    assert not (run_dir / "metrics.json").exists()
    assert (run_dir / "depth_net.keras").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
