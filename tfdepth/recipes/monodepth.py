"""Recipe of the self-supervised family (Monodepth2 + SegDepth): datasets, trainer, evaluation.

Also the public Python API for users' own Keras training scripts::

    from tfdepth.recipes import monodepth
    trainer = monodepth.build_trainer(total_steps=1000, data={"height": 192, "width": 640})
    trainer.fit(my_video_dataset, epochs=..., callbacks=[...])          # batches as make_video_dataset gives
    monodepth.save_networks(trainer, "my_run")                           # depth_net.keras, pose_net.keras, config

``build_trainer`` takes an ExperimentConfig and/or per-section dicts; call it inside your strategy's scope.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tfdepth.models import build_model
from tfdepth.recipes.base import (Datasets, Recipe, precision_policy, resolve_config, save_run_networks,
                                  scheduled_optimizer)
from tfdepth.train.self_supervised import SelfSupervisedDepthModel, validate_video_batch_spec

__all__ = ["MonodepthRecipe", "build_trainer", "save_networks"]

FAMILY = "monodepth"


def _segmentation_map_fn(config):
    if not config.model.segmentation:
        return None
    from tfdepth.data.factory import foreground_class_ids
    from tfdepth.train.targets import segmentation_targets_fn

    return segmentation_targets_fn(
        foreground_class_ids(config.data),
        w0=config.loss.segmentation_w0,
        sigma=config.loss.segmentation_sigma,
        class_balance=config.loss.segmentation_class_balance,
        weight_map=config.loss.segmentation_weight_map,
    )


def trainer_from_config(config, total_steps: int, *, monitor: bool = True) -> SelfSupervisedDepthModel:
    """Networks (under ``train.precision``) + trainer + optimizers from a resolved config; compiled."""
    model, loss, train = config.model, config.loss, config.train
    with precision_policy(train.precision):
        nets = build_model(model)
    trainer = SelfSupervisedDepthModel(
        nets["depth"],
        nets["pose"],
        nets.get("segmentation"),
        scales=model.scales,
        min_depth=model.min_depth,
        max_depth=model.max_depth,
        photometric_weight=loss.photometric,
        smoothness_weight=loss.smoothness,
        segmentation_weight=loss.segmentation,
        ssim_weight=loss.ssim_weight,
        automask=loss.automask,
        min_reprojection=loss.min_reprojection,
        full_res_multiscale=loss.full_res_multiscale,
        segmentation_input=model.segmentation_input,
        segmentation_weight_map=loss.segmentation_weight_map,
        automask_warmup_steps=loss.automask_warmup_steps,
        monitor_alignment="median" if config.eval.median_scaling else "none",
        monitor_min_depth=config.eval.min_depth,
        monitor_max_depth=config.eval.max_depth,
        monitor=monitor,
        on_nonfinite=train.on_nonfinite,
    )
    groups = {}
    if nets.get("segmentation") is not None:
        # SegDepth B.4: the U-Net has its own Adam (1e-3, same step decay) on the gradients of the same loss.
        groups["segmentation"] = scheduled_optimizer(train, total_steps, train.segmentation_learning_rate)
    trainer.compile(optimizer=scheduled_optimizer(train, total_steps), group_optimizers=groups)
    trainer.config = config
    return trainer


def build_trainer(config=None, *, total_steps: int, data=None, model=None, loss=None, train=None, eval=None):
    """A compiled self-supervised trainer from a config and/or section dicts (module docstring).

    ``total_steps`` sets the LR schedule (the step decay at ``train.lr_decay_at`` of it). Call inside
    ``strategy.scope()`` when training distributed.
    """
    resolved = resolve_config(FAMILY, config, data=data, model=model, loss=loss, train=train, eval=eval)
    MonodepthRecipe().check_config(resolved)
    return trainer_from_config(resolved, int(total_steps))


def save_networks(trainer, directory, config=None) -> dict:
    """Save ``depth_net.keras``, ``pose_net.keras`` (and the U-Net's) and ``config.yaml`` into ``directory``."""
    return save_run_networks(trainer, directory, config)


class MonodepthRecipe(Recipe):
    name = FAMILY

    def datasets(self, config) -> Datasets:
        from tfdepth.data.factory import has_depth, steps_per_epoch, video_dataset

        map_fn = _segmentation_map_fn(config)
        train = video_dataset(config.data, "train", training=True, map_fn=map_fn, repeat=True)
        validate_video_batch_spec(train.element_spec, multiple=self.input_multiple,
                                  segmentation=config.model.segmentation)
        validation = video_dataset(config.data, "validation", training=False, map_fn=map_fn, repeat=True)
        sample = next(iter(validation.take(1)))["image"].numpy() if config.train.log_images else None
        steps = config.train.steps_per_epoch or steps_per_epoch(config.data, "train")
        return Datasets(train, validation, steps, has_depth(config.data, "validation"), sample)

    def build_trainer(self, config, total_steps: int, *, monitor: bool = True, stage=None, networks=None):
        return trainer_from_config(config, total_steps, monitor=monitor)

    def eval_frames(self, config, split="test"):
        from tfdepth.data.factory import eval_sequences

        for scene, seq in enumerate(eval_sequences(config.data, split)):
            images, depths = seq["image"], seq.get("depth")
            k = len(images) // 2  # the middle frame of each scene
            yield f"{split}_scene{scene}_frame{k}", images[k], None if depths is None else depths[k]

    def training_images(self, config):
        from tfdepth.data.factory import video_dataset

        for batch in video_dataset(config.data, "train", training=False):  # no augmentation, the stored frames
            yield from batch["image"].numpy()

    def evaluate(self, run_dir, config, *, split="test", max_scenes=None):
        import keras

        from tfdepth.data.factory import eval_sequences, has_depth
        from tfdepth.evaluation import evaluate_sequences
        from tfdepth.inference import DepthPredictor

        if not has_depth(config.data, split):
            return None
        run_dir = Path(run_dir)
        predictor = DepthPredictor.from_run_dir(run_dir)
        pose_path = run_dir / "pose_net.keras"
        pose_net = keras.saving.load_model(pose_path, compile=False) if pose_path.is_file() else None
        sequences = eval_sequences(config.data, split)
        if max_scenes is not None:
            sequences = itertools.islice(sequences, max_scenes)
        return evaluate_sequences(predictor, sequences, config.eval, pose_net=pose_net,
                                  network_size=(config.data.height, config.data.width))
