"""Training-step time of the self-supervised trainer: default strategy vs a 2-replica MirroredStrategy on the CPU.

    python benchmarks/distribution_step.py [--config configs/default.yaml] [--steps 10 --rounds 2 --warmup 3]

The networks, loss and optimizer are those of ``--config`` (default: ``configs/default.yaml``: ResNet18 depth + pose
nets, 4 scales, 64x192 input, batch 8 global); the batch is one fixed set of 8 synthetic street triplets rendered
at the network size (no input pipeline in the timing). Two logical CPU devices are configured first; the mirrored
trainer runs one replica on each (4 samples per replica, synchronized BatchNorm, gradients all-reduced), starting
from the default trainer's initial weights.

Measured: the wall time from ``on_train_batch_begin`` to ``on_train_batch_end`` (which reads the step's loss, so
the step has finished) of every step after ``--warmup`` steps, in ``--rounds`` rounds that alternate the two
strategies (load from other jobs then drifts over both alike). Correctness: the loss of the first step, computed
from the same weights on the same global batch, must agree under both (``first_step_losses_agree``, rtol 1e-4).
No speed-up is expected: both replicas share the same CPU cores, and mirroring adds the all-reduce and the
split/concat of the batch; the ratio says what that overhead costs.

Prints one JSON object (step seconds median and min per strategy, the ratio mirrored / default, the first-step
losses, threads, CPU model, load average). Not part of the test suite (about 2-4 minutes on 2 cores).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, before any TensorFlow op runs (stack_notes.md: this must come first).
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
from machine import cpu_model  # noqa: E402 (benchmarks/machine.py)

LOSS_RTOL = 1e-4  # float32 sums in another order (per replica, then all-reduced); measured differences are ~1e-7


def fixed_batch(batch_size, height, width, seed=0):
    """``batch_size`` street triplets at the network size as tensors (``batches.street_triplets``)."""
    from batches import street_triplets  # benchmarks/batches.py

    return {k: tf.constant(v) for k, v in street_triplets(batch_size, height, width, seed).items()}


class StepTimer(keras.callbacks.Callback):
    """Seconds per training step (begin -> end of the batch, the loss read so the step is done) and the losses."""

    def __init__(self):
        super().__init__()
        self.seconds, self.losses = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # waits for the step's result
        self.seconds.append(time.perf_counter() - self._start)
        self.losses.append(loss)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per strategy and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, first allocations)")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds) < 1 or args.warmup < 1:
        parser.error("--steps and --rounds must be >= 1 and --warmup >= 1 (the first step traces the graph)")

    from tfdepth.config import load_config
    from tfdepth.recipes.monodepth import build_trainer

    config = load_config(args.config, args.overrides)
    load_before = os.getloadavg()
    data = tf.data.Dataset.from_tensors(fixed_batch(config.data.batch_size, config.data.height,
                                                    config.data.width, config.data.seed)).repeat()
    total_steps = 10 * (args.warmup + args.steps * args.rounds)  # the LR schedule stays at its first value

    keras.utils.set_random_seed(config.train.seed)
    trainers = {"default": build_trainer(config, total_steps=total_steps)}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        trainers["mirrored_2_cpu"] = build_trainer(config, total_steps=total_steps)
        trainers["mirrored_2_cpu"].set_weights(trainers["default"].get_weights())

    timers = {name: StepTimer() for name in trainers}
    first_loss = {}
    for name, trainer in trainers.items():  # warm-up: traces the step; its first loss is the correctness check
        trainer.fit(data, epochs=1, steps_per_epoch=args.warmup, verbose=0, callbacks=[timers[name]])
        first_loss[name] = timers[name].losses[0]
        timers[name].seconds.clear()
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            trainer.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timers[name]])

    stats = {name: {"median": round(float(np.median(t.seconds)), 4), "min": round(float(np.min(t.seconds)), 4),
                    "steps": len(t.seconds)} for name, t in timers.items()}
    loss_default, loss_mirrored = first_loss["default"], first_loss["mirrored_2_cpu"]
    relative = abs(loss_mirrored - loss_default) / abs(loss_default)
    result = {
        "benchmark": "distribution_step",
        "config": os.path.relpath(args.config, ROOT),
        "overrides": args.overrides,
        "network_input": [config.data.height, config.data.width],
        "global_batch": config.data.batch_size,
        "encoder_depth": config.model.encoder_depth,
        "scales": list(config.model.scales),
        "replicas": {"default": 1, "mirrored_2_cpu": strategy.num_replicas_in_sync},
        "step_seconds": stats,
        "ratio_mirrored_over_default": {"median": round(stats["mirrored_2_cpu"]["median"] / stats["default"]["median"], 3),
                                        "min": round(stats["mirrored_2_cpu"]["min"] / stats["default"]["min"], 3)},
        "first_step_loss": {"default": loss_default, "mirrored_2_cpu": loss_mirrored},
        "first_step_loss_relative_difference": relative,
        "first_step_losses_agree": bool(relative <= LOSS_RTOL),
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or "default",
                    "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count()},
        "cpu_model": cpu_model(),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    return 0 if result["first_step_losses_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
