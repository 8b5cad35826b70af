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
except RuntimeError as err:  # TensorFlow was initialised before this file ran: distribution tests cannot work
    raise RuntimeError("tests/conftest.py must configure the logical CPUs before any TensorFlow op runs") from err


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the 2 logical CPUs for the whole session.

    Several strategy objects in one process hand out colliding collective-instance keys (synchronized
    BatchNorm all-reduces then fail with "Shape mismatch in the collective instance"), so every
    distribution test shares this one.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(1234)
