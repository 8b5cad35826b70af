"""SDDR's refinement network N_r (tfdepth.models.sddr, tfdepth.models.mit; specs/sddr.md §2): shapes at 256 and 384,
the parameter count against an independent layer-by-layer count, gradients to every weight (incl. the
pre-filter), a falling loss on tiny data, the .keras round trip, the building blocks against numpy/analytic
references, and clear errors for bad input."""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses.affine_invariant import multi_output_gt_loss
from tfdepth.models import MODEL_BUILDERS, build_model, get_inference_spec
from tfdepth.models.mit import LayerNorm
from tfdepth.models.sddr import (
    BicubicUpsample2x,
    CrossResolutionAttention,
    GroupNorm,
    SDDRNet,
    Subsample2x,
    sine_position_embedding,
)

OUTPUT_SCALES = {"depth": 0, "depth_1": 1, "depth_2": 2, **{f"omega_{s}": s for s in range(1, 7)}}


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(3)
    return build_model({"name": "sddr"})["sddr"]


def _inputs(size, seed=0, batch=1):
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, size)[:, None]
    low = np.broadcast_to(rows, (size, size)).copy()
    low[size // 4: size // 2, size // 4: size // 2] = 1.5
    high = low + 0.05 * rng.standard_normal((size, size))
    stack = lambda x: tf.constant(np.repeat(x[None, :, :, None], batch, 0).astype(np.float32))  # noqa: E731
    return {"depth_low": stack(low / low.max()), "depth_high": stack((high - high.min()) / np.ptp(high))}, low


# ----------------------------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size", [256, 384])
def test_output_shapes_and_ranges(net, size):
    out = net(_inputs(size)[0], training=False)
    assert list(out) == list(OUTPUT_SCALES)
    for key, scale in OUTPUT_SCALES.items():
        side = size // 2**scale
        assert tuple(out[key].shape) == (1, side, side, 1), key
        assert np.isfinite(out[key].numpy()).all(), key
        if key.startswith("omega"):
            assert 0.0 < out[key].numpy().min() and out[key].numpy().max() < 1.0  # a sigmoid weight


def _independent_count():
    """Trainable parameters of the released network from its layer table (sddr.md §2.2), not from Keras."""
    conv = lambda k, cin, cout, bias=True: k * k * cin * cout + (cout if bias else 0)  # noqa: E731
    norm = lambda c: 2 * c  # noqa: E731  (GroupNorm / LayerNorm: gamma and beta)
    total = conv(5, 1, 1)  # pre-filter
    cin = 1
    for c in (8, 16, 32):  # encoder: BasicBlock_ini x 3
        total += conv(3, cin, c) + norm(c) + conv(3, c, c) + norm(c) + conv(1, cin, c) + norm(c)
        cin = c
    dims, srs, cin = (32, 64, 160, 256), (8, 4, 2, 1), 16  # MiT-b0 on the 16-channel e2
    for stage, (d, sr) in enumerate(zip(dims, srs)):
        total += conv(7 if stage == 0 else 3, cin, d) + norm(d)
        block = norm(d) + (d * d + d) + (d * 2 * d + 2 * d) + (d * d + d) + norm(d)  # LN, q, kv, proj, LN
        block += (conv(sr, d, d) + norm(d)) if sr > 1 else 0  # spatial reduction
        block += (d * 4 * d + 4 * d) + (9 * 4 * d + 4 * d) + (4 * d * d + d)  # Mix-FFN: fc1, dwconv, fc2
        total += 2 * block + norm(d)
        cin = d
    d = 256  # cross-resolution attention: sep conv, 8 blocks, sep deconv
    cvt = d + d * d
    cvt += 8 * (norm(d) + 3 * d * d + (d * d + d) + norm(d) + (d * 4 * d + 4 * d) + (4 * d * d + d))
    cvt += (d + d) + d * d
    total += cvt
    # Decoder: up0, then per level (mask, up); aux heads.
    total += norm(256) + conv(3, 256, 160)
    for c_in, c_out, k in ((160, 64, 3), (64, 32, 3), (32, 32, 3), (32, 16, 3), (16, 8, 3), (8, 1, 5)):
        total += norm(c_in) + conv(3, c_in, 1)  # mask head
        total += norm(c_in) + conv(k, c_in, c_out)  # up layer
    total += norm(32) + conv(3, 32, 1) + norm(16) + conv(3, 16, 1)  # out_quart, out_half
    return total


def test_parameter_count(net):
    count = sum(int(np.prod(v.shape)) for v in net.trainable_variables)
    assert count == _independent_count() == 10_302_483  # sddr.md §2.4: "unique ~= 10.30M"
    parts = {layer.name: sum(int(np.prod(v.shape)) for v in layer.trainable_variables) for layer in net.layers}
    assert parts["mit_b0"] == 3_339_776 and parts["cross_attention"] == 6_443_776 and parts["conv_encoder"] == 19_080


def test_gradients_reach_every_weight_and_the_loss_falls(net):
    # 256, not the smallest size 128: at 128 every MiT stage's spatially reduced keys are one token, softmax over
    # one key is 1 and the query weights get an exactly zero gradient (oneDNN gives 0; Eigen gave round-off).
    inputs, low = _inputs(256, seed=1)
    gt = tf.constant(low[None, :, :, None].astype(np.float32))
    optimizer = keras.optimizers.Adam(1e-3)

    def loss_fn():
        out = net(inputs, training=False)  # no stochastic depth: the two losses are comparable
        # L_gt is invariant to a shift of D0, so the last conv's bias gets exactly zero gradient from it; a
        # small shift-dependent term makes "every weight is reachable" checkable.
        return tf.reduce_mean(multi_output_gt_loss(out, gt)) + 1e-3 * tf.reduce_mean(out["depth"])

    # Eager steps cost ~8 s each here (op-by-op dispatch of ~16k forward + backward ops): two updates.
    losses = []
    for step in range(2):
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, net.trainable_variables)
        if step == 0:
            missing = [v.path for v, g in zip(net.trainable_variables, grads)
                       if g is None or not np.any(g.numpy() != 0)]
            assert not missing, f"no gradient for {missing[:10]}"
            prefilter = [g for v, g in zip(net.trainable_variables, grads) if "prefilter" in v.path]
            assert len(prefilter) == 2 and all(np.any(g.numpy() != 0) for g in prefilter)  # kernel and bias
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        losses.append(float(loss))
    losses.append(float(loss_fn()))
    assert losses[2] < losses[1] < losses[0], losses


