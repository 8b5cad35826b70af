"""DepthPredictor: one call, an image at its own resolution in, depth at that resolution out.

Three backends, one behaviour:

* a run directory (``from_run_dir``): the family's inference network from :func:`load_inference_network`
  (``tfdepth.models.inference_heads``: float32 image at the network size -> ``depth``), for any family;
* an exported SavedModel (``from_saved_model``; TF-Serving layout ``NAME/VERSION/`` or the version directory): its
  ``serving_default`` signature (uint8 ``image``) or ``serving_float`` (float32 ``image`` in [0, 1]), which take
  any size and return ``depth`` at the input resolution (the graph owns the resizing);
* a ``.tflite`` file (``from_tflite``): the ``serving_float`` (else ``serving_default``) signature at the fixed
  size the file was converted at; resizing to and from that size happens here, as for the Keras network.

``DepthPredictor.load(path)`` picks the backend from what ``path`` is.

Resizing (Keras and TFLite backends; the export graphs do the same inside): the image goes to the network size with
bilinear interpolation and antialiasing when shrinking (close to the PIL antialias resize of Monodepth2's loader),
uint8 / uint16 values are divided by 255 / 65535 after that resize (it is linear, so this equals dividing first,
as ``tfdepth.export.graph`` does, to about 2e-7, without a full-resolution float copy of a 12 MP photo). Back to the
input size: a family with a ``disparity`` output has its disparity resized bilinearly and inverted (Monodepth2's
evaluation, A.8); a family with only ``depth`` has its depth resized bilinearly. These are the steps of the export
graphs (``tfdepth.export.graph``), so a SavedModel, a ``.tflite`` and the run directory give the same numbers.

Output units follow the family (``depth_kind``): self-supervised monocular depth is relative (up to an unknown
scale; multiply by a median-scaling ratio, a stereo factor or a camera-height ratio for metres, README "Scale"),
metric families give metres.

:func:`depth_to_points` back-projects a depth map through ``tfdepth.geometry`` for point clouds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdepth.config import load_config
from tfdepth.geometry import backproject, invert_intrinsics

__all__ = ["DepthPredictor", "DEPTH_NET_FILE", "RunInfo", "load_inference_network", "depth_to_points",
           "read_export_metadata", "as_image_batch"]

DEPTH_NET_FILE = "depth_net.keras"
SAVED_MODEL_FLOAT = "serving_float"  # float32 image [B,H,W,3] in [0, 1] -> depth (the export contract)
SAVED_MODEL_UINT8 = "serving_default"  # uint8 image [B,H,W,3] -> depth
_UNIT = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # integer photo value of full intensity


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


# --------------------------------------------------------------------------------------------- input checks


def as_image_batch(images, name="images") -> np.ndarray:
    """``[B, H, W, 3]`` uint8, uint16 or float32 (in [0, 1]) from an image ``[H, W(, C)]`` or a batch.

    Channels: 3 (RGB) as given, 1 (grey) repeated, 4 (RGBA) without the alpha. uint8 and uint16 are photos at their
    full range; floats must be finite and in [0, 1]. Anything else is a ValueError that says what to pass.
    """
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None, ..., None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{name}: expected an image [H,W], [H,W,C] or a batch [B,H,W,C], got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name}: empty image batch, shape {arr.shape}")
    channels = arr.shape[-1]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif channels == 4:
        arr = arr[..., :3]
    elif channels != 3:
        raise ValueError(f"{name}: expected 3 (RGB), 1 (grey) or 4 (RGBA) channels, got {channels} "
                         f"(shape {arr.shape})")
    if arr.dtype in _UNIT:
        return arr
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: dtype {arr.dtype} is not an image type; pass uint8 (0..255), uint16 "
                         "(0..65535) or float in [0, 1]")
    arr = arr.astype(np.float32, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: float image holds NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; pass uint8 "
                         "for 0..255 data (or divide by 255)")
    return arr


def _to_unit_float(x, source_dtype):
    """float32 [0, 1] from an (already resized) float tensor holding ``source_dtype`` photo values."""
    unit = _UNIT.get(np.dtype(source_dtype))
    return x if unit is None else x / unit


@tf.function(reduce_retracing=True)
def _resize_to_network(images, height, width):
    """Images [B,H,W,3] (any photo dtype) -> float32 [B,height,width,3] at the photo's scale (not divided)."""
    return tf.image.resize(images, tf.stack([height, width]), method="bilinear", antialias=True)


