"""RSN networks (spec rsn.md §4-§5): exact parameter counts, shapes at 480x640 (built) and small sizes (run), the
resampling ops against numpy implementations of PyTorch's formulas, absolute vs relative pyramid grids, gradients
to every weight, the .keras round trip, learning on tiny data, shared weights with the ground-truth-support
variant, the stage-2 initialisation, the opt-in ImageNet key layout, and size errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses.region import iterative_loss, region_loss
from tfdepth.models import build_model, get_inference_spec
from tfdepth.models.rsn import (
    AdaptiveAveragePooling2D,
    GenerationModule,
    RefinementModule,
    RegionSupportNetwork,
    adaptive_avg_pool2d,
    init_refinement_from_generation,
    refine_iterations,
    resize_bilinear_align_corners,
)

GENERATION_PARAMS = 30_444_718  # spec "Checked against the authors' code" item 6
REFINEMENT_PARAMS = 994_860


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def nets():
    """The default networks (absolute pyramid grids, as the authors' code)."""
    generation = GenerationModule()
    refinement = RefinementModule()
    return generation, refinement, RegionSupportNetwork(generation=generation, refinement=refinement)


@pytest.fixture(scope="module")
def relative_nets():
    """Through the registry; relative grids: at tiny sizes the absolute 120x160 path costs ~7 GMAC per pass."""
    return build_model({"name": "rsn", "grid": "relative"})


@pytest.fixture(scope="module")
def relative_rsn(relative_nets):
    return relative_nets["rsn"]


def test_registry_and_inference_spec(relative_nets):
    nets = relative_nets
    assert sorted(nets) == ["generation", "refinement", "rsn", "rsn_gt_support"]
    assert nets["rsn"].generation is nets["generation"] and nets["rsn"].refinement is nets["refinement"]
    assert nets["rsn_gt_support"].refinement is nets["refinement"] and nets["rsn_gt_support"].support_input
    spec = get_inference_spec("rsn")
    assert spec.files == {"rsn": "rsn_net.keras"} and spec.depth_kind == "metric" and spec.input_multiple == 2
    inference = spec.build(nets, {"name": "rsn"})
    x = np.random.default_rng(8).uniform(0, 1, (1, 8, 12, 3)).astype(np.float32)
    out = inference(x)
    assert sorted(out) == ["depth"]
    full = nets["rsn"](x, training=False)
    np.testing.assert_allclose(out["depth"].numpy(), full["depth"].numpy(), rtol=1e-5, atol=1e-6)
    # the iterations are the refinement module applied to [RGB, S, d_{k-1}] with d_0 = S
    depths = refine_iterations(nets["refinement"], x, full["region_support"], 3, training=False)
    for k, d in enumerate(depths, start=1):
        np.testing.assert_allclose(d.numpy(), full[f"depth_iter_{k}"].numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ numpy references
def np_adaptive_avg_pool(x, out_h, out_w):
    """PyTorch's adaptive_avg_pool2d index formula, written out per output cell (channels-last)."""
    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c), np.float64)
    for i in range(out_h):
        h0, h1 = (i * h) // out_h, -((-(i + 1) * h) // out_h)  # floor(i h / oh), ceil((i + 1) h / oh)
        for j in range(out_w):
            w0, w1 = (j * w) // out_w, -((-(j + 1) * w) // out_w)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def np_bilinear_align_corners(x, out_h, out_w):
    """F.interpolate(mode="bilinear", align_corners=True): source = i * (in - 1) / (out - 1).

    The source coordinate is computed in float32 as PyTorch's and TF's CPU kernels do (scale = float(in - 1) /
    (out - 1), then i * scale); in float64 the 120 -> 238 coordinates differ by ~1e-5 pixel.
    """
    b, h, w, c = x.shape

    def coords(n_in, n_out):
        scale = np.float32(0.0) if n_out == 1 else np.float32(n_in - 1) / np.float32(n_out - 1)
        src = (np.arange(n_out, dtype=np.float32) * scale).astype(np.float64)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = coords(h, out_h)
    x0, x1, fx = coords(w, out_w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bottom = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]


@pytest.mark.parametrize("in_hw,out_hw", [((238, 318), (120, 160)), ((7, 10), (3, 4)), ((5, 6), (7, 9)),
                                          ((30, 46), (6, 8)), ((12, 16), (3, 4))])
