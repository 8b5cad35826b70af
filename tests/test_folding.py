"""Folded inference graphs (tfdepth/export/folding.py): the fold against numpy, parity with Keras on every family's
network, what the graph holds, input checks, SavedModel.

The fold is checked on a case computed independently (a numpy convolution and the BatchNorm formula, numpy's
reflection padding of a repeated-pixel upsampling), and classic mistakes are injected to show the tests catch them:
folding a conv whose output has a second reader, forgetting BatchNorm's epsilon, repeating the edge pixel in a
reflection, and reflecting the low-resolution map before upsampling.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from speed_rows import trained_like as _trained_like  # noqa: E402 (non-zero biases and BN statistics)

from tfdepth.export import folding  # noqa: E402
from tfdepth.export.folding import FoldedModel, fold_model  # noqa: E402


def _numpy_conv(x, kernel, stride, padding):
    """Cross-correlation [B, H, W, Ci] * [k, k, Ci, Co], 'valid' or 'same' (stride 1 odd kernel: symmetric)."""
    k = kernel.shape[0]
    if padding == "same":
        p = k // 2
        x = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
    b, h, w, _ = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((b, oh, ow, kernel.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _conv_bn_relu(stride=1, padding="same", use_bias=True, filters=4):
    x = keras.Input((7, 9, 3))
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding=padding, use_bias=use_bias, name="conv")(x)
    y = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(y)
    y = keras.layers.ReLU(name="relu")(y)
    return _trained_like(keras.Model(x, {"y": y}))


@pytest.mark.parametrize("stride,padding,use_bias,filters", [(1, "same", True, 4), (2, "valid", False, 4),
                                                             (1, "valid", True, 1), (1, "same", False, 1)])
def test_fold_equals_numpy_conv_then_batchnorm(stride, padding, use_bias, filters):
    """filters=1 takes the one-channel head form in float32 (depthwise taps + channel sum, module item 5)."""
    net = _conv_bn_relu(stride, padding, use_bias, filters)
    x = np.random.default_rng(1).uniform(0, 1, (2, 7, 9, 3)).astype(np.float32)
    conv, bn = net.get_layer("conv"), net.get_layer("bn")
    z = _numpy_conv(x.astype(np.float64), conv.kernel.numpy().astype(np.float64), stride, padding)
    if use_bias:
        z = z + conv.bias.numpy()
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    expected = np.maximum((z - mean) / np.sqrt(var + 1e-3) * bn.gamma.numpy() + bn.beta.numpy(), 0.0)
    got = fold_model(net, "float32")(x)["y"].numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(net(x, training=False)["y"].numpy(), expected, atol=2e-5, rtol=1e-5)


def test_forgetting_epsilon_is_caught(monkeypatch):
    net = _conv_bn_relu()
    net.get_layer("bn").moving_variance.assign(np.full(4, 2e-3, np.float32))  # eps matters at small variance
    x = np.random.default_rng(2).uniform(0, 1, (1, 7, 9, 3)).astype(np.float32)
    reference = net(x, training=False)["y"].numpy()
    np.testing.assert_allclose(fold_model(net, "float32")(x)["y"].numpy(), reference, atol=1e-5, rtol=1e-5)

    def no_epsilon(bn):
        scale = folding._numpy(bn.gamma) / np.sqrt(folding._numpy(bn.moving_variance))
        return scale, folding._numpy(bn.beta) - folding._numpy(bn.moving_mean) * scale

    monkeypatch.setattr(folding, "_bn_affine", no_epsilon)
    wrong = fold_model(net, "float32")(x)["y"].numpy()
    assert np.abs(wrong - reference).max() > 1e-2


def _numpy_reflection(x, pad, upsampled):
    """numpy's reflection padding (edge not repeated) of ``x``, or of its nearest x2 upsampling (pixel repeated)."""
    if upsampled:
        x = x.repeat(2, axis=1).repeat(2, axis=2)
    return np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")


def _reflection_errors(shape, pad, upsampled):
    """Max |reflection_gather - numpy| for static shapes, a dynamic-shape trace and bf16 (a copy: exact)."""
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    want = _numpy_reflection(x, pad, upsampled)
    static = folding.reflection_gather(tf.constant(x), pad, upsampled)
    dynamic = tf.function(lambda t: folding.reflection_gather(t, pad, upsampled),
                          input_signature=[tf.TensorSpec([None, None, None, shape[-1]])])(tf.constant(x))
    bf16 = folding.reflection_gather(tf.constant(x, tf.bfloat16), pad, upsampled)
    assert static.shape == want.shape and dynamic.shape == want.shape
    return [float(np.abs(np.asarray(tf.cast(y, tf.float32)) - e).max()) for y, e in
            ((static, want), (dynamic, want), (bf16, np.asarray(tf.cast(tf.cast(want, tf.bfloat16), tf.float32))))]


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 4, 6, 2), (1, 3, 3, 1)])
@pytest.mark.parametrize("pad", [1, 2])
@pytest.mark.parametrize("upsampled", [False, True])
def test_reflection_gather_equals_numpy_pad(shape, pad, upsampled):
    assert _reflection_errors(shape, pad, upsampled) == [0.0, 0.0, 0.0]


