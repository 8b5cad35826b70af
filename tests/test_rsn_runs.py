"""RSN through the one runner and the CLIs at a tiny size (reduced widths, 24x32 rooms): the four stages run in order
into ``stages/<n>_<stage>/``, the refinement stage starts from the generation module's weights, a run stopped
between stages resumes in the right stage with the weights of an uninterrupted run, ``evaluate.py`` reports the NYU
protocol (with the generation-only and ground-truth-support variants) on the synthetic rooms and on a fixture NYU
``.mat``, ``predict.py`` writes metric depth in metres, and the run exports with parity. Config errors first.

Marked slow (``pytest -m slow``; CI runs ``-m 'not slow'``): about 7 minutes on a loaded 2-core machine, most of it
tracing the RSN graphs of the four stages; tests/test_train_rsn.py covers the trainer in CI."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import nyu_fixture_frames, write_nyu_mat
from tfdepth.config import ConfigError, load_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import predict  # noqa: E402
import train  # noqa: E402

RSN_CONFIG = ROOT / "configs" / "rsn_synthetic.yaml"
TINY_RSN = [
    "data.render_height=24", "data.render_width=32", "data.height=24", "data.width=32",
    "data.train_scenes=2", "data.validation_scenes=1", "data.test_scenes=1", "data.frames_per_scene=3",
    "data.batch_size=2", "model.width_multiplier=0.0625", "model.grid=relative", "loss.stage_epochs=[1,1,1,1]",
    "train.epochs=4", "train.steps_per_epoch=1", "train.validation_steps=1", "train.log_images=true",
    "train.deterministic=true",
]


def tiny_args(run_dir, data_dir, *extra):
    args = ["--config", str(RSN_CONFIG), "--run-dir", str(run_dir), "--set", f"data.data_dir={data_dir}"]
    for item in TINY_RSN + list(extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def rsn_run(tmp_path_factory, tiny_data_dir):
    run_dir = tmp_path_factory.mktemp("rsn") / "run"
    assert train.main(tiny_args(run_dir, tiny_data_dir)) == 0
    return run_dir


# ------------------------------------------------------------------------------------------------ config
def test_shipped_configs_load_and_are_consistent():
    for name in ("rsn_synthetic.yaml", "rsn_nyu.yaml"):
        config = load_config(ROOT / "configs" / name)
        assert config.model.name == "rsn" and config.train.epochs == sum(config.loss.stage_epochs)
        assert not config.eval.median_scaling and config.eval.max_depth == 10.0
    nyu = load_config(ROOT / "configs" / "rsn_nyu.yaml")  # the authors' optimiser; the CPU recipe uses Adam
    assert nyu.train.optimizer == "sgd" and nyu.train.momentum == 0.99 and nyu.train.weight_decay == 5e-4


def test_config_errors_name_the_key(tmp_path):
    from tfdepth.experiment import RunError, run_training

    with pytest.raises(ConfigError, match="loss.stage_epochs"):
        load_config(RSN_CONFIG, ["loss.stage_epochs=[1,2]"])
    with pytest.raises(ConfigError, match="loss.region_labels"):
        load_config(RSN_CONFIG, ["loss.region_labels=semantic40"])
    with pytest.raises(RunError, match=r"train.epochs=4"):
        run_training(load_config(RSN_CONFIG, TINY_RSN + ["train.epochs=3"]), tmp_path / "a")
    with pytest.raises(RunError, match="region_labels='semantic_raw' exists only in NYU"):
        run_training(load_config(RSN_CONFIG, TINY_RSN + ["loss.region_labels=semantic_raw"]), tmp_path / "b")
    with pytest.raises(RunError, match="model.iterations is 2"):
        run_training(load_config(RSN_CONFIG, TINY_RSN + ["model.iterations=2"]), tmp_path / "c")
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ------------------------------------------------------------------------------------------------ runs
def test_stages_run_in_order_and_the_run_holds_its_files(rsn_run):
    plan = json.loads((rsn_run / "run.json").read_text())
    assert plan["status"] == "complete" and plan["total_steps"] == 4
    assert plan["stages"] == [["generation_linear", 1], ["generation_log", 1], ["refinement", 1], ["joint", 1]]
    stages = sorted(p.name for p in (rsn_run / "stages").iterdir())
    assert stages == ["1_generation_linear", "2_generation_log", "3_refinement", "4_joint"]
    for stage in stages:
        assert list((rsn_run / "stages" / stage / "checkpoints").glob("ckpt-1.index")), stage
    assert (rsn_run / "rsn_net.keras").is_file() and not (rsn_run / "checkpoints").exists()
    metrics = json.loads((rsn_run / "metrics.json").read_text())
    for block in (metrics, metrics["generation"], metrics["gt_support"]):
        assert {"rmse", "abs_rel", "log10", "rmse_log", "a1", "a2", "a3"} <= set(block)
        assert np.isfinite(block["rmse"]) and block["num_images"] == 3
    assert "no median scaling" in metrics["protocol"]


def test_rerun_of_a_complete_run_trains_nothing(rsn_run, tiny_data_dir, capsys):
    before = (rsn_run / "rsn_net.keras").stat().st_mtime_ns
    assert train.main(tiny_args(rsn_run, tiny_data_dir)) == 0
    assert "complete" in capsys.readouterr().out
    assert (rsn_run / "rsn_net.keras").stat().st_mtime_ns == before


def test_a_run_stopped_between_stages_resumes_in_the_next_stage_from_the_same_weights(tiny_data_dir, tmp_path,
                                                                                   monkeypatch):
    """Killed at the start of the refinement stage, then rerun: the generation stages are not trained again and
    the refinement stage starts from exactly the weights the killed process had reached (restored from the stage
    checkpoints). Bit-identical whole runs across processes are tests/test_resume_kill.py's (same runner)."""
    from tfdepth.recipes.rsn import RsnRecipe

    run_dir = tmp_path / "stopped"
    started, weights_at_refinement = [], []
    original = RsnRecipe.start_stage

    def stop_before_refinement(self, trainer, config, stage, log=print):
        started.append(stage)
        if stage == "refinement":
            weights_at_refinement.append([w.copy() for w in trainer.rsn.get_weights()])
            if len(weights_at_refinement) == 1:
                raise KeyboardInterrupt("killed before the refinement stage")
        return original(self, trainer, config, stage, log=log)

    monkeypatch.setattr(RsnRecipe, "start_stage", stop_before_refinement)
    # Two stages, no validation: the fewest graphs to trace (this test's cost is tracing).
    short = ["loss.stage_epochs=[0,1,1,0]", "train.epochs=2", "train.validation_steps=0"]
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_args(run_dir, tiny_data_dir, *short) + ["--no-eval"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "training"
    assert train.main(tiny_args(run_dir, tiny_data_dir, *short) + ["--no-eval"]) == 0
    assert started == ["generation_log", "refinement", "refinement"]
    killed, resumed = weights_at_refinement
    for a, b in zip(killed, resumed):
        np.testing.assert_array_equal(a, b)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_evaluate_cli_on_the_run(rsn_run, tmp_path):
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--run-dir", str(rsn_run), "--output", str(out)]) == 0
    again = json.loads(out.read_text())
    stored = json.loads((rsn_run / "metrics.json").read_text())
    assert again["rmse"] == pytest.approx(stored["rmse"], rel=1e-6)
    assert again["gt_support"]["rmse"] == pytest.approx(stored["gt_support"]["rmse"], rel=1e-6)


def test_predict_writes_metric_depth_in_metres(rsn_run, tmp_path):
    import cv2

    from tfdepth.inference import DepthPredictor

    image = (np.random.default_rng(3).uniform(0, 255, (30, 40, 3))).astype(np.uint8)
    photo = tmp_path / "room.png"
    cv2.imwrite(str(photo), image[..., ::-1])
    out_dir = tmp_path / "out"
    assert predict.main(["--run-dir", str(rsn_run), str(photo), "--out", str(out_dir)]) == 0
    saved = np.load(out_dir / "room.npy")
    assert saved.shape == (30, 40)
    predictor = DepthPredictor.from_run_dir(rsn_run)
    assert predictor.depth_kind == "metric"
    np.testing.assert_allclose(saved, predictor.predict(image), rtol=1e-5, atol=1e-6)


def test_export_with_parity(rsn_run, tmp_path):
    """The export CLI on the run's own test rooms (with ground truth): SavedModel and float32 TFLite."""
    import export as export_cli

    out = tmp_path / "exports"
    assert export_cli.main(["--run-dir", str(rsn_run), "--format", "saved_model", "--output", str(out),
                            "--parity-frames", "2"]) == 0
    version = next((out / "rsn_synthetic").iterdir())
    meta = json.loads((version / "assets.extra" / "metadata.json").read_text())
    assert meta["family"] == "rsn" and meta["depth_kind"] == "metric"
    report = json.loads((version / "assets.extra" / "parity.json").read_text())
    assert report["passed"] and all(f["ground_truth"] for f in report["frames"])
    for name, entry in report["signatures"].items():
        assert entry["max_abs_diff_rel"] <= 1e-4, name
    assert export_cli.main(["--run-dir", str(rsn_run), "--format", "tflite", "--quantize", "none", "--output",
                            str(out / "rsn.tflite"), "--parity-frames", "2"]) == 0
    tflite_report = json.loads((out / "rsn.parity.json").read_text())
    assert tflite_report["passed"], tflite_report["summary"]


# ------------------------------------------------------------------------------------------------ NYU
def test_evaluate_on_a_fixture_nyu_mat(tmp_path, rsn_run, monkeypatch):
    """The NYU builder on a fixture .mat in the on-disk layout, then evaluate.py's NYU protocol on it."""
    from tfdepth.data import depth_images, nyu

    manual = tmp_path / "manual"
    manual.mkdir()
    write_nyu_mat(manual / nyu.MAT_FILE_NAME, *nyu_fixture_frames(4, H=24, W=32))
    builder = nyu.build_nyu(manual_dir=manual, data_dir=tmp_path / "tfds",
                            config=nyu.make_config("rsn_fixture", (1, 3), (2, 4), height=24, width=32))
    # The official config needs all 1449 frames; the fixture is read through the same builder class.
    monkeypatch.setattr(depth_images, "nyu_builder", lambda data_config: builder)
    run_dir = tmp_path / "nyu_run"
    run_dir.mkdir()
    for name in ("rsn_net.keras", "run.json"):
        (run_dir / name).write_bytes((rsn_run / name).read_bytes())
    config = load_config(rsn_run / "config.yaml", ["data.dataset=nyu", "loss.region_labels=semantic_raw",
                                                   "eval.crop=eigen_nyu"])
    from tfdepth.config import save_config

    save_config(config, run_dir / "config.yaml")
    out = tmp_path / "nyu_metrics.json"
    assert evaluate.main(["--run-dir", str(run_dir), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 2 and metrics["gt_support"]["num_images"] == 2
    assert "crop eigen_nyu" in metrics["protocol"]
