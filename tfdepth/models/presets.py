"""Named model variants as data: preset name -> keyword arguments of the model config (``build_model``).

Each entry lists every field ``tfdepth.models.build_model`` reads, so a preset is a complete model description;
variants differ only in these values, never in copied code (DESIGN.md). ``segdepth_*`` is Monodepth2 plus the
SegDepth U-Net fed with the predicted disparity (spec monodepth_seg.md §B.1).
"""

import copy

__all__ = ["PRESETS", "get_preset"]

_MONODEPTH2_RESNET18 = {
    "name": "monodepth",
    "encoder_depth": 18,
    "pose_encoder_depth": 18,
    "scales": (0, 1, 2, 3),
    "min_depth": 0.1,
    "max_depth": 100.0,
    "initial_depth": None,
    "segmentation": False,
    "segmentation_input": "disparity",
    "num_segmentation_classes": 2,
    "sync_batchnorm": True,
    "encoder_weights": None,
    "pose_encoder_weights": None,
}

PRESETS = {
    # Monodepth2 default (§A.2-A.4): ResNet18 depth and pose encoders.
    "monodepth2_resnet18": _MONODEPTH2_RESNET18,
    # --num_layers 50 ablation (§A.9): ResNet50 depth encoder; Monodepth2 keeps its pose encoder at the same depth.
    "monodepth2_resnet50": {**_MONODEPTH2_RESNET18, "encoder_depth": 50, "pose_encoder_depth": 50},
    # SegDepth (§B.1): U-Net on disp_0, 2 classes.
    "segdepth_resnet18": {**_MONODEPTH2_RESNET18, "segmentation": True},
    # SegDepth variant whose U-Net also sees the RGB image (4 input channels).
    "segdepth_resnet18_image": {**_MONODEPTH2_RESNET18, "segmentation": True,
                                "segmentation_input": "disparity_and_image"},
}


def get_preset(name):
    """Return a fresh copy of preset ``name``'s kwargs; unknown name -> ValueError listing the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}.")
    return copy.deepcopy(PRESETS[name])