def test_reflection_gather_catches_border_mistakes(monkeypatch):
    def edge_repeated(size, pad, upsampled):  # 'SYMMETRIC': 0, 0, 1, ..., n-1, n-1
        n = 2 * size if upsampled else size
        i = tf.range(-pad, n + pad)
        row = tf.where(i < 0, -i - 1, tf.where(i >= n, 2 * n - 1 - i, i))
        return row // 2 if upsampled else row

    def reflected_before_upsampling(size, pad, upsampled):  # reflect(i // 2) in the small map: row -1 reads row 1
        i = tf.range(-pad, (2 * size if upsampled else size) + pad)
        i = i // 2 if upsampled else i
        return (size - 1) - tf.abs((size - 1) - tf.abs(i))

    monkeypatch.setattr(folding, "_reflected_index", edge_repeated)
    assert min(_reflection_errors((1, 5, 7, 3), 1, False)) > 0.1
    monkeypatch.setattr(folding, "_reflected_index", reflected_before_upsampling)
    assert _reflection_errors((1, 5, 7, 3), 1, False) == [0.0, 0.0, 0.0]  # the same where nothing is upsampled
    assert min(_reflection_errors((1, 5, 7, 3), 1, True)) > 0.1


def _two_readers():
    """conv -> BN, and the raw conv output also added to the BN output: the conv must not be folded."""
    x = keras.Input((6, 6, 2))
    z = keras.layers.Conv2D(3, 3, padding="same", name="conv")(x)
    y = keras.layers.BatchNormalization(name="bn")(z)
    return _trained_like(keras.Model(x, keras.layers.Add(name="add")([y, z])))


def test_conv_with_a_second_reader_is_not_folded(monkeypatch):
    net = _two_readers()
    x = np.random.default_rng(3).normal(size=(1, 6, 6, 2)).astype(np.float32)
    reference = net(x, training=False).numpy()
    np.testing.assert_allclose(fold_model(net, "float32")(x).numpy(), reference, atol=1e-5, rtol=1e-5)

    # The classic mistake: fold whenever a BN reads the conv, ignoring its other readers.
    def any_bn_reader(self, node):
        readers = self.readers.get(id(node.outputs[0]), [])
        return next((r for r in readers if isinstance(r.operation, keras.layers.BatchNormalization)), None)

    monkeypatch.setattr(folding._Consumers, "sole_bn_reader", any_bn_reader)
    assert np.abs(fold_model(net, "float32")(x).numpy() - reference).max() > 1e-2


def _networks():
    from tfdepth.models import build_model
    from tfdepth.models.depth_decoder import DepthNet
    from tfdepth.models.pose import PoseNet

    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(0)
    rsn = build_model({"name": "rsn", "grid": "relative", "width_multiplier": 0.25})["rsn"]
    sddr = build_model({"name": "sddr"})["sddr"]
    return {
        "depth": (DepthNet(18), rng.uniform(0, 1, (1, 64, 96, 3))),
        "pose": (PoseNet(18), rng.uniform(0, 1, (1, 64, 96, 6))),
        "rsn": (rsn, rng.uniform(0, 1, (1, 48, 64, 3))),
        "sddr": (sddr, {k: rng.uniform(0.2, 0.8, (1, 128, 128, 1)) for k in ("depth_low", "depth_high")}),
    }


@pytest.fixture(scope="module")
def networks():
    return {k: (_trained_like(net), tf.nest.map_structure(lambda a: a.astype(np.float32), x))
            for k, (net, x) in _networks().items()}


@pytest.mark.parametrize("family", ["depth", "pose", "rsn", "sddr"])
def test_float32_fold_equals_keras(networks, family):
    net, x = networks[family]
    reference = net(x, training=False)
    got = fold_model(net, "float32")(x)
    assert set(got) == set(reference)
    for key in reference:
        ref = np.asarray(reference[key], np.float32)
        scale = max(1.0, float(np.abs(ref).max()))
        assert got[key].dtype == tf.float32 and got[key].shape == ref.shape, key
        np.testing.assert_allclose(got[key].numpy(), ref, atol=2e-5 * scale, rtol=2e-5, err_msg=f"{family}/{key}")


def _mixed_bfloat16_twin(family, net):
    """The same network and weights built under Keras' ``mixed_bfloat16`` policy (the bf16 path it replaces)."""
    from tfdepth.models import build_model
    from tfdepth.models.depth_decoder import DepthNet
    from tfdepth.recipes.base import precision_policy

    with precision_policy("mixed_bfloat16"):
        twin = DepthNet(18) if family == "depth" else \
            build_model({"name": "rsn", "grid": "relative", "width_multiplier": 0.25})["rsn"]
    twin.set_weights(net.get_weights())
    return twin


