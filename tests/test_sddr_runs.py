"""SDDR through the one runner and the CLIs at its smallest size (N_r at 128x128 on rooms rendered at 256x256): the
two stages (L_gt, then self-distillation with labels made in the train step) run into ``stages/<n>_<stage>/`` and
lower their losses' first values, ``evaluate.py`` reports base / one-stage / two-stage with the edge metrics on the
synthetic test split, ``predict.py`` refines a tfdepth model's depth (a tiny self-supervised run as the base
predictor) and the run exports (SavedModel and TFLite, base maps as inputs) with parity.

Marked slow (``pytest -m slow``; CI runs ``-m 'not slow'``): tracing N_r's train step takes about 100 s per stage
on a 2-core CPU; tests/test_train_sddr.py checks the trainer's losses and the batches in CI."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import predict  # noqa: E402
import train  # noqa: E402

TINY_SDDR = [
    "data.render_height=256", "data.render_width=256", "data.height=128", "data.width=128",
    "data.train_scenes=2", "data.validation_scenes=1", "data.test_scenes=1", "data.batch_size=2",
    "loss.base_low_size=32", "loss.base_high_size=256", "loss.distill_iterations=1", "model.attention_blocks=1",
    "train.epochs=2", "train.steps_per_epoch=2", "train.validation_steps=1", "train.checkpoint_every_steps=0",
]


@pytest.fixture(scope="module")
def sddr_run(tmp_path_factory, tiny_data_dir):
    run_dir = tmp_path_factory.mktemp("sddr") / "run"
    args = ["--config", str(ROOT / "configs" / "sddr_synthetic.yaml"), "--run-dir", str(run_dir), "--no-eval",
            "--set", f"data.data_dir={tiny_data_dir}"]
    for item in TINY_SDDR:
        args += ["--set", item]
    assert train.main(args) == 0
    return run_dir


def test_two_stages_run_in_order_and_save_the_network(sddr_run):
    stages = sorted(p.name for p in (sddr_run / "stages").iterdir())
    assert stages == ["1_supervised", "2_self_distillation"]
    assert (sddr_run / "sddr_net.keras").is_file() and (sddr_run / "config.yaml").is_file()


def test_evaluate_reports_base_and_both_refinements(sddr_run, tmp_path):
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--run-dir", str(sddr_run), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["frames"] == 3  # 1 test scene x 3 frames
    for name in ("base", "one_stage", "two_stage"):
        assert set(metrics[name]) == {"delta1", "rel", "ord", "d3r", "ord_rank"}
        assert all(np.isfinite(v) for v in metrics[name].values())
    assert "Boost" in metrics["protocol"]


def test_predict_refines_a_tfdepth_models_depth(sddr_run, tmp_path):
    import keras

    from tfdepth.config import load_config, save_config
    from tfdepth.models import build_model

    base = tmp_path / "base_run"
    base.mkdir()
    config = load_config(None, ["name=tiny", "data.height=64", "data.width=64"])
    keras.utils.set_random_seed(0)
    build_model(config.model)["depth"].save(base / "depth_net.keras")
    save_config(config, base / "config.yaml")
    image = (np.random.default_rng(0).random((100, 100, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "room.png"), image)
    out = tmp_path / "refined"
    assert predict.main(["--run-dir", str(sddr_run), str(tmp_path / "room.png"), "--out", str(out),
                         "--base-model", str(base)]) == 0
    assert np.load(out / "room_refined.npy").shape == (100, 100)


def test_export_with_parity(sddr_run, tmp_path):
    """The export CLI on the run's test frames (their base maps as the network's inputs): SavedModel, TFLite."""
    import export as export_cli

    out = tmp_path / "exports"
    assert export_cli.main(["--run-dir", str(sddr_run), "--format", "saved_model", "--output", str(out),
                            "--parity-frames", "2"]) == 0
    version = next((out / "sddr_synthetic").iterdir())
    meta = json.loads((version / "assets.extra" / "metadata.json").read_text())
    assert meta["family"] == "sddr" and meta["depth_kind"] == "relative"
    report = json.loads((version / "assets.extra" / "parity.json").read_text())
    assert report["passed"], report["summary"]
    assert export_cli.main(["--run-dir", str(sddr_run), "--format", "tflite", "--quantize", "none", "--output",
                            str(out / "sddr.tflite"), "--parity-frames", "2"]) == 0
    assert json.loads((out / "sddr.parity.json").read_text())["passed"]
    from tfdepth.export.tflite import TFLiteModel

    # N_r itself is one XNNPACK partition (tests/test_models_sddr.py); the export's min-max normalisation of the
    # base maps and its flat-map guard add LESS + SELECT_V2 (tf.where), which XNNPACK leaves to the interpreter.
    coverage = TFLiteModel((out / "sddr.tflite").read_bytes()).xnnpack()
    assert set(coverage["not_delegated"]) <= {"CAST", "LESS", "SELECT_V2"}, coverage
    assert coverage["compute_partitions"] <= 3, coverage
