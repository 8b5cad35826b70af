"""tfdepth: monocular depth estimation in TensorFlow / Keras 3.

Public surface: ``load_config``, ``build_model``, ``DepthPredictor`` (the last two imported on first use).

``import tfdepth`` imports :mod:`tfdepth.models`, which registers every serializable network class with Keras, so
``import tfdepth; keras.saving.load_model("depth_net.keras")`` works (issue 10 item 5). This imports TensorFlow
and Keras (about 5 s). One exception: in a ``multiprocessing`` child (e.g. the synthetic dataset's spawned render
workers, which unpickle a function of the numpy engine ``tfdepth.data.synthetic``) the models are not imported,
so those workers stay numpy-only (no TensorFlow start-up or its ~600 MB per worker); a child that loads networks
imports ``tfdepth.models`` itself.
"""

import multiprocessing as _multiprocessing

__version__ = "0.1.0"

__all__ = ["load_config", "build_model", "DepthPredictor", "__version__"]

if _multiprocessing.current_process().name == "MainProcess":
    from tfdepth import models  # noqa: F401  (registers DepthNet, PoseNet, ... for keras.saving.load_model)


def __getattr__(name):
    if name == "load_config":
        from tfdepth.config import load_config

        return load_config
    if name == "build_model":
        from tfdepth.models import build_model

        return build_model
    if name == "DepthPredictor":
        from tfdepth.inference import DepthPredictor

        return DepthPredictor
    raise AttributeError(f"module 'tfdepth' has no attribute {name!r}")
