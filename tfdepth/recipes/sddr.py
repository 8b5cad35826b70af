"""Recipe of SDDR (specs/sddr.md): self-distilled depth refinement trained on the synthetic scenes.

Stages (``loss.supervised_epochs``, App. B.2; ``tfdepth.train.refinement`` says what each trains): ``supervised``
(L_gt alone) for the first epoch(s), then ``self_distillation`` (L_gt + 0.5 L_grad + 0.1 L_fusion) for the rest of
``train.epochs``. Data: ``tfdepth.data.refinement_data`` (exact depth, base maps of the noise model).

Evaluation (:func:`evaluate_sddr`, sddr.md §6.2-6.3): on each test frame at its render size, three predictions
against the exact depth: ``base`` (the simulated predictor's low-resolution map, which the noise model already
up-sampled bilinearly to the frame size), ``one_stage`` (N_r once on the whole frame at the network size, resized
back) and ``two_stage`` (then 2x2 and 3x3 windows, ``tfdepth.models.sddr_inference``). Every prediction is inverse
depth up to scale and shift, so each is fitted to 1 / GT by least squares (``pred_is_disparity``) before
``delta1`` / ``rel``; ``ord`` and ``d3r`` are Boost's (ratios in [0, 2]), ``ord_rank`` the paper's Eq. 13
(``tfdepth.edge_metrics``). Per-image values, then the mean over images.

Python API, as the other families'::

    from tfdepth.recipes import sddr
    trainer = sddr.build_trainer(stage="supervised", total_steps=1000, data={"height": 256, "width": 256})
    trainer.fit(my_dataset)               # batches as tfdepth.data.refinement_data makes them
    sddr.save_networks(trainer, "my_run")  # sddr_net.keras + config.yaml
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from tfdepth.config import ConfigError
from tfdepth.models import build_model
from tfdepth.recipes.base import (Datasets, Recipe, precision_policy, resolve_config, save_run_networks,
                                  scheduled_optimizer)
from tfdepth.train.refinement import STAGES as SDDR_STAGE_NAMES
from tfdepth.train.refinement import RefinementTrainer

__all__ = ["SddrRecipe", "build_trainer", "save_networks", "evaluate_sddr", "evaluate_high_resolution", "files_base", "loss_options",
           "label_options"]

FAMILY = "sddr"
_ASPECT_TOLERANCE = 0.02


def loss_options(loss) -> dict:
    """``sddr_loss`` arguments from the loss section."""
    return {"grad_weight": loss.grad_weight, "fusion_weight": loss.fusion_weight, "omega_keys": tuple(loss.omega_keys),
            "trim": loss.trim, "gradient_matching_weight": loss.gradient_matching_weight,
            "scales": loss.gradient_scales, "official_median": loss.official_median,
            "num_regions": loss.num_regions, "top_fraction": loss.top_fraction, "fusion_a": loss.fusion_a,
            "fusion_bands": loss.fusion_bands}


def label_options(loss) -> dict:
    """``coarse_to_fine_labels`` arguments from the loss section."""
    return {"iterations": loss.distill_iterations, "overlaps": tuple(loss.distill_overlaps),
            "label_from": loss.label_from, "bilateral_radius": loss.bilateral_radius,
            "bilateral_sigma_space": loss.bilateral_sigma_space, "bilateral_sigma_range": loss.bilateral_sigma_range}


def _build_net(config):
    m = config.model
    fields = {"name": FAMILY, "height": config.data.height, "width": config.data.width,
              "attention_blocks": m.attention_blocks, "token_layout": m.token_layout, "upsample": m.upsample,
              "drop_path_rate": m.drop_path_rate}
    with precision_policy(config.train.precision):
        return build_model(fields)["sddr"]


def trainer_from_config(config, stage: str, total_steps: int, *, monitor: bool = True, net=None):
    """The compiled trainer of ``stage`` on ``net`` (None: a new N_r at the network size)."""
    net = net if net is not None else _build_net(config)
    trainer = RefinementTrainer(net, stage=stage, loss_options=loss_options(config.loss),
                                label_options=label_options(config.loss), monitor=monitor,
                                on_nonfinite=config.train.on_nonfinite)
    trainer.compile(optimizer=scheduled_optimizer(config.train, total_steps))
    trainer.config = config
    return trainer


def build_trainer(config=None, *, stage: str, total_steps: int, data=None, model=None, loss=None, train=None,
                  eval=None, net=None):
    """A compiled trainer of one SDDR ``stage`` from a config and/or section dicts (module docstring).

    ``net``: an existing SDDRNet to train further (e.g. the previous stage's ``trainer.net``), or None.
    """
    resolved = resolve_config(FAMILY, config, data=data, model=model, loss=loss, train=train, eval=eval)
    SddrRecipe().check_config(resolved)
    if stage not in SDDR_STAGE_NAMES:
        raise ValueError(f"stage must be one of {', '.join(SDDR_STAGE_NAMES)}, got {stage!r}")
    return trainer_from_config(resolved, stage, int(total_steps), net=net)


def save_networks(trainer, directory, config=None) -> dict:
    """Save ``sddr_net.keras`` and ``config.yaml`` into ``directory`` (a run directory for prediction and export)."""
    return save_run_networks(trainer, directory, config)


# ------------------------------------------------------------------------------------------------ evaluation
def mean_metrics(rows) -> dict:
    """Per-metric mean over the images where the metric is defined. Boost's D3R is undefined (NaN) on an image
    without a ground-truth discontinuity between non-nearest superpixel centres; such images are left out of that
    metric's mean, ``undefined`` counts them, and a metric undefined on every image is None (JSON null), never NaN."""
    out, undefined = {}, {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows], np.float64)
        finite = np.isfinite(values)
        out[key] = float(values[finite].mean()) if finite.any() else None
        if not finite.all():
            undefined[key] = int((~finite).sum())
    if undefined:
        out["undefined"] = undefined
    return out


