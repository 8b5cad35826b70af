"""tfdepth.layers: reflection padding, 3x3 convs, conv block and nearest upsampling against independent references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.layers import (
    Conv3x3,
    ConvBlock,
    ReflectionPad2D,
    XNNPACK_MAX_CONCAT_INPUTS,
    UpsampleNearest2x,
    check_hw,
    check_multiple_on_call,
    concatenate_grouped,
)


@pytest.mark.parametrize("pad", [1, 2, 3])
def test_reflection_pad_bit_identical_to_tf_pad_and_numpy(rng, pad):
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    got = ReflectionPad2D(pad)(x).numpy()
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    np.testing.assert_array_equal(got, tf.pad(x, paddings, mode="REFLECT").numpy())
    np.testing.assert_array_equal(got, np.pad(x, paddings, mode="reflect"))


def test_reflection_pad_training_form_is_the_same_copy_as_one_mirror_pad(rng):
    """training=True pads with one MirrorPad (one gradient op); inference keeps the slices XNNPACK runs."""
    layer = ReflectionPad2D(1)
    x = tf.constant(rng.normal(size=(2, 5, 7, 3)).astype(np.float32))
    np.testing.assert_array_equal(layer(x, training=True).numpy(), layer(x, training=False).numpy())
    spec = tf.TensorSpec([2, 5, 7, 3])
    ops = {t: {op.type for op in tf.function(lambda v, t=t: layer(v, training=t)).get_concrete_function(spec)
               .graph.get_operations()} for t in (True, False)}
    assert "MirrorPad" in ops[True] and "MirrorPad" not in ops[False]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        up = tf.constant(rng.normal(size=(2, 7, 9, 3)).astype(np.float32))
        losses = [tf.reduce_sum(layer(x, training=t) * up) for t in (True, False)]
    np.testing.assert_allclose(tape.gradient(losses[0], x).numpy(), tape.gradient(losses[1], x).numpy(), atol=1e-6)


def test_reflection_pad_known_values():
    # Row [1, 2, 3] reflect-padded by 1 is [2, 1, 2, 3, 2] (edge not repeated, unlike 'symmetric').
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 1, 3, 1)
    x = np.concatenate([x, 10 * x], axis=1)  # 2 rows so H > pad
    got = ReflectionPad2D(1)(x).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(got[1], [2, 1, 2, 3, 2])
    np.testing.assert_array_equal(got[0], [20, 10, 20, 30, 20])  # row reflection: row 1 mirrored above row 0


def test_reflection_pad_dynamic_shapes_in_tf_function(rng):
    layer = ReflectionPad2D(2)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    for shape in [(1, 4, 9, 2), (3, 6, 3, 2)]:
        x = rng.normal(size=shape).astype(np.float32)
        np.testing.assert_array_equal(fn(x).numpy(), tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], "REFLECT").numpy())


def test_reflection_pad_rejects_too_small_input_and_bad_pad():
    with pytest.raises(ValueError, match="needs H and W > 1"):
        ReflectionPad2D(1)(np.zeros((1, 1, 4, 1), np.float32))
    with pytest.raises(ValueError, match="pad"):
        ReflectionPad2D(-1)
    with pytest.raises(TypeError, match="pad"):
        ReflectionPad2D(1.5)
    assert ReflectionPad2D(0)(np.ones((1, 2, 2, 1), np.float32)).shape == (1, 2, 2, 1)


def test_upsample_nearest_identical_to_upsampling2d_and_numpy(rng):
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    got = UpsampleNearest2x()(x).numpy()
    np.testing.assert_array_equal(got, keras.layers.UpSampling2D(2, interpolation="nearest")(x).numpy())
    np.testing.assert_array_equal(got, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def test_upsample_nearest_dynamic_shapes_and_dtype(rng):
    # Under a mixed-precision policy the layer must stay in float16 (tf.image.resize would cast bilinear to float32).
    layer = UpsampleNearest2x(dtype="mixed_float16")
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 1], tf.float16)])
    x = rng.normal(size=(1, 3, 4, 1)).astype(np.float16)
    y = fn(x)
    assert y.dtype == tf.float16
    np.testing.assert_array_equal(y.numpy(), np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))
    assert UpsampleNearest2x().compute_output_shape((None, 6, None, 3)) == (None, 12, None, 3)


def _np_conv3x3_valid(xp, kernel, bias):
    """Cross-correlation of already padded ``xp`` [B, H+2, W+2, C] with ``kernel`` [3, 3, C, O] (numpy)."""
    b, hp, wp, _ = xp.shape
    out = np.zeros((b, hp - 2, wp - 2, kernel.shape[-1]), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("bhwc,co->bhwo", xp[:, i:i + hp - 2, j:j + wp - 2], kernel[i, j])
    return out + bias


@pytest.mark.parametrize("use_reflection, mode", [(True, "reflect"), (False, "constant")])
def test_conv3x3_matches_numpy_padded_convolution(rng, use_reflection, mode):
    layer = Conv3x3(4, use_reflection=use_reflection)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    layer.build(x.shape)
    kernel_var, bias_var = layer.weights
    assert tuple(kernel_var.shape) == (3, 3, 3, 4) and tuple(bias_var.shape) == (4,)
    bias_var.assign(rng.normal(size=4).astype(np.float32))  # non-zero bias so it is exercised
    y = layer(x).numpy()
    xp = np.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode=mode)
    ref = _np_conv3x3_valid(xp, kernel_var.numpy(), bias_var.numpy())
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv3x3_kernel_init_follows_pytorch_default():
    # PyTorch Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = 3 * 3 * 64.
    layer = Conv3x3(128)
    layer.build((None, None, None, 64))
    k = layer.weights[0].numpy()
    bound = 1.0 / np.sqrt(9 * 64)
    assert np.abs(k).max() <= bound
    assert np.abs(k).max() > 0.95 * bound  # fills the interval: 73k draws
    np.testing.assert_allclose(k.std(), bound / np.sqrt(3), rtol=0.02)


def test_conv_block_is_elu_of_reflection_conv(rng):
    block = ConvBlock(3)
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    y = block(x).numpy()
    pre = block.conv(x).numpy()
    np.testing.assert_allclose(y, np.where(pre > 0, pre, np.expm1(pre)), rtol=1e-6, atol=1e-6)
    assert block.compute_output_shape((None, 8, None, 2)) == (None, 8, None, 3)


@pytest.mark.parametrize(
    "layer", [ReflectionPad2D(2), Conv3x3(5, use_reflection=False), ConvBlock(7), UpsampleNearest2x()],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_config_round_trip(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"].startswith("tfdepth>")
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()


def test_layers_in_model_save_load(tmp_path, rng):
    inp = keras.Input((None, None, 2))
    out = Conv3x3(2)(UpsampleNearest2x()(ConvBlock(3)(ReflectionPad2D(1)(inp))))
    model = keras.Model(inp, out)
    x = rng.normal(size=(1, 4, 6, 2)).astype(np.float32)
    path = tmp_path / "layers.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded(x).shape == (1, 12, 16, 2)


def test_argument_checks_name_the_argument():
    with pytest.raises(TypeError, match="filters"):
        Conv3x3("8")
    with pytest.raises(ValueError, match="filters"):
        ConvBlock(0)
    with pytest.raises(TypeError, match="use_reflection"):
        Conv3x3(8, use_reflection="yes")
    with pytest.raises(ValueError, match="height=40 is not a multiple of 32"):
        check_hw(40, "height", 32, "Net")
    assert check_hw(None, "height", 32, "Net") is None
    with pytest.raises(ValueError, match="width 20 is not a multiple of 8"):
        check_multiple_on_call(np.zeros((1, 16, 20, 1)), 8, "Net")
    check_multiple_on_call(keras.Input((None, None, 1)), 8, "Net")  # unknown sizes cannot be checked: no error


@pytest.mark.parametrize("training", [False, True])
def test_upsample_gradient_matches_upsampling2d(rng, training):
    """The hand-written backward pass (sum over each 2x2 block) equals the autodiff gradient of UpSampling2D, in
    the inference (concat + depth_to_space) and the training (broadcast) forms, eagerly and under XLA."""
    x = tf.constant(rng.normal(size=(2, 3, 5, 4)).astype(np.float32))
    w = tf.constant(rng.normal(size=(2, 6, 10, 4)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(UpsampleNearest2x()(x, training=training) * w)
        ref = tf.reduce_sum(keras.layers.UpSampling2D(2, interpolation="nearest")(x) * w)
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(ref, x).numpy(), rtol=1e-6, atol=1e-6)
    grad_xla = tf.function(
        lambda v: tf.gradients(tf.reduce_sum(UpsampleNearest2x()(v, training=training) * w), v)[0], jit_compile=True)
    np.testing.assert_allclose(grad_xla(x).numpy(), tape.gradient(ref, x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_upsample_training_form_equals_inference_form_and_its_gradient_is_the_block_sum(rng, dtype):
    """training=True (one broadcast) gives the inference form's values bit for bit; the gradient (4 x the 2x2
    average pool) equals the numpy sum over each 2x2 block exactly on integer-valued upstream gradients (every
    partial sum exact, so no summation order can differ) and in every float dtype the layer runs in."""
    x = tf.constant(rng.normal(size=(2, 5, 3, 6)), dtype)
    layer = UpsampleNearest2x()
    np.testing.assert_array_equal(layer(x, training=True).numpy(), layer(x, training=False).numpy())
    dy = rng.integers(-8, 9, size=(2, 10, 6, 6)).astype(np.float64)
    expected = dy.reshape(2, 5, 2, 3, 2, 6).sum(axis=(2, 4))  # written independently of the layer
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
        got = tape.gradient(y, x, output_gradients=tf.constant(dy, dtype))
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got.numpy().astype(np.float64), expected)
    # Injected mistake: the average pool without the factor 4 is caught by the same comparison.
    wrong = tf.nn.avg_pool2d(tf.constant(dy, dtype), 2, 2, "VALID").numpy().astype(np.float64)
    assert not np.array_equal(wrong, expected)


def test_decoder_layers_run_in_one_xnnpack_partition_and_the_classic_forms_do_not(xnnpack_coverage):
    """Reflection padding as slices + concat and nearest x2 as concat + depth_to_space stay inside XNNPACK; the
    textbook forms (tf.pad REFLECT -> MIRROR_PAD, resize nearest -> RESIZE_NEAREST_NEIGHBOR) split the graph."""
    def decoder(pad, upsample):
        inp = keras.Input((8, 12, 4), batch_size=1)
        x = keras.layers.Conv2D(4, 3)(pad(inp))
        x = keras.layers.Conv2D(4, 3)(pad(upsample(x)))
        return keras.Model(inp, keras.layers.Conv2D(2, 3)(pad(x)))

    ours = decoder(ReflectionPad2D(1), UpsampleNearest2x())
    classic = decoder(keras.layers.Lambda(lambda t: tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT")),
                      keras.layers.Lambda(lambda t: tf.image.resize(t, tf.shape(t)[1:3] * 2, "nearest")))
    classic.set_weights(ours.get_weights())
    x = np.random.default_rng(0).normal(size=(1, 8, 12, 4)).astype(np.float32)
    np.testing.assert_array_equal(ours(x).numpy(), classic(x).numpy())  # the same function
    got = xnnpack_coverage(ours, (1, 8, 12, 4), "ours")
    assert got["partitions"] == 1 and got["not_delegated"] == {}, got
    split = xnnpack_coverage(classic, (1, 8, 12, 4), "classic")
    assert split["partitions"] > 1 and {"MIRROR_PAD", "RESIZE_NEAREST_NEIGHBOR"} <= set(split["not_delegated"]), split


@pytest.mark.parametrize("n", [2, 5, 6, 8, 12])
def test_concatenate_grouped_is_the_plain_concat_with_at_most_five_inputs_per_op(n, xnnpack_coverage):
    """Nested concats give the values of one concat of all inputs, in order (numpy), and no op has more than five
    inputs; at six or more the single concat leaves XNNPACK (CONCATENATION outside), the grouped one does not."""
    shapes = [(1, 3, 4, 1 + i % 3) for i in range(n)]
    inputs = [keras.Input(s[1:], batch_size=1) for s in shapes]
    grouped = keras.Model(inputs, concatenate_grouped(inputs, "cat"))
    values = [np.random.default_rng(i).normal(size=s).astype(np.float32) for i, s in enumerate(shapes)]
    np.testing.assert_array_equal(grouped(values).numpy(), np.concatenate(values, axis=-1))
    concats = [layer for layer in grouped.layers if isinstance(layer, keras.layers.Concatenate)]
    assert concats[-1].name == "cat" and grouped.layers[-1].name == "cat"
    assert all(len(layer._inbound_nodes[0].input_tensors) <= XNNPACK_MAX_CONCAT_INPUTS for layer in concats)
    assert (len(concats) == 1) == (n <= XNNPACK_MAX_CONCAT_INPUTS)

    # One-input models for the TFLite check: the n parts are channel slices of a single input.
    total = sum(s[-1] for s in shapes)
    bounds = np.cumsum([0] + [s[-1] for s in shapes])
    inp = keras.Input((3, 4, total), batch_size=1)
    parts = [keras.layers.Lambda(lambda t, a=int(a), b=int(b): t[..., a:b] * 2.0)(inp)
             for a, b in zip(bounds[:-1], bounds[1:])]
    got = xnnpack_coverage(keras.Model(inp, concatenate_grouped(parts, "cat")), (1, 3, 4, total), f"grouped{n}")
    assert got["partitions"] == 1 and got["not_delegated"] == {}, got
    if n > XNNPACK_MAX_CONCAT_INPUTS:
        plain = keras.Model(inp, keras.layers.Concatenate()(parts))
        split = xnnpack_coverage(plain, (1, 3, 4, total), f"plain{n}")
        assert "CONCATENATION" in split["not_delegated"], split


def test_concatenate_grouped_rejects_empty_input_and_bad_group():
    with pytest.raises(ValueError, match="no tensors"):
        concatenate_grouped([], "cat")
    with pytest.raises(ValueError, match="group must be at least 2"):
        concatenate_grouped([keras.Input((2, 2, 1))] * 3, "cat", group=1)
