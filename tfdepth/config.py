"""Experiment configuration: frozen dataclasses, strict YAML loading, ``--set a.b=value`` overrides.

A config file is YAML whose top-level keys are the sections of :class:`ExperimentConfig` (``name``,
``description``, ``data``, ``model``, ``loss``, ``train``, ``eval``, ``export``). Every key is checked: an unknown
key is an error that names the key, the file and the valid keys (a typo must never be silently ignored). Values are
type-checked against the dataclass annotations. Missing keys take the defaults below, which are the papers'
defaults (Monodepth2 / SegDepth, ``specs/monodepth_seg.md``) except where a comment says otherwise.

Config objects are read only by builders and CLIs; library functions take explicit arguments (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfdepth.io import atomic_write_text

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "TrainConfig",
    "EvalConfig",
    "ExportConfig",
    "ExperimentConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "save_config",
]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key, the file and the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how batches are made (A.1 of monodepth_seg.md)."""

    # "synthetic": the embedded procedural scenes (specs/synthetic.md), built once into a TFDS dataset.
    dataset: str = "synthetic"
    preset: str = "street"  # synthetic preset: street | room
    data_dir: str | None = None  # TFDS data dir; None = TFDS default (~/tensorflow_datasets)
    render_height: int = 192  # resolution the synthetic scenes are rendered and stored at
    render_width: int = 640
    frames_per_scene: int = 5
    train_scenes: int = 400
    validation_scenes: int = 20
    test_scenes: int = 40
    height: int = 192  # network input size (must be a multiple of 32 for the ResNet models)
    width: int = 640
    batch_size: int = 12
    flip: bool = True  # horizontal flip p=0.5, intrinsics updated
    color_jitter: bool = True  # one jitter per sample, networks see it, losses do not (A.1)
    shuffle_buffer: int = 512
    seed: int = 0
    # Real data (dataset: kitti | folders); the synthetic fields above are then unused.
    root: str | None = None  # kitti: KITTI raw root (holds 2011_09_26/ ...); folders: holds train/ validation/ test/
    train_split: str | None = None  # kitti: Monodepth2 split file, e.g. splits/eigen_zhou/train_files.txt
    validation_split: str | None = None  # kitti: e.g. splits/eigen_zhou/val_files.txt
    test_split: str | None = None  # kitti: e.g. splits/eigen/test_files.txt (697 frames, A.8)
    kitti_depth_from: str = "velodyne"  # velodyne = Monodepth2's Eigen GT (vel_depth=True) | camera = z-depth
    kitti_poses: str = "oxts"  # oxts = GPS/IMU ground truth | none = NaN poses (no pose evaluation)
    segmentation_masks: bool = False  # kitti: SegDepth masks <frame>.npy beside each image (B.2)
    intrinsics: tuple[float, ...] | None = None  # folders: default K, 4 normalised (fx/W, fy/H, cx/W, cy/H) or 9 px
    depth_scale: float = 256.0  # folders: 16-bit depth PNG value per metre (KITTI 256, NYU 1000, TUM 5000)


