"""Experiment configuration: frozen dataclasses, strict YAML loading, ``--set a.b=value`` overrides.

A config file is YAML whose top-level keys are ``name``, ``description`` and the sections ``data``, ``model``,
``loss``, ``train``, ``eval``, ``export``. ``data``, ``train``, ``eval`` and ``export`` are common to every family
(``common.py``); ``model`` and ``loss`` belong to the family named by ``model.name`` (``monodepth``: ``monodepth.py``;
each family registers its pair in :data:`FAMILY_SECTIONS`). Every key is checked: an unknown key is an error that
names the key, the file and the closest valid key. Values are type-checked against the annotations and range-checked
by each section, so a bad value fails when the file is read, before any work.

Config objects are read only by builders and CLIs; library functions take explicit arguments (DESIGN.md).
"""

from __future__ import annotations

import copy
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfdepth.config.common import (
    NONFINITE_POLICIES,
    OPTIMIZERS,
    PRECISIONS,
    STRATEGIES,
    DataConfig,
    EvalConfig,
    ExportConfig,
    TrainConfig,
)
from tfdepth.config.monodepth import MonodepthLossConfig, MonodepthModelConfig
from tfdepth.config.rsn import RsnLossConfig, RsnModelConfig
from tfdepth.config.sddr import SddrLossConfig, SddrModelConfig
from tfdepth.config.schema import ConfigError, build_section, config_to_dict
from tfdepth.io import atomic_write_text

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "LossConfig", "MonodepthModelConfig", "MonodepthLossConfig",
    "RsnModelConfig", "RsnLossConfig", "SddrModelConfig", "SddrLossConfig",
    "TrainConfig", "EvalConfig", "ExportConfig", "ExperimentConfig", "FAMILY_SECTIONS", "register_family",
    "load_config", "read_yaml", "config_from_dict", "config_to_dict", "apply_overrides", "save_config", "config_differences",
    "PRECISIONS", "STRATEGIES", "OPTIMIZERS", "NONFINITE_POLICIES",
]

# model.name -> (model section class, loss section class). New families add one entry (register_family).
FAMILY_SECTIONS: dict[str, tuple[type, type]] = {
    "monodepth": (MonodepthModelConfig, MonodepthLossConfig),
    "rsn": (RsnModelConfig, RsnLossConfig),
    "sddr": (SddrModelConfig, SddrLossConfig),
}
DEFAULT_FAMILY = "monodepth"

# The first family's sections under their historical names (code and run directories written before the split).
ModelConfig = MonodepthModelConfig
LossConfig = MonodepthLossConfig


def register_family(name: str, model_section: type, loss_section: type) -> None:
    """Make ``model.name: <name>`` select ``model_section`` and ``loss_section`` (frozen dataclasses)."""
    FAMILY_SECTIONS[name] = (model_section, loss_section)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=MonodepthModelConfig)  # the family's model section (FAMILY_SECTIONS)
    loss: Any = field(default_factory=MonodepthLossConfig)  # the family's loss section
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def family(self) -> str:
        return self.model.name


_COMMON_SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "export": ExportConfig}


def _upgrade_legacy_keys(values: dict) -> dict:
    """Read keys of earlier releases that run directories may still hold (their config.yaml must keep loading).

    ``train.mixed_precision: bool`` became ``train.precision`` (``true`` meant mixed_float16).
    """
    train = values.get("train")
    if not isinstance(train, dict) or "mixed_precision" not in train:
        return values
    train = dict(train)
    legacy = train.pop("mixed_precision")
    if not isinstance(legacy, bool):
        raise ConfigError(f"train.mixed_precision (replaced by train.precision) must be true or false, got {legacy!r}")
    train.setdefault("precision", "mixed_float16" if legacy else "float32")
    return {**values, "train": train}


def _build_experiment(values: dict) -> ExperimentConfig:
    import difflib

    names = [f.name for f in ExperimentConfig.__dataclass_fields__.values()]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown section {key!r}.{hint} Valid top-level keys: {', '.join(names)}")
    model_values = values.get("model") or {}
    if not isinstance(model_values, dict):
        raise ConfigError(f"model: expected a mapping of keys to values, got {model_values!r}")
    family = model_values.get("name", DEFAULT_FAMILY)
    if family not in FAMILY_SECTIONS:
        raise ConfigError(f"model.name {family!r} is not a model family; known: {', '.join(sorted(FAMILY_SECTIONS))}")
    model_cls, loss_cls = FAMILY_SECTIONS[family]
    kwargs = {}
    for key in ("name", "description"):
        if key in values:
            if not isinstance(values[key], str):
                raise ConfigError(f"{key}: expected a string, got {values[key]!r}")
            kwargs[key] = values[key]
    for key, cls in {**_COMMON_SECTIONS, "model": model_cls, "loss": loss_cls}.items():
        kwargs[key] = build_section(cls, values.get(key), key)
    return ExperimentConfig(**kwargs)


def config_from_dict(values: dict | None, source: str = "<dict>") -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from nested plain data; errors name ``source``."""
    try:
        return _build_experiment(_upgrade_legacy_keys(dict(values or {})))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: the key must be dotted section names, e.g. train.learning_rate")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot parse the value as YAML ({err})") from None
    return key.split("."), value


def apply_overrides(values: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to nested plain data; returns a new dict."""
    result = copy.deepcopy(values) if values else {}
    for text in overrides or ():
        path, value = _parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in YAML file ``path``; :class:`ConfigError` naming the file when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing YAML file, e.g. configs/default.yaml")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, model:, ...)")
    return values


def load_config(path: str | os.PathLike | None = None, overrides: typing.Iterable[str] = ()) -> ExperimentConfig:
    """Load a YAML experiment file (or the defaults when ``path`` is None) and apply ``overrides``.

    Raises :class:`ConfigError` naming the file and key for unknown keys, wrong types and unreadable files.
    """
    values: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        values = read_yaml(path)
    overrides = list(overrides or ())
    if overrides:
        try:
            values = apply_overrides(values, overrides)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        source = f"{source} with --set {' '.join(overrides)}"
    return config_from_dict(values, source)


def save_config(config: ExperimentConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML atomically (temp file + rename: a killed run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_text(path, text)
    return path


def config_differences(a: ExperimentConfig, b: ExperimentConfig, ignore: typing.Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs (``ignore``: keys or section prefixes to skip)."""
    ignore = tuple(ignore)

    def flat(values, prefix=""):
        out = {}
        for key, value in values.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                out.update(flat(value, dotted + "."))
            else:
                out[dotted] = value
        return out

    fa, fb = flat(config_to_dict(a)), flat(config_to_dict(b))
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if fa.get(k) != fb.get(k) and not any(k == i or k.startswith(i + ".") for i in ignore)]
