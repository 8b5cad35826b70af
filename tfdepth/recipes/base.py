"""What every family's recipe shares: the recipe interface and the pieces all recipes build with.

A recipe is the one place that composes a family's data, trainer and evaluation (DESIGN.md "recipes"). It says:
its datasets (:meth:`Recipe.datasets`), how its trainer is built from a config (:meth:`Recipe.build_trainer`), its
evaluation protocol (:meth:`Recipe.evaluate`) and the input multiple of its networks. The runner
(``tfdepth/experiment.py``), the CLIs and the benchmarks only ever talk to this interface.

Staged families (``staged = True``, e.g. RSN) train in consecutive stages (:meth:`Recipe.stages`), each a fit of its
own trainer on the same networks: ``build_trainer(..., stage=name, networks=...)`` receives the networks of the
previous stage, and :meth:`Recipe.start_stage` runs once before a stage's first step (e.g. an initialisation copied
from the previous stage's module).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import keras

from tfdepth.config import ConfigError, config_from_dict, config_to_dict
from tfdepth.models.inference_heads import get_inference_spec
from tfdepth.train.optimizers import make_optimizer
from tfdepth.train.schedules import step_decay_schedule

__all__ = ["Recipe", "Datasets", "precision_policy", "scheduled_optimizer", "resolve_config", "save_run_networks"]


@dataclass
class Datasets:
    """A family's training inputs for the runner."""

    train: Any  # batched, repeated tf.data.Dataset of training batches
    validation: Any  # batched, repeated validation dataset, or None
    steps_per_epoch: int
    validation_has_depth: bool  # False: no depth metrics are monitored
    sample_images: Any = None  # a few validation images [N,H,W,3] for TensorBoard, or None


@contextlib.contextmanager
def precision_policy(precision: str):
    """Build networks under ``precision`` (a Keras dtype policy) and restore the global policy afterwards, so later
    models in the same process (evaluation, export, tests) are not silently built in low precision."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def scheduled_optimizer(train_config, total_steps: int, learning_rate: float | None = None):
    """``train.optimizer`` with the step decay of ``train`` (x factor after ``lr_decay_at`` of ``total_steps``)."""
    schedule = step_decay_schedule(
        train_config.learning_rate if learning_rate is None else learning_rate, total_steps,
        train_config.lr_decay_at, train_config.lr_decay_factor, train_config.lr_warmup_steps,
    )
    return make_optimizer(train_config.optimizer, schedule, epsilon=train_config.optimizer_epsilon,
                          weight_decay=train_config.weight_decay, momentum=train_config.momentum)


def save_run_networks(trainer, directory, config=None) -> dict:
    """Save the trainer's networks (``<role>_net.keras``) and its ``config.yaml`` into ``directory``, so that
    ``tfdepth.DepthPredictor.from_run_dir(directory)`` and export read it as a run (every family's
    ``save_networks``)."""
    from pathlib import Path

    from tfdepth.config import save_config
    from tfdepth.train.runner import save_networks

    config = config if config is not None else getattr(trainer, "config", None)
    if config is None:
        raise ValueError("save_networks needs the config the trainer was built from (pass config=...)")
    paths = save_networks(trainer, directory)
    save_config(config, Path(directory) / "config.yaml")
    return paths


def resolve_config(family: str, config=None, **sections):
    """An ExperimentConfig for ``family`` from ``config`` (or the defaults) with ``sections`` merged in.

    ``sections`` are dicts per section, e.g. ``model={"encoder_depth": 34}, train={"learning_rate": 1e-4}``; the
    result is validated like a YAML file (unknown keys are errors that name the key).
    """
    values = config_to_dict(config) if config is not None else {"model": {"name": family}}
    for section, updates in sections.items():
        if updates is None:
            continue
        if not isinstance(updates, dict):
            raise ConfigError(f"{section}=... must be a dict of keys to values, got {updates!r}")
        values.setdefault(section, {})
        values[section] = {**(values[section] or {}), **updates}
    values.setdefault("model", {}).setdefault("name", family)
    resolved = config_from_dict(values, source=f"{family} recipe arguments")
    if resolved.model.name != family:
        raise ConfigError(f"model.name is {resolved.model.name!r} but this is the {family!r} recipe")
    return resolved


class Recipe:
    """Interface of a family's recipe (module docstring). Subclasses set ``name`` and implement the methods."""

    name: str = ""
    staged: bool = False

    def stages(self, config) -> list[tuple[str | None, int]]:
        """(stage name, epochs) in training order; one unnamed stage of ``train.epochs`` unless ``staged``."""
        return [(None, config.train.epochs)]

    def start_stage(self, trainer, config, stage, log=print) -> None:
        """Run before the first step of ``stage`` (not on a resume inside it; a resume restores the checkpoint)."""

    @property
    def input_multiple(self) -> int:
        return get_inference_spec(self.name).input_multiple

    def check_config(self, config) -> None:
        """Raise ConfigError for values that cannot work, before any work (sizes, family-specific rules)."""
        multiple = self.input_multiple
        for key in ("height", "width"):
            value = getattr(config.data, key)
            if value % multiple:
                fixed = max(multiple, round(value / multiple) * multiple)
                raise ConfigError(
                    f"data.{key}={value} is not a multiple of {multiple} (the {self.name} networks' input "
                    f"multiple); use e.g. --set data.{key}={fixed}"
                )

    def datasets(self, config) -> Datasets:
        raise NotImplementedError

    def build_trainer(self, config, total_steps: int, *, monitor: bool = True, stage=None, networks=None):
        """The family's compiled trainer; call inside ``strategy.scope()``. Staged recipes get the ``stage`` and the
        previous stage's ``networks`` (``trainer.networks()``, None for the first stage)."""
        raise NotImplementedError

    def eval_frames(self, config, split: str = "test"):
        """Frames of ``split`` at the stored size for parity checks and pictures: ``(name, image, depth)`` with the
        image uint8 or float in [0, 1] ``[H, W, 3]`` and depth ``[H, W]`` metres (or None without ground truth);
        one frame per scene for video data, so the frames differ."""
        raise NotImplementedError

    def training_images(self, config):
        """Training images without augmentation, float in [0, 1] ``[H, W, 3]`` (int8 calibration)."""
        raise NotImplementedError

    def evaluate(self, run_dir, config, *, split: str = "test", max_scenes: int | None = None) -> dict | None:
        """Metrics of a finished run on ``split`` with the family's protocol, or None when it has no ground truth."""
        raise NotImplementedError
