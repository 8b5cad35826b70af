"""TorchAdam against hand-computed PyTorch Adam updates (tiny and normal gradients), and Keras' form for contrast."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.train.optimizers import TorchAdam, TorchSGD, make_optimizer


def torch_adam_reference(w0, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam (amsgrad=False, no weight decay), written from its documented algorithm, in float64."""
    w, m, v = float(w0), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return w


def run(optimizer, w0, grads):
    var = tf.Variable([w0], dtype=tf.float32)
    optimizer.build([var])
    for g in grads:
        optimizer.apply_gradients([(tf.constant([g], tf.float32), var)])
    return float(var.numpy()[0])


@pytest.mark.parametrize("grad", [1e-8, 4e-8, 1e-6, 0.3])
def test_one_update_equals_pytorch(grad):
    lr = 1e-4
    expected = torch_adam_reference(0.5, [grad], lr)
    got = run(TorchAdam(lr), 0.5, [grad])
    # Step 1 of PyTorch's Adam: w - lr * g / (|g| + eps), worked by hand for the tiny gradient 1e-8: a step of lr/2.
    if grad == 1e-8:
        assert expected == pytest.approx(0.5 - lr * 0.5, rel=1e-12)
    assert got == pytest.approx(expected, abs=2e-8)  # float32 resolution at 0.5 is 6e-8


def test_several_updates_follow_pytorch_and_keras_form_lags():
    rng = np.random.default_rng(0)
    grads = list(rng.normal(0, 4e-8, 50))
    lr = 1e-3
    w0 = 0.0
    expected = torch_adam_reference(w0, grads, lr)
    ours = run(TorchAdam(lr), w0, grads)
    keras_form = run(make_optimizer("keras_adam", lr), w0, grads)
    assert ours == pytest.approx(expected, rel=1e-4, abs=1e-9)
    # Keras' epsilon (1e-7, before bias correction) dwarfs gradients of 4e-8: its 50 steps move far less.
    assert abs(keras_form - w0) < 0.5 * abs(expected - w0)


def test_one_device_uses_the_fused_kernel_and_a_mirrored_strategy_the_elementwise_form(mirrored_strategy):
    """Both paths of TorchAdam.update_step give PyTorch's updates: the fused ResourceApplyAdam on one device, the
    element-wise form on variables mirrored over two replicas (whose slots are distributed)."""
    rng = np.random.default_rng(1)
    grads = [float(g) for g in rng.normal(0, 1e-3, 5)]
    expected = torch_adam_reference(0.25, grads, 1e-3)

    var = tf.Variable([0.25], dtype=tf.float32)
    optimizer = TorchAdam(1e-3)
    optimizer.build([var])
    step = tf.function(lambda g: optimizer.apply_gradients([(g, var)]))
    ops = {op.type for op in step.get_concrete_function(tf.TensorSpec([1])).graph.get_operations()}
    assert "ResourceApplyAdam" in ops
    for g in grads:
        step(tf.constant([g]))
    assert float(var.numpy()[0]) == pytest.approx(expected, abs=2e-8)

    with mirrored_strategy.scope():
        mirrored = tf.Variable([0.25], dtype=tf.float32)
        optimizer = TorchAdam(1e-3)
        optimizer.build([mirrored])

    @tf.function
    def replica_step(g):
        # Each replica contributes half of g: the all-reduced (summed) gradient is g.
        mirrored_strategy.run(lambda: optimizer.apply_gradients([(g / 2.0, mirrored)]))

    graph_ops = {op.type for op in replica_step.get_concrete_function(tf.TensorSpec([1])).graph.get_operations()}
    for g in grads:
        replica_step(tf.constant([g]))
    assert "ResourceApplyAdam" not in graph_ops
    assert float(mirrored.numpy()[0]) == pytest.approx(expected, abs=6e-8)  # 2 float32 steps at 0.25


def torch_sgd_reference(w0, grads, lr, momentum, weight_decay):
    """torch.optim.SGD (dampening 0, nesterov False), written from its documented algorithm, in float64."""
    w, buf = float(w0), None
    for g in grads:
        g = g + weight_decay * w
        buf = g if buf is None else momentum * buf + g
        w -= lr * buf
    return w


def test_sgd_follows_pytorch_coupled_weight_decay_and_momentum():
    # By hand, two steps of lr 0.1, momentum 0.5, decay 0.1 from w = 1 with gradients 1, 1:
    # g1 = 1 + 0.1 = 1.1, buf = 1.1, w = 1 - 0.11 = 0.89; g2 = 1 + 0.089 = 1.089, buf = 0.55 + 1.089 = 1.639,
    # w = 0.89 - 0.1639 = 0.7261.
    assert torch_sgd_reference(1.0, [1.0, 1.0], 0.1, 0.5, 0.1) == pytest.approx(0.7261, abs=1e-12)
    assert run(TorchSGD(0.1, momentum=0.5, weight_decay=0.1), 1.0, [1.0, 1.0]) == pytest.approx(0.7261, abs=1e-6)
    # The RSN settings (momentum 0.99, weight decay 5e-4) over 200 steps of noisy gradients.
    rng = np.random.default_rng(1)
    grads = list(rng.normal(0.01, 0.05, 200))
    expected = torch_sgd_reference(0.3, grads, 1e-3, 0.99, 5e-4)
    assert run(make_optimizer("sgd", 1e-3, momentum=0.99, weight_decay=5e-4), 0.3, grads) == pytest.approx(
        expected, abs=2e-6)
    # Keras' decoupled decay of the same value is a different (much weaker) decay: not PyTorch's update.
    decoupled = run(keras.optimizers.SGD(1e-3, momentum=0.99, weight_decay=5e-4), 0.3, [0.0] * 200)
    coupled = run(TorchSGD(1e-3, momentum=0.99, weight_decay=5e-4), 0.3, [0.0] * 200)
    assert coupled == pytest.approx(torch_sgd_reference(0.3, [0.0] * 200, 1e-3, 0.99, 5e-4), rel=1e-5)
    assert abs(0.3 - coupled) > 20 * abs(0.3 - decoupled)


def test_sgd_round_trips_through_its_config():
    opt = TorchSGD(0.01, momentum=0.99, weight_decay=5e-4)
    again = TorchSGD.from_config(opt.get_config())
    assert (again.momentum, again.l2_weight_decay, again.weight_decay) == (0.99, 5e-4, None)


def test_make_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match="train.optimizer"):
        make_optimizer("rmsprop", 1e-3)
    assert isinstance(make_optimizer("adam", 1e-3), TorchAdam)
    assert make_optimizer("adam", 1e-3).epsilon == pytest.approx(1e-8)
