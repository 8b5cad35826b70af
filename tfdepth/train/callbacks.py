"""Training callbacks: crash-safe checkpoints and TensorBoard depth images.

Checkpoints use ``tf.train.CheckpointManager``: TensorFlow writes the shards to temporary names and renames
them, and the ``checkpoint`` index file is replaced last, so a run killed mid-save still resumes from the previous
complete checkpoint.
"""

import numpy as np
import keras
import tensorflow as tf

from tfdepth.viz import colorize_depth

__all__ = ["TrainingCheckpoint", "DepthImageLogger", "make_checkpoint"]


def make_checkpoint(model, directory, max_to_keep=3):
    """A CheckpointManager over the trainer (networks) and its optimiser(s)."""
    objects = {"model": model, "optimizer": model.optimizer}
    if getattr(model, "segmentation_optimizer", None) is not None:
        objects["segmentation_optimizer"] = model.segmentation_optimizer
    checkpoint = tf.train.Checkpoint(**objects)
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the full training state (weights + optimiser slots + step) at the end of every epoch."""

    def __init__(self, manager):
        super().__init__()
        self.manager = manager

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=epoch + 1)


class DepthImageLogger(keras.callbacks.Callback):
    """Writes the colorized predicted depth of a fixed batch to TensorBoard after each epoch."""

    def __init__(self, log_dir, images, max_images=4):
        super().__init__()
        self.images = tf.convert_to_tensor(images[:max_images], tf.float32)
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def on_epoch_end(self, epoch, logs=None):
        out = self.model(self.images, training=False)
        depth = np.asarray(out["depth_0"])[..., 0]
        panels = np.stack([colorize_depth(d) for d in depth]).astype(np.float32) / 255.0
        with self.writer.as_default():
            tf.summary.image("depth", panels, step=epoch, max_outputs=len(panels))
            if epoch == 0:
                tf.summary.image("image", self.images, step=epoch, max_outputs=len(panels))
        self.writer.flush()