def files_base(base_dir, kind="disparity", png_scale=1.0):
    """Precomputed base maps ``BASE_DIR/<name>_low.*`` and ``<name>_high.*`` (``.png`` 16-bit, ``.npy``, ``.pfm``,
    ``.tif``) for evaluation elements, by element name; an error naming the missing file."""
    from tfdepth.data.middlebury import MAP_EXTENSIONS  # noqa: PLC0415
    from tfdepth.refine import read_base_map  # noqa: PLC0415

    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise FileNotFoundError(f"--base-dir {base_dir} is not a directory")

    def find(name, which):
        for ext in MAP_EXTENSIONS:
            path = base_dir / f"{name}_{which}{ext}"
            if path.is_file():
                return path
        raise FileNotFoundError(f"no base map {base_dir / (name + '_' + which)}.* ({', '.join(MAP_EXTENSIONS)}) for "
                                f"{name}: precompute the predictor's low- and high-resolution outputs per image")

    return lambda element: tuple(read_base_map(find(element["name"], w), kind, png_scale) for w in ("low", "high"))


def evaluate_sddr(refiner, elements, *, base=None, modes=("one_stage", "two_stage"), superpixel_scale=1.0,
                  n_segments=5000) -> dict:
    """The SDDR protocol (module docstring) over evaluation ``elements``; ``{prediction: metrics}`` plus ``frames``
    and ``protocol``.

    ``refiner``: a :class:`tfdepth.refine.DepthRefiner`. ``elements``: dicts with ``image``, ``depth`` (or only
    ``disparity``, whose inverse is then the reference), optional ``valid`` and ``name``
    (``tfdepth.data.middlebury``), and the base maps ``depth_low`` / ``depth_high`` (inverse depth) unless
    ``base(element) -> (low, high)`` gives them (``tfdepth.refine.TfdepthBase`` on the image, :func:`files_base`).
    ``base`` in the result is the low-resolution map resized (bilinear) to the reference size.
    """
    from tfdepth.edge_metrics import evaluate_refinements  # noqa: PLC0415
    from tfdepth.refine import resize_map  # noqa: PLC0415

    rows = {name: [] for name in ("base",) + tuple(modes)}
    for element in elements:
        if "depth" in element:
            gt = np.asarray(element["depth"], np.float32)
        else:
            disparity = np.asarray(element["disparity"], np.float32)
            gt = np.where(disparity > 0, 1.0 / np.maximum(disparity, 1e-12), 0.0).astype(np.float32)
        valid = element.get("valid")
        if base is None:
            low, high = element["depth_low"], element["depth_high"]
        else:
            low, high = base(element)
        preds = {"base": resize_map(low, gt.shape)}
        for mode in modes:
            preds[mode] = refiner.refine(low, high, mode=mode, output_size=gt.shape)
        scores = evaluate_refinements(gt, preds, valid, pred_is_disparity=True, superpixel_scale=superpixel_scale,
                                      n_segments=n_segments)
        for name, score in scores.items():
            rows[name].append(score)
    if not rows["base"]:
        raise ValueError("no frames to evaluate")
    metrics = {name: mean_metrics(r) for name, r in rows.items()}
    metrics["frames"] = len(rows["base"])
    metrics["protocol"] = ("inverse-depth predictions fitted to 1/GT by least-squares scale and shift (delta1, rel); "
                           "ord, d3r: Boost's disagreement ratios; ord_rank: the paper's Eq. 13; per-image metrics "
                           f"averaged over images; network {refiner.size}, windows {refiner.window_size}; "
                           f"superpixels at scale {superpixel_scale}")
    return metrics


