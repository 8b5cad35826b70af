"""Recipe of the Region-Support Network (specs/rsn.md): staged training, NYU-protocol evaluation.

Stages (``loss.stage_epochs``, spec §7; ``tfdepth.train.region_support`` says what each trains): generation with
the linear region loss, then the log region loss, refinement on the ground-truth region support, joint
fine-tuning. Every stage uses ``train.optimizer`` (``sgd``: momentum 0.99, weight decay 5e-4 in the RSN configs,
constant learning rate as the code): the generation module at ``train.learning_rate`` (1e-3), the refinement
module at ``loss.refinement_learning_rate`` (1e-4), both in the joint stage (or both at
``loss.joint_learning_rate`` when it is set: the CPU recipe fine-tunes at 1e-4 after training both at 1e-3).
``loss.joint_trains`` (``both`` | ``refinement`` | ``generation``: the variants of the authors' commits) says
which modules the joint stage trains; with one, its one optimizer runs at that module's rate. The refinement
stage starts from the trained generation module's conv1 / layer1 / full1 / full2
(``loss.refinement_init: generation``, spec §5).

Evaluation (:func:`evaluate_rsn`): the network predicts at the training size, the prediction is resized
bilinearly to each ground-truth frame's size, clamped to ``[eval.min_depth, eval.max_depth]`` (NYU: 10 m), no
median scaling (metric depth), inside ``eval.crop`` (NYU: the Eigen crop). Metrics per image, then the mean over
images (as the authors' code and the common NYU evaluations average them), reported for three predictions: the
end-to-end depth (top level), the generation module's region support alone (``generation``), and the refined
depth from the ground-truth region support of Algorithm 1 (``gt_support``, the paper's oracle variant).

Python API, as the self-supervised family's::

    from tfdepth.recipes import rsn
    trainer = rsn.build_trainer(stage="generation_log", total_steps=1000, data={"height": 120, "width": 160})
    trainer.fit(my_dataset)              # batches of image, depth, region_support, support_ids (depth_images)
    rsn.save_networks(trainer, "my_run")  # rsn_net.keras + config.yaml
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdepth.config import ConfigError
from tfdepth.models import build_model
from tfdepth.recipes.base import (Datasets, Recipe, precision_policy, resolve_config, save_run_networks,
                                  scheduled_optimizer)
from tfdepth.train.region_support import STAGES as RSN_STAGE_NAMES
from tfdepth.train.region_support import RegionSupportTrainer

__all__ = ["RsnRecipe", "build_trainer", "save_networks", "evaluate_rsn", "region_options", "positive_refinement_head"]

FAMILY = "rsn"


def region_options(loss_config) -> dict:
    """Algorithm 1's options from the loss section (``tfdepth.data.region_support``)."""
    return {"bounds": loss_config.region_bounds, "regions": loss_config.regions,
            "support_ids": loss_config.support_ids, "num_slabs": loss_config.num_slabs}


def _model_fields(config) -> dict:
    m = config.model
    return {"grid": m.grid, "iterations": m.iterations, "sync_batchnorm": m.sync_batchnorm,
            "width_multiplier": m.width_multiplier, "encoder_weights": m.encoder_weights}


def positive_refinement_head(refinement):
    """``loss.refinement_head_init: positive``: the refinement head's kernel (infer5, conv without bias + ReLU)
    replaced by its absolute value; returns the kernel variable.

    Why: the head sees the output of infer4's ReLU (>= 0). With PyTorch's symmetric default init its output is
    negative at about half the pixels, so the ReLU outputs exactly 0 there: no gradient passes, and L_i's log(d +
    1e-6) = -13.8 makes the first refinement loss ~24 (measured on the CPU recipe; it was still 3.5 after 300 steps).
    A non-negative kernel on non-negative features gives d > 0 at (almost) every pixel from the first step, with
    the same magnitudes, so every pixel gets a gradient. [not in the authors' code: a CPU-recipe switch]
    """
    kernel = refinement.get_layer("infer5_conv").kernel
    kernel.assign(tf.abs(kernel))
    return kernel


def trainer_from_config(config, stage: str, total_steps: int, *, monitor: bool = True, rsn=None):
    """The compiled trainer of ``stage`` on ``rsn`` (None: build the networks under ``train.precision``)."""
    if rsn is None:
        with precision_policy(config.train.precision):
            rsn = build_model({"name": FAMILY, **_model_fields(config)})["rsn"]
    loss, train = config.loss, config.train
    trainer = RegionSupportTrainer(
        rsn, stage=stage, iteration_weights=loss.iteration_weights, iterative_log=loss.iterative_log,
        joint_trains=loss.joint_trains,
        monitor_min_depth=config.eval.min_depth, monitor_max_depth=config.eval.max_depth, monitor=monitor,
        on_nonfinite=train.on_nonfinite,
    )
    main_lr = loss.refinement_learning_rate if stage == "refinement" else train.learning_rate
    refinement_lr = loss.refinement_learning_rate
    if stage == "joint" and loss.joint_learning_rate is not None:  # fine-tuning both modules at one smaller rate
        main_lr = refinement_lr = loss.joint_learning_rate
    if stage == "joint" and loss.joint_trains == "refinement":  # the one optimizer moves the refinement module
        main_lr = refinement_lr
    groups = {}
    if stage == "joint" and loss.joint_trains == "both":
        groups["refinement"] = scheduled_optimizer(train, total_steps, refinement_lr)
    trainer.compile(optimizer=scheduled_optimizer(train, total_steps, main_lr), group_optimizers=groups)
    trainer.config = config
    return trainer


