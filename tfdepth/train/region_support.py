"""The RSN trainer: the Region-Support Network's staged training on the trainer core (specs/rsn.md §6-§7).

One :class:`RegionSupportTrainer` per stage (``stage``), all on the same :class:`RegionSupportNetwork` (its
generation and refinement modules), so a run moves from stage to stage by building the next trainer on the same
network (``tfdepth.recipes.rsn``); the network is what a run saves (``rsn_net.keras``):

* ``generation_linear`` / ``generation_log``: the generation module alone, Ŝ = G(RGB), trained against the
  ground-truth support depth SD with the region loss L_r (linear / natural log) over the support-region ids SI of
  Algorithm 1 (the code's ``train.py``, task ``region``). Only the generation module's weights move.
* ``refinement``: the refinement module on the **ground-truth** region support: d_1..d_N from
  x_0 = [RGB, SD, SD] (the code's ``train_drn.py``: the oracle support), loss L_i against the ground-truth depth.
  Only the refinement module's weights move.
* ``joint``: end to end, Ŝ = G(RGB) -> refinement, loss L_i only (the code computes L_r here but only logs it; so
  do we: ``region`` is tracked, not optimised). ``joint_trains="both"`` (default): both modules move, each with
  its own optimizer: the generation module at ``train.learning_rate`` (1e-3), the refinement module at
  ``loss.refinement_learning_rate`` (1e-4) (spec §7 [interpretation]: the code's commits optimise only one of the
  two, differently in each). ``"refinement"`` (commit 484f315) trains only the refinement module on the frozen
  generation module's support; ``"generation"`` (a18e559) only the generation module through the frozen
  refinement module. The frozen module runs with ``training=False`` (moving batch-norm statistics, no update).

Batches (``tfdepth.data.depth_images``): ``image`` [B,H,W,3] in [0,1], ``depth`` [B,H,W,1] metres,
``region_support`` (SD) [B,H,W,1] and ``support_ids`` (SI) int32 [B,H,W,1].

Monitoring (validation): the stage's own prediction, metric (no alignment), clamped to the evaluation cap: Ŝ in
the generation stages, the refined depth from SD in the refinement stage (the paper's "refinement with
ground-truth region support"), the end-to-end depth in the joint stage. TensorBoard pictures (images only, no SD)
show the end-to-end depth in the refinement stage. A stage calls only the modules it
trains (both in the joint stage), so the batch-norm statistics of the other module stay as they are.
"""

from __future__ import annotations

import tensorflow as tf

from tfdepth.config.rsn import JOINT_TRAINS  # what the joint stage trains (module docstring)
from tfdepth.losses.region import LOG_EPS, iterative_loss, region_loss
from tfdepth.models.rsn import RegionSupportNetwork, refine_iterations
from tfdepth.train.base import DepthTrainer

__all__ = ["RegionSupportTrainer", "STAGES", "BATCH_KEYS", "JOINT_TRAINS"]

STAGES = ("generation_linear", "generation_log", "refinement", "joint")
BATCH_KEYS = ("image", "depth", "region_support", "support_ids")
_RSN_MONITOR_METRICS = ("rmse", "abs_rel", "a1")