@tf.function(reduce_retracing=True)
def _to_input_size(outputs, out_height, out_width):
    """Network outputs ``{"depth"[, "disparity"]}`` [B,h,w,1] -> depth [B,out_height,out_width,1] (module
    docstring: the disparity is resized and inverted when there is one, else the depth is resized)."""
    size = tf.stack([out_height, out_width])
    if "disparity" in outputs:
        return 1.0 / tf.image.resize(tf.cast(outputs["disparity"], tf.float32), size, method="bilinear")
    return tf.image.resize(tf.cast(outputs["depth"], tf.float32), size, method="bilinear")


# ------------------------------------------------------------------------------------------- export metadata


def read_export_metadata(path) -> dict:
    """The JSON written next to an export (``family``, ``depth_kind``, network size), or ``{}`` if there is none.

    Where ``tfdepth.export`` writes it: ``VERSION/assets.extra/metadata.json`` in a SavedModel directory (TF
    Serving's place for files that travel with a model), ``<stem>.json`` beside a ``<stem>.tflite`` (also
    accepted: ``metadata.json`` inside the directory, ``<name>.json`` beside the file). The network size is read
    from ``network_size`` ``[h, w]``, or ``height``/``width``.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "assets.extra" / "metadata.json", path / "metadata.json"]
    else:
        candidates = [path.with_suffix(".json"), path.with_name(path.name + ".json")]
    for candidate in candidates:
        if candidate.is_file() and candidate != path:
            try:
                meta = json.loads(candidate.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(f"{candidate}: export metadata is not readable JSON ({err})") from None
            if isinstance(meta, dict):
                return meta
    return {}


def _metadata_size(meta):
    size = meta.get("network_size")
    if size is None and "height" in meta and "width" in meta:
        size = (meta["height"], meta["width"])
    return (int(size[0]), int(size[1])) if size is not None else None


def _saved_model_dir(path: Path) -> Path:
    """The directory holding ``saved_model.pb``: ``path`` itself or the highest numeric version under it."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name), p) for p in path.iterdir()
                      if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()) if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{path}: no saved_model.pb here nor in a numeric version directory "
                                "(TF Serving layout NAME/1/saved_model.pb); export one with python -m export")
    return versions[-1][1]


# ------------------------------------------------------------------------------------------------ predictor


