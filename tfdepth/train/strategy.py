"""tf.distribute strategy selection, checked against the devices and the cluster before any work.

``auto``: MirroredStrategy over all local GPUs when there are two or more, else the default strategy.
``default``: one device. ``mirrored``: MirroredStrategy over ``gpus`` local GPUs (None = all; with none present it
mirrors over the CPU). ``multi_worker``: MultiWorkerMirroredStrategy from ``TF_CONFIG`` (one process per worker,
TensorFlow's multi-worker guide); only the chief writes checkpoints, logs and models (:func:`is_chief`).
Models *and* optimizers must be created inside ``strategy.scope()`` (stack_notes.md).

Input on several workers (:func:`shard_by_data`): every worker reads the whole input pipeline and keeps its part of
each global batch (``AutoShardPolicy.DATA``). TensorFlow's default (``AUTO``) shards TFRecord-backed datasets by
file and fails when a split has fewer files than there are workers (a small TFDS split is one file).

``multi_worker`` returns :class:`KerasMultiWorkerMirroredStrategy`, a MultiWorkerMirroredStrategy that Keras 3's
``fit`` can drive: with the plain class, ``fit`` fails before the first step (keras-team/keras#20329, #20585; see
the class). Build your own trainer for several machines inside ``make_strategy("multi_worker").scope()``.
"""

import json
import os

import tensorflow as tf

__all__ = ["make_strategy", "STRATEGIES", "is_chief", "parse_tf_config", "KerasMultiWorkerMirroredStrategy",
           "shard_by_data"]

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


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose ``reduce`` accepts what Keras 3's TF trainer hands it.

    Keras 3.15's ``fit`` calls ``strategy.reduce`` (1) on the whole first batch, a dict here, to build the model
    symbolically, and (2) with ``axis=0`` on each step's scalar results. MultiWorkerMirroredStrategy takes neither
    (a nest: "Attempt to convert a value ({...}) with an unsupported type (<class 'dict'>)"; a scalar: "Invalid
    reduction dimension 0 for input with 0 dimensions"), so ``fit`` fails before the first step. This reduces each
    leaf of a nest on its own, and a scalar over the replicas only: what Keras' single-worker path computes for
    per-replica scalars (the mean of the replicas' values). Everything else is TensorFlow's class unchanged.
    """

    def reduce(self, reduce_op, value, axis):
        def leaf(v):
            rank = tf.convert_to_tensor(self.experimental_local_results(v)[0]).shape.rank
            return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, v, None if rank == 0 else axis)

        return tf.nest.map_structure(leaf, value)


def shard_by_data(dataset, strategy):
    """``dataset`` set to shard by data across the workers of a multi-worker ``strategy`` (else unchanged).

    Every worker runs the whole (deterministic) input pipeline and keeps its slice of each global batch, so the
    global batches are those of a one-process run of the same config, whatever the number of input files; the
    price is that each worker reads and augments every sample (small next to a training step here). Sharding by
    file (TensorFlow's default for TFRecords) needs at least one file per worker and gives other batches.
    """
    if dataset is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


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
    return KerasMultiWorkerMirroredStrategy()