class RegionSupportTrainer(DepthTrainer):
    """Trainer of one RSN stage (module docstring).

    Args:
        rsn: the end-to-end :class:`RegionSupportNetwork` (``tfdepth.models.build_rsn(...)["rsn"]``), shared
            between the stages; its ``iterations`` (N, 3) are the refinement iterations trained.
        stage: one of :data:`STAGES`.
        iteration_weights: L_i weights, one per iteration ((0.2, 0.3, 0.5)).
        iterative_log: L_i on natural-log depth (``log_r``) or on depth (``l1_r``).
        eps: the logs' offset (1e-6, the code's).
        joint_trains: the modules the joint stage trains: ``both``, ``refinement`` or ``generation``.
        **core: DepthTrainer arguments (monitoring range, ``on_nonfinite``); ``monitor_alignment`` is ``none``
            (metric depth).
    """

    def __init__(self, rsn, *, stage, iteration_weights=(0.2, 0.3, 0.5), iterative_log=True, eps=LOG_EPS,
                 joint_trains="both", **core):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        if joint_trains not in JOINT_TRAINS:
            raise ValueError(f"joint_trains must be one of {', '.join(JOINT_TRAINS)}, got {joint_trains!r}")
        if not isinstance(rsn, RegionSupportNetwork) or rsn.support_input:
            raise TypeError("RegionSupportTrainer takes the end-to-end RegionSupportNetwork (tfdepth.models.build_rsn"
                            f"(...)['rsn']), got {type(rsn).__name__}")
        iterations = rsn.iterations
        if len(iteration_weights) != iterations:
            raise ValueError(f"{iterations} refinement iterations need {iterations} iteration weights, got "
                             f"{list(iteration_weights)} (loss.iteration_weights)")
        terms = {"generation_linear": ("region",), "generation_log": ("region",)}.get(
            stage, ("iterative",) + tuple(f"iter_{k}" for k in range(1, iterations + 1))
            + (("region",) if stage == "joint" else ()))
        core.setdefault("monitor_alignment", "none")
        core.setdefault("monitor_max_depth", 10.0)
        core.setdefault("monitor_metrics", _RSN_MONITOR_METRICS)
        super().__init__(loss_terms=terms, **core)
        self.rsn = rsn
        self.generation = rsn.generation
        self.refinement = rsn.refinement
        self.stage = stage
        self.iterations = int(iterations)
        self.iteration_weights = tuple(float(w) for w in iteration_weights)
        self.iterative_log = bool(iterative_log)
        self.eps = float(eps)
        self.joint_trains = joint_trains

    # ------------------------------------------------------------------------------------------------ family API
    def networks(self):
        return {"rsn": self.rsn}

    def variable_groups(self):
        if self.stage.startswith("generation") or self._frozen("refinement"):
            return {"main": list(self.generation.trainable_variables)}
        if self.stage == "refinement" or self._frozen("generation"):
            return {"main": list(self.refinement.trainable_variables)}
        return {"main": list(self.generation.trainable_variables),
                "refinement": list(self.refinement.trainable_variables)}

    def _frozen(self, module):
        """True when the joint stage keeps ``module`` ("generation" / "refinement") fixed (``joint_trains``)."""
        return self.stage == "joint" and self.joint_trains not in ("both", module)

    def _support(self, batch, training):
        if self._frozen("generation"):
            return tf.stop_gradient(self.generation(batch["image"], training=False)["region_support"])
        return self.generation(batch["image"], training=training)["region_support"]

    def _refine(self, image, support, training):
        training = training and not self._frozen("refinement")
        return refine_iterations(self.refinement, image, support, self.iterations, training=training)

    def compute_losses(self, batch, training=False):
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"an RSN batch needs {', '.join(BATCH_KEYS)}; missing {', '.join(missing)} "
                           "(tfdepth.data.depth_images adds the region targets)")
        image = batch["image"]
        if self.stage.startswith("generation"):
            support = self._support(batch, training)
            value = region_loss(support, batch["region_support"], batch["support_ids"],
                                log=self.stage == "generation_log", eps=self.eps)
            return {"region": value, "loss": value}
        if self.stage == "refinement":
            support = tf.cast(batch["region_support"], tf.float32)
            terms = {}
        else:
            support = self._support(batch, training)
            # Logged, not optimised (the code's train_all.py): how far the support drifts while L_i trains it.
            terms = {"region": tf.stop_gradient(region_loss(support, batch["region_support"], batch["support_ids"],
                                                            log=True, eps=self.eps))}
        depths = self._refine(image, support, training)
        li = iterative_loss(depths, batch["depth"], self.iteration_weights, log=self.iterative_log, eps=self.eps)
        terms.update({f"iter_{k}": li[f"iter_{k}"] for k in range(1, self.iterations + 1)})
        terms["iterative"] = li["total"]
        terms["loss"] = li["total"]
        return terms

    def monitor_depth(self, batch):
        if self.stage.startswith("generation"):
            return self._support(batch, False)
        if self.stage == "refinement" and "region_support" in batch:
            support = batch["region_support"]
        else:  # the joint stage, and TensorBoard pictures (images only): the end-to-end depth
            support = self._support(batch, False)
        return self._refine(batch["image"], tf.cast(support, tf.float32), False)[-1]

    def call(self, inputs, training=False):
        """End-to-end RSN on an image batch: ``region_support`` and ``depth`` (the last iteration)."""
        image = inputs["image"] if isinstance(inputs, dict) else inputs
        support = self.generation(image, training=training)["region_support"]
        return {"region_support": support, "depth": self._refine(image, support, training)[-1]}
