"""build_model / MODEL_BUILDERS / presets: dict and attribute configs, segmentation switch, opt-in weights."""

import types

import numpy as np
import pytest

from tfdepth.models import MODEL_BUILDERS, PRESETS, build_model, get_preset
from tfdepth.models.depth_decoder import DepthNet
from tfdepth.models.pose import PoseNet
from tfdepth.models.segmentation import SegmentationUNet



def test_registry_and_unknown_name():
    # New families register themselves; the first family is always there and every entry is callable.
    assert "monodepth" in MODEL_BUILDERS and all(callable(b) for b in MODEL_BUILDERS.values())
    known = ", ".join(sorted(MODEL_BUILDERS))
    with pytest.raises(ValueError, match=f"unknown model name 'nope'.*known models: {known}"):
        build_model({"name": "nope"})


def test_build_from_dict_without_segmentation():
    nets = build_model({"name": "monodepth", "scales": [0, 2], "sync_batchnorm": False})
    assert sorted(nets) == ["depth", "pose"]
    assert isinstance(nets["depth"], DepthNet) and isinstance(nets["pose"], PoseNet)
    assert nets["depth"].scales == (0, 2) and nets["depth"].sync_batchnorm is False
    assert nets["pose"].encoder_depth == 18


@pytest.mark.parametrize("seg_input, channels", [("disparity", 1), ("disparity_and_image", 4)])
def test_build_from_attribute_object_with_segmentation(seg_input, channels):
    config = types.SimpleNamespace(**{**get_preset("segdepth_resnet18"), "segmentation_input": seg_input,
                                      "num_segmentation_classes": 3})
    nets = build_model(config)
    assert sorted(nets) == ["depth", "pose", "segmentation"]
    seg = nets["segmentation"]
    assert isinstance(seg, SegmentationUNet) and seg.in_channels == channels and seg.num_classes == 3
    out = seg(np.zeros((1, 32, 32, channels), np.float32))
    assert tuple(out["logits"].shape) == (1, 32, 32, 3)


def test_bad_segmentation_input_is_rejected():
    with pytest.raises(ValueError, match="segmentation_input must be one of.*'rgb'"):
        build_model({"name": "monodepth", "segmentation": True, "segmentation_input": "rgb"})


def test_encoder_weights_are_loaded_when_configured(tmp_path, rng, torchvision_resnet):
    sd = torchvision_resnet.random_state_dict(rng, 18)
    path = str(torchvision_resnet.write_npz(tmp_path / "resnet18.npz", sd))
    nets = build_model({"name": "monodepth", "encoder_weights": path, "pose_encoder_weights": path})
    hwio = sd["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(nets["depth"].encoder.get_layer("conv1").kernel.numpy(), hwio)
    np.testing.assert_allclose(nets["pose"].encoder.get_layer("conv1").kernel.numpy(),
                               np.concatenate([hwio, hwio], axis=2) / 2, rtol=1e-7)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        build_model({"name": "monodepth", "encoder_weights": str(tmp_path / "missing.npz")})


def test_initial_depth_sets_the_disparity_bias():
    nets = build_model({"name": "monodepth", "initial_depth": 1.0, "min_depth": 0.1, "max_depth": 100.0})
    s = 0.99 / 9.99  # scaled disp 1.0 = 0.01 + 9.99 s
    assert nets["depth"].disp_bias_init == pytest.approx(np.log(s / (1 - s)))
    assert build_model({"name": "monodepth"})["depth"].disp_bias_init is None  # paper init by default
    with pytest.raises(ValueError, match="initial_depth"):
        build_model({"name": "monodepth", "initial_depth": 0.05})


def test_presets_are_complete_data():
    fields = set(PRESETS["monodepth2_resnet18"])
    assert {"name", "encoder_depth", "pose_encoder_depth", "scales", "min_depth", "max_depth", "initial_depth",
            "segmentation", "segmentation_input", "num_segmentation_classes", "sync_batchnorm", "encoder_weights",
            "pose_encoder_weights"} == fields
    for name, preset in PRESETS.items():
        assert set(preset) == fields, name
        assert preset["name"] in MODEL_BUILDERS
    assert PRESETS["monodepth2_resnet50"]["encoder_depth"] == 50
    copy = get_preset("monodepth2_resnet18")
    copy["encoder_depth"] = 34
    assert PRESETS["monodepth2_resnet18"]["encoder_depth"] == 18  # get_preset returns a copy
    with pytest.raises(ValueError, match="known presets: monodepth2_resnet18"):
        get_preset("monodepth3")
