"""Learning-rate schedules.

Monodepth2 (specs/monodepth_seg.md A.7) trains 20 epochs with StepLR(15, 0.1): 1e-4 for the first 3/4 of
training, then 1e-5. Expressed in steps so it holds for any epoch count or a ``--steps`` cap.

An optional linear warm-up (not in the paper; ``train.lr_warmup_steps``, default 0) ramps the LR from
``learning_rate / warmup_steps`` to ``learning_rate`` over the first steps: Adam's first updates have full size
whatever the gradient. (Measured: 50 warm-up steps did not stop the early instability of
``model.initial_depth`` 0.5 runs; README "Measured".)
"""

import keras
import tensorflow as tf

__all__ = ["step_decay_schedule", "WarmupStepDecay"]


@keras.saving.register_keras_serializable(package="tfdepth")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr * min(1, (step + 1) / warmup_steps)`` before ``boundary``, ``lr * factor`` from ``boundary`` on."""

    def __init__(self, learning_rate, boundary, factor=0.1, warmup_steps=0):
        self.learning_rate = float(learning_rate)
        self.boundary = int(boundary)
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        ramp = tf.minimum(1.0, (step + 1.0) / float(max(1, self.warmup_steps)))
        decayed = tf.where(step >= float(self.boundary), self.factor, 1.0)
        return self.learning_rate * ramp * decayed

    def get_config(self):
        return {"learning_rate": self.learning_rate, "boundary": self.boundary, "factor": self.factor,
                "warmup_steps": self.warmup_steps}


def step_decay_schedule(learning_rate: float, total_steps: int, decay_at: float = 0.75, factor: float = 0.1,
                        warmup_steps: int = 0):
    """Piecewise-constant LR: ``learning_rate`` until ``decay_at * total_steps``, then ``learning_rate * factor``.

    With ``warmup_steps`` > 0 the first steps ramp linearly up to ``learning_rate`` (:class:`WarmupStepDecay`).
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 < decay_at <= 1.0:
        raise ValueError(f"lr_decay_at must be in (0, 1], got {decay_at}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"lr_warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    boundary = max(1, int(round(decay_at * total_steps)))
    if warmup_steps:
        if warmup_steps >= boundary:
            raise ValueError(
                f"lr_warmup_steps ({warmup_steps}) must end before the LR step at {boundary} of {total_steps} "
                "steps; use fewer warm-up steps or a later train.lr_decay_at"
            )
        return WarmupStepDecay(learning_rate, boundary if boundary < total_steps else total_steps + 1, factor,
                               warmup_steps)
    if boundary >= total_steps:
        return keras.optimizers.schedules.PiecewiseConstantDecay([total_steps], [learning_rate, learning_rate])
    # Keras evaluates the schedule at optimizer.iterations (0 for the first update) and PiecewiseConstantDecay keeps
    # the first value while step <= its boundary: boundary - 1 gives exactly `boundary` updates at the full rate,
    # as torch's StepLR stepped at each epoch start does (Monodepth2: 14 N of 20 N updates at 1e-4) and as the
    # warm-up path (step >= boundary) does.
    return keras.optimizers.schedules.PiecewiseConstantDecay([boundary - 1], [learning_rate, learning_rate * factor])
