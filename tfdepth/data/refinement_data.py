"""SDDR's training and evaluation data: frames with exact depth and the base maps of a simulated predictor.

SDDR refines what a depth predictor N_d returns at a low and a high inference resolution (specs/sddr.md §1-§2).
The embedded synthetic scenes give exact depth, so the base maps come from the paper's noise model
(``tfdepth.data.synthetic.degrade``, Eq. 1: edge blur + locally inconsistent affine noise) applied to the exact
depth: ``depth_low`` (a predictor run at ``loss.base_low_size``: consistent, blurry) and ``depth_high`` (at
``loss.base_high_size``: sharp, locally inconsistent), both normalised inverse depth in [0, 1] (1 = nearest), the
relative form MiDaS-like predictors return.

Sizes: frames are rendered at ``data.render_height x data.render_width`` (the high-resolution canvas); the
network sees ``data.height x data.width`` (multiples of 128). Each training batch holds

* ``depth_low``, ``depth_high`` [B, h, w, 1]: the base maps resized to the network size (area averaging);
* ``depth_high_full`` [B, H, W, 1]: the high-resolution map at the render size: the self-distillation windows
  crop it, so their high input carries the detail of a predictor run on the window (paper §3.2, Eq. 5);
* ``target`` [B, h, w, 1]: the L_gt target, the exact inverse depth normalised by its maximum and nearest-resized
  (the code nearest-resizes its ground truth), ``mask`` [B, h, w, 1] float: pixels with depth (not sky);
* ``depth`` [B, h, w, 1]: the un-augmented target again (validation monitoring compares the prediction with it
  after least-squares alignment, ``tfdepth.train.refinement``).

Augmentation (training): the pipeline's horizontal flip (``data.flip``, p = 1/2, redrawn every epoch); then, per
sample, GBDF's vertical flip (``loss.vertical_flip``, p = 1/2) and sign inversion of every depth map
(``loss.invert_probability``, 1/3: maps become 1 - x, the target -x; sddr.md §5). [decision] The noise of the base
maps, the vertical flip and the inversion are a pure function of (``data.seed``, scene, frame): a real predictor
is deterministic too (its output for an image never changes), and runs are reproducible without a stateful random
op in the pipeline.
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf

from tfdepth.data.synthetic.degrade import degrade_depth

__all__ = ["refinement_dataset", "refinement_eval_frames", "base_maps", "num_refinement_frames", "BATCH_KEYS"]

BATCH_KEYS = ("depth_low", "depth_high", "depth_high_full", "target", "mask", "depth")


def _check(data_config):
    if data_config.dataset != "synthetic":
        raise ValueError(f"data.dataset {data_config.dataset!r}: SDDR trains on the synthetic scenes (exact depth "
                         "edges, base maps from the noise model); evaluate on Middlebury with evaluate.py "
                         "--middlebury DIR (README, SDDR)")
    if data_config.render_height < data_config.height or data_config.render_width < data_config.width:
        raise ValueError(f"data.render_height x data.render_width ({data_config.render_height}x"
                         f"{data_config.render_width}) must be at least the network size data.height x data.width "
                         f"({data_config.height}x{data_config.width}): the frames are the high-resolution canvas")


def sample_seed(data_seed: int, scene_seed: int, frame_index: int) -> int:
    """The per-frame seed of the base maps and the per-sample augmentation (module docstring)."""
    return zlib.crc32(f"sddr {int(data_seed)} {int(scene_seed)} {int(frame_index)}".encode())


def inverse_depth(depth):
    """Exact depth [H, W] (0 = no surface) -> inverse depth / its maximum (1 = nearest, 0 = none), float32."""
    depth = np.asarray(depth, np.float32)
    valid = depth > 0
    disp = np.zeros_like(depth)
    disp[valid] = 1.0 / depth[valid]
    if valid.any():
        disp /= disp.max()
    return disp


def base_maps(depth, seed, loss_config):
    """The simulated predictor's ``depth_low`` and ``depth_high`` [H, W] for exact ``depth`` [H, W] (module
    docstring): ``tfdepth.data.synthetic.degrade.degrade_depth`` at the configured predictor sizes."""
    return degrade_depth(depth, int(seed), low_size=int(loss_config.base_low_size),
                         high_size=int(loss_config.base_high_size))


def _resize_area(x, hw):
    return tf.image.resize(x, hw, method="area") if tuple(x.shape[-3:-1]) != tuple(hw) else x


def _map_fn(data_config, loss_config, training):
    hw = (int(data_config.height), int(data_config.width))
    full_hw = (int(data_config.render_height), int(data_config.render_width))
    data_seed = int(data_config.seed)
    vertical = training and bool(loss_config.vertical_flip)
    invert_p = float(loss_config.invert_probability) if training else 0.0

    def numpy_part(depth, scene_seed, frame_index):
        depth = depth.reshape(depth.shape[:2])
        seed = sample_seed(data_seed, scene_seed, frame_index)
        maps = base_maps(depth, seed, loss_config)
        target = inverse_depth(depth)
        rng = np.random.default_rng([seed, 7])
        flags = np.array([vertical and rng.random() < 0.5, rng.random() < invert_p], np.float32)
        return [np.ascontiguousarray(a, np.float32)[..., None]
                for a in (maps["depth_low"], maps["depth_high"], target, (target > 0))] + [flags]

    def fn(sample):
        low, high, target, mask, flags = tf.numpy_function(
            numpy_part, [sample["depth"], sample["scene_seed"], sample["frame_index"]], [tf.float32] * 5,
            stateful=False)
        for t in (low, high, target, mask):
            t.set_shape(full_hw + (1,))
        flags.set_shape([2])
        out = {"depth_low": _resize_area(low, hw), "depth_high": _resize_area(high, hw), "depth_high_full": high,
               "target": tf.image.resize(target, hw, method="nearest"),
               "mask": tf.image.resize(mask, hw, method="nearest")}
        plain = out["target"]
        # The per-sample augmentation at each map's own size, so a flip is exact at both sizes.
        flip_v, invert = flags[0] > 0.5, flags[1] > 0.5
        for key in ("depth_low", "depth_high", "depth_high_full", "target", "mask"):
            out[key] = tf.where(flip_v, out[key][::-1], out[key])
        for key in ("depth_low", "depth_high", "depth_high_full"):
            out[key] = tf.where(invert, 1.0 - out[key], out[key])
        out["target"] = tf.where(invert, -out["target"], out["target"])
        out["depth"] = plain
        return out

    return fn


def _sequences(data_config, split):
    from tfdepth.data.factory import synthetic_builder  # noqa: PLC0415
    from tfdepth.data.pipeline import sequences_from_tfds  # noqa: PLC0415

    return sequences_from_tfds(synthetic_builder(data_config), split)


def num_refinement_frames(data_config, split) -> int:
    """Frames in ``split`` (scenes x frames per scene)."""
    scenes = {"train": data_config.train_scenes, "validation": data_config.validation_scenes,
              "test": data_config.test_scenes}[split]
    return scenes * data_config.frames_per_scene


def refinement_dataset(data_config, loss_config, split, *, training, repeat=False):
    """Batched SDDR training dicts (:data:`BATCH_KEYS`, module docstring) of ``split``."""
    from tfdepth.data.pipeline import make_frame_dataset  # noqa: PLC0415

    _check(data_config)
    return make_frame_dataset(
        _sequences(data_config, split), batch_size=data_config.batch_size, shuffle=training,
        flip=training and data_config.flip, color_jitter=False, seed=data_config.seed,
        map_fn=_map_fn(data_config, loss_config, training), drop_remainder=training, repeat=repeat,
        shuffle_buffer=data_config.shuffle_buffer)


def refinement_eval_frames(data_config, loss_config, split="test"):
    """Numpy test frames at the render size: ``image`` float32 [H, W, 3] in [0, 1], exact ``depth`` [H, W],
    the base maps ``depth_low`` / ``depth_high`` [H, W] (no augmentation) and ``name``."""
    from tfdepth.data.video import frames as scene_frames  # noqa: PLC0415

    _check(data_config)
    for frame in scene_frames(_sequences(data_config, split)).as_numpy_iterator():
        depth = frame["depth"].reshape(frame["depth"].shape[:2]).astype(np.float32)
        scene, index = int(frame["scene_seed"]), int(frame["frame_index"])
        maps = base_maps(depth, sample_seed(data_config.seed, scene, index), loss_config)
        yield {"image": frame["image"].astype(np.float32), "depth": depth, "depth_low": maps["depth_low"],
               "depth_high": maps["depth_high"], "name": f"synthetic_scene_{scene}_frame_{index}"}