@pytest.mark.parametrize("family", ["depth", "rsn"])
def test_bf16_fold_is_as_close_to_float32_as_keras_mixed_bfloat16(networks, family):
    """bf16 keeps 8 significant bits; the fold rounds each folded weight once and runs BN-free, so its error must
    stay within 2x that of Keras' own bf16 path (float32 BatchNorm, float32 sigmoid) on the same weights."""
    net, x = networks[family]
    reference = net(x, training=False)
    got = fold_model(net, "bfloat16")(x)
    mixed = _mixed_bfloat16_twin(family, net)(x, training=False)
    for key in reference:
        ref = np.asarray(reference[key], np.float32)
        assert got[key].dtype == tf.float32, key
        folded_error = np.abs(got[key].numpy() - ref).max()
        keras_error = np.abs(np.asarray(tf.cast(mixed[key], tf.float32)) - ref).max()
        assert 0 < folded_error < 2.0 * keras_error + 1e-6, f"{family}/{key}: {folded_error} vs {keras_error}"


def test_graph_holds_constants_only_and_no_batchnorm(networks):
    net, x = networks["depth"]
    folded = fold_model(net, "bfloat16")
    concrete = folded.signature(tf.TensorSpec(x.shape, tf.float32))
    ops = [op.type for op in concrete.graph.get_operations()]
    assert "ReadVariableOp" not in ops and "VarHandleOp" not in ops and not concrete.variables
    assert all(t.dtype != tf.resource for t in concrete.captured_inputs)
    assert not any("BatchNorm" in t or t == "Rsqrt" for t in ops)
    assert ops.count("Conv2D") == 20 + 14  # encoder convs (BN folded in) + decoder's 10 ConvBlocks and 4 heads
    assert ops.count("BiasAdd") == ops.count("Conv2D")
    # Activations are cast only at the input and at the four float32 sigmoid heads; constants are bf16 already.
    casts = [op for op in concrete.graph.get_operations() if op.type == "Cast"]
    assert len(casts) == 1 + 4 and all(op.inputs[0].op.type != "Const" for op in casts), [op.name for op in casts]
    kernels = [op for op in concrete.graph.get_operations() if op.type == "Conv2D"]
    assert all(op.inputs[1].dtype == tf.bfloat16 and op.inputs[1].op.type == "Const" for op in kernels)


def test_decoder_convs_read_gathers_of_the_unpadded_maps(networks):
    """Module item 4: each reflection conv of the depth decoder reads a gather (or a channel concat of gathers) of
    maps that were never upsampled or concatenated in memory, and a map read by a head and the next block is padded
    once."""
    net, x = networks["depth"]
    graph = fold_model(net, "bfloat16").signature(tf.TensorSpec(x.shape, tf.float32)).graph
    decoder_convs = [op for op in graph.get_operations() if op.type == "Conv2D" and op.name.startswith("decoder/")]
    assert len(decoder_convs) == 10 + 4

    def sources(tensor):
        op = tensor.op
        if op.type in ("Reshape", "ConcatV2"):
            return [s for t in op.inputs if t.dtype != tf.int32 for s in sources(t)]
        return [op.type]

    assert all(set(sources(op.inputs[0])) == {"GatherV2"} for op in decoder_convs)
    # Distinct padded maps: the 5 upconv_i_0 inputs (heads 1-3 read three of them), upconv_i_1's upsampled half (5)
    # and skip (4), and head 0's input: 15 gathers; padding per conv, without sharing, would make 18.
    assert sum(op.type == "GatherV2" for op in graph.get_operations()) == 5 + 5 + 4 + 1


def test_input_is_checked_like_the_keras_network(networks):
    net, _ = networks["depth"]
    folded = fold_model(net, "float32")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        folded(np.zeros((1, 64, 100, 3), np.float32))
    with pytest.raises(ValueError, match="RGB images"):
        folded(np.zeros((1, 64, 96, 4), np.float32))
    with pytest.raises(ValueError, match="training=False"):
        folded(np.zeros((1, 64, 96, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="dtype must be one of"):
        fold_model(net, "float16")

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="functional network"):
        FoldedModel(Subclassed())


def test_saved_model_of_a_fold_reloads_with_the_same_outputs(networks, tmp_path):
    net, x = networks["depth"]
    folded = fold_model(net, "bfloat16")
    signature = folded.signature(tf.TensorSpec([None, None, None, 3], tf.float32, name="image"))
    tf.saved_model.save(folded, str(tmp_path / "sm"), signatures={"serving_default": signature})
    assert not list((tmp_path / "sm" / "variables").glob("*.data*")) or \
        sum(p.stat().st_size for p in (tmp_path / "sm" / "variables").glob("*.data*")) < 1024  # no weights there
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = loaded.signatures["serving_default"](image=tf.constant(x))
    want = folded(x)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())


def test_a_fold_stands_in_for_the_network_in_depth_predictor(networks):
    from tfdepth.inference import DepthPredictor
    from tfdepth.models.inference_heads import get_inference_spec

    net, _ = networks["depth"]
    head = get_inference_spec("monodepth").build({"depth": net}, None)
    image = np.random.default_rng(4).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    keras_depth = DepthPredictor(head, 64, 96).predict(image)
    folded_depth = DepthPredictor(fold_model(head, "float32"), 64, 96).predict(image)
    np.testing.assert_allclose(np.asarray(folded_depth), np.asarray(keras_depth), rtol=1e-4, atol=1e-4)
