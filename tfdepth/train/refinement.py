"""The SDDR trainer: coarse-to-fine self-distillation of the refinement network N_r on the trainer core
(specs/sddr.md §3-§5, paper §3.2-3.3, Eq. 10, App. B.2).

One :class:`RefinementTrainer` per stage, both on the same :class:`tfdepth.models.SDDRNet` (what a run saves,
``sddr_net.keras``):

* ``supervised`` (the paper's epoch 1): ``L = L_gt`` (trimmed scale-and-shift-invariant MAE + multi-scale gradient
  matching on D0 and the two auxiliary depths, ``tfdepth.losses.affine_invariant``).
* ``self_distillation`` (epochs 2..): ``L = L_gt + 0.5 L_grad + 0.1 L_fusion`` (``tfdepth.losses.edges.sddr_loss``)
  against the edge pseudo-label G_S of the step's batch.

Label refresh (sddr.md §3.5 and §8 item 1, [not found]) [decision]: the labels of a batch are computed **inside
the train step with the current weights**, before the gradient tape (``"step"`` in
``tfdepth.train.self_distillation``): N_r in inference mode, S coarse-to-fine iterations (1 + 4 + 9 + 16 = 30
passes at S = 3, in S + 1 batched calls), all stop-gradient. No teacher copy or EMA: the paper's Fig. 13 says G_S
is "further optimized based on the gradient of current refined depth". Always-fresh labels suit on-the-fly data
and cost no cache; the price is the passes (the CPU config uses S = 2, the faithful config S = 3). The windows'
high input is the crop of ``depth_high_full``, the simulated predictor at the render resolution, so a window
sees more detail than the whole-image pass (Eq. 5: N_d on H_s^w).

Validation computes the same loss (labels included) as training, so the two curves are comparable, and monitors
``abs_rel`` / ``a1`` of D0 against the exact normalised inverse depth after least-squares scale and shift
(``monitor_alignment="least_squares"``; D0 is affine-invariant).

Each stage builds its optimiser anew (the runner builds one trainer per stage): Adam's moments restart when
self-distillation starts; the paper does not say (its optimiser is [not found]).
"""

from __future__ import annotations

import tensorflow as tf

from tfdepth.losses.edges import sddr_loss
from tfdepth.train.base import DepthTrainer
from tfdepth.train.self_distillation import coarse_to_fine_labels, refine_fn_from_model

__all__ = ["RefinementTrainer", "STAGES", "BATCH_KEYS"]

STAGES = ("supervised", "self_distillation")
BATCH_KEYS = ("depth_low", "depth_high", "target", "mask")
_LABEL_KEYS = ("iterations", "overlaps", "label_from", "bilateral_radius", "bilateral_sigma_space",
               "bilateral_sigma_range")
_LOSS_KEYS = ("grad_weight", "fusion_weight", "omega_keys", "trim", "gradient_matching_weight", "scales",
              "official_median", "num_regions", "top_fraction", "fusion_a", "fusion_bands")


class RefinementTrainer(DepthTrainer):
    """Trainer of one SDDR stage (module docstring).

    Args:
        net: the :class:`tfdepth.models.SDDRNet` (``tfdepth.models.build_sddr(...)["sddr"]``), shared by both
            stages.
        stage: ``supervised`` | ``self_distillation``.
        loss_options: ``sddr_loss`` arguments (``grad_weight``, ``fusion_weight``, ``omega_keys``, ``trim``,
            ``gradient_matching_weight``, ``scales``, ``official_median``, ``num_regions``, ``top_fraction``,
            ``fusion_a``, ``fusion_bands``); L_grad / L_fusion weights are used in ``self_distillation`` only.
        label_options: ``coarse_to_fine_labels`` arguments (``iterations``, ``overlaps``, ``label_from``,
            ``bilateral_*``).
        **core: DepthTrainer arguments; ``monitor_alignment`` is ``least_squares``.
    """

    def __init__(self, net, *, stage, loss_options=None, label_options=None, **core):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        loss_options, label_options = dict(loss_options or {}), dict(label_options or {})
        for given, known, what in ((loss_options, _LOSS_KEYS, "loss_options"),
                                   (label_options, _LABEL_KEYS, "label_options")):
            unknown = set(given) - set(known)
            if unknown:
                raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known: {', '.join(known)}")
        core.setdefault("monitor_alignment", "least_squares")
        core.setdefault("monitor_min_depth", 1e-3)
        core.setdefault("monitor_max_depth", 1.5)  # the monitored target is inverse depth / its maximum (<= 1)
        terms = ("gt",) if stage == "supervised" else ("gt", "grad", "fusion")
        super().__init__(loss_terms=terms, **core)
        self.net = net
        self.stage = stage
        if stage == "supervised":
            loss_options.update(grad_weight=0, fusion_weight=0)  # python zeros: the terms are not computed
        self.loss_options = loss_options
        self.label_options = label_options
        self._refine_fn = refine_fn_from_model(net)

    # ------------------------------------------------------------------------------------------------ family API
    def networks(self):
        return {"sddr": self.net}

    def pseudo_labels(self, batch):
        """``coarse_to_fine_labels`` of the batch with the current weights (stop-gradient dict)."""
        high = batch.get("depth_high_full", batch["depth_high"])
        return coarse_to_fine_labels(self._refine_fn, batch["depth_low"], high, **self.label_options)

    def compute_losses(self, batch, training=False):
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"an SDDR batch needs {', '.join(BATCH_KEYS)}; missing {', '.join(missing)} "
                           "(tfdepth.data.refinement_data makes them)")
        g_s = self.pseudo_labels(batch)["g_s"] if self.stage == "self_distillation" else None
        outputs = self.net({"depth_low": batch["depth_low"], "depth_high": batch["depth_high"]}, training=training)
        outputs = {k: tf.cast(v, tf.float32) for k, v in outputs.items()}
        terms = sddr_loss(outputs, tf.cast(batch["target"], tf.float32), batch["mask"] > 0.5, g_s,
                          **self.loss_options)
        out = {name: tf.reduce_mean(terms[name]) for name in self.loss_terms}
        out["loss"] = tf.reduce_mean(terms["loss"])
        return out

    def monitor_depth(self, batch):
        if "depth_low" not in batch:
            return None  # TensorBoard's image-only batches: N_r takes no RGB
        return self.net({"depth_low": batch["depth_low"], "depth_high": batch["depth_high"]},
                        training=False)["depth"]

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)
