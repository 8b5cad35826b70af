"""ResnetEncoder and torchvision weight loading, checked against a NumPy re-implementation of torchvision's ResNet.

The reference below follows PyTorch semantics (symmetric zero padding, OIHW kernels, -inf max-pool padding, BN in
eval mode with eps 1e-5) and is written from the architecture description, not from the Keras model.
"""

import keras
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tfdepth.models.resnet import ResnetEncoder
from tfdepth.models.weights import load_torchvision_resnet_weights

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


# ----------------------------------------------------------------------------------------- torchvision naming
# ------------------------------------------------------------------------------------- numpy torch reference
def np_conv(x, w, stride, pad):
    """torch.nn.functional.conv2d (no bias) on NHWC ``x`` with OIHW ``w``."""
    k = w.shape[-1]
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # [B, Ho, Wo, C, k, k]
    return np.einsum("bhwcij,ocij->bhwo", win, w, optimize=True)


def np_bn(x, sd, p, eps=1e-5):
    return (x - sd[p + ".running_mean"]) / np.sqrt(sd[p + ".running_var"] + eps) * sd[p + ".weight"] + sd[p + ".bias"]


def np_maxpool_3x3_s2_p1(x):
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    return sliding_window_view(xp, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-1, -2))


def np_resnet(x, sd, depth):
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    kind, blocks = BLOCKS[depth]
    x = (x.astype(np.float64) - 0.45) / 0.225
    f = [relu(np_bn(np_conv(x, sd["conv1.weight"], 2, 3), sd, "bn1"))]
    x = np_maxpool_3x3_s2_p1(f[0])
    for stage, n in enumerate(blocks, start=1):
        for i in range(n):
            p = f"layer{stage}.{i}"
            stride = 2 if (i == 0 and stage > 1) else 1
            short = x
            if p + ".downsample.0.weight" in sd:
                short = np_bn(np_conv(x, sd[p + ".downsample.0.weight"], stride, 0), sd, p + ".downsample.1")
            if kind == "basic":
                y = relu(np_bn(np_conv(x, sd[p + ".conv1.weight"], stride, 1), sd, p + ".bn1"))
                y = np_bn(np_conv(y, sd[p + ".conv2.weight"], 1, 1), sd, p + ".bn2")
            else:
                y = relu(np_bn(np_conv(x, sd[p + ".conv1.weight"], 1, 0), sd, p + ".bn1"))
                y = relu(np_bn(np_conv(y, sd[p + ".conv2.weight"], stride, 1), sd, p + ".bn2"))
                y = np_bn(np_conv(y, sd[p + ".conv3.weight"], 1, 0), sd, p + ".bn3")
            x = relu(y + short)
        f.append(x)
    return f


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("depth", [18, 34])
def test_encoder_shapes_channels_and_param_count(depth, torchvision_resnet):
    enc = ResnetEncoder(depth)
    out = enc(np.zeros((2, 64, 96, 3), np.float32))
    assert list(out) == ["f0", "f1", "f2", "f3", "f4"]
    assert enc.num_ch_enc == [64, 64, 128, 256, 512]
    for i, c in enumerate(enc.num_ch_enc):
        assert tuple(out[f"f{i}"].shape) == (2, 64 // 2 ** (i + 1), 96 // 2 ** (i + 1), c)
    trainable = sum(int(np.prod(w.shape)) for w in enc.trainable_weights)
    # torchvision's parameter count (buffers excluded) from the independent architecture description.
    torch_count = sum(int(np.prod(s)) for k, s in torchvision_resnet.shapes(depth).items() if "running" not in k)
    assert trainable == torch_count
    assert trainable == {18: 11_176_512, 34: 21_284_672}[depth]  # torchvision resnet minus its 1000-way fc


def test_resnet50_shapes_on_tiny_input():
    enc = ResnetEncoder(50, sync_batchnorm=False)
    out = enc(np.zeros((1, 64, 64, 3), np.float32))
    assert enc.num_ch_enc == [64, 256, 512, 1024, 2048]
    assert [tuple(out[f"f{i}"].shape) for i in range(5)] == [
        (1, 32, 32, 64), (1, 16, 16, 256), (1, 8, 8, 512), (1, 4, 4, 1024), (1, 2, 2, 2048)]
    assert sum(int(np.prod(w.shape)) for w in enc.trainable_weights) == 23_508_032


@pytest.mark.parametrize("depth", [18, 50])
def test_loaded_encoder_matches_numpy_torchvision_reference(tmp_path, rng, depth, torchvision_resnet):
    """Loads random torchvision-named weights and compares every feature with the NumPy torch reference: checks
    the OIHW->HWIO conversion, BN mapping, and PyTorch-exact padding/alignment of strided convs and max-pool."""
    sd = torchvision_resnet.random_state_dict(rng, depth)
    enc = ResnetEncoder(depth, sync_batchnorm=False)
    n = load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "w.npz", sd))
    assert n == len(sd)
    x = rng.uniform(0, 1, (2, 64, 96, 3)).astype(np.float32)
    got = enc(x, training=False)
    ref = np_resnet(x, sd, depth)
    for i in range(5):
        g = got[f"f{i}"].numpy()
        scale = np.abs(ref[i]).max()
        np.testing.assert_allclose(g, ref[i], atol=2e-5 * scale, rtol=0, err_msg=f"f{i}")


