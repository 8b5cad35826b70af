"""DepthPredictor: one call, an image at its own resolution in, depth at that resolution out.

The image is resized to the network's input size (bilinear with antialiasing when shrinking, close to the PIL
antialias resize of Monodepth2's loader), the depth network predicts a sigmoid disparity, ``disp_to_depth`` maps it to
[1/max_depth, 1/min_depth] (A.3), the scaled disparity is resized bilinearly to the input size and inverted
(as Monodepth2's evaluation, A.8). The output is relative depth (self-supervised monocular models are up to
scale): multiply by a median-scaling ratio, a stereo factor or a camera-height ratio for metres (README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdepth.config import load_config
from tfdepth.models.depth_decoder import disp_to_depth

__all__ = ["DepthPredictor", "DEPTH_NET_FILE", "RunInfo", "load_inference_network"]

DEPTH_NET_FILE = "depth_net.keras"


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about its inference network (from its ``config.yaml``)."""

    family: str  # model.name
    height: int  # network input size
    width: int
    depth_kind: str  # "relative" | "metric" (tfdepth.models.inference_heads)
    input_multiple: int
    config: object  # the run's ExperimentConfig


def load_inference_network(run_dir: str | os.PathLike):
    """``(network, RunInfo)`` for a run directory written by ``train.py``, for any family.

    ``network``: float32 image ``[B,h,w,3]`` in [0,1] at the network size -> dict with ``depth`` ``[B,h,w,1]``
    (and ``disparity`` where the family has one); built by the family's ``InferenceSpec`` from the files it saved.
    """
    import keras

    import tfdepth.models  # noqa: F401  (registers the serializable model classes)
    from tfdepth.models.inference_heads import get_inference_spec

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: --run-dir must be a directory written by train.py (it holds config.yaml)"
        )
    config = load_config(config_path)
    spec = get_inference_spec(config.model.name)
    networks = {}
    for role, file_name in spec.files.items():
        path = run_dir / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the run in {run_dir} has not finished training (train.py writes {file_name} "
                "at the end; rerun it with the same --run-dir to resume)"
            )
        networks[role] = keras.saving.load_model(path, compile=False)
    network = spec.build(networks, config.model)
    info = RunInfo(config.model.name, config.data.height, config.data.width, spec.depth_kind, spec.input_multiple,
                   config)
    return network, info


class DepthPredictor:
    """Wraps a trained depth network.

    Args:
        depth_net: Keras model, image [B,h,w,3] in [0,1] -> dict with ``disp_0``.
        height, width: the network's input size (multiples of 32).
        min_depth, max_depth: the ``disp_to_depth`` range the network was trained with.
    """

    def __init__(self, depth_net, height: int, width: int, min_depth: float = 0.1, max_depth: float = 100.0):
        if height % 32 or width % 32:
            raise ValueError(f"network input size must be multiples of 32, got {height}x{width}")
        self.depth_net = depth_net
        self.height, self.width = int(height), int(width)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self._predict = tf.function(self._predict_graph, reduce_retracing=True)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike) -> "DepthPredictor":
        """Load ``config.yaml`` and ``depth_net.keras`` written by ``train.py`` into ``run_dir``."""
        import keras

        import tfdepth.models  # noqa: F401  (registers the serializable model classes)

        run_dir = Path(run_dir)
        config_path, model_path = run_dir / "config.yaml", run_dir / DEPTH_NET_FILE
        for path in (config_path, model_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: --run-dir must be a directory written by train.py (it holds config.yaml "
                    f"and {DEPTH_NET_FILE} once training finished)"
                )
        config = load_config(config_path)
        depth_net = keras.saving.load_model(model_path, compile=False)
        return cls(depth_net, config.data.height, config.data.width, config.model.min_depth, config.model.max_depth)

    def _predict_graph(self, images, out_height, out_width):
        resized = tf.image.resize(images, [self.height, self.width], method="bilinear", antialias=True)
        disp = tf.cast(self.depth_net(resized, training=False)["disp_0"], tf.float32)
        scaled_disp, _ = disp_to_depth(disp, self.min_depth, self.max_depth)
        scaled_disp = tf.image.resize(scaled_disp, tf.stack([out_height, out_width]), method="bilinear")
        return 1.0 / scaled_disp

    @staticmethod
    def _as_float_images(images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected an RGB image [H,W,3] or a batch [B,H,W,3], got shape {images.shape}")
        if images.dtype == np.uint8:
            return images.astype(np.float32) / 255.0
        images = images.astype(np.float32)
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError("float images must be in [0, 1]; pass uint8 images for 0..255 data")
        return images

    def predict_batch(self, images) -> np.ndarray:
        """Depth [B,H,W] at the input resolution for a batch [B,H,W,3] (uint8 or float in [0,1])."""
        images = self._as_float_images(images)
        h, w = images.shape[1:3]
        depth = self._predict(tf.constant(images), tf.constant(h, tf.int32), tf.constant(w, tf.int32))
        return depth.numpy()[..., 0]

    def predict(self, image) -> np.ndarray:
        """Depth [H,W] for one RGB image [H,W,3] at its own resolution."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"predict takes one image [H,W,3]; got shape {image.shape} (use predict_batch)")
        return self.predict_batch(image[None])[0]
