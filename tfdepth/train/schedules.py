"""Learning-rate schedules.

Monodepth2 (specs/monodepth_seg.md A.7) trains 20 epochs with StepLR(15, 0.1): 1e-4 for the first 3/4 of
training, then 1e-5. Expressed in steps so it holds for any epoch count or a ``--steps`` cap.
"""

import keras

__all__ = ["step_decay_schedule"]


def step_decay_schedule(learning_rate: float, total_steps: int, decay_at: float = 0.75, factor: float = 0.1):
    """Piecewise-constant LR: ``learning_rate`` until ``decay_at * total_steps``, then ``learning_rate * factor``."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 < decay_at <= 1.0:
        raise ValueError(f"lr_decay_at must be in (0, 1], got {decay_at}")
    boundary = max(1, int(round(decay_at * total_steps)))
    if boundary >= total_steps:
        return keras.optimizers.schedules.PiecewiseConstantDecay([total_steps], [learning_rate, learning_rate])
    return keras.optimizers.schedules.PiecewiseConstantDecay([boundary], [learning_rate, learning_rate * factor])
