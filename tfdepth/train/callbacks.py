"""Training callbacks: checkpoints that survive a kill, the non-finite guard, TensorBoard depth images.

Checkpoints (``tf.train.CheckpointManager``) hold the trainer (every network), its optimizers (slots and step
counter) and ``batches``, the number of training batches consumed, from which a resumed run knows its epoch and its
place in the data. TensorFlow writes a checkpoint's shards into ``ckpt-N_temp/`` and renames them, and replaces the
``checkpoint`` index file last and atomically, so a kill at any moment leaves the previous complete checkpoint as
the latest; :func:`clean_partial_checkpoints` removes what a killed save leaves behind.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import keras
import tensorflow as tf

from tfdepth.viz import colorize_depth

__all__ = ["TrainingCheckpoint", "DepthImageLogger", "make_checkpoint", "clean_partial_checkpoints", "NonFiniteError"]


class NonFiniteError(RuntimeError):
    """Training stopped at a step whose loss was NaN or Inf (``train.on_nonfinite: stop``)."""


def make_checkpoint(model, directory, max_to_keep=1):
    """A CheckpointManager over the trainer, its optimizer(s) and a ``batches`` counter (returned as 2nd value)."""
    batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
    objects = {"model": model, "optimizer": model.optimizer, "batches": batches}
    for name, optimizer in getattr(model, "group_optimizers", {}).items():
        objects[f"{name}_optimizer"] = optimizer
    checkpoint = tf.train.Checkpoint(**objects)
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep), batches


def clean_partial_checkpoints(directory) -> list[str]:
    """Remove what a killed checkpoint write leaves in ``directory``; return the removed names.

    That is ``*_temp*`` shard folders and files, and ``ckpt-N.*`` files of a number the ``checkpoint`` index does not
    list (written, then killed before the index was replaced).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    state = tf.train.get_checkpoint_state(str(directory))
    listed = set()
    if state is not None:
        listed = {Path(p).name for p in state.all_model_checkpoint_paths} | {Path(state.model_checkpoint_path).name}
    removed = []
    for path in sorted(directory.iterdir()):
        stem = re.match(r"(ckpt-\d+)", path.name)
        partial = "_temp" in path.name or (stem is not None and stem.group(1) not in listed)
        if not partial or path.name == "checkpoint":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path.name)
    return removed


class TrainingCheckpoint(keras.callbacks.Callback):
    """Counts batches, guards against non-finite losses and saves the full training state.

    Saves every ``every_steps`` batches (0: never mid-epoch) and at the end of every epoch, numbered by the batch
    count. With ``guard_nonfinite`` (``train.on_nonfinite: stop``) a batch whose logged loss terms are NaN or Inf
    stops training at once, before anything of that step is saved; :attr:`failure` then says the batch and terms.

    Args:
        manager, batches: from :func:`make_checkpoint`.
        terms: the logged names to check (the trainer's ``loss`` and ``loss_terms``).
        save: False in a non-chief multi-worker process, which saves into a throw-away directory instead (every
            worker must take part in a save of distributed variables).
    """

    def __init__(self, manager, batches, *, every_steps=0, terms=("loss",), guard_nonfinite=True, scratch_manager=None):
        super().__init__()
        self.manager = manager
        self.batches = batches
        self.every_steps = int(every_steps)
        self.terms = tuple(terms)
        self.guard_nonfinite = guard_nonfinite
        self.scratch_manager = scratch_manager
        self.failure = None
        self._last_saved = None

    def _save(self):
        step = int(self.batches.numpy())
        if step == self._last_saved or self.failure is not None:
            return
        (self.scratch_manager or self.manager).save(checkpoint_number=step)
        self._last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        self.batches.assign_add(1)
        if self.guard_nonfinite and logs:
            bad = [t for t in self.terms if t in logs and not math.isfinite(float(logs[t]))]
            if bad:
                step = int(self.batches.numpy())
                values = ", ".join(f"{t}={float(logs[t])}" for t in bad)
                self.failure = (step, bad, values)
                self.model.stop_training = True
                return
        if self.every_steps and int(self.batches.numpy()) % self.every_steps == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()


class DepthImageLogger(keras.callbacks.Callback):
    """Writes the colorized predicted depth of a fixed batch to TensorBoard after each epoch."""

    def __init__(self, log_dir, images, max_images=4):
        super().__init__()
        self.images = tf.convert_to_tensor(images[:max_images], tf.float32)
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def on_epoch_end(self, epoch, logs=None):
        depth = self.model.monitor_depth({"image": self.images})
        if depth is None:
            return
        depth = np.asarray(depth)[..., 0]
        panels = np.stack([colorize_depth(d) for d in depth]).astype(np.float32) / 255.0
        with self.writer.as_default():
            tf.summary.image("depth", panels, step=epoch, max_outputs=len(panels))
            if epoch == 0:
                tf.summary.image("image", self.images, step=epoch, max_outputs=len(panels))
        self.writer.flush()
