"""Fit any family's trainer into a run directory: resumable checkpoints, the non-finite guard, TensorBoard, networks.

Family-agnostic: the trainer is a :class:`tfdepth.train.base.DepthTrainer`; no data loading here (layering).

Resume: the latest complete checkpoint restores weights, optimizer slots and step counter (the LR schedule reads
it) and the number of batches consumed; training continues at that batch of that epoch, and the training dataset is
advanced past the batches already consumed (``Dataset.skip``: with ``train.deterministic`` a resumed run sees the
same batches as an uninterrupted one and ends with identical weights; skipping costs reading those batches once).
Keras' ``fit`` only starts at epoch boundaries, so a mid-epoch resume runs the rest of that epoch as one short
``fit`` and the remaining epochs as a second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from tfdepth.train.callbacks import (
    DepthImageLogger,
    NonFiniteError,
    TrainingCheckpoint,
    clean_partial_checkpoints,
    make_checkpoint,
)

__all__ = ["fit_trainer", "FitResult", "save_network_atomic", "save_networks", "network_file", "NonFiniteError"]


def network_file(role: str) -> str:
    """File name of a trained network in a run directory (``depth`` -> ``depth_net.keras``)."""
    return f"{role}_net.keras"


@dataclass
class FitResult:
    start_step: int  # batches already consumed when this call began (0 for a fresh run)
    end_step: int
    total_steps: int
    history: list


def _restore(manager, batches, trainer, log):
    latest = manager.latest_checkpoint
    if not latest:
        return 0
    status = manager.checkpoint.restore(latest)
    status.expect_partial()
    step = int(batches.numpy())
    if step == 0:  # checkpoints written before the batch counter existed were numbered by epoch
        step = int(trainer.optimizer.iterations.numpy())
        batches.assign(step)
    log(f"resuming from {latest}: {step} training steps done")
    return step


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
    checkpoint_every_steps: int = 0,
    keep_checkpoints: int = 1,
    chief: bool = True,
    verbose="auto",
    log=print,
) -> FitResult:
    """``trainer.fit`` with TensorBoard, crash-safe checkpoints (resumed if present) and the non-finite guard.

    ``chief`` False (a non-chief multi-worker process): checkpoints and logs go to a temporary directory that is
    removed at the end (TensorFlow's multi-worker guide: every worker takes part in saving).
    """
    run_dir = Path(run_dir)
    total = int(epochs) * int(steps_per_epoch)
    scratch = None if chief else Path(tempfile.mkdtemp(prefix="tfdepth-worker-"))
    ckpt_dir = run_dir / "checkpoints"
    if chief:
        removed = clean_partial_checkpoints(ckpt_dir)
        if removed:
            log(f"removed a partial checkpoint left by a killed save in {ckpt_dir}: {', '.join(removed)}")
    manager, batches = make_checkpoint(trainer, ckpt_dir if chief else scratch / "checkpoints", keep_checkpoints)
    start = _restore(manager, batches, trainer, log) if chief else 0
    if not chief:  # a worker restores what the chief saved (same variables on every worker)
        chief_manager, chief_batches = make_checkpoint(trainer, ckpt_dir, keep_checkpoints)
        start = _restore(chief_manager, chief_batches, trainer, lambda *_: None)
        batches.assign(start)
    elif start == 0 and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        log(f"no complete checkpoint in {ckpt_dir}: training starts at step 0")
    history = []
    try:
        if start >= total:
            return FitResult(start, start, total, history)
        log_dir = (run_dir if chief else scratch) / "logs"
        guard = trainer.on_nonfinite == "stop"
        terms = ("loss",) + tuple(trainer.loss_terms)
        checkpoint_cb = TrainingCheckpoint(manager, batches, every_steps=checkpoint_every_steps, terms=terms,
                                           guard_nonfinite=guard)
        callbacks = [checkpoint_cb, keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq="epoch")]
        if sample_images is not None and chief:
            callbacks.append(DepthImageLogger(log_dir / "images", sample_images))
        first_epoch, offset = divmod(start, steps_per_epoch)
        # (initial epoch, steps in each epoch of this fit, epochs end): the rest of a started epoch, then the others.
        phases = []
        if offset:
            phases.append((first_epoch, steps_per_epoch - offset, first_epoch + 1))
            first_epoch += 1
        if first_epoch < epochs:
            phases.append((first_epoch, steps_per_epoch, epochs))
        consumed = start
        for initial_epoch, steps, end_epoch in phases:
            data = train_ds.skip(consumed) if consumed else train_ds
            result = trainer.fit(
                data,
                epochs=end_epoch,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                validation_data=val_ds,
                validation_steps=validation_steps,
                callbacks=callbacks,
                verbose=verbose,
            )
            history.append(result.history)
            if checkpoint_cb.failure is not None:
                step, bad, values = checkpoint_cb.failure
                latest = manager.latest_checkpoint if chief else None
                kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint had been written yet"
                raise NonFiniteError(
                    f"training stopped at step {step}: loss term {' and '.join(repr(b) for b in bad)} is not finite "
                    f"({values}); {kept} (a rerun with the same --run-dir resumes from it). Set "
                    "train.on_nonfinite=skip to skip such steps, or lower train.learning_rate"
                )
            consumed = int(batches.numpy())
        return FitResult(start, consumed, total, history)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def save_network_atomic(model, path) -> Path:
    """Save a ``.keras`` file via a temporary name + rename: a killed run never leaves a half-written model."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    keras.saving.save_model(model, tmp)
    os.replace(tmp, path)
    return path


def save_networks(trainer, directory, *, chief: bool = True) -> dict:
    """Save every network of ``trainer.networks()`` as ``<role>_net.keras`` in ``directory``; role -> path.

    A non-chief multi-worker process saves into a temporary directory it then removes (every worker takes part in
    saving distributed variables; only the chief's files are kept).
    """
    directory = Path(directory)
    target = directory if chief else Path(tempfile.mkdtemp(prefix="tfdepth-worker-"))
    try:
        target.mkdir(parents=True, exist_ok=True)
        return {role: save_network_atomic(net, target / network_file(role)) for role, net in trainer.networks().items()}
    finally:
        if not chief:
            shutil.rmtree(target, ignore_errors=True)
