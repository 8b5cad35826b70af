"""The self-supervised family's ``model`` and ``loss`` sections (Monodepth2 + SegDepth, specs A and B).

Selected by ``model.name: monodepth``. Defaults are the papers' except where a comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfdepth.config.schema import ConfigError, check_choice

__all__ = ["MonodepthModelConfig", "MonodepthLossConfig"]


@dataclass(frozen=True)
class MonodepthModelConfig:
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

    def __post_init__(self):
        check_choice(self.encoder_depth, (18, 34, 50), "model.encoder_depth")
        check_choice(self.pose_encoder_depth, (18, 34, 50), "model.pose_encoder_depth")
        check_choice(self.segmentation_input, ("disparity", "disparity_and_image"), "model.segmentation_input")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"need 0 < model.min_depth < model.max_depth, got {self.min_depth} and {self.max_depth}")
        if self.initial_depth is not None and not self.min_depth < self.initial_depth < self.max_depth:
            raise ConfigError(
                f"model.initial_depth ({self.initial_depth}) must lie strictly between model.min_depth "
                f"({self.min_depth}) and model.max_depth ({self.max_depth}), or be null for the paper's init"
            )


@dataclass(frozen=True)
class MonodepthLossConfig:
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

    def __post_init__(self):
        if self.automask_warmup_steps < 0:
            raise ConfigError(f"loss.automask_warmup_steps must be >= 0 (0 = off), got {self.automask_warmup_steps}")
