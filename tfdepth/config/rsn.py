"""The Region-Support Network's ``model`` and ``loss`` sections (specs/rsn.md; ``tfdepth.models.rsn``).

Selected by ``model.name: rsn``. Defaults are the authors' code (the paper's text is not available) except where a
comment says otherwise. The staged schedule (spec §7) is ``loss.stage_epochs``: epochs of each stage in
:data:`RSN_STAGES` order, 0 skips a stage; the run's ``train.epochs`` must equal their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfdepth.config.schema import ConfigError, check_choice, check_positive

__all__ = ["RsnModelConfig", "RsnLossConfig", "RSN_STAGES", "REGION_LABELS", "JOINT_TRAINS"]

# The training stages, in order (tfdepth.train.region_support):
#   generation_linear  the generation module with the linear region loss L_r
#   generation_log     the generation module with the log region loss
#   refinement         the refinement module on the ground-truth region support (SD of Algorithm 1), loss L_i
#   joint              both modules end to end (generation -> refinement), loss L_i
RSN_STAGES = ("generation_linear", "generation_log", "refinement", "joint")
# Which label map Algorithm 1 splits into regions: the synthetic engine's classes and NYU's 40-class map are
# "semantic"; NYU's 13-class map "semantic13"; NYU's raw 894 labels "semantic_raw" (what the authors' code used).
REGION_LABELS = ("semantic", "semantic13", "semantic_raw")
# What the joint stage trains (RsnLossConfig.joint_trains).
JOINT_TRAINS = ("both", "refinement", "generation")


@dataclass(frozen=True)
class RsnModelConfig:
    """Which networks to build (``tfdepth.models.build_rsn``)."""

    name: str = "rsn"
    grid: str = "absolute"  # pyramid grids: absolute (the code's sizes) | relative (the paper's 1/4 .. 1/160)
    iterations: int = 3  # weight-shared refinement iterations
    width_multiplier: float = 1.0  # channel multiplier; < 1 is a reduced model for CPU-sized runs (not the paper)
    sync_batchnorm: bool = True
    encoder_weights: str | None = None  # opt-in local torchvision ResNet34 .npz (the original loaded none)

    def __post_init__(self):
        check_choice(self.grid, ("absolute", "relative"), "model.grid")
        check_positive(self.iterations, "model.iterations")
        check_positive(self.width_multiplier, "model.width_multiplier")
        if self.width_multiplier > 1.0:
            raise ConfigError(f"model.width_multiplier must be in (0, 1] (1 = the original), got {self.width_multiplier}")


@dataclass(frozen=True)
class RsnLossConfig:
    """Algorithm 1's options, the losses L_r and L_i (spec §2, §6) and the staged schedule (§7)."""

    region_labels: str = "semantic"  # label map Algorithm 1 uses (REGION_LABELS)
    region_bounds: str = "inclusive"  # inclusive (our reading, no holes) | strict (the code's open slabs)
    regions: str = "class"  # class (the code) | components (8-connected, the paper's wording)
    support_ids: str = "cell"  # cell (one id per region x slab) | value (the code's relabel of SD)
    num_slabs: int = 10  # v = (max D - min D) / num_slabs
    iteration_weights: tuple[float, ...] = (0.2, 0.3, 0.5)  # L_i weights of iterations 1..N
    iterative_log: bool = True  # L_i on natural-log depth (log_r); false = MSE on depth (l1_r)
    stage_epochs: tuple[int, ...] = (17, 23, 20, 10)  # epochs of each RSN_STAGES stage; 0 = skip
    refinement_learning_rate: float = 1e-4  # refinement stage and the refinement module in the joint stage
    refinement_init: str = "generation"  # generation (copy conv1/layer1/full1/full2, spec §5) | scratch
    # The refinement head (infer5: conv without bias + ReLU) at the start of the refinement stage: pytorch keeps
    # PyTorch's default init (the code; about half the pixels start at exactly 0, where the ReLU passes no gradient
    # and log(d + 1e-6) = -13.8) | positive: the same weights made non-negative, so every pixel starts > 0 on the
    # non-negative features in front of it [not in the code; tfdepth/recipes/rsn.py says why].
    refinement_head_init: str = "pytorch"
    # Learning rate of both modules in the joint stage; None = train.learning_rate for the generation module and
    # refinement_learning_rate for the refinement module (the authors' rates). [not in the code: a CPU-recipe switch]
    joint_learning_rate: float | None = None
    # Which modules the joint stage trains (spec §7: the code's commits differ): both (test_all.py's optimiser;
    # the spec's interpretation) | refinement (commit 484f315: the generation module frozen, its support fed as
    # it is) | generation (a18e559 / HEAD: the refinement module frozen, L_i trains the generation through it).
    # The frozen module runs in inference mode (batch-norm moving statistics) and gets no gradient.
    joint_trains: str = "both"

    def __post_init__(self):
        check_choice(self.region_labels, REGION_LABELS, "loss.region_labels")
        check_choice(self.region_bounds, ("inclusive", "strict"), "loss.region_bounds")
        check_choice(self.regions, ("class", "components"), "loss.regions")
        check_choice(self.support_ids, ("cell", "value"), "loss.support_ids")
        check_choice(self.refinement_init, ("generation", "scratch"), "loss.refinement_init")
        check_choice(self.refinement_head_init, ("pytorch", "positive"), "loss.refinement_head_init")
        check_choice(self.joint_trains, JOINT_TRAINS, "loss.joint_trains")
        check_positive(self.num_slabs, "loss.num_slabs")
        check_positive(self.refinement_learning_rate, "loss.refinement_learning_rate")
        check_positive(self.joint_learning_rate, "loss.joint_learning_rate", fix="or null for the stages' own rates")
        if len(self.stage_epochs) != len(RSN_STAGES) or any(e < 0 for e in self.stage_epochs):
            raise ConfigError(f"loss.stage_epochs must be {len(RSN_STAGES)} epoch counts >= 0, one per stage "
                              f"({', '.join(RSN_STAGES)}), got {list(self.stage_epochs)}")
        if not any(self.stage_epochs):
            raise ConfigError("loss.stage_epochs are all 0: train at least one stage, e.g. [1, 0, 0, 0]")
        if not self.iteration_weights or any(w < 0 for w in self.iteration_weights):
            raise ConfigError(f"loss.iteration_weights must be weights >= 0, one per refinement iteration, got "
                              f"{list(self.iteration_weights)}")

    def stages(self) -> list[tuple[str, int]]:
        """(stage, epochs) of the stages that run, in order."""
        return [(name, epochs) for name, epochs in zip(RSN_STAGES, self.stage_epochs) if epochs]
