"""DepthDecoder / DepthNet / disp_to_depth: shapes, exact parameter count, NumPy decoder reference, config and
.keras round trips, gradients, size checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.depth_decoder import DepthDecoder, DepthNet, disp_bias_for_depth, disp_to_depth

ENC18 = [64, 64, 128, 256, 512]
DEC = [16, 32, 64, 128, 256]


def decoder_param_count(enc, scales):
    """Monodepth2 decoder parameters by hand (§A.3): 3x3 convs with bias."""
    total = 0
    for i in range(4, -1, -1):
        cin = enc[-1] if i == 4 else DEC[i + 1]
        total += 9 * cin * DEC[i] + DEC[i]  # upconv_i_0
        cin = DEC[i] + (enc[i - 1] if i > 0 else 0)
        total += 9 * cin * DEC[i] + DEC[i]  # upconv_i_1
        if i in scales:
            total += 9 * DEC[i] * 1 + 1  # dispconv_i
    return total


@pytest.fixture(scope="module")
def depth_net():
    return DepthNet(18)


def test_depth_net_shapes_and_parameter_count(depth_net):
    out = depth_net(np.random.default_rng(0).uniform(0, 1, (2, 64, 96, 3)).astype(np.float32))
    assert sorted(out) == ["disp_0", "disp_1", "disp_2", "disp_3"]
    for s in range(4):
        d = out[f"disp_{s}"].numpy()
        assert d.shape == (2, 64 // 2**s, 96 // 2**s, 1) and d.dtype == np.float32
        assert d.min() > 0 and d.max() < 1  # sigmoid
    trainable = sum(int(np.prod(w.shape)) for w in depth_net.trainable_weights)
    expected = 11_176_512 + decoder_param_count(ENC18, (0, 1, 2, 3))
    assert trainable == expected
    assert abs(trainable - 14.3e6) < 0.05e6  # Monodepth2 ResNet18 depth net: 14.3M (stack_notes.md)


def test_depth_net_resnet34_and_subset_of_scales():
    net = DepthNet(34, scales=(0, 2))
    out = net(np.zeros((1, 64, 64, 3), np.float32))
    assert sorted(out) == ["disp_0", "disp_2"]
    assert tuple(out["disp_2"].shape) == (1, 16, 16, 1)
    assert net.decoder.count_params() == decoder_param_count(ENC18, (0, 2))


# ------------------------------------------------------------------------------------- numpy decoder reference
def _np_conv3x3_reflect(x, kernel, bias):
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    h, w = x.shape[1:3]
    out = sum(np.einsum("bhwc,co->bhwo", xp[:, i:i + h, j:j + w], kernel[i, j]) for i in range(3) for j in range(3))
    return out + bias


def _np_decoder(feats, weights, scales):
    elu = lambda t: np.where(t > 0, t, np.expm1(np.minimum(t, 0)))  # noqa: E731
    x = feats[4]
    out = {}
    for i in range(4, -1, -1):
        x = elu(_np_conv3x3_reflect(x, *weights[f"upconv_{i}_0"]))
        x = x.repeat(2, axis=1).repeat(2, axis=2)
        if i > 0:
            x = np.concatenate([x, feats[i - 1]], axis=-1)
        x = elu(_np_conv3x3_reflect(x, *weights[f"upconv_{i}_1"]))
        if i in scales:
            out[f"disp_{i}"] = 1 / (1 + np.exp(-_np_conv3x3_reflect(x, *weights[f"dispconv_{i}"])))
    return out


def test_decoder_matches_numpy_reference(rng):
    enc = [8, 8, 16, 16, 32]  # small encoder channels keep the reference fast
    dec = DepthDecoder(enc, scales=(0, 1, 2, 3))
    feats = [rng.normal(size=(2, 32 // 2**i, 48 // 2**i, c)).astype(np.float32) for i, c in enumerate(enc)]
    weights = {}
    for layer in dec.layers:
        if layer.name.startswith(("upconv", "dispconv")):
            kernel, bias = layer.weights
            bias.assign(rng.normal(0, 0.1, bias.shape).astype(np.float32))  # exercise the biases
            weights[layer.name] = (kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64))
    got = dec({f"f{i}": f for i, f in enumerate(feats)})
    ref = _np_decoder([f.astype(np.float64) for f in feats], weights, (0, 1, 2, 3))
    for key in ref:
        np.testing.assert_allclose(got[key].numpy(), ref[key], atol=2e-6, err_msg=key)


def test_disp_to_depth_analytic_values():
    disp = tf.constant([0.0, 0.5, 1.0])
    scaled, depth = disp_to_depth(disp, 0.1, 100.0)
    # scaled = 1/100 + (1/0.1 - 1/100) * disp = 0.01 + 9.99 disp (§A.3)
    np.testing.assert_allclose(scaled.numpy(), [0.01, 0.01 + 4.995, 10.0], rtol=1e-6)
    np.testing.assert_allclose(depth.numpy(), [100.0, 1 / 5.005, 0.1], rtol=1e-6)
    _, depth = disp_to_depth(np.full((1, 2, 2, 1), 0.25, np.float32), min_depth=1.0, max_depth=10.0)
    np.testing.assert_allclose(depth.numpy(), 1 / (0.1 + 0.9 * 0.25), rtol=1e-6)
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        disp_to_depth(disp, 10.0, 1.0)
    with pytest.raises(ValueError, match="min_depth"):
        disp_to_depth(disp, 0.0, 1.0)


def test_disp_bias_for_depth_inverts_disp_to_depth():
    # Analytic case: min 0.1, max 100 -> scaled disp = 0.01 + 9.99 s; depth 1.0 needs s = 0.99 / 9.99.
    s = 0.99 / 9.99
    assert disp_bias_for_depth(1.0, 0.1, 100.0) == pytest.approx(np.log(s / (1 - s)), rel=1e-12)
    # The midpoint of the sigmoid (bias 0) is depth 1 / (0.01 + 4.995).
    assert disp_bias_for_depth(1 / 5.005, 0.1, 100.0) == pytest.approx(0.0, abs=1e-12)
    for bad in (0.1, 100.0, 0.05, 200.0):
        with pytest.raises(ValueError, match="initial_depth"):
            disp_bias_for_depth(bad, 0.1, 100.0)
    with pytest.raises(TypeError, match="initial_depth"):
        disp_bias_for_depth("1", 0.1, 100.0)


def test_disp_bias_init_sets_the_untrained_depth(rng):
    """With the disparity-conv bias from disp_bias_for_depth, the untrained net predicts about that depth."""
    bias = disp_bias_for_depth(0.5, 0.1, 100.0)
    net = DepthNet(18, disp_bias_init=bias)
    for layer in (net.decoder.get_layer(f"dispconv_{i}") for i in range(4)):
        np.testing.assert_allclose(layer.conv.bias.numpy(), [bias], rtol=1e-6)
    x = rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    _, depth = disp_to_depth(net(x, training=False)["disp_0"], 0.1, 100.0)
    # Zero-bias nets sit at ~0.2 (sigmoid 0.5); the random kernels spread the depth only a little around 0.5.
    assert 0.35 < float(np.median(depth.numpy())) < 0.7
    assert DepthNet.from_config(net.get_config()).get_config()["disp_bias_init"] == pytest.approx(bias)
    with pytest.raises(TypeError, match="disp_bias_init"):
        DepthNet(18, disp_bias_init="big")


def test_config_round_trip(depth_net):
    config = depth_net.get_config()
    assert config == {"name": "depth_net", "encoder_depth": 18, "scales": [0, 1, 2, 3], "sync_batchnorm": True,
                      "height": None, "width": None, "disp_bias_init": None}
    clone = DepthNet.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == depth_net.count_params()
    dec = DepthDecoder(ENC18, scales=(3, 1), num_output_channels=2, name="d")
    assert DepthDecoder.from_config(dec.get_config()).get_config() == {
        "name": "d", "num_ch_enc": ENC18, "scales": [1, 3], "num_output_channels": 2, "disp_bias_init": None}


def test_keras_save_load_parity(tmp_path, depth_net, rng):
    # Move BN statistics away from their initial values so the check covers non-trainable state too.
    for v in depth_net.non_trainable_weights:
        v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
    path = tmp_path / "depth.keras"
    depth_net.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is DepthNet and loaded.get_config() == depth_net.get_config()
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    a, b = depth_net(x, training=False), loaded(x, training=False)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_gradients_reach_every_trainable_weight(depth_net, rng):
    x = rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    # Random per-output weights: a plain sum of BN outputs can cancel exactly; a random projection cannot.
    proj = {k: rng.normal(size=(2, 64 // 2**s, 64 // 2**s, 1)).astype(np.float32) for s, k in
            enumerate(["disp_0", "disp_1", "disp_2", "disp_3"])}
    with tf.GradientTape() as tape:
        out = depth_net(x, training=True)
        loss = tf.add_n([tf.reduce_sum(out[k] * proj[k]) for k in proj])
    grads = tape.gradient(loss, depth_net.trainable_weights)
    assert len(grads) == len(depth_net.trainable_weights) > 0
    for var, g in zip(depth_net.trainable_weights, grads):
        assert g is not None, var.path
        assert np.any(g.numpy() != 0), var.path


def test_size_checks_raise_clear_value_errors(depth_net):
    with pytest.raises(ValueError, match="height=50 is not a multiple of 32"):
        DepthNet(height=50)
    with pytest.raises(ValueError, match="height=32 is too small"):
        DepthNet(height=32)
    with pytest.raises(ValueError, match="height 48 is not a multiple of 32"):
        depth_net(np.zeros((1, 48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="18, 34 or 50"):
        DepthNet(encoder_depth=101)
    with pytest.raises(ValueError, match="scales"):
        DepthNet(scales=(0, 4))
    with pytest.raises(TypeError, match="sync_batchnorm"):
        DepthNet(sync_batchnorm="yes")


def test_static_size_depth_net_has_static_output_shapes():
    net = DepthNet(18, scales=(0, 3), height=64, width=96)
    assert tuple(net.output["disp_0"].shape) == (None, 64, 96, 1)
    assert tuple(net.output["disp_3"].shape) == (None, 8, 12, 1)


def test_mixed_precision_outputs_are_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        net = DepthNet(18, scales=(0,))
    finally:
        keras.config.set_dtype_policy(previous)
    assert net.get_layer("encoder").get_layer("conv1").compute_dtype == "bfloat16"
    out = net(np.zeros((1, 64, 64, 3), np.float32))
    assert out["disp_0"].dtype == tf.float32
