"""Sections every family shares: ``data``, ``train``, ``eval``, ``export``.

Defaults are the papers' (Monodepth2 / SegDepth, the first family) except where a comment says otherwise; a
family's YAML files set what differs for it (e.g. RSN evaluates with the NYU crop and a 10 m cap). Values that can
be checked without data are checked here, when the file is read, so a bad value fails before any work with one line
naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tfdepth.config.schema import ConfigError, check_choice, check_positive

__all__ = ["DataConfig", "TrainConfig", "EvalConfig", "ExportConfig", "PRECISIONS", "STRATEGIES", "OPTIMIZERS",
           "NONFINITE_POLICIES"]

# Keras dtype policies accepted by train.precision. mixed_float16 needs loss scaling: the trainer core wraps its
# optimisers in keras.optimizers.LossScaleOptimizer.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "keras_adam", "adamw", "sgd")  # tfdepth.train.optimizers
NONFINITE_POLICIES = ("stop", "skip")
POSE_PROTOCOLS = ("tfdepth", "monodepth2")
CROPS = ("garg", "eigen_nyu", "none")


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

    def __post_init__(self):
        for key in ("height", "width", "batch_size", "render_height", "render_width", "frames_per_scene"):
            check_positive(getattr(self, key), f"data.{key}")
        if self.intrinsics is not None:
            if len(self.intrinsics) not in (4, 9):
                raise ConfigError(
                    f"data.intrinsics must have 4 values (fx/W, fy/H, cx/W, cy/H) or 9 (a 3x3 K in pixels), "
                    f"got {len(self.intrinsics)}"
                )
            if not all(math.isfinite(v) for v in self.intrinsics):
                raise ConfigError(
                    f"data.intrinsics must be finite numbers, got {list(self.intrinsics)}; give the camera's real "
                    "focal lengths and principal point (README, Custom data and intrinsics)"
                )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (Monodepth2 A.7: Adam 1e-4, x0.1 after 3/4 of training) and the run's mechanics."""

    epochs: int = 20
    steps_per_epoch: int | None = None  # None = one pass over the training split
    learning_rate: float = 1e-4
    # adam = Adam as PyTorch computes it (Monodepth2 and SDDR train with torch.optim.Adam) | keras_adam | adamw |
    # sgd = torch.optim.SGD (the RSN code: momentum 0.99, weight decay 5e-4)
    optimizer: str = "adam"
    optimizer_epsilon: float | None = None  # None = the optimiser's default (1e-8 adam, 1e-7 keras_adam/adamw)
    weight_decay: float = 0.0  # sgd: PyTorch's L2 added to the gradient; adam/adamw: decoupled (Keras)
    momentum: float = 0.0  # sgd only
    lr_decay_at: float = 0.75  # fraction of training after which the LR is multiplied by lr_decay_factor
    lr_decay_factor: float = 0.1
    lr_warmup_steps: int = 0  # linear LR warm-up (not in the paper; train/schedules.py says why)
    segmentation_learning_rate: float = 1e-3  # SegDepth's separate U-Net optimiser (B.4)
    seed: int = 0
    deterministic: bool = False  # seeds + tf.config.experimental.enable_op_determinism: identical reruns, slower
    strategy: str = "auto"  # auto | default | mirrored | multi_worker (TF_CONFIG)
    gpus: int | None = None  # mirrored: number of GPUs to use (None = all present; 0 = the CPU)
    precision: str = "float32"  # float32 | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, Ampere+, AVX512-BF16 CPUs)
    on_nonfinite: str = "stop"  # NaN/Inf loss: stop (keep the last good checkpoint) | skip the step and count it
    validation_steps: int = 10
    log_images: bool = True  # TensorBoard depth images once per epoch
    checkpoint_every_steps: int = 500  # and at the end of every epoch; 0 = epochs only
    keep_checkpoints: int = 1  # complete checkpoints kept (each holds weights + optimiser slots: ~3x the weights)

    def __post_init__(self):
        check_positive(self.epochs, "train.epochs", fix="train for at least one epoch, e.g. --set train.epochs=1")
        check_positive(self.steps_per_epoch, "train.steps_per_epoch", fix="or null for one pass over the data")
        check_positive(self.learning_rate, "train.learning_rate")
        check_positive(self.segmentation_learning_rate, "train.segmentation_learning_rate")
        check_positive(self.optimizer_epsilon, "train.optimizer_epsilon")
        check_positive(self.weight_decay, "train.weight_decay", allow_zero=True)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum must be in [0, 1) (sgd only), got {self.momentum}")
        check_positive(self.lr_warmup_steps, "train.lr_warmup_steps", allow_zero=True)
        check_positive(self.validation_steps, "train.validation_steps", allow_zero=True)
        check_positive(self.checkpoint_every_steps, "train.checkpoint_every_steps", allow_zero=True,
                       fix="0 saves at the end of each epoch only")
        check_positive(self.keep_checkpoints, "train.keep_checkpoints", fix="at least 1 is needed to resume")
        check_positive(self.gpus, "train.gpus", allow_zero=True)
        if not 0.0 < self.lr_decay_at <= 1.0:
            raise ConfigError(f"train.lr_decay_at must be in (0, 1] (a fraction of training), got {self.lr_decay_at}")
        check_choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        check_choice(self.strategy, STRATEGIES, "train.strategy")
        check_choice(self.precision, PRECISIONS, "train.precision")
        check_choice(self.on_nonfinite, NONFINITE_POLICIES, "train.on_nonfinite")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (Monodepth2 A.8: Garg crop, depth cap 80 m, per-image median scaling)."""

    split: str = "test"
    crop: str = "garg"  # garg | eigen_nyu | none
    min_depth: float = 1e-3
    max_depth: float = 80.0
    median_scaling: bool = True
    scale_factor: float = 1.0  # fixed factor when median_scaling is false (5.4 for stereo-trained models)
    pose_snippet: int = 5  # ATE over 5-frame snippets (Monodepth2 / SfMLearner)
    # tfdepth = every full snippet, positions chained forward | monodepth2 = the original's evaluate_pose.py
    # (evaluation.py says how the two differ); reports name the one they use.
    pose_protocol: str = "tfdepth"

    def __post_init__(self):
        check_choice(self.crop, CROPS, "eval.crop")
        check_choice(self.pose_protocol, POSE_PROTOCOLS, "eval.pose_protocol")
        check_positive(self.min_depth, "eval.min_depth")
        if self.max_depth <= self.min_depth:
            raise ConfigError(f"eval.max_depth ({self.max_depth}) must be above eval.min_depth ({self.min_depth})")
        check_positive(self.scale_factor, "eval.scale_factor")
        if self.pose_snippet < 2:
            raise ConfigError(f"eval.pose_snippet must be >= 2 frames, got {self.pose_snippet}")


@dataclass(frozen=True)
class ExportConfig:
    """Export of the inference graph (uint8 image in, depth out)."""

    height: int | None = None  # None = the training input size
    width: int | None = None
    formats: tuple[str, ...] = ("saved_model", "tflite")
    quantization: str = "none"  # none | float16 | dynamic_int8 | int8
