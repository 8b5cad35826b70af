"""tf.distribute strategy selection, checked against the devices and the cluster before any work.

``auto``: MirroredStrategy over all local GPUs when there are two or more, else the default strategy.
``default``: one device. ``mirrored``: MirroredStrategy over ``gpus`` local GPUs (None = all; with none present it
mirrors over the CPU). ``multi_worker``: MultiWorkerMirroredStrategy from ``TF_CONFIG`` (one process per worker,
TensorFlow's multi-worker guide); only the chief writes checkpoints, logs and models (:func:`is_chief`).
Models *and* optimizers must be created inside ``strategy.scope()`` (stack_notes.md).
"""

import json
import os

import tensorflow as tf

__all__ = ["make_strategy", "STRATEGIES", "is_chief", "parse_tf_config"]

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
)


def parse_tf_config(text: str | None = None) -> dict:
    """Validated ``TF_CONFIG`` (default: the environment's); ValueError naming what is wrong and an example."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ValueError(f"train.strategy=multi_worker needs the TF_CONFIG environment variable, e.g. {_TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}); e.g. {_TF_CONFIG_EXAMPLE}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG needs a 'cluster' mapping of job names to 'host:port' lists; e.g. {_TF_CONFIG_EXAMPLE}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
            isinstance(a, str) and a.rsplit(":", 1)[-1].isdigit() for a in addresses
        ):
            raise ValueError(f"TF_CONFIG cluster[{job!r}] must be a non-empty list of 'host:port' strings, got {addresses!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(f"TF_CONFIG task.type must be one of the cluster's jobs {sorted(cluster)}, got {task!r}")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(
            f"TF_CONFIG task.index must be an integer in 0..{len(cluster[task['type']]) - 1} for job "
            f"{task['type']!r}, got {index!r}"
        )
    return config


def is_chief(strategy=None) -> bool:
    """True in the process that writes the run's files: always, except a non-chief multi-worker process.

    The chief is task ``chief`` if the cluster has one, else worker 0 (TensorFlow's convention).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task = parse_tf_config()["task"]
    cluster = parse_tf_config()["cluster"]
    if "chief" in cluster:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def make_strategy(name: str = "auto", gpus: int | None = None, devices=None) -> tf.distribute.Strategy:
    """Return the strategy called ``name`` (one of ``STRATEGIES``); ``devices`` overrides the device list."""
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    present = tf.config.list_physical_devices("GPU")
    if gpus is not None and gpus > len(present):
        raise ValueError(
            f"train.gpus={gpus} but this machine has {len(present)} GPU(s) visible to TensorFlow; set train.gpus to "
            f"at most {len(present)} (or leave it unset to use what is there)"
        )
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(present) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is None and gpus is not None:
            devices = [f"/gpu:{i}" for i in range(gpus)] if gpus else ["/cpu:0"]
        return tf.distribute.MirroredStrategy(devices)
    parse_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
