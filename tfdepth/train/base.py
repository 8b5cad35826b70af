"""The trainer core: what every family's ``keras.Model`` trainer shares.

A family subclasses :class:`DepthTrainer` and writes three things, nothing else:

* ``compute_losses(batch, training) -> {term: scalar, ..., "loss": total}``: its loss, with every weight applied
  there (DESIGN.md). ``loss_terms`` (set in ``__init__``) names the terms that are tracked and logged.
* ``monitor_depth(batch) -> [B,h,w,1]``: depth read from its outputs for ``batch["image"]`` (validation monitoring
  and TensorBoard images; the core resizes it to the ground truth's size), or ``None``.
* ``networks() -> {role: keras.Model}``: the networks it trains (saved at the end of a run).
* ``variable_groups() -> {group: [variables]}``: ``"main"`` is stepped by ``compile``'s optimizer, any other group by
  its own optimizer from ``compile(group_optimizers={group: optimizer})`` (SegDepth's U-Net has its own Adam).

The core then owns:

* **Replica scaling.** The per-replica mean loss is divided by ``num_replicas_in_sync`` before the gradient: the
  Keras 3 TF optimizer SUMS gradients across replicas (stack_notes.md).
* **Precision.** ``compile`` wraps every optimizer in ``LossScaleOptimizer`` when a network computes in float16 and
  ``train_step`` scales the loss with each optimizer's own factor (``scale_loss``; its ``apply`` unscales).
* **Optimizers built in the strategy scope**, before the first distributed step (stack_notes.md).
* **No extra pass over the data.** Under a tf.distribute strategy Keras 3's ``fit`` reads one batch of a first
  iteration of the dataset to build the model symbolically, then trains on a second iteration: with a shuffled
  pipeline a strategy run trains on other batches than a one-process run. A DepthTrainer's networks are built when
  it is constructed and ``compile`` builds its optimizers, so :meth:`DepthTrainer._maybe_symbolic_build` skips that
  read when everything is built.
* **The finite check.** Each step records whether every loss term was finite (all-reduced over replicas, so all
  replicas agree). ``on_nonfinite="stop"``: the step's terms are logged as they are and
  :class:`tfdepth.train.callbacks.NonFiniteGuard` stops training at that step, naming the step and the term, before
  any checkpoint of the poisoned weights is written. ``"skip"``: the optimizers are wrapped in
  :class:`SkipNonFiniteOptimizer` (the update is not applied when a gradient is NaN/Inf, and the step counter does not
  advance), the trackers ignore the step, and ``nonfinite_steps`` counts the skipped steps.
* **Validation monitoring.** ``test_step`` aligns ``monitor_depth`` to the ground truth per image with the family's
  ``monitor_alignment`` (``median`` for relative depth, ``none`` for metric depth, ``least_squares`` for affine-
  invariant depth; ``tfdepth.ops.align``), clamps it to ``[monitor_min_depth, monitor_max_depth]`` (the evaluation
  cap: 80 m for KITTI, 10 m for NYU) and logs ``abs_rel`` and ``a1`` over the valid pixels of each batch. Batches
  without a valid pixel do not count. With ``monitor=False`` (no ground truth in the validation split) no depth
  metric is logged at all.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfdepth.metrics import METRIC_NAMES, depth_errors_tf
from tfdepth.ops import align_depth_tf

__all__ = ["DepthTrainer", "SkipNonFiniteOptimizer", "MONITOR_METRICS"]

MONITOR_METRICS = ("abs_rel", "a1")


@keras.saving.register_keras_serializable(package="tfdepth")
class SkipNonFiniteOptimizer(keras.optimizers.LossScaleOptimizer):
    """Applies the inner optimizer's update only when every gradient is finite; otherwise does nothing.

    ``LossScaleOptimizer`` already makes this decision consistently across replicas (on the all-reduced gradients,
    in cross-replica context) and keeps the step counter still on a skipped step; with the loss scale fixed at 1 it
    is exactly a skip: nothing is scaled, and a skipped step changes no state at all.
    """

    def __init__(self, inner_optimizer, **kwargs):
        kwargs.pop("initial_scale", None)
        kwargs.pop("dynamic_growth_steps", None)
        super().__init__(inner_optimizer, initial_scale=1.0, dynamic_growth_steps=2**31 - 1, **kwargs)

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    def _stateful_handle_non_finite_grads(self):
        pass  # skip: no update, the scale stays 1


class DepthTrainer(keras.Model):
    """Base of the family trainers (module docstring).

    Args:
        loss_terms: names of the terms ``compute_losses`` returns besides ``loss`` (all tracked and logged).
        monitor_alignment: ``median`` | ``none`` | ``least_squares`` (validation monitoring).
        monitor_min_depth, monitor_max_depth: valid ground-truth range and clamp of the aligned prediction.
        monitor: log depth metrics in validation (False when the validation split has no ground truth).
        on_nonfinite: ``stop`` | ``skip`` (module docstring).
        monitor_metrics: depth metrics logged in validation (default ``abs_rel``, ``a1``; metric families add
            ``rmse``).
    """

    def __init__(self, *, loss_terms=(), monitor_alignment="median", monitor_min_depth=1e-3, monitor_max_depth=80.0,
                 monitor=True, on_nonfinite="stop", monitor_metrics=MONITOR_METRICS, **kwargs):
        super().__init__(**kwargs)
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        align_depth_tf(tf.ones([1, 1, 1, 1]), tf.ones([1, 1, 1, 1]), tf.ones([1, 1, 1, 1], tf.bool),
                       monitor_alignment)  # validates the name
        if not 0 < monitor_min_depth < monitor_max_depth:
            raise ValueError(f"need 0 < monitor_min_depth < monitor_max_depth, got {monitor_min_depth}, "
                             f"{monitor_max_depth}")
        self.loss_terms = tuple(loss_terms)
        self.monitor_alignment = monitor_alignment
        self.monitor_min_depth = float(monitor_min_depth)
        self.monitor_max_depth = float(monitor_max_depth)
        self.monitor = bool(monitor)
        self.on_nonfinite = on_nonfinite
        self.group_optimizers = {}
        self._trackers = {n: keras.metrics.Mean(name=n) for n in ("loss",) + self.loss_terms}
        self._nonfinite_tracker = keras.metrics.Sum(name="nonfinite_steps")
        unknown = set(monitor_metrics) - set(METRIC_NAMES)
        if unknown:
            raise ValueError(f"monitor_metrics {sorted(unknown)} are not depth metrics; known: {METRIC_NAMES}")
        self._monitor_trackers = {n: keras.metrics.Mean(name=n) for n in monitor_metrics}

    # ------------------------------------------------------------------------------------------------ family API
    def compute_losses(self, batch, training=False):
        raise NotImplementedError

    def monitor_depth(self, batch):
        return None

    def variable_groups(self):
        return {"main": list(self.trainable_variables)}

    def networks(self):
        """Role -> Keras network the family trains (what a run saves; ``tfdepth.models.inference_heads``)."""
        return {}

    # ------------------------------------------------------------------------------------------------ Keras API
    @property
    def metrics(self):
        trackers = list(self._trackers.values()) + list(self._monitor_trackers.values())
        return trackers + ([self._nonfinite_tracker] if self.on_nonfinite == "skip" else [])

    def compile(self, optimizer="adam", group_optimizers=None, **kwargs):
        """Compile with the main ``optimizer`` and one optimizer per extra variable group; call inside the scope."""
        group_optimizers = dict(group_optimizers or {})
        groups = self.variable_groups()
        unknown = set(group_optimizers) - (set(groups) - {"main"})
        if unknown:
            raise ValueError(f"group_optimizers names {sorted(unknown)}, which are not variable groups of "
                             f"{type(self).__name__} (groups: {sorted(groups)})")
        optimizer = self._wrap(keras.optimizers.get(optimizer))
        self.group_optimizers = {name: self._wrap(opt) for name, opt in group_optimizers.items()}
        super().compile(optimizer=optimizer, **kwargs)
        for name, opt in self._optimizer_groups():
            opt.build(self._group_variables(name, groups))

    def _wrap(self, optimizer):
        if self._uses_float16():
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        elif self.on_nonfinite == "skip" and not isinstance(optimizer, SkipNonFiniteOptimizer):
            optimizer = SkipNonFiniteOptimizer(optimizer)
        return optimizer

    def _uses_float16(self):
        # Each network takes the dtype policy that was global when it was built (train.precision).
        return any(net.compute_dtype == "float16" for net in self.networks().values())

    def _optimizer_groups(self):
        return [("main", self.optimizer)] + list(self.group_optimizers.items())

    def _group_variables(self, name, groups=None):
        groups = groups if groups is not None else self.variable_groups()
        if name != "main":
            return list(groups[name])
        # Variables of groups without their own optimizer are stepped by the main one.
        variables = list(groups.get("main", []))
        for group, group_vars in groups.items():
            if group != "main" and group not in self.group_optimizers:
                variables += list(group_vars)
        return variables

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras hook (module docstring, "No extra pass over the data"): read no batch when nothing is left to build.
        everything_built = (
            all(net.built for net in self.networks().values())
            and all(opt is not None and opt.built for _, opt in self._optimizer_groups())
        )
        if self.networks() and everything_built:
            self.built = True
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def step(self):
        """The optimizer step counter (training steps applied so far), as an int32 tensor."""
        optimizer = getattr(self, "optimizer", None)
        return tf.cast(optimizer.iterations if optimizer is not None else 0, tf.int32)

    # ------------------------------------------------------------------------------------------------ steps
    def train_step(self, data):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        groups = [(opt, self._group_variables(name)) for name, opt in self._optimizer_groups()]
        with tf.GradientTape(persistent=len(groups) > 1) as tape:
            terms = self.compute_losses(data, training=True)
            # The Keras 3 TF optimizer SUMS gradients over replicas: scale the per-replica mean (DESIGN.md).
            scaled = tf.cast(terms["loss"], tf.float32) / tf.cast(replicas, tf.float32)
            # Loss scaling for mixed_float16 (identity otherwise): each optimizer scales the loss with its own
            # factor and its apply_gradients divides it out again (LossScaleOptimizer).
            losses = [opt.scale_loss(scaled) for opt, _ in groups]
        if all(loss is losses[0] for loss in losses):
            # One loss for every group (no per-optimizer loss scaling): ONE backward pass over all variables, split
            # by group. A gradient call per group back-propagates the shared part of the graph once per group (the
            # RSN joint stage: the refinement iterations twice).
            everything = [v for _, variables in groups for v in variables]
            gradients = iter(tape.gradient(losses[0], everything))
            for opt, variables in groups:
                opt.apply_gradients(zip([next(gradients) for _ in variables], variables))
        else:
            for (opt, variables), loss in zip(groups, losses):
                # Each optimizer's own scaled loss (mixed_float16): its gradient, pruned to its own variables.
                opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        del tape
        finite = self._all_replicas_finite(terms)
        return self._update_trackers(terms, finite)

    def _all_replicas_finite(self, terms):
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(terms[n], tf.float32)))
                                for n in ("loss",) + self.loss_terms])
        bad = tf.cast(tf.logical_not(finite), tf.float32)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            bad = context.all_reduce(tf.distribute.ReduceOp.SUM, bad)
        return bad == 0.0

    def test_step(self, data):
        terms = self.compute_losses(data, training=False)
        monitoring = self.monitor and isinstance(data, dict) and "depth" in data
        if monitoring:
            pred = self.monitor_depth(data)
            monitoring = pred is not None
        if monitoring:
            gt = tf.cast(data["depth"], tf.float32)
            if gt.shape.rank == 3:
                gt = gt[..., None]
            pred = tf.cast(pred, tf.float32)
            if pred.shape[1:3] != gt.shape[1:3]:
                pred = tf.image.resize(pred, tf.shape(gt)[1:3], method="bilinear")
            mask = (gt > self.monitor_min_depth) & (gt < self.monitor_max_depth) & tf.math.is_finite(gt)
            aligned = align_depth_tf(tf.cast(pred, tf.float32), gt, mask, self.monitor_alignment)
            aligned = tf.clip_by_value(aligned, self.monitor_min_depth, self.monitor_max_depth)
            errors = depth_errors_tf(gt, aligned, mask)
            # A batch without valid ground truth must not poison the means.
            has_gt = tf.cast(tf.reduce_any(mask), tf.float32)
            for name, tracker in self._monitor_trackers.items():
                tracker.update_state(tf.where(has_gt > 0, errors[name], 0.0), sample_weight=has_gt)
        return self._update_trackers(terms, tf.constant(True), with_monitoring=monitoring)

    def _update_trackers(self, terms, finite, with_monitoring=False):
        if self.on_nonfinite == "skip":
            weight = tf.cast(finite, tf.float32)
            for name, tracker in self._trackers.items():
                value = tf.where(finite, tf.cast(terms[name], tf.float32), 0.0)
                tracker.update_state(value, sample_weight=weight)
            # Every replica adds 1/replicas on a skipped step, so the sum counts steps.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            self._nonfinite_tracker.update_state((1.0 - weight) / float(replicas))
        else:
            for name, tracker in self._trackers.items():
                tracker.update_state(tf.cast(terms[name], tf.float32))
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        if self.on_nonfinite == "skip":
            results["nonfinite_steps"] = self._nonfinite_tracker.result()
        if with_monitoring:  # only validation batches with ground truth (monitoring, never a loss)
            for name, tracker in self._monitor_trackers.items():
                results[name] = tracker.result()
        return results
