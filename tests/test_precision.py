"""train.precision: networks built under a Keras mixed policy, loss scaling for float16, policy not leaked."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import load_config
from tfdepth.recipes.monodepth import trainer_from_config



def _trainer(precision, segmentation=False, learning_rate=1e-3):
    overrides = [f"train.precision={precision}", f"train.learning_rate={learning_rate}"]
    if segmentation:
        overrides.append("model.segmentation=true")
    cfg = load_config("configs/default.yaml", overrides)
    return trainer_from_config(cfg, total_steps=100)


_REFERENCE = {}  # the float32 first step of test_mixed_precision_step_updates_like_float32


def _kernels(trainer):
    return [v for v in trainer.depth_net.trainable_variables if v.path.endswith("kernel")]


def _first_step_update(trainer, batch):
    before = [v.numpy().copy() for v in _kernels(trainer)]
    terms = trainer.train_step(batch)
    after = [v.numpy() for v in _kernels(trainer)]
    return terms, np.concatenate([np.abs(a - b).ravel() for a, b in zip(after, before)])


@pytest.mark.parametrize("precision,compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_builds_low_precision_nets_and_restores_the_policy(precision, compute):
    trainer = _trainer(precision, segmentation=True)
    conv = trainer.depth_net.get_layer("encoder").get_layer("conv1")
    assert conv.compute_dtype == compute and conv.variable_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # nothing built later in the process is affected
    wrapped = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    seg_wrapped = isinstance(trainer.segmentation_optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == seg_wrapped == (precision == "mixed_float16")


@pytest.mark.parametrize("precision,compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_activations_are_cast_only_at_the_inputs_and_heads(precision, compute):
    """Under a mixed policy the decoders take the encoders' features in the compute dtype: the only activation
    casts of a training forward pass are the float32 image in and the float32 heads out (a float32 decoder Input
    would add a float32 round trip of every skip feature, forward and backward)."""
    trainer = _trainer(precision)
    for net, channels, heads in ((trainer.depth_net, 3, 4), (trainer.pose_net, 6, 1)):
        fn = tf.function(lambda x, net=net: net(x, training=True), autograph=False)
        graph = fn.get_concrete_function(tf.TensorSpec((1, 64, 64, channels), tf.float32)).graph
        casts = [(op.inputs[0].dtype.name, op.outputs[0].dtype.name) for op in graph.get_operations()
                 if op.type == "Cast" and op.inputs[0].shape.rank == 4 and op.inputs[0].op.type != "ReadVariableOp"]
        assert casts.count(("float32", compute)) == 1, casts  # the image
        assert casts.count((compute, "float32")) == heads, casts  # the sigmoid / pose heads


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_step_updates_like_float32(precision, video_batch):
    # Adam's first update is lr * g / (|g| + 1e-7): for the many small gradients of a deep net (median |g| of the
    # depth net's kernels is about 1e-9 here) it is proportional to g. So the update sizes show whether the
    # gradients reached the optimiser at their true scale: float16 without loss scaling (LossScaleOptimizer
    # dividing gradients that were never multiplied) shrinks them by 2^15.
    lr = 1e-3
    batch = video_batch(seed=5)
    if "float32" not in _REFERENCE:  # the float32 step is the same for both parameters: computed once
        keras.utils.set_random_seed(1)
        _REFERENCE["float32"] = _first_step_update(_trainer("float32", learning_rate=lr), batch)
    terms32, update32 = _REFERENCE["float32"]
    keras.utils.set_random_seed(1)
    low = _trainer(precision, learning_rate=lr)
    terms, update = _first_step_update(low, batch)
    if precision == "mixed_float16" and not np.any(update):
        # The dynamic loss scale starts at 2^15; an overflowing first step is skipped and the scale halved.
        terms, update = _first_step_update(low, batch)
    assert np.isfinite(float(terms["loss"]))
    np.testing.assert_allclose(float(terms["loss"]), float(terms32["loss"]), rtol=0.05)
    for q in (50, 90):
        ratio = np.percentile(update, q) / np.percentile(update32, q)
        assert 0.5 < ratio < 2.0, (q, ratio)
    assert np.max(update) <= lr * 1.001


def test_unknown_precision_names_the_setting():
    with pytest.raises(ValueError, match="train.precision must be one of float32, mixed_float16, mixed_bfloat16"):
        _trainer("float64")