def evaluate_high_resolution(run_dir, *, middlebury=None, dense_folder=None, base_model=None, base_dir=None,
                             base_kind="disparity", png_scale=1.0, superpixel_scale=None, size=None,
                             window_size=None, modes=("one_stage", "two_stage"), max_images=None) -> dict:
    """An SDDR run on a user's high-resolution data (``evaluate.py --middlebury DIR`` / ``--dense-folder DIR``).

    Exactly one data source: ``middlebury`` (the 2021 layout, both views of every scene) or ``dense_folder``
    (``tfdepth.data.middlebury.load_dense_folder``). Exactly one base: ``base_model`` (a tfdepth run directory or
    export, :class:`tfdepth.refine.TfdepthBase`) or ``base_dir`` (precomputed maps, :func:`files_base`, of
    ``base_kind``). ``superpixel_scale`` defaults to Boost's: 0.2 for Middlebury, 1 otherwise.
    """
    from tfdepth.data import middlebury as mb  # noqa: PLC0415
    from tfdepth.refine import DepthRefiner, TfdepthBase  # noqa: PLC0415

    if (middlebury is None) == (dense_folder is None):
        raise ValueError("give exactly one of --middlebury DIR and --dense-folder DIR")
    if (base_model is None) == (base_dir is None):
        raise ValueError("give exactly one base predictor: --base-model RUN_OR_EXPORT (a tfdepth model) or "
                         "--base-dir DIR (precomputed <name>_low.* and <name>_high.* maps)")
    refiner = DepthRefiner.from_run_dir(run_dir, size=size, window_size=window_size)
    if middlebury is not None:
        scenes = mb.list_middlebury_scenes(middlebury)
        elements = (mb.load_middlebury_scene(scene, view) for scene in scenes for view in (0, 1))
        scale = 0.2 if superpixel_scale is None else superpixel_scale
    else:
        elements = iter(mb.load_dense_folder(dense_folder, png_scale=png_scale))
        scale = 1.0 if superpixel_scale is None else superpixel_scale
    if max_images is not None:
        elements = itertools.islice(elements, int(max_images))
    if base_model is not None:
        predictor = TfdepthBase(base_model)
        base = lambda element: predictor(element["image"])  # noqa: E731
    else:
        base = files_base(base_dir, base_kind, png_scale)
    metrics = evaluate_sddr(refiner, elements, base=base, modes=modes, superpixel_scale=scale)
    metrics["data"] = str(middlebury or dense_folder)
    metrics["base_predictor"] = predictor.note if base_model is not None else f"files in {base_dir} ({base_kind})"
    return metrics


class SddrRecipe(Recipe):
    name = FAMILY
    staged = True

    def check_config(self, config) -> None:
        super().check_config(config)
        d = config.data
        if d.dataset != "synthetic":
            raise ConfigError(f"data.dataset {d.dataset!r}: SDDR trains on the synthetic scenes (exact depth, base "
                              "maps of the noise model); Middlebury is for evaluation (evaluate.py --middlebury)")
        if d.render_height < d.height or d.render_width < d.width:
            raise ConfigError(f"data.render_height x data.render_width ({d.render_height}x{d.render_width}) must be "
                              f"at least the network size data.height x data.width ({d.height}x{d.width}): the frames "
                              "are the high-resolution canvas the self-distillation windows crop")
        if abs(d.render_height / d.render_width - d.height / d.width) > _ASPECT_TOLERANCE * d.height / d.width:
            raise ConfigError(f"data.render_height / data.render_width ({d.render_height}x{d.render_width}) must have "
                              f"the aspect of the network size ({d.height}x{d.width})")
        if d.height != d.width:
            raise ConfigError(f"data.height and data.width must be equal for SDDR (N_r's official square input), got "
                              f"{d.height}x{d.width}")

    def stages(self, config):
        return config.loss.stages(config.train.epochs)

    def datasets(self, config) -> Datasets:
        from tfdepth.data.refinement_data import num_refinement_frames, refinement_dataset  # noqa: PLC0415

        train = refinement_dataset(config.data, config.loss, "train", training=True, repeat=True)
        validation = refinement_dataset(config.data, config.loss, "validation", training=False, repeat=True)
        steps = config.train.steps_per_epoch or max(
            1, num_refinement_frames(config.data, "train") // config.data.batch_size)
        return Datasets(train, validation, steps, True, None)

    def build_trainer(self, config, total_steps: int, *, monitor: bool = True, stage=None, networks=None):
        net = networks["sddr"] if networks else None
        return trainer_from_config(config, stage or self.stages(config)[0][0], total_steps, monitor=monitor,
                                   net=net)

    def _frames(self, config, split):
        from tfdepth.data.refinement_data import refinement_eval_frames  # noqa: PLC0415

        return refinement_eval_frames(config.data, config.loss, split)

    def eval_frames(self, config, split="test"):
        """``(name, image, None, {"depth_low", "depth_high"})``: no metric ground truth (D0 is affine-invariant),
        the base maps as the network's extra inputs."""
        for frame in self._frames(config, split):
            image = np.round(frame["image"] * 255.0).astype(np.uint8)
            inputs = {k: frame[k][..., None] for k in ("depth_low", "depth_high")}
            yield frame["name"], image, None, inputs

    def training_images(self, config):
        for frame in self._frames(config, "train"):
            yield frame["image"]

    def evaluate(self, run_dir, config, *, split="test", max_scenes=None):
        from tfdepth.refine import DepthRefiner  # noqa: PLC0415

        refiner = DepthRefiner.from_run_dir(run_dir)
        frames = self._frames(config, split)
        if max_scenes is not None:
            frames = itertools.islice(frames, max_scenes * config.data.frames_per_scene)
        return evaluate_sddr(refiner, frames)
