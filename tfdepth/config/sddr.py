"""SDDR's ``model`` and ``loss`` sections (specs/sddr.md; ``tfdepth.models.sddr``, ``tfdepth.train.refinement``).

Selected by ``model.name: sddr``. The network size is ``data.height x data.width`` (multiples of 128); the model
section holds the released network's switches. The loss section holds the paper's loss weights (Eq. 10), the
self-distillation settings (§3), the schedule (App. B.2: ``loss.supervised_epochs`` epochs of L_gt alone, then
the rest of ``train.epochs`` with all three terms) and the synthetic base predictor of the training data (the
noise model of §1, ``tfdepth.data.synthetic.degrade``: a low- and a high-resolution "predictor" per frame).
Defaults are the paper's and the released code's; where both are silent (sddr.md §8) the comment says
"[decision]" and ``tfdepth.train.refinement`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfdepth.config.schema import ConfigError, check_choice, check_positive

__all__ = ["SddrModelConfig", "SddrLossConfig", "SDDR_STAGES", "OMEGA_KEYS"]

# Training stages in order: L_gt only (epoch 1 of the paper), then L_gt + 0.5 L_grad + 0.1 L_fusion.
SDDR_STAGES = ("supervised", "self_distillation")
OMEGA_KEYS = tuple(f"omega_{s}" for s in range(1, 7))


@dataclass(frozen=True)
class SddrModelConfig:
    """The refinement network N_r (``tfdepth.models.build_sddr``); its input size is data.height x data.width."""

    name: str = "sddr"
    attention_blocks: int = 8  # transformer blocks of the cross-resolution attention (the code: 8; Eq. 12 says 4)
    token_layout: str = "joint"  # joint (Eq. 12) | official_reshape (the released code's reshape, for its weights)
    upsample: str = "bicubic_align_corners"  # PyTorch's bicubic x2 (the code) | bicubic (tf.image.resize)
    drop_path_rate: float = 0.1  # MiT-b0 stochastic depth (SegFormer's)

    def __post_init__(self):
        check_positive(self.attention_blocks, "model.attention_blocks")
        check_choice(self.token_layout, ("joint", "official_reshape"), "model.token_layout")
        check_choice(self.upsample, ("bicubic_align_corners", "bicubic"), "model.upsample")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")


@dataclass(frozen=True)
class SddrLossConfig:
    """Losses (§4), self-distillation (§3), schedule (§5) and the synthetic base predictor (§1)."""

    # Eq. 10: L = L_gt + grad_weight L_grad + fusion_weight L_fusion (App. B.2: 0.5 and 0.1).
    grad_weight: float = 0.5
    fusion_weight: float = 0.1
    supervised_epochs: int = 1  # epochs of L_gt alone before self-distillation starts (App. B.2: 1 of 3)
    # L_gt (§4.1, the code's TrimmedProcrustesLoss(alpha=0.5, scales=4) on D0 and both auxiliary depths)
    trim: float = 0.2
    gradient_matching_weight: float = 0.5
    gradient_scales: int = 4
    official_median: bool = False  # the code's median over mask * x on all pixels (sddr.md §4.1 quirk)
    # L_grad (§4.2) and L_fusion (§4.3)
    num_regions: int = 4  # N_g [not found; Fig. 10 shows 4]
    top_fraction: float = 0.05  # top 5 % of G_S are edge pixels
    fusion_a: float = 0.02
    fusion_bands: int = 4  # N_w
    omega_keys: tuple[str, ...] = ("omega_1", "omega_2")  # supervised Omega levels (the code's m@1024, m@512)
    # Self-distillation (§3.3): S coarse-to-fine iterations, their window overlaps, where the label comes from.
    distill_iterations: int = 3
    distill_overlaps: tuple[float, ...] = (0.2, 0.25, 0.25)
    label_from: str = "depth"  # depth: G(D_S) | gradient: the merged Eq.-6-aligned window gradients
    bilateral_radius: int = 3  # G0's edge-preserving filter [not found]
    bilateral_sigma_space: float = 1.5
    bilateral_sigma_range: float = 0.1
    # Synthetic base predictor (§1 noise model) of the training and test frames: the frame is rendered at
    # data.render_height x data.render_width (the high-resolution canvas the label windows crop, >= the network
    # size) and degraded with a "predictor" run at base_low_size (coarse, consistent) and base_high_size (sharp,
    # locally inconsistent), both square as predictors squash their input; sizes in pixels.
    base_low_size: int = 384  # MiDaS's training resolution (Eq. 11's L)
    base_high_size: int = 1024
    # GBDF's augmentation (sddr.md §5): vertical flip with p = 1/2 (data.flip is the horizontal one) and the sign
    # of every depth map inverted with p = 1/3, so N_r works on depth and on disparity inputs.
    vertical_flip: bool = True
    invert_probability: float = 1.0 / 3.0

    def __post_init__(self):
        for key in ("grad_weight", "fusion_weight", "gradient_matching_weight"):
            check_positive(getattr(self, key), f"loss.{key}", allow_zero=True)
        check_positive(self.supervised_epochs, "loss.supervised_epochs", allow_zero=True)
        check_positive(self.gradient_scales, "loss.gradient_scales")
        check_positive(self.num_regions, "loss.num_regions")
        check_positive(self.fusion_bands, "loss.fusion_bands")
        check_positive(self.distill_iterations, "loss.distill_iterations", allow_zero=True)
        check_positive(self.bilateral_radius, "loss.bilateral_radius", allow_zero=True)
        check_positive(self.bilateral_sigma_space, "loss.bilateral_sigma_space")
        check_positive(self.bilateral_sigma_range, "loss.bilateral_sigma_range")
        check_positive(self.base_low_size, "loss.base_low_size")
        check_positive(self.base_high_size, "loss.base_high_size")
        check_choice(self.label_from, ("depth", "gradient"), "loss.label_from")
        if not 0.0 <= self.trim < 1.0:
            raise ConfigError(f"loss.trim must be in [0, 1) (the fraction of largest residuals dropped), got {self.trim}")
        if not 0.0 < self.top_fraction < 1.0:
            raise ConfigError(f"loss.top_fraction must be in (0, 1), got {self.top_fraction}")
        if not 0.0 < self.fusion_a * self.fusion_bands < 0.5:
            raise ConfigError(f"loss.fusion_a x loss.fusion_bands must be in (0, 0.5) (the widest bands, at the top "
                              f"and at the bottom, may not overlap), got {self.fusion_a} x {self.fusion_bands}")
        unknown = [k for k in self.omega_keys if k not in OMEGA_KEYS]
        if unknown:
            raise ConfigError(f"loss.omega_keys {unknown} are not outputs of N_r; choose from {', '.join(OMEGA_KEYS)}")
        if self.fusion_weight and not self.omega_keys:
            raise ConfigError("loss.omega_keys is empty but loss.fusion_weight is not 0: name the supervised levels, "
                              "e.g. [omega_1, omega_2]")
        if len(self.distill_overlaps) < self.distill_iterations:
            raise ConfigError(f"loss.distill_overlaps has {len(self.distill_overlaps)} entries but "
                              f"loss.distill_iterations={self.distill_iterations} needs one per iteration")
        if any(not 0.0 <= o < 1.0 for o in self.distill_overlaps):
            raise ConfigError(f"loss.distill_overlaps must be fractions in [0, 1), got {list(self.distill_overlaps)}")
        if not 0.0 <= self.invert_probability <= 1.0:
            raise ConfigError(f"loss.invert_probability must be in [0, 1], got {self.invert_probability}")

    def stages(self, epochs: int) -> list[tuple[str, int]]:
        """(stage, epochs) of the stages that run, in order, for a run of ``epochs`` epochs."""
        supervised = min(self.supervised_epochs, epochs)
        return [(name, n) for name, n in zip(SDDR_STAGES, (supervised, epochs - supervised)) if n]
