"""SDDR for users: refine a base predictor's depth with a trained N_r (specs/sddr.md §2.1, §6; issue items 2, 8).

N_r takes no RGB: it refines two base maps of one image, the predictor's output at a low and at a high input
resolution. They come from

* **a tfdepth model** (:class:`TfdepthBase`): any tfdepth run directory or export (self-supervised or RSN) run on
  the image at its network size (low) and at ``high_scale`` times it (high; run directories only, their networks
  are fully convolutional; a fixed-size export gives the same map twice, which :class:`TfdepthBase` says);
* **files** (:func:`read_base_map`): precomputed maps of any other model (MiDaS, Depth Anything, LeReS, ...) as
  16-bit PNG, ``.npy``, PFM or TIFF, with ``kind`` saying whether they hold depth or disparity (inverse depth);
* the synthetic noise model (``tfdepth.data.refinement_data``) for training and tests.

Normalisation [decision, documented]: tfdepth's N_r is trained on **inverse depth** (1 = nearest), the relative
form MiDaS-like predictors return, so depth maps are inverted first (``1 / depth``; 0 and negative depth are
"no depth" and become 0, the far end); the maps are then min-max normalised inside the network (the official
``inference()``). The refined output is relative inverse depth (larger = nearer), up to scale and shift;
:meth:`DepthRefiner.refine` returns it min-max normalised to [0, 1] (what the official demo saves).

Bad input (one clear error each): a NaN or inf in a base map (SDDR does not guess missing base depth), maps of
another aspect ratio than the image (> 2 %), a network size that is not a multiple of 128. A constant base map
carries no depth: the refined map is then the constant 0 map (``tfdepth.models.sddr_inference``), never NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DepthRefiner", "TfdepthBase", "read_base_map", "to_inverse_depth", "resize_map", "BASE_KINDS"]

BASE_KINDS = ("disparity", "depth")
MODES = ("one_stage", "two_stage")


def to_inverse_depth(values, kind: str, name: str = "base map") -> np.ndarray:
    """A base map as inverse depth float32 [H, W] (module docstring): ``kind`` ``disparity`` as it is, ``depth``
    inverted (values <= 0 become 0). Non-finite values are an error naming ``name``."""
    if kind not in BASE_KINDS:
        raise ValueError(f"{name}: kind must be one of {', '.join(BASE_KINDS)}, got {kind!r}")
    values = np.asarray(values, np.float32)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise ValueError(f"{name}: a base map must be [H, W], got shape {values.shape}")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"{name} has {bad} non-finite values (NaN or inf); fill or mask them before refining")
    if kind == "disparity":
        return values
    out = np.zeros_like(values)
    positive = values > 0
    out[positive] = 1.0 / values[positive]
    return out


def read_base_map(path, kind: str = "disparity", png_scale: float = 1.0) -> np.ndarray:
    """A precomputed base map file (16-bit PNG, ``.npy``, ``.pfm``, ``.tif``) as inverse depth [H, W]."""
    from tfdepth.data.middlebury import read_map_file  # noqa: PLC0415

    return to_inverse_depth(read_map_file(path, png_scale), kind, name=str(path))


def resize_map(x, hw) -> np.ndarray:
    """A map [H, W] resized to ``hw`` (bilinear, anti-aliased when shrinking), float32."""
    import tensorflow as tf  # noqa: PLC0415

    x = np.asarray(x, np.float32)
    if x.shape == tuple(hw):
        return x
    return tf.image.resize(x[None, :, :, None], tuple(hw), method="bilinear", antialias=True).numpy()[0, :, :, 0]


def _round_to(value, multiple):
    return max(multiple, int(round(value / multiple)) * multiple)


class TfdepthBase:
    """A tfdepth model as SDDR's base predictor N_d: ``base(image) -> (low, high)`` inverse depth at the image size.

    ``path``: a run directory (self-supervised or RSN), a SavedModel or a ``.tflite`` export. ``high_scale``: the
    high-resolution input is ``high_scale`` x the network size (rounded to the network's input multiple; run
    directories only). The paper's predictors run at their training size (low) and about 2x (high), §3.4.
    """

    def __init__(self, path, high_scale: float = 2.0):
        from tfdepth.inference import DepthPredictor, load_inference_network  # noqa: PLC0415

        if not high_scale >= 1.0:
            raise ValueError(f"high_scale must be >= 1 (the high-resolution pass is at least the network size), "
                             f"got {high_scale}")
        path = Path(path)
        if path.is_dir() and (path / "config.yaml").is_file():
            network, info = load_inference_network(path)
            if info.family == "sddr":
                raise ValueError(f"{path} is an SDDR run (a refiner, not a depth predictor); give the base model's "
                                 "run directory or export, or precomputed base maps")
            self.low = DepthPredictor(network, info.height, info.width, depth_kind=info.depth_kind,
                                      input_multiple=info.input_multiple, family=info.family, config=info.config)
            h, w = (_round_to(s * high_scale, info.input_multiple) for s in (info.height, info.width))
            self.high = self.low if (h, w) == (info.height, info.width) else DepthPredictor(
                network, h, w, depth_kind=info.depth_kind, input_multiple=info.input_multiple, family=info.family,
                config=info.config)
            self.note = f"base {info.family} model at {info.height}x{info.width} (low) and {h}x{w} (high)"
        else:
            self.low = self.high = DepthPredictor.load(path)
            self.note = (f"base export {path.name}: a fixed-size export gives one resolution, so the low and high "
                         "maps are the same prediction (refinement then only sharpens what it sees)")
        self.path = path

    def __call__(self, image):
        """``(low, high)`` inverse depth [H, W] float32 for one image [H, W, 3] (uint8 or float in [0, 1])."""
        low = to_inverse_depth(self.low.predict(image), "depth", "base prediction (low)")
        high = low if self.high is self.low else to_inverse_depth(self.high.predict(image), "depth",
                                                                  "base prediction (high)")
        return low, high


class DepthRefiner:
    """A trained SDDR N_r: ``refine(low, high)`` -> refined relative inverse depth at the image size.

    ``size``: the whole-image network size (default: the trained size; any multiple of 128 works, the weights are
    size-independent); ``window_size``: the two-stage windows' network size (default ``size``).
    """

    def __init__(self, net, size: int | None = None, window_size: int | None = None):
        from tfdepth.models.sddr import SDDRNet  # noqa: PLC0415

        if not isinstance(net, SDDRNet):
            raise TypeError(f"DepthRefiner takes a tfdepth.models.SDDRNet, got {type(net).__name__}")
        trained = net.height
        size = int(size or trained or 1024)
        self.size, self.window_size = size, int(window_size or size)
        for value, label in ((self.size, "size"), (self.window_size, "window_size")):
            if value < 128 or value % 128:
                raise ValueError(f"{label}={value} is not a multiple of 128 (>= 128); SDDR needs H and W divisible by "
                                 "128: use e.g. 1024")
        self.net = net if net.height is None else _any_size_copy(net)

    @classmethod
    def from_run_dir(cls, run_dir, size=None, window_size=None) -> "DepthRefiner":
        """The N_r of an SDDR run directory (``sddr_net.keras``), at its trained size unless ``size`` is given."""
        import keras  # noqa: PLC0415

        import tfdepth.models  # noqa: F401, PLC0415 (registers the classes)
        from tfdepth.config import load_config  # noqa: PLC0415

        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir / 'config.yaml'} not found: give an SDDR run directory written by "
                                    "train.py --config configs/sddr_synthetic.yaml")
        config = load_config(run_dir / "config.yaml")
        if config.model.name != "sddr":
            raise ValueError(f"{run_dir} is a {config.model.name} run, not an SDDR run; to refine its depth pass it "
                             "as the base model")
        path = run_dir / "sddr_net.keras"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the SDDR run has not finished training (rerun train.py with "
                                    "the same --run-dir to resume)")
        net = keras.saving.load_model(path, compile=False)
        refiner = cls(net, size=size or config.data.height, window_size=window_size)
        refiner.config = config
        return refiner

    def refine(self, low, high, *, mode: str = "one_stage", output_size=None) -> np.ndarray:
        """Refined inverse depth [H, W] in [0, 1] (1 = nearest) from two inverse-depth base maps [H, W] (any
        sizes of the same aspect ratio); ``output_size`` (h, w) defaults to the high map's size."""
        from tfdepth.models.sddr_inference import refine_depth  # noqa: PLC0415

        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        out = refine_depth(self.net, np.asarray(low, np.float32), np.asarray(high, np.float32), mode=mode,
                           size=self.size, window_size=self.window_size, output_size=output_size)
        lo, hi = float(out.min()), float(out.max())
        return ((out - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(out, np.float32)


def _any_size_copy(net):
    """The same N_r built for any input size (the weights do not depend on it), with ``net``'s weights."""
    from tfdepth.models.sddr import SDDRNet  # noqa: PLC0415

    config = {**net.get_config(), "height": None, "width": None}
    copy = SDDRNet(**config)
    copy.set_weights(net.get_weights())
    return copy
