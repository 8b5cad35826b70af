"""The one runner for every family: config -> recipe -> data -> trainer -> run directory.

Used by ``train.py``, ``evaluate.py`` and the benchmarks; family-specific work is the recipe's
(``tfdepth.recipes``). A run directory holds:

* ``config.yaml``: the resolved config, written once when the run starts and never rewritten;
* ``run.json``: the run's step plan (epochs, steps per epoch, total) and status (``training`` | ``complete``);
* ``checkpoints/``: the latest complete training state (resumable; see ``tfdepth.train.runner``);
* ``logs/``: TensorBoard; ``<role>_net.keras``: the trained networks, written atomically at the end;
* staged families (RSN): ``stages/<n>_<stage>/checkpoints`` and ``logs`` per stage instead; a stage starts from the
  networks as the previous stage left them, and a resume continues in the stage where the run stopped;
* ``metrics.json``: the test split with the family's protocol (absent when the split has no ground truth).

Rerunning ``train.py`` on a run directory resumes it when the config and step plan are the same, says so and does
nothing when the run is complete, and refuses before touching anything when they differ (naming the keys).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

__all__ = ["RunError", "run_training", "evaluate_run", "plan_steps", "plan_stage_steps", "stage_directory"]

RUN_STATE_FILE = "run.json"


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


def plan_steps(epochs: int, steps_per_epoch: int, max_steps: int | None = None) -> tuple[int, int]:
    """(epochs, steps per epoch) of a run; a ``max_steps`` cap shortens each epoch so epochs x steps <= the cap."""
    if max_steps is not None and max_steps < epochs * steps_per_epoch:
        epochs = max(1, math.ceil(max_steps / steps_per_epoch))
        steps_per_epoch = max(1, max_steps // epochs)
    return epochs, steps_per_epoch


def plan_stage_steps(epochs: int, steps_per_epoch: int, max_steps: int | None = None, *,
                     staged: bool = False) -> tuple[int, int]:
    """:func:`plan_steps`, except that a staged run keeps every stage's epochs and shortens the epochs instead
    (at least one step each), so a ``--steps`` cap still runs every stage."""
    if not staged:
        return plan_steps(epochs, steps_per_epoch, max_steps)
    if max_steps is not None and max_steps < epochs * steps_per_epoch:
        steps_per_epoch = max(1, max_steps // epochs)
    return epochs, steps_per_epoch


def stage_directory(run_dir: Path, index: int, stage: str) -> Path:
    """Where stage ``index`` of a staged run keeps its checkpoints and logs: ``stages/<n>_<stage>/``."""
    return Path(run_dir) / "stages" / f"{index + 1}_{stage}"


def _has_checkpoint(directory: Path) -> bool:
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(Path(directory) / "checkpoints")) is not None


def _pipeline_error(err) -> str | None:
    """The one-line message of a ValueError raised inside a ``tf.numpy_function`` of the input pipeline (TF wraps
    it in an InvalidArgumentError with the Python traceback), or None for any other error."""
    import tensorflow as tf

    if not isinstance(err, tf.errors.InvalidArgumentError):
        return None
    for line in str(err.message).splitlines():
        line = line.strip()
        if line.startswith("ValueError: "):
            return line[len("ValueError: "):]
    return None


def _read_state(run_dir: Path) -> dict | None:
    path = run_dir / RUN_STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path} is not valid JSON ({err}); it was not written by train.py, or was edited") from None


def _check_existing_run(run_dir: Path, config):
    """The stored config of an existing run directory (None for a new one); RunError when it differs."""
    from tfdepth.config import ConfigError, config_differences, load_config

    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--run-dir {run_dir} is a file, not a directory; choose another path")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        if run_dir.is_dir() and any(p.name != "logs" for p in run_dir.iterdir()):
            raise RunError(f"--run-dir {run_dir} exists and holds files but no config.yaml: it is not a tfdepth run; "
                           "choose a new or empty directory")
        return None
    try:
        stored = load_config(config_path)
    except ConfigError as err:
        raise RunError(f"{run_dir} holds a run whose config.yaml cannot be read ({err}); use a new --run-dir") from None
    differences = config_differences(stored, config)
    if differences:
        shown = ", ".join(differences[:8]) + (" ..." if len(differences) > 8 else "")
        raise RunError(
            f"{run_dir} holds a run with a different config ({shown} differ); nothing was changed. Resume it with "
            f"the same config, or start a new run with another --run-dir"
        )
    return stored


def _seed(seed):
    import keras

    keras.utils.set_random_seed(seed)


def _configure_determinism(train_config):
    import tensorflow as tf

    _seed(train_config.seed)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
        # Grappler's graph rewrites made two fits of the same graph differ at 1e-7 (measured: op determinism alone
        # left 50 of 128 depth-net tensors different after one step); without them fit() is reproducible.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def run_training(config, run_dir, *, max_steps: int | None = None, evaluate: bool = True, verbose="auto",
                 log=print) -> dict:
    """Train the configured family into ``run_dir`` (resuming it if it exists) and evaluate it on the test split.

    Returns the test metrics (``{}`` when ``evaluate`` is false or the split has no ground truth).
    """
    from tfdepth.config import ConfigError, save_config
    from tfdepth.io import atomic_write_json
    from tfdepth.recipes import get_recipe
    from tfdepth.train.runner import NonFiniteError, fit_trainer, save_networks
    from tfdepth.train.strategy import is_chief, make_strategy, shard_by_data

    try:
        recipe = get_recipe(config.model.name)
        recipe.check_config(config)
    except (ConfigError, ValueError) as err:
        raise RunError(str(err)) from None
    run_dir = Path(run_dir)
    stored = _check_existing_run(run_dir, config)
    try:
        strategy = make_strategy(config.train.strategy, config.train.gpus)
    except ValueError as err:
        raise RunError(str(err)) from None
    chief = is_chief(strategy)
    _configure_determinism(config.train)

    started = time.time()
    data = recipe.datasets(config)
    stages = recipe.stages(config)
    epochs, steps = plan_stage_steps(sum(e for _, e in stages), data.steps_per_epoch, max_steps,
                                     staged=recipe.staged)
    if not recipe.staged:
        stages = [(None, epochs)]
    total = epochs * steps
    plan = {"family": config.model.name, "epochs": epochs, "steps_per_epoch": steps, "total_steps": total}
    if recipe.staged:
        plan["stages"] = [[name, e] for name, e in stages]
    state = _read_state(run_dir) if stored is not None else None
    if state is not None and any(state.get(k) != v for k, v in plan.items()):
        raise RunError(
            f"{run_dir} holds a run planned as {state.get('epochs')} epochs x {state.get('steps_per_epoch')} steps; "
            f"this call plans {epochs} x {steps} (a different --steps or data size); nothing was changed. Resume "
            "it with the same --steps, or start a new run with another --run-dir"
        )
    if state is not None and state.get("status") == "complete":
        log(f"the run in {run_dir} is complete ({total} steps); nothing to train. Start a new run with another "
            "--run-dir to train again")
        metrics_path = run_dir / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if stored is None and chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    if chief:
        atomic_write_json(run_dir / RUN_STATE_FILE, {**plan, "status": "training"})

    if not data.validation_has_depth:
        log("the validation split has no ground-truth depth: depth metrics are not monitored")
    validation = data.validation if config.train.validation_steps else None  # 0 = no validation
    trainer = None
    # Stages run in order in every process: a finished stage's fit only restores its last checkpoint into the
    # shared networks, so each stage starts from the end of the previous one, in a resumed process too.
    for index, (stage, stage_epochs) in enumerate(stages):
        stage_dir = stage_directory(run_dir, index, stage) if recipe.staged else run_dir
        if index:
            # Each stage reads a new pipeline seeded data.seed + stage index: its batches do not depend on how many
            # stages this process has run (a resumed run sees what an uninterrupted one saw).
            data = recipe.datasets(dataclasses.replace(
                config, data=dataclasses.replace(config.data, seed=config.data.seed + index)))
            validation = data.validation if config.train.validation_steps else None
        if trainer is None:
            # The initial weights depend on train.seed alone, not on what preparing the data drew from the random
            # generators: a run that had to render its dataset first started from other weights than its rerun.
            _seed(config.train.seed)
        with strategy.scope():
            kwargs = {"stage": stage, "networks": trainer.networks() if trainer else None} if recipe.staged else {}
            trainer = recipe.build_trainer(config, stage_epochs * steps, monitor=data.validation_has_depth, **kwargs)
        if recipe.staged and not _has_checkpoint(stage_dir):
            log(f"stage {index + 1}/{len(stages)}: {stage} ({stage_epochs} epochs x {steps} steps)")
            recipe.start_stage(trainer, config, stage, log=log)
        try:
            fit_trainer(
                trainer, stage_dir, shard_by_data(data.train, strategy), shard_by_data(validation, strategy),
                epochs=stage_epochs, steps_per_epoch=steps, validation_steps=config.train.validation_steps or None,
                sample_images=data.sample_images, checkpoint_every_steps=config.train.checkpoint_every_steps,
                keep_checkpoints=config.train.keep_checkpoints, chief=chief, verbose=verbose, log=log,
            )
        except NonFiniteError as err:
            raise RunError(str(err)) from None
        except Exception as err:  # a bad sample found by a numpy step of the input pipeline (e.g. Algorithm 1)
            message = _pipeline_error(err)
            if message is None:
                raise
            raise RunError(f"the training data has a bad sample: {message}") from None
    save_networks(trainer, run_dir, chief=chief)
    train_seconds = time.time() - started
    if not chief:
        return {}
    atomic_write_json(run_dir / RUN_STATE_FILE, {**plan, "status": "complete"})
    if not evaluate:
        return {}
    metrics = recipe.evaluate(run_dir, config, split=config.eval.split)
    if metrics is None:
        log(f"depth evaluation skipped: the {config.eval.split!r} split has no ground-truth depth, so no depth "
            "metric is claimed (add depth/ maps to evaluate; README, Custom data)")
        return {}
    metrics = {"split": config.eval.split, **metrics, "train_seconds": round(train_seconds, 1),
               "train_steps": int(total)}
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def evaluate_run(run_dir, *, split: str = "test", output=None, max_scenes: int | None = None) -> dict:
    """Evaluate a finished run directory with its family's protocol on ``split``."""
    from tfdepth.config import load_config
    from tfdepth.io import atomic_write_json
    from tfdepth.recipes import get_recipe

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: --run-dir must be a directory written by train.py")
    config = load_config(config_path)
    metrics = get_recipe(config.model.name).evaluate(run_dir, config, split=split, max_scenes=max_scenes)
    if metrics is None:
        raise RunError(f"the {split!r} split of this run's data has no ground-truth depth: nothing to evaluate")
    metrics = {"split": split, **metrics}
    if output is not None:
        atomic_write_json(Path(output), metrics)
    return metrics