class DepthPredictor:
    """Depth at the input's resolution from a trained network or an export (module docstring).

    Args:
        network: Keras inference network, float32 image ``[B,h,w,3]`` in [0,1] at the network size -> dict with
            ``depth`` ``[B,h,w,1]`` (``InferenceSpec.build``, e.g. from :func:`load_inference_network`).
        height, width: the network's input size (multiples of ``input_multiple``).
        depth_kind: ``"relative"`` (up to scale) or ``"metric"`` (metres).

    Attributes: ``backend`` ("keras" | "saved_model" | "tflite"), ``network_size`` ((h, w) or None when an
    export takes any size and says nothing of its training size), ``depth_kind``, ``family``, ``config`` (the
    run's ExperimentConfig for run directories, else None), ``metadata`` (the export's JSON, else {}).
    """

    def __init__(self, network, height: int, width: int, *, depth_kind: str = "relative", input_multiple: int = 32,
                 family: str | None = None, config=None):
        if height % input_multiple or width % input_multiple:
            raise ValueError(f"network input size must be multiples of {input_multiple}, got {height}x{width}")
        self._init_common("keras", (int(height), int(width)), depth_kind, family, config, {})
        self.network = network
        keys = ("depth", "disparity")
        self._network_fn = tf.function(
            lambda x: {k: v for k, v in network(x, training=False).items() if k in keys}, reduce_retracing=True)
        self._run = self._run_keras

    def _init_common(self, backend, network_size, depth_kind, family, config, metadata):
        if depth_kind not in ("relative", "metric", None):
            raise ValueError(f"depth_kind must be 'relative' or 'metric', got {depth_kind!r}")
        self.backend = backend
        self.network_size = network_size
        self.depth_kind = depth_kind
        self.family = family
        self.config = config
        self.metadata = metadata

    @property
    def height(self):
        return None if self.network_size is None else self.network_size[0]

    @property
    def width(self):
        return None if self.network_size is None else self.network_size[1]

    # ---- constructors

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike) -> "DepthPredictor":
        """The family's inference network of a run directory written by ``train.py``."""
        network, info = load_inference_network(run_dir)
        return cls(network, info.height, info.width, depth_kind=info.depth_kind, input_multiple=info.input_multiple,
                   family=info.family, config=info.config)

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike) -> "DepthPredictor":
        """An exported SavedModel (``NAME/`` with numeric versions, the latest is used, or ``NAME/VERSION/``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        model_dir = _saved_model_dir(path)
        try:
            loaded = tf.saved_model.load(str(model_dir))
        except Exception as err:  # noqa: BLE001 (TF raises many types for a broken SavedModel)
            raise ValueError(f"{model_dir}: not a loadable SavedModel ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
        signatures = {}
        for key in (SAVED_MODEL_FLOAT, SAVED_MODEL_UINT8):
            if key in loaded.signatures:
                fn = loaded.signatures[key]
                inputs = fn.structured_input_signature[1]
                if "image" not in inputs:
                    raise ValueError(f"{model_dir}: signature {key!r} takes {sorted(inputs)}, expected 'image'")
                signatures[key] = (fn, inputs["image"].dtype)
        if not signatures:
            raise ValueError(f"{model_dir}: no {SAVED_MODEL_FLOAT!r} or {SAVED_MODEL_UINT8!r} signature "
                             f"(found {sorted(loaded.signatures)}); export it with python -m export")
        meta = read_export_metadata(model_dir)
        self = cls.__new__(cls)
        self._init_common("saved_model", _metadata_size(meta), meta.get("depth_kind"), meta.get("family"), None, meta)
        self._loaded = loaded  # keeps the signature functions' variables alive
        self._signatures = signatures
        self.path = model_dir
        self._run = self._run_saved_model
        return self

    @classmethod
    def from_tflite(cls, path: str | os.PathLike, num_threads: int | None = None) -> "DepthPredictor":
        """A ``.tflite`` export, run with the LiteRT interpreter at its fixed input size."""
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (expected a .tflite file)")
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            interpreter.allocate_tensors()  # before creating signature runners (stack_notes.md)
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{path}: not a loadable TFLite model ({str(err).splitlines()[0]})") from None
        signatures = interpreter.get_signature_list()
        key = next((k for k in (SAVED_MODEL_FLOAT, SAVED_MODEL_UINT8) if k in signatures), None)
        if key is None:
            raise ValueError(f"{path}: no {SAVED_MODEL_FLOAT!r} or {SAVED_MODEL_UINT8!r} signature "
                             f"(found {sorted(signatures)}); convert it with python -m export")
        runner = interpreter.get_signature_runner(key)
        details = runner.get_input_details()
        if "image" not in details or "depth" not in signatures[key]["outputs"]:
            raise ValueError(f"{path}: signature {key!r} maps {sorted(details)} -> {signatures[key]['outputs']}, "
                             "expected image -> depth")
        shape = [int(s) for s in details["image"]["shape"]]
        if len(shape) != 4 or shape[-1] != 3 or min(shape[1:3]) < 1:
            raise ValueError(f"{path}: input 'image' has shape {shape}, expected a fixed [1, H, W, 3]")
        meta = read_export_metadata(path)
        self = cls.__new__(cls)
        size = _metadata_size(meta) or (shape[1], shape[2])  # the network's size (the file's input may differ)
        self._init_common("tflite", size, meta.get("depth_kind"), meta.get("family"), None, meta)
        self._input_size = (shape[1], shape[2])
        self._interpreter, self._runner = interpreter, runner
        self._tflite_dtype = np.dtype(details["image"]["dtype"])
        self.path = path
        self._run = self._run_tflite
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DepthPredictor":
        """A run directory, a SavedModel (``NAME/`` or ``NAME/VERSION/``), a ``.tflite`` file, or a ``.keras``
        network inside a run directory: whichever ``path`` is."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (expected a run directory, a SavedModel directory or a "
                                    ".tflite file)")
        if path.is_dir():
            if (path / "config.yaml").is_file():
                return cls.from_run_dir(path)
            return cls.from_saved_model(path)
        if path.suffix.lower() == ".tflite":
            return cls.from_tflite(path)
        if path.suffix.lower() == ".keras":
            if (path.parent / "config.yaml").is_file():
                return cls.from_run_dir(path.parent)
            raise ValueError(f"{path}: a .keras network alone does not say its input size and depth range; pass the "
                             "run directory that holds it and config.yaml (or an export)")
        raise ValueError(f"{path}: not a model (expected a run directory, a SavedModel directory or a .tflite file)")

    # ---- prediction

    def _run_keras(self, images, out_h, out_w):
        h, w = self.network_size
        x = _to_unit_float(_resize_to_network(images, h, w), images.dtype)
        return _to_input_size(self._network_fn(x), out_h, out_w)

    def _run_saved_model(self, images, out_h, out_w):
        if images.dtype == np.uint8 and SAVED_MODEL_UINT8 in self._signatures \
                and self._signatures[SAVED_MODEL_UINT8][1] == tf.uint8:
            fn = self._signatures[SAVED_MODEL_UINT8][0]
            x = tf.constant(images)
        elif SAVED_MODEL_FLOAT in self._signatures:
            fn = self._signatures[SAVED_MODEL_FLOAT][0]
            unit = _UNIT.get(images.dtype)
            x = tf.constant(images if unit is None else images.astype(np.float32) / np.float32(unit))
        else:
            fn = self._signatures[SAVED_MODEL_UINT8][0]
            x = tf.constant(_quantise_uint8(images))
        outputs = {k: v if v.shape.rank == 4 else v[..., None] for k, v in fn(image=x).items()
                   if k in ("depth", "disparity")}
        depth = outputs["depth"]
        if tuple(depth.shape[1:3]) != (int(out_h), int(out_w)):  # an export that answers at its own size
            depth = _to_input_size(outputs, out_h, out_w)
        return tf.cast(depth, tf.float32)

    def _run_tflite(self, images, out_h, out_w):
        h, w = self._input_size
        out = []
        for image in images:  # the converted graph has a fixed batch of 1
            x = _to_unit_float(_resize_to_network(image[None], h, w), images.dtype).numpy()
            x = x.astype(np.float32) if self._tflite_dtype == np.float32 else _quantise_uint8(x)
            result = self._runner(image=x)
            outputs = {k: tf.constant(np.asarray(v, np.float32).reshape(1, h, w, 1)) for k, v in result.items()
                       if k in ("depth", "disparity")}
            out.append(_to_input_size(outputs, out_h, out_w))
        return tf.concat(out, axis=0)

    def predict_batch(self, images) -> np.ndarray:
        """Depth float32 ``[B,H,W]`` at the input resolution for a batch ``[B,H,W,C]`` (uint8, uint16 or float in
        [0, 1]; C = 3, or 1 / 4 for grey / RGBA)."""
        images = as_image_batch(images)
        h, w = images.shape[1:3]
        depth = self._run(images, tf.constant(int(h)), tf.constant(int(w)))
        return np.asarray(depth, np.float32)[..., 0]

    def predict(self, image) -> np.ndarray:
        """Depth float32 ``[H,W]`` for one image ``[H,W,3]`` (or grey ``[H,W]``, RGBA) at its own resolution."""
        image = np.asarray(image)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"predict takes one image [H,W,3] (or [H,W] grey); got shape {image.shape} "
                             "(use predict_batch for a batch)")
        return self.predict_batch(image[None] if image.ndim == 3 else image[None, ..., None])[0]


