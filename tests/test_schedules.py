"""LR schedules: Monodepth2's step decay (A.7) and the optional linear warm-up, against values worked out by hand."""

import keras
import numpy as np
import pytest

from tfdepth.train.schedules import WarmupStepDecay, step_decay_schedule


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_step_decay_at_three_quarters():
    # 100 steps, decay at 0.75: steps 0..75 at 1e-4 (Keras' PiecewiseConstantDecay switches after the boundary),
    # then 1e-5.
    schedule = step_decay_schedule(1e-4, 100)
    np.testing.assert_allclose(values(schedule, [0, 74, 75, 76, 99]), [1e-4, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_decay_at_one_never_decays():
    np.testing.assert_allclose(values(step_decay_schedule(2e-4, 10, decay_at=1.0), [0, 9, 10]), 2e-4, rtol=1e-6)


def test_linear_warmup_then_step():
    schedule = step_decay_schedule(1e-3, 100, decay_at=0.5, factor=0.1, warmup_steps=4)
    # (step + 1) / 4 of the LR for steps 0..3, full LR until the boundary at 50, x0.1 from there.
    np.testing.assert_allclose(
        values(schedule, [0, 1, 2, 3, 4, 49, 50, 99]),
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4],
        rtol=1e-6,
    )
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(clone, WarmupStepDecay) and clone.get_config() == schedule.get_config()
    no_decay = step_decay_schedule(1e-3, 10, decay_at=1.0, warmup_steps=2)
    np.testing.assert_allclose(values(no_decay, [0, 1, 9]), [5e-4, 1e-3, 1e-3], rtol=1e-6)


def test_bad_arguments_name_the_setting():
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        step_decay_schedule(1e-4, 100, warmup_steps=-1)
    with pytest.raises(ValueError, match="lr_warmup_steps .80. must end before the LR step at 75"):
        step_decay_schedule(1e-4, 100, warmup_steps=80)
    with pytest.raises(ValueError, match="lr_decay_at"):
        step_decay_schedule(1e-4, 100, decay_at=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        step_decay_schedule(0.0, 100)
