"""tfdepth: monocular depth estimation in TensorFlow / Keras 3.

Public surface (imported lazily, so ``import tfdepth`` has no side effects and does not import TensorFlow):
``load_config``, ``build_model``, ``DepthPredictor``.
"""

__version__ = "0.1.0"

__all__ = ["load_config", "build_model", "DepthPredictor", "__version__"]


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