def _quantise_uint8(images):
    unit = _UNIT.get(np.asarray(images).dtype, 1.0)
    return np.clip(np.round(np.asarray(images, np.float32) * (255.0 / unit)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- point clouds


def depth_to_points(depth, K, image=None, max_points=None):
    """Camera-frame points of a depth map through ``tfdepth.geometry.backproject`` (OpenCV axes, depth units).

    Args:
        depth: ``[H, W]`` z-depth; pixels <= 0 or non-finite are dropped.
        K: ``[3, 3]`` (or 4x4) intrinsics in pixels of this depth map.
        image: optional ``[H, W, 3]`` uint8 colours of the same pixels.
        max_points: keep at most this many pixels by sampling every ``s``-th row and column,
            ``s = ceil(sqrt(H * W / max_points))``; sampled pixel ``(i, j)`` is pixel ``(s i, s j)``, so it is
            back-projected with ``inv(K) @ diag(s, s, 1)`` (exact, no resampling of depth).
    Returns:
        ``(points [N, 3] float32, colors [N, 3] uint8 or None, stride s)``.
    """
    d = np.asarray(depth, np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {d.shape}")
    K = np.asarray(K, np.float64)
    if K.shape not in ((3, 3), (4, 4)) or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K must be a 3x3 intrinsics matrix with fx, fy > 0, got {K.tolist()}")
    if image is not None and np.asarray(image).shape[:2] != d.shape:
        raise ValueError(f"image {np.asarray(image).shape[:2]} and depth {d.shape} must have the same size")
    stride = 1
    if max_points is not None:
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        stride = max(1, int(np.ceil(np.sqrt(d.size / float(max_points)))))
    sub = d[::stride, ::stride]
    inv_K = invert_intrinsics(tf.constant(K[None, :3, :3], tf.float32))
    sampling = tf.constant(np.diag([stride, stride, 1.0])[None], tf.float32)
    points = backproject(tf.constant(sub[None, ..., None]), tf.matmul(inv_K, sampling))[0].numpy()
    valid = np.isfinite(sub) & (sub > 0)
    colors = None
    if image is not None:
        colors = np.asarray(image)[::stride, ::stride][valid]
        if colors.dtype != np.uint8 or colors.ndim != 2 or colors.shape[-1] != 3:
            raise ValueError("image must be uint8 RGB [H, W, 3]")
    return points[valid].astype(np.float32), colors, stride
