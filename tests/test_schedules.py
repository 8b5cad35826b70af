"""LR schedules: Monodepth2's step decay (A.7) and the optional linear warm-up, against values worked out by hand."""

import keras
import numpy as np
import pytest

from tfdepth.train.schedules import WarmupStepDecay, step_decay_schedule


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_step_decay_at_three_quarters():
    # 100 steps, decay at 0.75: the first 75 updates (iterations 0..74) at 1e-4, then 1e-5.
    schedule = step_decay_schedule(1e-4, 100)
    np.testing.assert_allclose(values(schedule, [0, 74, 75, 76, 99]), [1e-4, 1e-4, 1e-5, 1e-5, 1e-5], rtol=1e-6)


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


# Monodepth2's trainer calls StepLR(15, 0.1).step() at the START of every epoch, so the rate drops for the 15th
# epoch (0-based epoch 14): 14 of 20 epochs at 1e-4 (lr_decay_at 0.70; configs/monodepth2_kitti.yaml), not the
# paper text's 15 (0.75). Keras evaluates the schedule at optimizer.iterations, the number of updates already
# applied, so schedule(k) is the rate of update k (0-based) and the original's first 1e-5 update is update 14 N.
EPOCH_STEPS = (2, 7, 3317)  # 3317 = Monodepth2's KITTI epoch (39,810 eigen_zhou triplets // batch 12)


@pytest.mark.parametrize("n", EPOCH_STEPS)
def test_official_code_step_keeps_fourteen_of_twenty_epochs_at_the_full_rate(n):
    official = step_decay_schedule(1e-4, 20 * n, decay_at=0.70)
    paper_text = step_decay_schedule(1e-4, 20 * n, decay_at=0.75)
    # Epochs 0..13 at 1e-4, from epoch 14 on 1e-5: the 0.70 schedule is already decayed one step into epoch 14
    # and all through epoch 14, where the 0.75 reading still trains at 1e-4.
    np.testing.assert_allclose(values(official, [0, 14 * n - 1, 14 * n + 1, 15 * n - 1, 20 * n - 1]),
                               [1e-4, 1e-4, 1e-5, 1e-5, 1e-5], rtol=1e-6)
    np.testing.assert_allclose(values(paper_text, [15 * n - 1, 15 * n + 1]), [1e-4, 1e-5], rtol=1e-6)


@pytest.mark.parametrize("n", EPOCH_STEPS)
def test_official_code_step_switches_at_update_fourteen_n_exactly(n):
    official = step_decay_schedule(1e-4, 20 * n, decay_at=0.70)
    np.testing.assert_allclose(values(official, [14 * n - 1, 14 * n]), [1e-4, 1e-5], rtol=1e-6)