def test_keras_round_trip(net, tmp_path):
    inputs, _ = _inputs(128, seed=2)
    path = tmp_path / "sddr_net.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SDDRNet) and loaded.get_config() == net.get_config()
    a, b = net(inputs, training=False), loaded(inputs, training=False)
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5, rtol=1e-5)


def test_registry_and_inference_spec(net):
    assert "sddr" in MODEL_BUILDERS
    spec = get_inference_spec("sddr")
    assert spec.input_multiple == 128 and spec.extra_inputs == ("depth_low", "depth_high")
    assert spec.depth_kind == "relative" and set(spec.files) == {"sddr"}
    assert get_inference_spec("monodepth").extra_inputs == ()  # the new field defaults to no extra inputs
    inference = spec.build({"sddr": net}, {})
    raw, _ = _inputs(128, seed=4)
    scaled = {k: 1000.0 * v + 5.0 for k, v in raw.items()}  # any units: min-max normalised inside
    np.testing.assert_allclose(inference(scaled)["depth"].numpy(), net(raw, training=False)["depth"].numpy(),
                               atol=1e-4)


def test_bad_input_errors(net):
    inputs, _ = _inputs(256)
    with pytest.raises(ValueError, match="multiple of 128"):
        net({"depth_low": tf.zeros([1, 200, 256, 1]), "depth_high": tf.zeros([1, 200, 256, 1])})
    with pytest.raises(ValueError, match="same size"):
        net({"depth_low": tf.zeros([1, 256, 256, 1]), "depth_high": tf.zeros([1, 384, 384, 1])})
    with pytest.raises(ValueError, match="depth_low"):
        net({"low": inputs["depth_low"], "high": inputs["depth_high"]})
    with pytest.raises(ValueError, match="multiple of 128"):
        SDDRNet(height=300)
    with pytest.raises(ValueError, match="token_layout"):
        CrossResolutionAttention(token_layout="stacked")


# --------------------------------------------------------------------------------------- building blocks


