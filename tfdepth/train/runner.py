"""Build, fit and save a self-supervised trainer from config sections (no data loading here: layering).

The strategy scope holds the networks *and* the optimisers (stack_notes.md); the optimisers are built before the
first distributed step (``SelfSupervisedDepthModel.compile``). Training state is checkpointed every epoch and
restored when the run directory already has a checkpoint, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from tfdepth.models import build_model
from tfdepth.train.callbacks import DepthImageLogger, TrainingCheckpoint, make_checkpoint
from tfdepth.train.optimizers import make_optimizer
from tfdepth.train.schedules import step_decay_schedule
from tfdepth.train.self_supervised import SelfSupervisedDepthModel

__all__ = ["PRECISIONS", "build_self_supervised_trainer", "fit_trainer", "save_network_atomic"]

# Keras dtype policies accepted by train.precision. mixed_float16 needs loss scaling: the trainer wraps its
# optimisers in keras.optimizers.LossScaleOptimizer (SelfSupervisedDepthModel.compile).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def build_self_supervised_trainer(model_config, loss_config, train_config, total_steps: int):
    """Networks + trainer + Adam with the x0.1 step at ``lr_decay_at`` of ``total_steps`` (A.7); compiled.

    Call inside ``strategy.scope()``.
    """
    if model_config.name != "monodepth":
        raise ValueError(f"the self-supervised trainer needs model.name 'monodepth', got {model_config.name!r}")
    if train_config.precision not in PRECISIONS:
        raise ValueError(
            f"train.precision must be one of {', '.join(PRECISIONS)}; got {train_config.precision!r}"
        )
    # The networks are built under the requested policy; the global policy is restored afterwards so that
    # later models in the same process (evaluation, export, tests) are not silently built in low precision.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(train_config.precision)
    try:
        nets = build_model(model_config)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    schedule = step_decay_schedule(
        train_config.learning_rate, total_steps, train_config.lr_decay_at, train_config.lr_decay_factor,
        train_config.lr_warmup_steps,
    )
    optimizer = make_optimizer(train_config.optimizer, schedule, epsilon=train_config.optimizer_epsilon)
    segmentation_optimizer = None
    if nets.get("segmentation") is not None:
        # SegDepth B.4: the U-Net has its own Adam (1e-3, same step decay) on the gradients of the same loss.
        segmentation_optimizer = make_optimizer(
            train_config.optimizer,
            step_decay_schedule(
                train_config.segmentation_learning_rate, total_steps, train_config.lr_decay_at,
                train_config.lr_decay_factor, train_config.lr_warmup_steps,
            ),
            epsilon=train_config.optimizer_epsilon,
        )
    trainer = SelfSupervisedDepthModel(
        nets["depth"],
        nets["pose"],
        nets.get("segmentation"),
        scales=model_config.scales,
        min_depth=model_config.min_depth,
        max_depth=model_config.max_depth,
        photometric_weight=loss_config.photometric,
        smoothness_weight=loss_config.smoothness,
        segmentation_weight=loss_config.segmentation,
        ssim_weight=loss_config.ssim_weight,
        automask=loss_config.automask,
        min_reprojection=loss_config.min_reprojection,
        full_res_multiscale=loss_config.full_res_multiscale,
        segmentation_input=model_config.segmentation_input,
        segmentation_weight_map=loss_config.segmentation_weight_map,
        segmentation_optimizer=segmentation_optimizer,
        automask_warmup_steps=loss_config.automask_warmup_steps,
    )
    trainer.compile(optimizer=optimizer)
    return trainer


def fit_trainer(
    trainer,
    run_dir,
    train_ds,
    val_ds=None,
    *,
    epochs: int,
    steps_per_epoch: int,
    validation_steps: int | None = None,
    sample_images=None,
    keep_checkpoints: int = 3,
    verbose="auto",
):
    """``trainer.fit`` with TensorBoard, per-epoch checkpoints (resumed if present) and depth images."""
    run_dir = Path(run_dir)
    manager = make_checkpoint(trainer, run_dir / "checkpoints", max_to_keep=keep_checkpoints)
    initial_epoch = 0
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
        initial_epoch = int(manager.latest_checkpoint.rsplit("-", 1)[-1])
        print(f"resuming from {manager.latest_checkpoint} (epoch {initial_epoch})")
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), update_freq="epoch"),
        TrainingCheckpoint(manager),
        keras.callbacks.TerminateOnNaN(),
    ]
    if sample_images is not None:
        callbacks.append(DepthImageLogger(run_dir / "logs" / "images", sample_images))
    if initial_epoch >= epochs:
        return None
    return trainer.fit(
        train_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        validation_steps=validation_steps,
        callbacks=callbacks,
        verbose=verbose,
    )


def save_network_atomic(model, path) -> Path:
    """Save a ``.keras`` file via a temporary name + rename: a killed run never leaves a half-written model."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    keras.saving.save_model(model, tmp)
    os.replace(tmp, path)
    return path