def build_trainer(config=None, *, stage: str, total_steps: int, data=None, model=None, loss=None, train=None,
                  eval=None, rsn=None):
    """A compiled trainer of one RSN ``stage`` from a config and/or section dicts (module docstring).

    ``rsn``: an existing :class:`tfdepth.models.RegionSupportNetwork` to train further (e.g. the previous stage's
    ``trainer.rsn``), or None for new networks. Call inside ``strategy.scope()`` when training distributed.
    """
    resolved = resolve_config(FAMILY, config, data=data, model=model, loss=loss, train=train, eval=eval)
    RsnRecipe().check_config(resolved, check_epochs=False)
    if stage not in RSN_STAGE_NAMES:
        raise ValueError(f"stage must be one of {', '.join(RSN_STAGE_NAMES)}, got {stage!r}")
    return trainer_from_config(resolved, stage, int(total_steps), rsn=rsn)


def save_networks(trainer, directory, config=None) -> dict:
    """Save ``rsn_net.keras`` and ``config.yaml`` into ``directory`` (a run directory for prediction and export)."""
    return save_run_networks(trainer, directory, config)


# ------------------------------------------------------------------------------------------------ evaluation
def _predict(net, inputs):
    import tensorflow as tf  # noqa: PLC0415

    inputs = tf.nest.map_structure(lambda x: tf.convert_to_tensor(x, tf.float32), inputs)
    return {k: v.numpy() for k, v in net(inputs, training=False).items()}


def _resize(depth, shape):
    import tensorflow as tf  # noqa: PLC0415

    return tf.image.resize(depth[None], shape, method="bilinear").numpy()[0, ..., 0]


def evaluate_rsn(rsn, frames, config, *, network_size, gt_support=True, batch_size=4) -> dict:
    """The NYU protocol (module docstring) over ``frames`` (``tfdepth.data.depth_images.eval_depth_frames``).

    ``rsn``: the end-to-end RegionSupportNetwork; ``network_size`` (h, w) its input size. Returns the metrics of
    the end-to-end depth plus ``generation`` and (``gt_support``) ``gt_support`` sub-dicts.
    """
    import tensorflow as tf  # noqa: PLC0415

    from tfdepth.data.region_support import region_support_numpy  # noqa: PLC0415
    from tfdepth.metrics import evaluate_depth  # noqa: PLC0415
    from tfdepth.models.rsn import RegionSupportNetwork  # noqa: PLC0415

    oracle = None
    if gt_support:
        oracle = RegionSupportNetwork(grid=rsn.grid, iterations=rsn.iterations, sync_batchnorm=rsn.sync_batchnorm,
                                      support_input=True, width_multiplier=rsn.width_multiplier,
                                      refinement=rsn.refinement, name="rsn_gt_support")
    options = region_options(config.loss)
    h, w = network_size
    gts, preds = [], {"depth": [], "generation": [], "gt_support": []}

    def flush(batch):
        images = np.stack([f["image_small"] for f in batch])
        out = _predict(rsn, images)
        for i, frame in enumerate(batch):
            shape = frame["depth"].shape
            preds["depth"].append(_resize(out["depth"][i], shape))
            preds["generation"].append(_resize(out["region_support"][i], shape))
        if oracle is not None:
            support = np.stack([f["support_small"] for f in batch])
            refined = _predict(oracle, {"image": images, "region_support": support})["depth"]
            preds["gt_support"].extend(_resize(refined[i], f["depth"].shape) for i, f in enumerate(batch))

    batch = []
    for frame in frames:
        image = tf.image.resize(frame["image"][None], (h, w), method="bilinear", antialias=True).numpy()[0]
        frame = {**frame, "image_small": image}
        if oracle is not None:  # Algorithm 1 at the network size, on nearest-resized depth and labels
            depth = tf.image.resize(frame["depth"][None, ..., None], (h, w), method="nearest").numpy()[0, ..., 0]
            labels = tf.image.resize(frame["labels"][None, ..., None], (h, w), method="nearest").numpy()[0, ..., 0]
            frame["support_small"] = region_support_numpy(depth, labels, sample=frame["name"], **options)[
                "region_support"].reshape(h, w, 1)
        gts.append(frame["depth"])
        batch.append(frame)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not gts:
        raise ValueError("no frames to evaluate")
    e = config.eval
    protocol = dict(crop=e.crop, min_depth=e.min_depth, max_depth=e.max_depth, median_scaling=False,
                    scale_factor=e.scale_factor)
    metrics = evaluate_depth(gts, preds["depth"], **protocol)
    metrics["generation"] = evaluate_depth(gts, preds["generation"], **protocol)
    if oracle is not None:
        metrics["gt_support"] = evaluate_depth(gts, preds["gt_support"], **protocol)
    metrics["protocol"] = (f"metric depth, no median scaling, crop {e.crop}, clamp [{e.min_depth}, {e.max_depth}] "
                           "m, per-image metrics averaged over images")
    return metrics


