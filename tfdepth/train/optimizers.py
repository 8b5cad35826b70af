"""Optimisers of the trainer core, chosen by ``train.optimizer``.

``adam`` is :class:`TorchAdam`, Adam as PyTorch computes it (``torch.optim.Adam``, which Monodepth2, the RSN code and
SDDR train with). Keras' Adam and PyTorch's differ only in where epsilon enters (Kingma & Ba 2015, Algorithm 1,
writes PyTorch's form)::

    PyTorch:  w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)          eps = 1e-8
    Keras:    w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)           eps = 1e-7

Both are the same expression with Keras' epsilon equal to PyTorch's ``eps * sqrt(1 - b2^t)``, so TorchAdam is
Keras' update with that epsilon (on one device as TensorFlow's fused ``ResourceApplyAdam`` kernel, one op per
variable; the element-wise form under multi-device strategies). The difference matters when gradients are small
against epsilon: a freshly initialised depth decoder's gradients are 1e-8..1e-6, where Keras' step is 2% of
PyTorch's at step 1 and 32% still at step 1,120 (measured on the default config; ``stack_notes.md`` has the
derivation). ``keras_adam`` keeps Keras' form (what runs trained before this option existed used). ``adamw`` is
Keras' AdamW (decoupled weight decay).

``sgd`` is :class:`TorchSGD`, ``torch.optim.SGD`` (the RSN code trains with momentum 0.99 and weight decay 5e-4).
PyTorch's SGD weight decay is an L2 term added to the gradient *before* the momentum buffer (coupled), Keras'
``weight_decay`` shrinks the weights directly (decoupled): with momentum 0.99 the coupled decay is carried by the
buffer and acts about 1 / (1 - 0.99) = 100x more strongly than the decoupled one at the same value, so the two are
not interchangeable. TorchSGD computes PyTorch's form (dampening 0, no Nesterov)::

    g = grad + weight_decay * w;   buf = momentum * buf + g;   w -= lr * buf        (buf = g at step 1)
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

__all__ = ["TorchAdam", "TorchSGD", "OPTIMIZERS", "make_optimizer"]

OPTIMIZERS = ("adam", "keras_adam", "adamw", "sgd")


@keras.saving.register_keras_serializable(package="tfdepth")
class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon placement (module docstring); default ``epsilon`` 1e-8 as ``torch.optim.Adam``.

    Same slots (``momentum``, ``velocity``) as ``keras.optimizers.Adam``, so checkpoints of either load into the other.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False,
                 name="torch_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        handles = _resource_handles(variable, m, v)
        if handles is not None and not self.amsgrad and not isinstance(gradient, tf.IndexedSlices):
            return self._fused_update(gradient, variable, learning_rate, *handles)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.amsgrad:
            v_max = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        # PyTorch: lr / bias_1 * m / (sqrt(v / bias_2) + eps)
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), ops.cast(self.epsilon, dtype))
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denominator))

    def _fused_update(self, gradient, variable, learning_rate, var_handle, m_handle, v_handle):
        """The same update as one ``ResourceApplyAdam`` kernel per variable (instead of ~12 element-wise passes).

        The kernel computes Keras' form ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_k)``; with
        ``eps_k = eps * sqrt(1 - b2^t)`` that is PyTorch's (module docstring). Measured on the Monodepth2
        training step (192x640, batch 2): 1642 -> 1555 ms. Taken when the variable and its slots are plain
        resource variables (one device); under a multi-device strategy the element-wise form runs.
        """
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        tf.raw_ops.ResourceApplyAdam(
            var=var_handle, m=m_handle, v=v_handle, beta1_power=tf.pow(beta_1, step), beta2_power=beta_2_power,
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype) * tf.sqrt(1.0 - beta_2_power), grad=tf.cast(gradient, dtype),
            use_locking=False,
        )


def _resource_handles(*variables):
    """The resource handles of Keras / TensorFlow variables on one device, or None if any is distributed.

    A mirrored variable (``DistributedValues``) or one replica's component of it (it knows its container) is left
    to the element-wise form, whose assigns the strategy routes to every device.
    """
    handles = []
    for variable in variables:
        value = variable.value if isinstance(variable, keras.Variable) else variable
        component = getattr(value, "_distributed_container", None)
        if not isinstance(value, tf.Variable) or isinstance(value, tf.distribute.DistributedValues) \
                or (component is not None and component() is not None):
            return None
        handles.append(value.handle)
    return handles


@keras.saving.register_keras_serializable(package="tfdepth")
class TorchSGD(keras.optimizers.SGD):
    """SGD as ``torch.optim.SGD`` computes it: coupled (L2) ``weight_decay`` and PyTorch's momentum buffer.

    Module docstring for the update. The buffer equals Keras' ``momentums`` slot times ``-1 / lr`` only for a
    constant learning rate, so the buffer is stored as PyTorch's (the slot keeps Keras' name ``momentum``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, weight_decay=0.0, name="torch_sgd", **kwargs):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        kwargs.pop("nesterov", None)
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), nesterov=False, name=name, **kwargs)
        self.l2_weight_decay = float(weight_decay)  # not Keras' (decoupled) weight_decay

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.l2_weight_decay:
            gradient = ops.add(gradient, ops.multiply(variable, ops.cast(self.l2_weight_decay, dtype)))
        if self.momentum:
            buf = self.momentums[self._get_variable_index(variable)]
            self.assign(buf, ops.add(ops.multiply(buf, ops.cast(self.momentum, dtype)), gradient))
            gradient = buf
        self.assign_sub(variable, ops.multiply(gradient, lr))

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.l2_weight_decay}


def make_optimizer(name: str, learning_rate, *, epsilon: float | None = None, weight_decay: float = 0.0,
                   momentum: float = 0.0):
    """The optimiser ``name`` (one of :data:`OPTIMIZERS`) with ``learning_rate`` (a float or a schedule).

    ``epsilon`` None takes each optimiser's own default (PyTorch's 1e-8 for ``adam``, Keras' 1e-7 otherwise).
    ``momentum`` is used by ``sgd`` only; ``weight_decay`` is PyTorch's coupled L2 for ``sgd``, decoupled otherwise.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if name == "sgd":
        return TorchSGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    kwargs = {} if epsilon is None else {"epsilon": float(epsilon)}
    if name == "adam":
        return TorchAdam(learning_rate, weight_decay=weight_decay or None, **kwargs)
    if name == "keras_adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None, **kwargs)
    return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **kwargs)
