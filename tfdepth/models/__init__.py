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
from tfdepth.models.sddr import SDDRInference, SDDRNet
from tfdepth.models.rsn import GenerationModule, RefinementModule, RegionSupportNetwork  # registers the classes

__all__ = [
    "MODEL_BUILDERS", "build_model", "build_monodepth", "DepthDecoder", "DepthNet", "disp_bias_for_depth",
    "disp_to_depth", "PoseDecoder", "PoseNet", "ResnetEncoder", "SegmentationUNet", "load_torchvision_resnet_weights",
    "PRESETS", "get_preset", "INFERENCE_SPECS", "InferenceSpec", "get_inference_spec",
]
__all__ += ["build_sddr", "SDDRNet", "SDDRInference", "SDDR_DEFAULTS"]
__all__ += ["build_rsn", "RSN_DEFAULTS", "GenerationModule", "RefinementModule", "RegionSupportNetwork"]

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


# Defaults of the SDDR fields (specs/sddr.md §2.2: the released network; see tfdepth/models/sddr.py).
SDDR_DEFAULTS = {"height": None, "width": None, "attention_blocks": 8, "token_layout": "joint",
                 "upsample": "bicubic_align_corners", "drop_path_rate": 0.1}


def build_sddr(model_config):
    """SDDR's refinement network N_r from a config (dict or attribute object): ``{"sddr": SDDRNet}``.

    Fields (defaults in ``SDDR_DEFAULTS``): ``height``/``width`` (None = any multiple of 128), ``attention_blocks``
    (8, the code; the paper says 4), ``token_layout`` ("joint" | "official_reshape"), ``upsample``
    ("bicubic_align_corners" | "bicubic"), ``drop_path_rate`` (MiT stochastic depth, 0.1).
    """
    get = lambda key: _field(model_config, key, SDDR_DEFAULTS[key])  # noqa: E731
    return {"sddr": SDDRNet(**{key: get(key) for key in SDDR_DEFAULTS})}


MODEL_BUILDERS["sddr"] = build_sddr


# Defaults of the RSN fields (specs/rsn.md §4-§5, the authors' code; see tfdepth/models/rsn.py).
RSN_DEFAULTS = {"grid": "absolute", "iterations": 3, "sync_batchnorm": True, "height": None, "width": None,
                "width_multiplier": 1.0, "encoder_weights": None}


def build_rsn(model_config):
    """RSN networks from a config (dict or attribute object); fields and defaults in ``RSN_DEFAULTS``.

    ``grid``: "absolute" (the code's pyramid grids) | "relative" (the paper's fractions of the input);
    ``iterations``: weight-shared refinement steps (3); ``height``/``width``: None = any even size >= 6;
    ``width_multiplier``: channel multiplier (1.0 = the original; < 1 only for CPU-sized runs);
    ``encoder_weights``: optional local torchvision ResNet34 ``.npz`` for the generation module's encoder (opt-in;
    the original never loaded its ImageNet weights). Returns ``{"generation": GenerationModule, "refinement":
    RefinementModule, "rsn": RegionSupportNetwork (image -> region_support, depth_iter_k, depth), "rsn_gt_support":
    RegionSupportNetwork(support_input=True) (image + given region support -> the same keys)}``; the last two share
    the weights of the first two.
    """
    get = lambda key: _field(model_config, key, RSN_DEFAULTS[key])  # noqa: E731
    grid, sync, height, width = get("grid"), get("sync_batchnorm"), get("height"), get("width")
    multiplier = get("width_multiplier")
    if get("encoder_weights") and multiplier != 1.0:
        raise ValueError(f"model.encoder_weights (ImageNet ResNet34) needs model.width_multiplier 1.0, got "
                         f"{multiplier}: the narrower network has other shapes.")
    generation = GenerationModule(grid, sync, height, width, multiplier, name="generation")
    refinement = RefinementModule(grid, sync, height, width, multiplier, name="refinement")
    common = {"grid": grid, "iterations": get("iterations"), "sync_batchnorm": sync, "height": height, "width": width,
              "width_multiplier": multiplier}
    nets = {
        "generation": generation,
        "refinement": refinement,
        "rsn": RegionSupportNetwork(**common, generation=generation, refinement=refinement, name="rsn"),
        "rsn_gt_support": RegionSupportNetwork(**common, support_input=True, refinement=refinement,
                                               name="rsn_gt_support"),
    }
    if get("encoder_weights"):
        from tfdepth.models.weights import load_torchvision_resnet_weights  # noqa: PLC0415 (see __getattr__)

        load_torchvision_resnet_weights(generation, get("encoder_weights"))
    return nets


MODEL_BUILDERS["rsn"] = build_rsn


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
