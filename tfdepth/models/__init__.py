"""tfdepth networks and the model registry.

``build_model(model_config)`` dispatches on ``model_config.name`` through :data:`MODEL_BUILDERS`. The config is
duck-typed (any object with attributes, or a dict) so this package never imports ``tfdepth.config``; fields it does
not find take the values of the ``monodepth2_resnet18`` preset.
"""

from tfdepth.models.depth_decoder import DepthDecoder, DepthNet, disp_bias_for_depth, disp_to_depth
from tfdepth.models.inference_heads import INFERENCE_SPECS, InferenceSpec, get_inference_spec
from tfdepth.models.pose import PoseDecoder, PoseNet
from tfdepth.models.presets import PRESETS, get_preset
from tfdepth.models.resnet import ResnetEncoder
from tfdepth.models.segmentation import SegmentationUNet

__all__ = [
    "MODEL_BUILDERS", "build_model", "build_monodepth", "DepthDecoder", "DepthNet", "disp_bias_for_depth",
    "disp_to_depth", "PoseDecoder", "PoseNet", "ResnetEncoder", "SegmentationUNet", "load_torchvision_resnet_weights",
    "PRESETS", "get_preset", "INFERENCE_SPECS", "InferenceSpec", "get_inference_spec",
]

# segmentation_input -> U-Net input channels: disparity (1) or disparity + RGB image (1 + 3).
SEGMENTATION_INPUT_CHANNELS = {"disparity": 1, "disparity_and_image": 4}


def _field(model_config, key, default):
    if isinstance(model_config, dict):
        return model_config.get(key, default)
    return getattr(model_config, key, default)


def build_monodepth(model_config):
    """Monodepth2 (+ optional SegDepth U-Net) networks from a config (dict or attribute object).

    Returns ``{"depth": DepthNet, "pose": PoseNet}`` plus ``"segmentation": SegmentationUNet`` when
    ``segmentation`` is true. ``encoder_weights`` / ``pose_encoder_weights`` (paths or None) load torchvision
    ImageNet weights into the depth / pose encoder (opt-in, never downloaded).
    """
    defaults = PRESETS["monodepth2_resnet18"]
    get = lambda key: _field(model_config, key, defaults[key])  # noqa: E731
    sync = get("sync_batchnorm")
    initial_depth = get("initial_depth")
    disp_bias = (
        None if initial_depth is None else disp_bias_for_depth(initial_depth, get("min_depth"), get("max_depth"))
    )
    nets = {
        "depth": DepthNet(encoder_depth=get("encoder_depth"), scales=tuple(get("scales")), sync_batchnorm=sync,
                          disp_bias_init=disp_bias),
        "pose": PoseNet(encoder_depth=get("pose_encoder_depth"), sync_batchnorm=sync),
    }
    if get("segmentation"):
        seg_input = get("segmentation_input")
        if seg_input not in SEGMENTATION_INPUT_CHANNELS:
            raise ValueError(f"segmentation_input must be one of {sorted(SEGMENTATION_INPUT_CHANNELS)}, "
                             f"got {seg_input!r}.")
        nets["segmentation"] = SegmentationUNet(
            in_channels=SEGMENTATION_INPUT_CHANNELS[seg_input], num_classes=get("num_segmentation_classes"),
            sync_batchnorm=sync,
        )
    for net_key, field in (("depth", "encoder_weights"), ("pose", "pose_encoder_weights")):
        path = get(field)
        if path:
            from tfdepth.models.weights import load_torchvision_resnet_weights  # noqa: PLC0415 (see __getattr__)

            load_torchvision_resnet_weights(nets[net_key].encoder, path)
    return nets


MODEL_BUILDERS = {"monodepth": build_monodepth}


def __getattr__(name):
    # Lazy, so that "python -m tfdepth.models.weights" does not find its module already imported by the package.
    if name == "load_torchvision_resnet_weights":
        from tfdepth.models.weights import load_torchvision_resnet_weights

        return load_torchvision_resnet_weights
    raise AttributeError(f"module 'tfdepth.models' has no attribute {name!r}")


def build_model(model_config):
    """Build the networks named by ``model_config.name`` (a key of :data:`MODEL_BUILDERS`)."""
    name = _field(model_config, "name", None)
    if name not in MODEL_BUILDERS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(sorted(MODEL_BUILDERS))}.")
    return MODEL_BUILDERS[name](model_config)
