"""tf.distribute strategy selection.

``auto`` uses MirroredStrategy over all local GPUs when there are two or more, else the default strategy;
``multi_worker`` needs ``TF_CONFIG`` (one process per worker). See specs/stack_notes.md: models *and* optimizers
must be created inside ``strategy.scope()``.
"""

import json
import os

import tensorflow as tf

__all__ = ["make_strategy", "STRATEGIES"]

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def make_strategy(name: str = "auto", devices=None) -> tf.distribute.Strategy:
    """Return the strategy called ``name`` (one of ``STRATEGIES``); ``devices`` is passed to MirroredStrategy."""
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError(
            "train.strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task of this "
            "worker), e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
            "\"task\": {\"type\": \"worker\", \"index\": 0}}'"
        )
    try:
        json.loads(tf_config)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err})") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
