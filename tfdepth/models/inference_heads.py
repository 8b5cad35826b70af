"""Per-family inference networks: what a trained family's saved networks become at prediction and export time.

Every family registers one :class:`InferenceSpec` in :data:`INFERENCE_SPECS` (keyed by ``model.name``):

* ``files``: the network files the trainer saves into a run directory (role -> file name). The family's recipe
  saves exactly these, and :func:`tfdepth.inference.load_inference_network` loads them, so the two never disagree.
* ``build(networks, model_config)``: a Keras model taking a float32 image batch ``[B, h, w, 3]`` in [0, 1] at the
  network's input size and returning a dict with ``depth`` ``[B, h, w, 1]`` float32 (and ``disparity`` where the
  family has one). Resizing to and from the network size belongs to the caller (``DepthPredictor``, the export
  graphs), never to this network.
* ``depth_kind``: ``"relative"`` (monocular self-supervised depth is up to an unknown scale) or ``"metric"``
  (metres).
* ``input_multiple``: H and W of the network input must be multiples of this.
* ``extra_inputs``: names of additional ``[B, h, w, 1]`` float32 inputs (default ``()``: the network takes the image
  only). A family with extra inputs builds a network whose input is a dict of exactly these keys, all at the network
  input size; SDDR's N_r takes no RGB, only the base predictor's depth at a low and a high inference resolution,
  ``("depth_low", "depth_high")``: the caller (prediction, export) produces them from the image with a base
  predictor or reads them from files, then resizes them like an image.

The RSN and SDDR families add their entries here; nothing else in prediction or export is family-specific.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras

from tfdepth.models.depth_decoder import disp_to_depth

__all__ = ["InferenceSpec", "INFERENCE_SPECS", "get_inference_spec", "DisparityToDepth", "monodepth_inference_network",
           "sddr_inference_network"]
__all__ += ["rsn_inference_network"]


@dataclass(frozen=True)
class InferenceSpec:
    """How a family's saved networks are loaded and wrapped for inference (module docstring)."""

    files: dict = field(default_factory=dict)
    build: Callable | None = None
    depth_kind: str = "relative"
    input_multiple: int = 32
    extra_inputs: tuple = ()


@keras.saving.register_keras_serializable(package="tfdepth")
class DisparityToDepth(keras.layers.Layer):
    """Sigmoid disparity ``[B,h,w,1]`` -> ``{"depth", "disparity"}`` with Monodepth2's ``disp_to_depth`` (A.3).

    ``disparity`` is the scaled disparity ``1/max_depth + (1/min_depth - 1/max_depth) * sigmoid`` and ``depth`` its
    inverse, both float32 (computed in float32 under any mixed-precision policy).
    """

    def __init__(self, min_depth=0.1, max_depth=100.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        disp_to_depth(0.5, min_depth, max_depth)  # validates the range with a readable message
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)

    def call(self, disp):
        scaled, depth = disp_to_depth(keras.ops.cast(disp, "float32"), self.min_depth, self.max_depth)
        return {"depth": depth, "disparity": scaled}

    def compute_output_spec(self, disp):
        spec = keras.KerasTensor(disp.shape, dtype="float32")
        return {"depth": spec, "disparity": keras.KerasTensor(disp.shape, dtype="float32")}

    def get_config(self):
        return {**super().get_config(), "min_depth": self.min_depth, "max_depth": self.max_depth}


def monodepth_inference_network(networks, model_config) -> keras.Model:
    """Image ``[B,h,w,3]`` in [0,1] -> ``{"depth", "disparity"}`` at ``h x w`` from ``networks["depth"]``."""
    depth_net = networks["depth"]
    get = model_config.get if isinstance(model_config, dict) else lambda k, d=None: getattr(model_config, k, d)
    image = keras.Input((None, None, 3), name="image", dtype="float32")
    disp = depth_net(image, training=False)["disp_0"]
    outputs = DisparityToDepth(get("min_depth", 0.1), get("max_depth", 100.0), name="disp_to_depth")(disp)
    return keras.Model(image, outputs, name="monodepth_inference")


def sddr_inference_network(networks, model_config) -> keras.Model:
    """Base maps ``{"depth_low", "depth_high"}`` (any units, min-max normalised inside) -> ``{"depth"}`` (raw D0)."""
    from tfdepth.models.sddr import SDDRInference  # noqa: PLC0415 (keeps this module light to import)

    return SDDRInference(networks["sddr"])


INFERENCE_SPECS = {
    "monodepth": InferenceSpec(
        files={"depth": "depth_net.keras"},
        build=monodepth_inference_network,
        depth_kind="relative",
        input_multiple=32,
    ),
}
INFERENCE_SPECS["sddr"] = InferenceSpec(
    files={"sddr": "sddr_net.keras"},
    build=sddr_inference_network,
    depth_kind="relative",  # affine-invariant: D0 is defined up to scale and shift (specs/sddr.md §2.3)
    input_multiple=128,
    extra_inputs=("depth_low", "depth_high"),
)



def rsn_inference_network(networks, model_config) -> keras.Model:
    """Image ``[B,h,w,3]`` in [0,1] -> ``{"depth"}`` metres (the last refinement iteration; h, w even, >= 6)."""
    rsn = networks["rsn"]
    image = keras.Input((None, None, 3), name="image", dtype="float32")
    depth = rsn(image, training=False)["depth"]  # BN in inference mode (the original evaluated in training mode)
    return keras.Model(image, {"depth": depth}, name="rsn_inference")


INFERENCE_SPECS["rsn"] = InferenceSpec(
    files={"rsn": "rsn_net.keras"},
    build=rsn_inference_network,
    depth_kind="metric",  # supervised on metric NYU depth (specs/rsn.md)
    input_multiple=2,  # even H and W (and at least 6): the generation module's stride-2 path (specs/rsn.md item 6)
)


def get_inference_spec(name: str) -> InferenceSpec:
    """The :class:`InferenceSpec` of family ``name`` (``model.name``); a clear error for unknown names."""
    if name not in INFERENCE_SPECS:
        raise ValueError(f"model.name {name!r} has no inference network; known: {', '.join(sorted(INFERENCE_SPECS))}")
    return INFERENCE_SPECS[name]