@dataclass(frozen=True)
class ModelConfig:
    """Which networks to build (models/presets.py holds named variants)."""

    name: str = "monodepth"
    encoder_depth: int = 18
    pose_encoder_depth: int = 18
    scales: tuple[int, ...] = (0, 1, 2, 3)
    min_depth: float = 0.1  # disp_to_depth range (A.3)
    max_depth: float = 100.0
    # Depth (network units, inside [min_depth, max_depth]) the untrained net predicts; None = the paper's zero-bias
    # init (~2 * min_depth). Sets where the monocular scale settles (models/depth_decoder.py says why).
    initial_depth: float | None = None
    segmentation: bool = False  # SegDepth U-Net on the predicted disparity (B.1), training only
    segmentation_input: str = "disparity"  # disparity | disparity_and_image
    num_segmentation_classes: int = 2
    sync_batchnorm: bool = True  # replicas share BN statistics (stack_notes: drift otherwise)
    encoder_weights: str | None = None  # opt-in local .npz of torchvision ResNet weights; never downloaded
    pose_encoder_weights: str | None = None


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and weights: L = mu*Lp + lambda*Ls + alpha*Lb (SegDepth B.4; Monodepth2 A.6)."""

    photometric: float = 1.0  # mu
    ssim_weight: float = 0.85  # alpha of the photometric error; 0 = L1 only (--no_ssim)
    smoothness: float = 1e-3  # lambda, divided by 2^s per scale as Monodepth2
    segmentation: float = 5e-4  # alpha of L_b; used only when model.segmentation is true
    automask: bool = True
    automask_warmup_steps: int = 0  # auto-masking off for the first N steps (not in the paper; self_supervised.py)
    min_reprojection: bool = True  # false = average over sources (--avg_reprojection)
    full_res_multiscale: bool = True  # false = Monodepth1-style loss at each scale's resolution (--v1_multiscale)
    segmentation_w0: float = 10.0  # U-Net weight map (B.3, interpretation)
    segmentation_sigma: float = 5.0
    segmentation_class_balance: bool = True
    segmentation_weight_map: bool = True  # false = unweighted CE (the student code's behaviour, for comparison)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (A.7): Adam 1e-4, x0.1 at 3/4 of training."""

    epochs: int = 20
    steps_per_epoch: int | None = None  # None = one pass over the training split
    learning_rate: float = 1e-4
    # adam = Adam as PyTorch computes it (the originals' optimiser) | keras_adam | adamw (train/optimizers.py)
    optimizer: str = "adam"
    optimizer_epsilon: float | None = None  # None = the optimiser's default (1e-8 adam, 1e-7 keras_adam/adamw)
    lr_decay_at: float = 0.75  # fraction of training after which the LR is multiplied by lr_decay_factor
    lr_decay_factor: float = 0.1
    lr_warmup_steps: int = 0  # linear LR warm-up (not in the paper; train/schedules.py says why)
    segmentation_learning_rate: float = 1e-3  # SegDepth's separate U-Net optimiser (B.4)
    seed: int = 0
    strategy: str = "auto"  # auto | default | mirrored | multi_worker
    precision: str = "float32"  # float32 | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, Ampere+, AVX512-BF16 CPUs)
    validation_steps: int = 10
    log_images: bool = True  # TensorBoard depth images once per epoch
    keep_checkpoints: int = 3


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (A.8): Garg crop, depth cap 80 m, per-image median scaling."""

    split: str = "test"
    crop: str = "garg"  # garg | eigen_nyu | none
    min_depth: float = 1e-3
    max_depth: float = 80.0
    median_scaling: bool = True
    scale_factor: float = 1.0  # fixed factor when median_scaling is false (5.4 for stereo-trained models)
    pose_snippet: int = 5  # ATE over 5-frame snippets (Monodepth2 / SfMLearner)


@dataclass(frozen=True)
class ExportConfig:
    """Export of the inference graph (uint8 image in, depth out)."""

    height: int | None = None  # None = the training input size
    width: int | None = None
    formats: tuple[str, ...] = ("saved_model", "tflite")
    quantization: str = "none"  # none | float16 | dynamic_int8 | int8


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# ----------------------------------------------------------------------------------------------------------------
# Conversion from plain data (YAML) to typed, frozen dataclasses.


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert it (lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # a bug in this module, not in the file


def _build(cls: type, values: Any, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            prefix = f"{where}." if where and where != "<root>" else ""
            raise ConfigError(
                f"unknown key {prefix}{key!r}.{hint} Valid keys{' of ' + where if where != '<root>' else ''}: "
                f"{', '.join(names)}"
            )
        sub_where = key if where == "<root>" else f"{where}.{key}"
        kwargs[key] = _coerce(value, hints[key], sub_where)
    return cls(**kwargs)


def _upgrade_legacy_keys(values: dict | None) -> dict | None:
    """Read keys of earlier releases that run directories may still hold (their config.yaml must keep loading).

    ``train.mixed_precision: bool`` became ``train.precision`` (``true`` meant mixed_float16).
    """
    train = values.get("train") if isinstance(values, dict) else None
    if not isinstance(train, dict) or "mixed_precision" not in train:
        return values
    train = dict(train)
    legacy = train.pop("mixed_precision")
    if not isinstance(legacy, bool):
        raise ConfigError(f"train.mixed_precision (replaced by train.precision) must be true or false, got {legacy!r}")
    train.setdefault("precision", "mixed_float16" if legacy else "float32")
    return {**values, "train": train}


def config_from_dict(values: dict | None, source: str = "<dict>") -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from nested plain data; errors name ``source``."""
    try:
        return _build(ExperimentConfig, _upgrade_legacy_keys(values), "<root>")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def config_to_dict(config: Any) -> dict:
    """Nested plain data (tuples become lists) suitable for YAML."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(config)


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
    import copy

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


def load_config(path: str | os.PathLike | None = None, overrides: typing.Iterable[str] = ()) -> ExperimentConfig:
    """Load a YAML experiment file (or the defaults when ``path`` is None) and apply ``overrides``.

    Raises :class:`ConfigError` naming the file and key for unknown keys, wrong types and unreadable files.
    """
    values: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {source!r} does not exist; pass an existing YAML file, e.g. configs/default.yaml")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections (data:, model:, ...)")
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
