"""FusedBatchNormalization: Keras' BatchNormalization on TensorFlow's fused training kernel, checked against a NumPy
batch norm (outputs, biased moving variance) and against Keras' own layer (gradients, inference, fallbacks)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.layers import FusedBatchNormalization

EPS, MOMENTUM = 1e-5, 0.9


def numpy_batchnorm_train(x, gamma, beta, moving_mean, moving_var):
    """Training-mode batch norm over N, H, W in float64 and Keras' moving-average update (biased variance)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased, ddof=0
    y = (x - mean) / np.sqrt(var + EPS) * gamma + beta
    return y, moving_mean * MOMENTUM + mean * (1 - MOMENTUM), moving_var * MOMENTUM + var * (1 - MOMENTUM)


def _layers(channels, rng, rank=4, **kwargs):
    """A FusedBatchNormalization and a Keras BatchNormalization with the same random weights and statistics."""
    fused = FusedBatchNormalization(epsilon=EPS, momentum=MOMENTUM, **kwargs)
    plain = keras.layers.BatchNormalization(epsilon=EPS, momentum=MOMENTUM, **kwargs)
    for layer in (fused, plain):
        layer.build((None,) * (rank - 1) + (channels,))
    values = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.3, channels),
              rng.normal(0, 0.2, channels), rng.uniform(0.5, 2.0, channels)]
    for layer in (fused, plain):
        layer.set_weights([v.astype(np.float32) for v in values])
    return fused, plain, values


def _op_types(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("synchronized", [False, True])
def test_training_forward_and_moving_statistics_match_numpy(synchronized, rng):
    # n = B*H*W = 12: the kernel's Bessel-corrected variance would be 12/11 = 1.09x the biased one Keras keeps.
    x = rng.normal(1.0, 2.0, (2, 2, 3, 5)).astype(np.float32)
    fused, _, (gamma, beta, mm, mv) = _layers(5, rng, synchronized=synchronized)
    y = fused(x, training=True).numpy()
    y_ref, mm_ref, mv_ref = numpy_batchnorm_train(x, gamma, beta, mm, mv)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), mm_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), mv_ref, rtol=1e-6, atol=1e-6)
    # The injected mistake, keeping the kernel's unbiased variance, is far outside that tolerance.
    unbiased = mv * MOMENTUM + x.astype(np.float64).var(axis=(0, 1, 2), ddof=1) * (1 - MOMENTUM)
    assert np.abs(unbiased - mv_ref).max() > 1e-3
    # And it is the fused kernel that ran (one replica: synchronized statistics are this replica's).
    assert "FusedBatchNormV3" in _op_types(lambda t: fused(t, training=True), tf.TensorSpec([2, 2, 3, 5]))


def test_gradients_match_keras_batchnorm(rng):
    x = tf.constant(rng.normal(0.5, 1.5, (2, 4, 6, 3)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(2, 4, 6, 3)).astype(np.float32))
    fused, plain, _ = _layers(3, rng)
    grads = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * upstream)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for got, want in zip(*grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_inference_and_fallbacks_are_keras(rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    fused, plain, _ = _layers(3, rng)
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-6)
    # Not 4-D: Keras' path (same numbers); frozen (trainable=False): inference statistics, as Keras.
    x3 = rng.normal(size=(2, 5, 3)).astype(np.float32)
    fused3, plain3, _ = _layers(3, rng, rank=3)
    np.testing.assert_allclose(fused3(x3, training=True).numpy(), plain3(x3, training=True).numpy(), atol=1e-5)
    fused.trainable = plain.trainable = False
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-6)


def test_mixed_bfloat16_runs_fused_with_float32_statistics(rng):
    x = rng.normal(size=(2, 4, 6, 8)).astype(np.float32)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        fused, _, (gamma, beta, mm, mv) = _layers(8, rng)
        y = fused(tf.cast(x, tf.bfloat16), training=True)
        ops = _op_types(lambda t: fused(t, training=True), tf.TensorSpec([2, 4, 6, 8], tf.bfloat16))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert y.dtype == tf.bfloat16 and fused.moving_variance.dtype == "float32"
    assert "FusedBatchNormV3" in ops
    y_ref, mm_ref, _ = numpy_batchnorm_train(tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy(), gamma, beta, mm, mv)
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), y_ref, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(fused.moving_mean.numpy(), mm_ref, rtol=1e-5, atol=1e-5)


def test_config_round_trip_and_save_load(tmp_path, rng):
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, FusedBatchNormalization(epsilon=EPS, momentum=MOMENTUM, name="bn")(inputs))
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 3).astype(np.float32) for _ in range(4)])
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    x = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


_BF16_STEP = """
import keras, numpy as np, tensorflow as tf
from tfdepth.layers import FusedBatchNormalization
keras.mixed_precision.set_global_policy("mixed_bfloat16")
layer = FusedBatchNormalization(epsilon=1e-5, momentum=0.9)
x = tf.cast(tf.random.stateless_normal([2, 4, 6, 8], seed=(1, 2)), tf.bfloat16)
@tf.function
def step(t):
    with tf.GradientTape() as tape:
        tape.watch(t)
        loss = tf.reduce_sum(tf.cast(layer(t, training=True), tf.float32) ** 2)
    return tape.gradient(loss, [t, layer.gamma])
grads = step(x)
print("finite", all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(g, tf.float32)))) for g in grads))
"""


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_mixed_bfloat16_training_runs_with_and_without_onednn(onednn):
    """bf16 activations go straight into FusedBatchNormV3: that needs a bf16 kernel with oneDNN (TensorFlow's default
    on AVX-512 VNNI/BF16 and AMX CPUs) and without it (the default elsewhere); both must train."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _BF16_STEP], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finite True" in done.stdout


def test_synchronized_moments_on_two_replicas_are_the_two_pass_global_moments(rng, mirrored_strategy):
    """Two replicas with half the batch each normalise like one device on the whole batch, also where the mean
    dwarfs the spread (mean 30, std 0.03), which Keras' E[x^2] - E[x]^2 synchronised moments get wrong."""
    x = (30.0 + 0.03 * rng.normal(size=(4, 3, 3, 2))).astype(np.float32)
    x[2:] += 0.05  # the two half-batches differ: local statistics would not do
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    want = (x64 - mean) / np.sqrt(var + EPS)

    def replicated(layer_class):
        with mirrored_strategy.scope():
            layer = layer_class(epsilon=EPS, momentum=MOMENTUM, synchronized=True, center=False, scale=False)
            layer.build((None, 3, 3, 2))
        batch = next(iter(mirrored_strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(x).batch(4))))
        out = mirrored_strategy.run(tf.function(lambda t: layer(t, training=True)), args=(batch,))
        got = np.concatenate([t.numpy() for t in mirrored_strategy.experimental_local_results(out)])
        return got, layer

    got, layer = replicated(FusedBatchNormalization)
    np.testing.assert_allclose(got, want, atol=2e-3)
    np.testing.assert_allclose(layer.moving_variance.numpy(), MOMENTUM + (1 - MOMENTUM) * var, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - MOMENTUM) * mean, rtol=1e-6)
    keras_got, _ = replicated(keras.layers.BatchNormalization)
    assert np.abs(keras_got - want).max() > 10 * np.abs(got - want).max()  # the classic form loses the variance