def test_adaptive_avg_pool_matches_pytorch_formula(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype(np.float32)
    expected = np_adaptive_avg_pool(x.astype(np.float64), *out_hw)
    np.testing.assert_allclose(adaptive_avg_pool2d(tf.constant(x), *out_hw).numpy(), expected, atol=2e-6)
    # the same through the dynamic-shape path (sizes unknown when traced, matrices built in the graph)
    fn = tf.function(lambda t: adaptive_avg_pool2d(t, *out_hw),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_allclose(fn(x).numpy(), expected, atol=2e-6)


def test_adaptive_pool_mistake_is_caught():
    # Classic slip: bins from floor((i + 1) H / h) instead of the ceiling drop the overlap pixel of PyTorch's bins.
    x = np.arange(7, dtype=np.float64).reshape(1, 7, 1, 1)
    got = adaptive_avg_pool2d(tf.constant(x, tf.float32), 3, 1).numpy().ravel()
    np.testing.assert_allclose(got, [1.0, 3.0, 5.0])  # bins [0, 3), [2, 5), [4, 7): rows 0-2, 2-4, 4-6
    assert not np.allclose(got, [0.5, 3.0, 5.0])  # the floor-end version: [0, 2), [2, 4), [4, 7)


@pytest.mark.parametrize("in_hw,out_hw", [((3, 4), (238, 318)), ((120, 160), (238, 318)), ((5, 7), (11, 5)),
                                          ((1, 1), (4, 6)), ((4, 6), (1, 1))])
def test_bilinear_align_corners_matches_numpy(in_hw, out_hw):
    x = np.random.default_rng(1).normal(size=(2, *in_hw, 2)).astype(np.float32)
    got = resize_bilinear_align_corners(tf.constant(x), *out_hw).numpy()
    np.testing.assert_allclose(got, np_bilinear_align_corners(x.astype(np.float64), *out_hw), atol=2e-6)
    if out_hw[0] > 1 and in_hw[0] > 1:
        # corners are aligned: the first pixel is the input's exactly, the last up to the float32 source coordinate
        np.testing.assert_array_equal(got[:, 0, 0], x[:, 0, 0])
        np.testing.assert_allclose(got[:, -1, -1], x[:, -1, -1], atol=1e-4)
        # tf.image.resize (half-pixel centres) is a different interpolation
        assert not np.allclose(tf.image.resize(x, out_hw).numpy(), got, atol=1e-3)


def test_relative_and_absolute_grids():
    ref = keras.Input((480, 640, 3))
    feats = keras.Input((238, 318, 8))
    sizes = [tuple(AdaptiveAveragePooling2D(divisor=(d, d))([feats, ref]).shape[1:3])
             for d in (4, 8, 10, 20, 40, 80, 160)]
    assert sizes == [(120, 160), (60, 80), (48, 64), (24, 32), (12, 16), (6, 8), (3, 4)]  # = the code's grids
    small = keras.Input((64, 96, 3))
    sizes = [tuple(AdaptiveAveragePooling2D(divisor=(d, d))([feats, small]).shape[1:3]) for d in (4, 10, 160)]
    assert sizes == [(16, 24), (6, 10), (1, 1)]  # round(64/10) = 6, round(96/10) = 10; at least 1
    # runtime sizes from a dynamic reference equal the static ones
    layer = AdaptiveAveragePooling2D(divisor=(10, 10))
    x = np.random.default_rng(2).normal(size=(1, 30, 46, 4)).astype(np.float32)
    fn = tf.function(lambda t, r: layer([t, r]), input_signature=[tf.TensorSpec([None, None, None, 4]),
                                                                 tf.TensorSpec([None, None, None, 3])])
    out = fn(x, np.zeros((1, 64, 96, 3), np.float32)).numpy()
    np.testing.assert_allclose(out, np_adaptive_avg_pool(x.astype(np.float64), 6, 10), atol=2e-6)


# --------------------------------------------------------------------------------------------------- networks
def test_parameter_counts_equal_the_original(nets):
    generation, refinement, rsn = nets
    assert trainable_count(generation) == GENERATION_PARAMS
    assert trainable_count(refinement) == REFINEMENT_PARAMS
    assert trainable_count(rsn) == GENERATION_PARAMS + REFINEMENT_PARAMS  # refinement weights shared by iterations


def test_shapes_at_480x640_built(nets):
    # A forward pass at 480x640 costs about 2 TMAC (minutes on 2 CPU cores): the graph is traced symbolically only.
    generation, refinement, rsn = nets
    names = ("relu", "full2_relu", "layer2_0_relu_out", "layer4_2_relu_out", "pyramid_path0_pool", "pyramid_concat",
             "deconv2_relu", "regress1_relu", "skip_concat", "final2_relu")
    probe = keras.Model(generation.input, {n: generation.get_layer(n).output for n in names})
    spec = probe.compute_output_spec(keras.KerasTensor((1, 480, 640, 3)))
    assert {n: tuple(spec[n].shape[1:]) for n in names} == {
        "relu": (476, 636, 64), "full2_relu": (480, 640, 128), "layer2_0_relu_out": (238, 318, 128),
        "layer4_2_relu_out": (238, 318, 512), "pyramid_path0_pool": (120, 160, 512),
        "pyramid_concat": (238, 318, 1023), "deconv2_relu": (478, 638, 256), "regress1_relu": (480, 640, 128),
        "skip_concat": (480, 640, 256), "final2_relu": (480, 640, 1)}
    names = ("relu", "full2_relu", "pyramid_concat", "infer5_relu")
    probe = keras.Model(refinement.input, {n: refinement.get_layer(n).output for n in names})
    spec = probe.compute_output_spec({k: keras.KerasTensor((1, 480, 640, c)) for k, c in
                                      (("image", 3), ("region_support", 1), ("depth", 1))})
    assert {n: tuple(spec[n].shape[1:]) for n in names} == {
        "relu": (476, 636, 64), "full2_relu": (480, 640, 128), "pyramid_concat": (480, 640, 254),
        "infer5_relu": (480, 640, 1)}
    spec = rsn.compute_output_spec(keras.KerasTensor((1, 480, 640, 3)))
    assert {k: tuple(v.shape[1:]) for k, v in spec.items()} == {
        k: (480, 640, 1) for k in ("region_support", "depth_iter_1", "depth_iter_2", "depth_iter_3", "depth")}
    # the absolute grid is the code's (120, 160) at every size; relative grids follow the input
    spec = keras.Model(generation.input, generation.get_layer("pyramid_path0_pool").output).compute_output_spec(
        keras.KerasTensor((1, 240, 320, 3)))
    assert tuple(spec.shape[1:3]) == (120, 160)


def test_relative_grids_follow_the_input(relative_rsn):
    rel = relative_rsn.generation
    names = ("pyramid_path0_pool", "pyramid_path6_pool")
    spec = keras.Model(rel.input, {n: rel.get_layer(n).output for n in names}).compute_output_spec(
        keras.KerasTensor((1, 240, 320, 3)))
    assert tuple(spec["pyramid_path0_pool"].shape[1:3]) == (60, 80)
    assert tuple(spec["pyramid_path6_pool"].shape[1:3]) == (2, 2)  # round(240/160) = round(320/160) = 2
    assert trainable_count(rel) == GENERATION_PARAMS  # pooling has no weights: the count is grid-independent


def test_small_forward_shapes_and_ranges(nets):
    _, _, rsn = nets  # default (absolute) grids at a small size: the 120x160 path is upsampling here, as in the code
    x = np.random.default_rng(3).uniform(0, 1, (1, 16, 24, 3)).astype(np.float32)
    out = rsn(x, training=False)
    assert sorted(out) == ["depth", "depth_iter_1", "depth_iter_2", "depth_iter_3", "region_support"]
    for key, value in out.items():
        assert tuple(value.shape) == (1, 16, 24, 1) and value.dtype == tf.float32, key
        assert float(tf.reduce_min(value)) >= 0.0  # final ReLU
    np.testing.assert_array_equal(out["depth"].numpy(), out["depth_iter_3"].numpy())


def test_gradients_reach_every_weight_and_gt_support_variant_shares_them(relative_rsn):
    rsn = relative_rsn
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (2, 8, 12, 3)).astype(np.float32)
    depth = rng.uniform(1, 4, (2, 8, 12, 1)).astype(np.float32)
    ids = rng.integers(1, 4, (2, 8, 12, 1)).astype(np.int32)
    with tf.GradientTape() as tape:
        out = rsn(x, training=True)
        loss = region_loss(out["region_support"], depth, ids) + iterative_loss(
            [out[f"depth_iter_{k}"] for k in (1, 2, 3)], depth)["total"]
    grads = tape.gradient(loss, rsn.trainable_weights)
    missing = [w.path for w, g in zip(rsn.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not missing, missing
    gt = RegionSupportNetwork(grid="relative", support_input=True, refinement=rsn.refinement)
    assert gt.generation is None and trainable_count(gt) == REFINEMENT_PARAMS
    assert {id(w) for w in gt.trainable_weights} == {id(w) for w in rsn.refinement.trainable_weights}
    out = gt({"image": x, "region_support": depth}, training=False)
    np.testing.assert_array_equal(out["region_support"].numpy(), depth)
    # freezing one module for a training stage
    rsn.generation.trainable = False
    try:
        assert trainable_count(rsn) == REFINEMENT_PARAMS
    finally:
        rsn.generation.trainable = True


def test_keras_round_trip(relative_rsn, tmp_path):
    x = np.random.default_rng(5).uniform(0, 1, (1, 8, 12, 3)).astype(np.float32)
    before = relative_rsn(x, training=False)
    path = tmp_path / "rsn.keras"
    relative_rsn.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, RegionSupportNetwork) and isinstance(loaded.generation, GenerationModule)
    assert loaded.get_config() == relative_rsn.get_config() and loaded.grid == "relative"
    after = loaded(x, training=False)
    for key in before:
        np.testing.assert_allclose(after[key].numpy(), before[key].numpy(), rtol=1e-5, atol=1e-6)


def test_learning_on_tiny_data(relative_rsn):
    # Stage-1 style: the generation module regresses a support-depth target (two flat regions per image) under the
    # linear region loss; plain gradient descent (eager, a few steps: the 30M-parameter graph takes ~40 s to trace).
    gen = relative_rsn.generation
    before = gen.get_weights()
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (2, 8, 12, 3)).astype(np.float32)
    target = np.where(np.arange(8)[None, :, None, None] < 4, 1.5, 3.0) * np.ones((2, 8, 12, 1), np.float32)
    ids = np.where(np.arange(8)[None, :, None, None] < 4, 2, 1) * np.ones((2, 8, 12, 1), np.int32)
    losses = []
    try:
        for _ in range(4):
            with tf.GradientTape() as tape:
                loss = region_loss(gen(x, training=True)["region_support"], target, ids)
            grads = tape.gradient(loss, gen.trainable_weights)
            for w, g in zip(gen.trainable_weights, grads):
                w.assign_sub(3e-2 * g)
            losses.append(float(loss))
    finally:
        gen.set_weights(before)
    assert losses[-1] < 0.5 * losses[0], losses


def test_init_refinement_from_generation(relative_rsn):
    gen, ref = relative_rsn.generation, relative_rsn.refinement
    before = ref.get_weights()
    copied = init_refinement_from_generation(ref, gen)
    assert copied == 1 + 4 + 3 * 2 * (1 + 4) + 2 * (1 + 4)  # conv1, bn1 (4 vars), layer1 (3 x 2 x [conv + BN]), full1/2
    k_gen = gen.get_layer("conv1").kernel.numpy()
    k_ref = ref.get_layer("conv1").kernel.numpy()
    assert k_ref.shape == (7, 7, 5, 64)
    np.testing.assert_array_equal(k_ref[:, :, :3], k_gen)
    np.testing.assert_allclose(k_ref[:, :, 3], k_gen.mean(axis=2), rtol=1e-6)
    np.testing.assert_allclose(k_ref[:, :, 4], k_gen.mean(axis=2), rtol=1e-6)
    for name, attr in (("full2_conv", "kernel"), ("layer1_2_bn2", "gamma"), ("layer1_2_bn2", "moving_variance")):
        np.testing.assert_array_equal(getattr(ref.get_layer(name), attr).numpy(),
                                      getattr(gen.get_layer(name), attr).numpy())
    # the pyramid and the inference head are not copied
    assert ref.get_layer("infer1_conv").kernel.shape == (3, 3, 254, 128)
    ref.set_weights(before)


def test_opt_in_imagenet_keys_are_torchvision_resnet34(nets, tmp_path):
    generation, _, _ = nets
    keys = ["conv1.weight"] + [f"bn1.{f}" for f in ("weight", "bias", "running_mean", "running_var")]
    for stage, (n, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for i in range(n):
            prefix = f"layer{stage}.{i}"
            keys += [f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"]
            keys += [f"{prefix}.{bn}.{f}" for bn in ("bn1", "bn2") for f in ("weight", "bias", "running_mean",
                                                                             "running_var")]
            if i == 0 and stage > 1:
                keys += [f"{prefix}.downsample.0.weight"]
                keys += [f"{prefix}.downsample.1.{f}" for f in ("weight", "bias", "running_mean", "running_var")]
    expected = {f"{m}.weight" if "bn" not in m and "downsample.1" not in m else None
                for m in generation.torch_names.values()}
    assert {k for k in keys if k.endswith(".weight") and (".conv" in k or k == "conv1.weight"
                                                          or "downsample.0" in k)} <= expected
    from tfdepth.models.weights import load_torchvision_resnet_weights

    rng = np.random.default_rng(7)
    arrays = {}
    for key in keys:
        module = key.rsplit(".", 1)[0]
        layer = generation.get_layer(next(k for k, v in generation.torch_names.items() if v == module))
        if key.endswith("weight") and hasattr(layer, "kernel"):
            shape = layer.kernel.shape
            arrays[key] = rng.normal(size=(shape[3], shape[2], shape[0], shape[1])).astype(np.float32)  # OIHW
        else:
            arrays[key] = rng.uniform(0.5, 1.5, size=layer.gamma.shape).astype(np.float32)
    arrays["fc.weight"] = np.zeros((1000, 512), np.float32)
    np.savez(tmp_path / "resnet34.npz", **arrays)
    before = generation.get_weights()
    try:
        assert load_torchvision_resnet_weights(generation, tmp_path / "resnet34.npz") == len(keys)
        np.testing.assert_array_equal(generation.get_layer("conv1").kernel.numpy(),
                                      arrays["conv1.weight"].transpose(2, 3, 1, 0))
    finally:
        generation.set_weights(before)


def test_width_multiplier_is_a_narrower_network():
    rsn = RegionSupportNetwork(grid="relative", width_multiplier=0.25)
    gen, ref = rsn.generation, rsn.refinement
    assert gen.get_layer("layer4_2_conv2").kernel.shape == (3, 3, 128, 128)  # 512 * 0.25
    assert gen.get_layer("pyramid_concat").output.shape[-1] == 128 + 7 * (128 // 7)
    assert ref.get_layer("pyramid_concat").output.shape[-1] == 32 + 7 * (32 // 7)
    assert trainable_count(gen) < GENERATION_PARAMS / 10 and trainable_count(ref) < REFINEMENT_PARAMS / 10
    out = rsn(np.random.default_rng(9).uniform(0, 1, (1, 8, 12, 3)).astype(np.float32), training=False)
    assert tuple(out["depth"].shape) == (1, 8, 12, 1)
    assert rsn.get_config()["width_multiplier"] == 0.25 and gen.get_config()["width_multiplier"] == 0.25
    with pytest.raises(ValueError, match="channel multiplier in \\(0, 1\\]"):
        GenerationModule(width_multiplier=2.0)
    with pytest.raises(ValueError, match="needs model.width_multiplier 1.0"):
        build_model({"name": "rsn", "width_multiplier": 0.5, "encoder_weights": "resnet34.npz"})


def test_size_errors_are_clear(nets):
    generation, refinement, rsn = nets
    with pytest.raises(ValueError, match="height 33 is not a multiple of 2"):
        generation(np.zeros((1, 33, 48, 3), np.float32))
    with pytest.raises(ValueError, match="at least 6|>= 6"):
        rsn(np.zeros((1, 4, 8, 3), np.float32))
    with pytest.raises(ValueError, match="height=481 must be even"):
        GenerationModule(height=481, width=640)
    with pytest.raises(ValueError, match="grid must be one of"):
        RefinementModule(grid="paper")
    with pytest.raises(ValueError, match='Missing data for input "depth"'):
        refinement({"image": np.zeros((1, 8, 8, 3), np.float32), "region_support": np.zeros((1, 8, 8, 1),
                                                                                                 np.float32)})


def test_rsn_runs_in_one_xnnpack_partition(xnnpack_coverage):
    """The whole network (generation + 3 refinement iterations) converts to TFLite as one XNNPACK partition: the
    pyramid units' 8-input concats are split into concats of at most 5 (``concatenate_grouped``); a single 8-input
    CONCATENATION stays outside XNNPACK and split the graph into 5 partitions (docs/speed.md)."""
    rsn = RegionSupportNetwork(grid="relative", width_multiplier=0.125)
    concats = [layer for model in (rsn.generation, rsn.refinement) for layer in model.layers
               if isinstance(layer, keras.layers.Concatenate)]
    assert concats and all(len(layer._inbound_nodes[0].input_tensors) <= 5 for layer in concats)

    class DepthOnly(keras.Model):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def call(self, x):
            return self.net(x, training=False)["depth"]

    model = DepthOnly(rsn)
    got = xnnpack_coverage(model, (1, 16, 20, 3), "rsn")
    assert got["partitions"] == 1 and got["not_delegated"] == {}, got