class RsnRecipe(Recipe):
    name = FAMILY
    staged = True

    def check_config(self, config, check_epochs: bool = True) -> None:
        super().check_config(config)
        if min(config.data.height, config.data.width) < 6:
            raise ConfigError(f"data.height and data.width must be at least 6 for RSN (the generation module's "
                              f"padding), got {config.data.height}x{config.data.width}")
        if len(config.loss.iteration_weights) != config.model.iterations:
            raise ConfigError(f"loss.iteration_weights has {len(config.loss.iteration_weights)} weights but "
                              f"model.iterations is {config.model.iterations}: give one weight per iteration")
        if config.data.dataset not in ("synthetic", "nyu"):
            raise ConfigError(f"data.dataset {config.data.dataset!r}: RSN trains on depth with semantic labels, "
                              "data.dataset synthetic (data.preset room) or nyu")
        if config.data.dataset == "synthetic" and config.loss.region_labels != "semantic":
            raise ConfigError(f"loss.region_labels={config.loss.region_labels!r} exists only in NYU; the synthetic "
                              "scenes have 'semantic'")
        total = sum(config.loss.stage_epochs)
        if check_epochs and config.train.epochs != total:
            raise ConfigError(f"train.epochs is {config.train.epochs} but the RSN stages (loss.stage_epochs "
                              f"{list(config.loss.stage_epochs)}) add up to {total}: set --set train.epochs={total}")

    def stages(self, config):
        return config.loss.stages()

    def datasets(self, config) -> Datasets:
        from tfdepth.data.depth_images import depth_image_dataset, num_depth_images  # noqa: PLC0415

        options = dict(labels_key=config.loss.region_labels, region_options=region_options(config.loss))
        train = depth_image_dataset(config.data, "train", training=True, repeat=True, **options)
        validation = depth_image_dataset(config.data, "validation", training=False, repeat=True, **options)
        sample = next(iter(validation.take(1)))["image"].numpy() if config.train.log_images else None
        steps = config.train.steps_per_epoch or max(1, num_depth_images(config.data, "train") // config.data.batch_size)
        return Datasets(train, validation, steps, True, sample)

    def build_trainer(self, config, total_steps: int, *, monitor: bool = True, stage=None, networks=None):
        rsn = networks["rsn"] if networks else None
        return trainer_from_config(config, stage or config.loss.stages()[0][0], total_steps, monitor=monitor,
                                   rsn=rsn)

    def start_stage(self, trainer, config, stage, log=print) -> None:
        if stage == "refinement" and config.loss.refinement_init == "generation":
            from tfdepth.models.rsn import init_refinement_from_generation  # noqa: PLC0415

            copied = init_refinement_from_generation(trainer.refinement, trainer.generation)
            log(f"refinement module initialised from the generation module ({copied} tensors: conv1, bn1, layer1, "
                "full1, full2; loss.refinement_init=generation)")
        if stage == "refinement" and config.loss.refinement_head_init == "positive":
            kernel = positive_refinement_head(trainer.refinement)
            log(f"refinement head infer5 made non-negative ({kernel.shape[2]} inputs; "
                "loss.refinement_head_init=positive)")

    def eval_frames(self, config, split="test"):
        from tfdepth.data.depth_images import eval_depth_frames  # noqa: PLC0415

        for frame in eval_depth_frames(config.data, split, labels_key=config.loss.region_labels):
            image = np.round(frame["image"] * 255.0).astype(np.uint8)  # the stored 8-bit frame, exactly
            yield frame["name"].replace(" ", "_"), image, frame["depth"]

    def training_images(self, config):
        from tfdepth.data.depth_images import eval_depth_frames  # noqa: PLC0415

        for frame in eval_depth_frames(config.data, "train", labels_key=config.loss.region_labels):
            yield frame["image"]

    def evaluate(self, run_dir, config, *, split="test", max_scenes=None):
        import keras  # noqa: PLC0415

        import tfdepth.models  # noqa: F401, PLC0415 (registers the classes)
        from tfdepth.data.depth_images import eval_depth_frames  # noqa: PLC0415

        rsn = keras.saving.load_model(Path(run_dir) / "rsn_net.keras", compile=False)
        frames = eval_depth_frames(config.data, split, labels_key=config.loss.region_labels)
        if max_scenes is not None:
            frames = itertools.islice(frames, max_scenes * config.data.frames_per_scene)
        return evaluate_rsn(rsn, frames, config, network_size=(config.data.height, config.data.width))
