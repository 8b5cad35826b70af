"""The RSN trainer (tfdepth/train/region_support.py) on a tiny reduced network: each stage optimises exactly the
loss of the spec (checked against the pure losses on the same outputs) and moves only its own module's weights,
the joint stage steps each module with its own optimizer, the loss falls, and bad batches are clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config.rsn import RSN_STAGES
from tfdepth.data.region_support import region_support_numpy
from tfdepth.losses.region import iterative_loss, region_loss
from tfdepth.models import build_model
from tfdepth.models.rsn import refine_iterations
from tfdepth.train.region_support import STAGES, RegionSupportTrainer

H, W = 12, 16


def tiny_rsn(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model({"name": "rsn", "grid": "relative", "width_multiplier": 0.0625, "sync_batchnorm": False})["rsn"]


def scene_batch(seed=0, batch=2):
    """Two-class rooms: a far wall (label 2) above a floor ramp (label 1), plus Algorithm 1's targets."""
    rng = np.random.default_rng(seed)
    images, depths, supports, ids = [], [], [], []
    for _ in range(batch):
        depth = np.empty((H, W), np.float32)
        depth[: H // 2] = rng.uniform(3.0, 4.0)
        depth[H // 2:] = np.linspace(1.0, 2.5, H - H // 2, dtype=np.float32)[:, None]
        labels = np.where(np.arange(H)[:, None] < H // 2, 2, 1) * np.ones((1, W), np.int64)
        targets = region_support_numpy(depth, labels)
        image = np.stack([depth / 4.0, labels / 2.0, np.full_like(depth, 0.5)], -1)
        images.append(image + rng.normal(0, 0.02, image.shape))
        depths.append(depth[..., None])
        supports.append(targets["region_support"].reshape(H, W, 1))
        ids.append(targets["support_ids"].reshape(H, W, 1))
    return {"image": np.clip(np.stack(images), 0, 1).astype(np.float32), "depth": np.stack(depths),
            "region_support": np.stack(supports).astype(np.float32), "support_ids": np.stack(ids).astype(np.int32)}


def compiled(rsn, stage, lr=1e-2):
    trainer = RegionSupportTrainer(rsn, stage=stage)
    groups = {"refinement": keras.optimizers.SGD(lr)} if stage == "joint" else None
    trainer.compile(optimizer=keras.optimizers.SGD(lr), group_optimizers=groups)
    return trainer


def values(module):
    return [v.numpy().copy() for v in module.trainable_variables]


def test_stage_names_agree_with_the_config():
    assert STAGES == RSN_STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_optimises_the_spec_loss(stage):
    rsn = tiny_rsn()
    batch = scene_batch()
    trainer = RegionSupportTrainer(rsn, stage=stage)
    terms = trainer.compute_losses(batch, training=False)
    support = rsn.generation(batch["image"], training=False)["region_support"]
    if stage.startswith("generation"):
        expected = region_loss(support, batch["region_support"], batch["support_ids"], log=stage == "generation_log")
    else:
        start = batch["region_support"] if stage == "refinement" else support
        depths = refine_iterations(rsn.refinement, batch["image"], start, 3, training=False)
        expected = iterative_loss(depths, batch["depth"], (0.2, 0.3, 0.5), log=True)["total"]
    np.testing.assert_allclose(float(terms["loss"]), float(expected), rtol=1e-5)
    assert set(terms) == {"loss", *trainer.loss_terms}


def test_generation_and_refinement_stages_move_only_their_module():
    rsn = tiny_rsn()
    ds = tf.data.Dataset.from_tensors(scene_batch()).repeat(2)
    for stage, moved, kept in (("generation_log", rsn.generation, rsn.refinement),
                               ("refinement", rsn.refinement, rsn.generation)):
        before_moved, before_kept = values(moved), values(kept)
        compiled(rsn, stage).fit(ds, epochs=1, verbose=0)
        assert all(np.array_equal(a, b) for a, b in zip(before_kept, values(kept))), stage
        changed = [not np.array_equal(a, b) for a, b in zip(before_moved, values(moved))]
        assert all(changed), f"{stage}: {changed.count(False)} of {len(changed)} tensors of its module did not move"


def test_joint_stage_steps_each_module_with_its_own_optimizer():
    rsn = tiny_rsn()
    trainer = RegionSupportTrainer(rsn, stage="joint")
    frozen = keras.optimizers.SGD(0.0)  # the refinement module's optimizer with LR 0: it must not move
    trainer.compile(optimizer=keras.optimizers.SGD(1e-2), group_optimizers={"refinement": frozen})
    gen_before, ref_before = values(rsn.generation), values(rsn.refinement)
    trainer.fit(tf.data.Dataset.from_tensors(scene_batch()).repeat(2), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(ref_before, values(rsn.refinement)))
    assert not all(np.array_equal(a, b) for a, b in zip(gen_before, values(rsn.generation)))
    assert int(frozen.iterations.numpy()) == 2  # stepped (with LR 0) on every batch
    # The joint stage's gradient reaches the generation module only through the refinement module (L_i only).
    with tf.GradientTape() as tape:
        loss = trainer.compute_losses(scene_batch(), training=True)["loss"]
    grads = tape.gradient(loss, rsn.generation.trainable_variables)
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("stage", ["generation_linear", "refinement"])
def test_the_loss_falls(stage):
    rsn = tiny_rsn(seed=1)
    batch = scene_batch(seed=1)
    trainer = RegionSupportTrainer(rsn, stage=stage)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Training-mode losses (batch statistics): no lag of the batch-norm moving averages in the comparison.
    first = float(trainer.compute_losses(batch, training=True)["loss"])
    trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(40), epochs=1, verbose=0)
    last = float(trainer.compute_losses(batch, training=True)["loss"])
    assert last < 0.5 * first, (first, last)


def test_validation_monitors_metric_depth_in_metres():
    rsn = tiny_rsn()
    trainer = compiled(rsn, "generation_log")
    logs = trainer.evaluate(tf.data.Dataset.from_tensors(scene_batch()), verbose=0, return_dict=True)
    assert {"rmse", "abs_rel", "a1", "loss", "region"} <= set(logs)
    support = rsn.generation(scene_batch()["image"], training=False)["region_support"].numpy()
    gt = scene_batch()["depth"]
    clamped = np.clip(support, 1e-3, 10.0)  # no alignment: metric depth, clamped to the 10 m cap
    assert logs["rmse"] == pytest.approx(float(np.sqrt(np.mean((clamped - gt) ** 2))), rel=1e-4)


def test_bad_arguments_and_batches_are_clear():
    rsn = tiny_rsn()
    with pytest.raises(ValueError, match="stage must be one of"):
        RegionSupportTrainer(rsn, stage="pretrain")
    with pytest.raises(ValueError, match="3 iteration weights"):
        RegionSupportTrainer(rsn, stage="joint", iteration_weights=(0.5, 0.5))
    with pytest.raises(TypeError, match="end-to-end RegionSupportNetwork"):
        RegionSupportTrainer(rsn.generation, stage="joint")
    batch = scene_batch()
    del batch["support_ids"]
    with pytest.raises(KeyError, match="missing support_ids"):
        RegionSupportTrainer(rsn, stage="generation_log").compute_losses(batch)


def test_a_sample_without_valid_depth_is_a_clear_error_naming_it():
    """Algorithm 1 inside the input pipeline: the sample is named, and the runner turns TF's wrapped error into
    one line (never a NaN loss)."""
    from tfdepth.data.depth_images import _targets_fn
    from tfdepth.data.pipeline import make_sample_dataset
    from tfdepth.experiment import _pipeline_error

    depth = np.zeros((2, H, W, 1), np.float32)  # frame 8: no valid depth at all
    depth[0] = 2.0
    samples = tf.data.Dataset.from_tensor_slices({
        "image": np.full((2, H, W, 3), 0.5, np.float32), "depth": depth,
        "semantic": np.ones((2, H, W), np.int32), "index": np.array([7, 8], np.int32)})
    ds = make_sample_dataset(samples, batch_size=2, map_fn=_targets_fn("semantic", {}), drop_remainder=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        next(iter(ds))
    message = _pipeline_error(info.value)
    assert message is not None and "NYU frame 8" in message and "no pixel has both a valid depth" in message
    assert "\n" not in message


def test_positive_refinement_head_starts_every_pixel_above_zero():
    """loss.refinement_head_init=positive (tfdepth/recipes/rsn.py): with PyTorch's init the head's ReLU outputs
    exactly 0 at many pixels (no gradient, log(1e-6) in L_i); with the non-negative kernel only where every feature
    in front of it is 0 (this 1-channel tiny head: 2 % of the pixels instead of 28 %)."""
    from tfdepth.config import load_config
    from tfdepth.recipes.rsn import RsnRecipe

    rsn = tiny_rsn()
    batch = scene_batch(batch=2)
    support = tf.constant(batch["region_support"])

    def refined():
        return refine_iterations(rsn.refinement, tf.constant(batch["image"]), support, 1, training=False)[0].numpy()

    before = refined()
    assert (before == 0).mean() > 0.05, (before == 0).mean()
    trainer = RegionSupportTrainer(rsn, stage="refinement")
    config = load_config("configs/rsn_synthetic.yaml", ["loss.refinement_head_init=positive"])
    RsnRecipe().start_stage(trainer, config, "refinement", log=lambda *_: None)
    assert (rsn.refinement.get_layer("infer5_conv").kernel.numpy() >= 0).all()
    after = refined()
    assert (after == 0).mean() < 0.2 * (before == 0).mean()


def test_joint_learning_rate_sets_both_modules_rates_in_the_joint_stage_only():
    from tfdepth.recipes import rsn as rsn_recipe

    def rates(stage, **loss):
        trainer = rsn_recipe.build_trainer(
            stage=stage, total_steps=10, data={"height": H, "width": W},
            model={"grid": "relative", "width_multiplier": 0.0625, "sync_batchnorm": False},
            loss={"refinement_learning_rate": 1e-4, "stage_epochs": [1, 0, 0, 0], **loss},
            train={"learning_rate": 1e-3, "epochs": 1})
        lr = lambda opt: float(opt.learning_rate)  # noqa: E731
        return [lr(trainer.optimizer)] + [lr(o) for o in trainer.group_optimizers.values()]

    assert rates("joint") == pytest.approx([1e-3, 1e-4])  # the authors' rates (spec §7)
    assert rates("joint", joint_learning_rate=3e-5) == pytest.approx([3e-5, 3e-5])
    assert rates("generation_linear", joint_learning_rate=3e-5) == pytest.approx([1e-3])
    assert rates("refinement", joint_learning_rate=3e-5) == pytest.approx([1e-4])


@pytest.mark.parametrize("trains, frozen", [("refinement", "generation"), ("generation", "refinement")])
def test_joint_trains_one_module_keeps_the_other_fixed_batch_norm_included(trains, frozen):
    """The code's commit variants of the joint stage (spec §7): only ``trains`` moves; the frozen module's weights
    and batch-norm moving statistics stay, it runs in inference mode, and the loss is still L_i of the end-to-end
    chain (checked against the pure loss on the same outputs)."""
    rsn = tiny_rsn()
    batch = scene_batch()
    trainer = RegionSupportTrainer(rsn, stage="joint", joint_trains=trains)
    assert set(trainer.variable_groups()) == {"main"}
    moving = getattr(rsn, trains)
    assert [v.path for v in trainer.variable_groups()["main"]] == [v.path for v in moving.trainable_variables]
    support = rsn.generation(batch["image"], training=False)["region_support"]
    depths = refine_iterations(rsn.refinement, batch["image"], support, 3, training=False)
    expected = iterative_loss(depths, batch["depth"], (0.2, 0.3, 0.5), log=True)["total"]
    np.testing.assert_allclose(float(trainer.compute_losses(batch)["loss"]), float(expected), rtol=1e-5)

    trainer.compile(optimizer=keras.optimizers.SGD(1e-2))
    kept = getattr(rsn, frozen)
    before_all = [v.numpy().copy() for v in kept.weights]  # trainable and BN moving statistics
    before_moving = values(moving)
    trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(2), epochs=1, verbose=0)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before_all, kept.weights))
    changed = [not np.array_equal(a, b) for a, b in zip(before_moving, values(moving))]
    assert all(changed), f"{changed.count(False)} of {len(changed)} tensors of the {trains} module did not move"
    with tf.GradientTape() as tape:
        loss = trainer.compute_losses(batch, training=True)["loss"]
    grads = tape.gradient(loss, kept.trainable_variables)
    assert all(g is None for g in grads) if frozen == "generation" else all(g is not None for g in grads)


def test_joint_trains_is_checked_and_sets_the_one_optimizer_rate():
    from tfdepth.config import ConfigError
    from tfdepth.config.rsn import RsnLossConfig
    from tfdepth.recipes import rsn as rsn_recipe

    with pytest.raises(ConfigError, match="loss.joint_trains"):
        RsnLossConfig(joint_trains="decoder")
    with pytest.raises(ValueError, match="joint_trains must be one of"):
        RegionSupportTrainer(tiny_rsn(), stage="joint", joint_trains="decoder")
    for trains, rate in (("refinement", 1e-4), ("generation", 1e-3)):
        trainer = rsn_recipe.build_trainer(
            stage="joint", total_steps=10, data={"height": H, "width": W},
            model={"grid": "relative", "width_multiplier": 0.0625, "sync_batchnorm": False},
            loss={"refinement_learning_rate": 1e-4, "stage_epochs": [1, 0, 0, 0], "joint_trains": trains},
            train={"learning_rate": 1e-3, "epochs": 1})
        assert not trainer.group_optimizers and float(trainer.optimizer.learning_rate) == pytest.approx(rate)