def test_weight_loading_sets_kernels_and_bn_statistics(tmp_path, rng, torchvision_resnet):
    sd = torchvision_resnet.random_state_dict(rng, 18)
    enc = ResnetEncoder(18)
    load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "w.npz", sd))
    np.testing.assert_array_equal(enc.get_layer("conv1").kernel.numpy(), sd["conv1.weight"].transpose(2, 3, 1, 0))
    ds = enc.get_layer("layer3_0_downsample_0").kernel.numpy()
    np.testing.assert_array_equal(ds, sd["layer3.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    bn = enc.get_layer("layer2_1_bn2")
    np.testing.assert_array_equal(bn.gamma.numpy(), sd["layer2.1.bn2.weight"])
    np.testing.assert_array_equal(bn.beta.numpy(), sd["layer2.1.bn2.bias"])
    np.testing.assert_array_equal(bn.moving_mean.numpy(), sd["layer2.1.bn2.running_mean"])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), sd["layer2.1.bn2.running_var"])


def test_two_image_encoder_gets_tiled_and_halved_conv1(tmp_path, rng, torchvision_resnet):
    sd = torchvision_resnet.random_state_dict(rng, 18)
    enc = ResnetEncoder(18, num_input_images=2)
    load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "w.npz", sd))
    k = enc.get_layer("conv1").kernel.numpy()
    assert k.shape == (7, 7, 6, 64)
    hwio = sd["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_allclose(k[:, :, :3], hwio / 2, rtol=1e-7)
    np.testing.assert_allclose(k[:, :, 3:], hwio / 2, rtol=1e-7)
    # Two identical frames then give the single-frame ImageNet response (§A.4's reason for the division).
    single = ResnetEncoder(18, sync_batchnorm=False)
    load_torchvision_resnet_weights(single, tmp_path / "w.npz")
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(enc(np.concatenate([x, x], -1), training=False)["f4"].numpy(),
                               single(x, training=False)["f4"].numpy(), rtol=1e-4, atol=1e-4)


def test_weight_loading_errors_name_the_problem(tmp_path, rng, torchvision_resnet):
    enc = ResnetEncoder(18)
    before = enc.get_layer("conv1").kernel.numpy().copy()
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*convert"):
        load_torchvision_resnet_weights(enc, tmp_path / "nope.npz")

    sd = torchvision_resnet.random_state_dict(rng, 18)
    renamed = dict(sd)
    renamed["layer1.0.conv9.weight"] = renamed.pop("layer1.0.conv1.weight")
    with pytest.raises(ValueError, match=r"missing keys: layer1\.0\.conv1\.weight.*unexpected keys: layer1\.0\.conv9"):
        load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "renamed.npz", renamed))

    bad_shape = dict(sd)
    bad_shape["layer2.0.conv2.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"shape mismatch for layer2\.0\.conv2\.weight"):
        load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "shape.npz", bad_shape))

    with pytest.raises(ValueError, match="resnet18"):  # a resnet34 file into a resnet18 encoder
        load_torchvision_resnet_weights(enc, torchvision_resnet.write_npz(tmp_path / "r34.npz", torchvision_resnet.random_state_dict(rng, 34)))
    # Nothing was written by the failed loads.
    np.testing.assert_array_equal(enc.get_layer("conv1").kernel.numpy(), before)


def test_bad_depth_and_static_size_raise_clear_errors():
    with pytest.raises(ValueError, match="18, 34 or 50.*101"):
        ResnetEncoder(101)
    with pytest.raises(ValueError, match="18, 34 or 50"):
        ResnetEncoder("18")
    with pytest.raises(ValueError, match="height=50 is not a multiple of 32"):
        ResnetEncoder(18, height=50)
    with pytest.raises(ValueError, match="width=100 is not a multiple of 32"):
        ResnetEncoder(18, width=100)
    with pytest.raises(ValueError, match="num_input_images"):
        ResnetEncoder(18, num_input_images=0)
    with pytest.raises(ValueError, match="height 48 is not a multiple of 32"):
        ResnetEncoder(18)(np.zeros((1, 48, 64, 3), np.float32))


def test_encoder_config_round_trip_and_sync_batchnorm_flag():
    enc = ResnetEncoder(34, num_input_images=2, sync_batchnorm=False, height=64, width=96, name="pose_enc")
    config = enc.get_config()
    assert config == {"name": "pose_enc", "depth": 34, "num_input_images": 2, "sync_batchnorm": False,
                      "height": 64, "width": 96}
    clone = ResnetEncoder.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == enc.count_params()
    bns = [layer for layer in clone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(b.synchronized for b in bns)
    assert all(b.synchronized and b.epsilon == 1e-5 and b.momentum == 0.9
               for b in ResnetEncoder(18).layers if isinstance(b, keras.layers.BatchNormalization))
    assert tuple(clone.output["f4"].shape) == (None, 2, 3, 512)  # static sizes propagate
