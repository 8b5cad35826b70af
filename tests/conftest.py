"""Shared test set-up.

Two logical CPU devices are configured before any TensorFlow op runs, so distribution tests can build
``MirroredStrategy(["/cpu:0", "/cpu:1"])`` (stack_notes.md: this must happen first). Everything else runs on
the default device as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import; distribution tests then skip themselves
    pass


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(1234)
