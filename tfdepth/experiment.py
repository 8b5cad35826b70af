"""Experiment glue shared by train.py, evaluate.py and the benchmarks: config -> data -> trainer -> files.

This is the one module (besides the CLIs) that composes the layers: it may import data, train, evaluation and
inference. The layers themselves stay independent (DESIGN.md).

A run directory holds: ``config.yaml`` (resolved), ``checkpoints/`` (per-epoch training state; resumable),
``logs/`` (TensorBoard), ``depth_net.keras`` and ``pose_net.keras`` (written atomically at the end), and
``metrics.json`` (test split).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

__all__ = ["RunError", "run_training", "evaluate_run"]


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


def _check_sizes(config):
    for name in ("height", "width"):
        value = getattr(config.data, name)
        if value <= 0 or value % 32:
            raise RunError(
                f"data.{name}={value} is not a positive multiple of 32 (the ResNet encoder's output stride, A.2); "
                f"use e.g. --set data.{name}={max(32, round(value / 32) * 32)}"
            )


def _segmentation_map_fn(config):
    if not config.model.segmentation:
        return None
    from tfdepth.data.factory import foreground_class_ids
    from tfdepth.train.targets import segmentation_targets_fn

    return segmentation_targets_fn(
        foreground_class_ids(config.data),
        w0=config.loss.segmentation_w0,
        sigma=config.loss.segmentation_sigma,
        class_balance=config.loss.segmentation_class_balance,
        weight_map=config.loss.segmentation_weight_map,
    )


def run_training(config, run_dir, *, max_steps: int | None = None, evaluate: bool = True, verbose="auto") -> dict:
    """Train the configured model into ``run_dir`` and (optionally) evaluate it on the test split."""
    import tensorflow as tf

    from tfdepth.config import save_config
    from tfdepth.data.factory import steps_per_epoch as count_steps
    from tfdepth.data.factory import video_dataset
    from tfdepth.inference import DEPTH_NET_FILE
    from tfdepth.io import atomic_write_json
    from tfdepth.train.runner import build_self_supervised_trainer, fit_trainer, save_network_atomic
    from tfdepth.train.self_supervised import validate_video_batch_spec
    from tfdepth.train.strategy import make_strategy

    _check_sizes(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    tf.keras.utils.set_random_seed(config.train.seed)

    started = time.time()
    map_fn = _segmentation_map_fn(config)
    train_ds = video_dataset(config.data, "train", training=True, map_fn=map_fn, repeat=True)
    val_ds = video_dataset(config.data, "validation", training=False, map_fn=map_fn, repeat=True)
    validate_video_batch_spec(train_ds.element_spec, segmentation=config.model.segmentation)

    steps = config.train.steps_per_epoch or count_steps(config.data, "train")
    epochs = config.train.epochs
    if max_steps is not None and max_steps < epochs * steps:
        # A cap on the total: as many full epochs as needed, each shortened so that epochs * steps <= max_steps.
        epochs = max(1, math.ceil(max_steps / steps))
        steps = max(1, max_steps // epochs)
    total_steps = epochs * steps

    strategy = make_strategy(config.train.strategy)
    with strategy.scope():
        trainer = build_self_supervised_trainer(config.model, config.loss, config.train, total_steps)
    sample = next(iter(val_ds.take(1)))["image"].numpy() if config.train.log_images else None
    fit_trainer(
        trainer,
        run_dir,
        train_ds,
        val_ds,
        epochs=epochs,
        steps_per_epoch=steps,
        validation_steps=config.train.validation_steps,
        sample_images=sample,
        keep_checkpoints=config.train.keep_checkpoints,
        verbose=verbose,
    )
    save_network_atomic(trainer.depth_net, run_dir / DEPTH_NET_FILE)
    save_network_atomic(trainer.pose_net, run_dir / "pose_net.keras")
    train_seconds = time.time() - started
    if not evaluate:
        return {}
    metrics = evaluate_run(run_dir, split=config.eval.split)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_steps"] = int(total_steps)
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def evaluate_run(run_dir, *, split: str = "test", output=None, max_scenes: int | None = None) -> dict:
    """Evaluate a finished run directory (depth with the KITTI protocol; pose ATE on synthetic data)."""
    import itertools

    import keras

    from tfdepth.config import load_config
    from tfdepth.data.factory import eval_sequences
    from tfdepth.evaluation import evaluate_sequences
    from tfdepth.inference import DepthPredictor
    from tfdepth.io import atomic_write_json

    run_dir = Path(run_dir)
    predictor = DepthPredictor.from_run_dir(run_dir)
    config = load_config(run_dir / "config.yaml")
    pose_path = run_dir / "pose_net.keras"
    pose_net = keras.saving.load_model(pose_path, compile=False) if pose_path.is_file() else None
    sequences = eval_sequences(config.data, split)
    if max_scenes is not None:
        sequences = itertools.islice(sequences, max_scenes)
    metrics = evaluate_sequences(
        predictor, sequences, config.eval, pose_net=pose_net, network_size=(config.data.height, config.data.width)
    )
    metrics = {"split": split, **metrics}
    if output is not None:
        atomic_write_json(Path(output), metrics)
    return metrics