def _np_cubic(d, a=-0.75):
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def _np_upsample_axis(x, axis):
    """PyTorch's bicubic x2, align_corners=True, by the definition: src = i (n - 1) / (2n - 1), clamped taps."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    out = np.zeros((2 * n,) + x.shape[1:])
    for i in range(2 * n):
        src = i * (n - 1) / (2 * n - 1)
        base = math.floor(src)
        for k in range(-1, 3):
            out[i] += _np_cubic(src - (base + k)) * x[min(max(base + k, 0), n - 1)]
    return np.moveaxis(out, 0, axis)


def test_bicubic_upsample_matches_the_pytorch_definition(rng):
    x = rng.random((2, 5, 7, 3))
    ref = _np_upsample_axis(_np_upsample_axis(x, 1), 2)
    layer = BicubicUpsample2x()
    np.testing.assert_allclose(layer(tf.constant(x, tf.float32)).numpy(), ref, atol=1e-5)
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(dynamic(tf.constant(x, tf.float32)).numpy(), ref, atol=1e-5)
    corners = layer(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(corners[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]], atol=1e-6)


def test_subsample_is_every_second_pixel(rng):
    """Subsample2x (space_to_depth + slice) is x[:, ::2, ::2], so conv1x1/s1 after it is the code's conv1x1/s2."""
    x = rng.random((2, 6, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(Subsample2x()(tf.constant(x)).numpy(), x[:, ::2, ::2])
    dynamic = tf.function(Subsample2x(), input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_array_equal(dynamic(tf.constant(x)).numpy(), x[:, ::2, ::2])
    strided = keras.layers.Conv2D(4, 1, strides=2)
    ours = keras.layers.Conv2D(4, 1)
    strided.build(x.shape), ours.build((None, 3, 5, 3))
    ours.set_weights(strided.get_weights())
    np.testing.assert_allclose(ours(Subsample2x()(x)).numpy(), strided(x).numpy(), atol=1e-6)


_ONEDNN_ENCODER_STEP = """
import numpy as np, tensorflow as tf
from tfdepth.models.sddr import _conv_encoder
enc = _conv_encoder()
x = tf.constant(np.random.default_rng(0).random((2, 128, 128, 1)).astype(np.float32))
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_sum(tf.square(v)) for v in enc(x).values())
    return tape.gradient(loss, enc.trainable_variables)
for _ in range(3):
    grads = step()
print("finite", all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads), len(grads))
"""


def test_encoder_trains_under_onednn():
    """The encoder's backward pass with oneDNN forced on (TensorFlow's default on AVX-512 VNNI/BF16 and AMX CPUs).
    With the shortcut as Conv2D(1, strides=2) this aborted ("double free or corruption" in oneDNN's 1x1/s2
    backward-filter kernel, TF 2.21) at this size; Subsample2x + conv1x1/s1 avoids that kernel."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _ONEDNN_ENCODER_STEP], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finite True 36" in done.stdout  # 3 blocks x 6 layers x (kernel|gamma, bias|beta), done.stdout


def test_sddr_blocks_run_in_one_xnnpack_partition(xnnpack_coverage):
    """The bicubic x2 (no GATHER), the subsampled shortcut (no stride-2 STRIDED_SLICE) and the cross-resolution
    attention (4-D ops only, no PACK) stay inside XNNPACK: the whole N_r is one partition at export."""
    inp = keras.Input((8, 8, 16), batch_size=1)
    x = BicubicUpsample2x()(inp)
    x = keras.layers.Conv2D(16, 1)(Subsample2x()(x))
    low, high = CrossResolutionAttention(16, 1, num_heads=2)(x, 0.5 * x)
    got = xnnpack_coverage(keras.Model(inp, keras.layers.Add()([low, high])), (1, 8, 8, 16))
    assert got["partitions"] == 1 and got["not_delegated"] == {}, got


def test_group_and_layer_norm_match_numpy(rng):
    x = rng.random((2, 4, 5, 16)) * 3
    gn = GroupNorm(4)
    got = gn(tf.constant(x, tf.float32)).numpy()
    g = x.reshape(2, 4, 5, 4, 4)
    ref = (g - g.mean(axis=(1, 2, 4), keepdims=True)) / np.sqrt(g.var(axis=(1, 2, 4), keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, ref.reshape(x.shape), atol=1e-5)
    ln = LayerNorm(1e-6)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(ln(tf.constant(x, tf.float32)).numpy(), ref, atol=1e-5)


def test_sine_position_embedding_is_detr():
    pe = sine_position_embedding(3, 4, channels=8).numpy()
    for i in range(3):
        for j in range(4):
            for c in range(4):
                dim_t = 10000 ** (2 * (c // 2) / 4)
                trig = math.sin if c % 2 == 0 else math.cos
                assert abs(pe[i, j, c] - trig((i + 1) / dim_t)) < 1e-5  # rows, 1-based
                assert abs(pe[i, j, 4 + c] - trig((j + 1) / dim_t)) < 1e-5  # columns


def test_official_token_layout_is_the_codes_memory_reinterpretation(rng):
    """With 1x1 deepest maps the code's reshape is the identity, with 2x2 maps it mixes channels and positions."""
    keras.utils.set_random_seed(0)
    joint = CrossResolutionAttention(num_blocks=2)
    official = CrossResolutionAttention(num_blocks=2, token_layout="official_reshape")
    low, high = (tf.constant(rng.random((1, 1, 1, 256)), tf.float32) for _ in range(2))
    joint(low, high), official(low, high)
    official.set_weights(joint.get_weights())
    for a, b in zip(joint(low, high), official(low, high)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    low, high = (tf.constant(rng.random((1, 2, 2, 256)), tf.float32) for _ in range(2))
    assert np.abs(joint(low, high)[0].numpy() - official(low, high)[0].numpy()).max() > 1e-4
