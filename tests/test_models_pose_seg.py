"""PoseDecoder / PoseNet and SegmentationUNet: shapes, parameter counts, read-out references, config and .keras
round trips, gradients, size checks, and synchronized BatchNorm under MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.pose import PoseDecoder, PoseNet, PoseVector
from tfdepth.models.segmentation import SegmentationUNet


def _assert_all_grads_nonzero(model, x, rng):
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        # Random projection of every output (a plain sum can cancel exactly through BatchNorm).
        loss = tf.add_n([tf.reduce_sum(v * rng.normal(size=v.shape).astype(np.float32)) for v in out.values()])
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == len(model.trainable_weights) > 0
    for var, g in zip(model.trainable_weights, grads):
        assert g is not None, var.path
        assert np.any(g.numpy() != 0), var.path


def _assert_save_load_parity(model, x, path):
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    a, b = model(x, training=False), loaded(x, training=False)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


# ------------------------------------------------------------------------------------------------------- pose
@pytest.fixture(scope="module")
def pose_net():
    return PoseNet(18)


def test_pose_vector_readout_matches_numpy(rng):
    x = rng.normal(size=(2, 3, 4, 12)).astype(np.float32)
    out = PoseVector(2)(x)
    ref = 0.01 * x.mean(axis=(1, 2)).reshape(2, 2, 6)  # §A.4: mean over H, W, x 0.01, (B, frames, 6)
    np.testing.assert_allclose(out["axisangle"].numpy(), ref[..., :3], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out["translation"].numpy(), ref[..., 3:], rtol=1e-5, atol=1e-9)


def test_pose_net_shapes_params_and_first_frame(pose_net, rng):
    x = rng.uniform(0, 1, (2, 64, 96, 6)).astype(np.float32)
    out = pose_net(x, training=False)
    assert sorted(out) == ["axisangle", "translation"]
    assert tuple(out["axisangle"].shape) == (2, 1, 3) and tuple(out["translation"].shape) == (2, 1, 3)
    assert out["axisangle"].dtype == tf.float32
    full = pose_net.decoder(pose_net.encoder(x, training=False)["f4"])  # [B, 2, 3] each
    assert tuple(full["axisangle"].shape) == (2, 2, 3)
    np.testing.assert_allclose(out["axisangle"].numpy(), full["axisangle"].numpy()[:, :1], rtol=1e-6)
    np.testing.assert_allclose(out["translation"].numpy(), full["translation"].numpy()[:, :1], rtol=1e-6)
    # 6-channel ResNet18 (conv1 grows by 64*3*7*7) + pose decoder (§A.4) counted by hand.
    decoder = (512 * 256 + 256) + 2 * (9 * 256 * 256 + 256) + (256 * 12 + 12)
    assert pose_net.decoder.count_params() == decoder
    trainable = sum(int(np.prod(w.shape)) for w in pose_net.trainable_weights)
    assert trainable == 11_176_512 + 64 * 3 * 49 + decoder


def test_pose_decoder_frames_and_config(rng):
    dec = PoseDecoder([64, 64, 128, 256, 512], num_frames_to_predict_for=3, name="pd")
    out = dec(rng.normal(size=(1, 2, 3, 512)).astype(np.float32))
    assert tuple(out["translation"].shape) == (1, 3, 3)
    assert PoseDecoder.from_config(dec.get_config()).get_config() == {
        "name": "pd", "num_ch_enc": [64, 64, 128, 256, 512], "num_frames_to_predict_for": 3}
    with pytest.raises(ValueError, match="num_frames_to_predict_for"):
        PoseDecoder([64, 64, 128, 256, 512], 0)


def test_pose_net_config_save_load_and_gradients(pose_net, tmp_path, rng):
    config = pose_net.get_config()
    assert config == {"name": "pose_net", "encoder_depth": 18, "sync_batchnorm": True, "height": None,
                      "width": None}
    assert PoseNet.from_config(config).get_config() == config
    x = rng.uniform(0, 1, (2, 64, 64, 6)).astype(np.float32)
    _assert_save_load_parity(pose_net, x, tmp_path / "pose.keras")
    _assert_all_grads_nonzero(pose_net, x, rng)


def test_pose_net_size_and_depth_errors(pose_net):
    with pytest.raises(ValueError, match="18, 34 or 50"):
        PoseNet(encoder_depth=152)
    with pytest.raises(ValueError, match="width=70 is not a multiple of 32"):
        PoseNet(width=70)
    with pytest.raises(ValueError, match="height 40 is not a multiple of 32"):
        pose_net(np.zeros((1, 40, 64, 6), np.float32))


# ----------------------------------------------------------------------------------------------- segmentation
def unet_param_count(cin, filters, classes):
    """Conv (no bias) + BN (gamma, beta) per conv, 2 per level; decoder levels take upsampled + skip channels."""
    total, prev = 0, cin
    for f in filters:
        total += 9 * prev * f + 2 * f + 9 * f * f + 2 * f
        prev = f
    for level in range(len(filters) - 2, -1, -1):
        f = filters[level]
        total += 9 * (prev + f) * f + 2 * f + 9 * f * f + 2 * f
        prev = f
    return total + filters[0] * classes + classes


@pytest.mark.parametrize("in_channels", [1, 4])
def test_unet_shapes_and_params(in_channels, rng):
    net = SegmentationUNet(in_channels=in_channels)
    out = net(rng.uniform(0, 1, (2, 32, 48, in_channels)).astype(np.float32))
    assert list(out) == ["logits"]
    assert tuple(out["logits"].shape) == (2, 32, 48, 2) and out["logits"].dtype == tf.float32
    trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    assert trainable == unet_param_count(in_channels, (16, 32, 64, 128, 256), 2)


def test_unet_outputs_raw_logits_of_a_1x1_head(rng):
    # §B.5 bug 2: no sigmoid. The output must be exactly the linear 1x1 head on the last decoder features.
    net = SegmentationUNet(in_channels=1, num_classes=3, filters=(4, 8, 16))
    head = net.get_layer("head")
    head.bias.assign(np.array([5.0, -5.0, 0.0], np.float32))  # pushes logits far outside [0, 1]
    x = rng.uniform(0, 1, (1, 16, 16, 1)).astype(np.float32)
    feats = keras.Model(net.input, net.get_layer("up_0_b_relu").output)(x, training=False).numpy()
    ref = np.einsum("bhwc,ck->bhwk", feats, head.kernel.numpy()[0, 0]) + head.bias.numpy()
    logits = net(x, training=False)["logits"].numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    assert logits.max() > 1 and logits.min() < 0


def test_unet_config_save_load_gradients(tmp_path, rng):
    net = SegmentationUNet(in_channels=4, num_classes=2, filters=(8, 16, 32), sync_batchnorm=False, name="seg")
    config = net.get_config()
    assert config == {"name": "seg", "in_channels": 4, "num_classes": 2, "filters": [8, 16, 32],
                      "sync_batchnorm": False, "height": None, "width": None}
    assert SegmentationUNet.from_config(config).get_config() == config
    x = rng.uniform(0, 1, (2, 16, 24, 4)).astype(np.float32)
    _assert_save_load_parity(net, x, tmp_path / "seg.keras")
    _assert_all_grads_nonzero(net, x, rng)


def test_unet_size_checks():
    with pytest.raises(ValueError, match="height=24 is not a multiple of 16"):
        SegmentationUNet(height=24)
    with pytest.raises(ValueError, match="width 18 is not a multiple of 4"):
        SegmentationUNet(filters=(4, 8, 16))(np.zeros((1, 16, 18, 1), np.float32))
    with pytest.raises(ValueError, match="filters needs at least 2 levels"):
        SegmentationUNet(filters=(8,))
    with pytest.raises(ValueError, match="in_channels"):
        SegmentationUNet(in_channels=0)


# --------------------------------------------------------------------------------------- synchronized BN
@pytest.mark.parametrize("sync", [True, False])
def test_sync_batchnorm_two_replicas_equal_single_device_global_batch(sync, rng, mirrored_strategy):
    """With sync_batchnorm=True, a training-mode forward on 2 replicas (half batch each) gives the outputs and BN
    moving statistics of one device on the global batch; with False the per-replica statistics differ."""
    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest.py must configure 2 logical CPUs"
    x = rng.uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    x[2:] *= 3.0  # the two half-batches have different statistics
    single = SegmentationUNet(filters=(4, 8), sync_batchnorm=sync)
    ref = single(x, training=True)["logits"].numpy()

    strategy = mirrored_strategy
    with strategy.scope():
        dist = SegmentationUNet(filters=(4, 8), sync_batchnorm=sync)
    dist.set_weights(SegmentationUNet.from_config(single.get_config()).get_weights())  # reset moving stats
    for v_dist, v_single in zip(dist.trainable_weights, single.trainable_weights):
        v_dist.assign(v_single.numpy())
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    per_replica = strategy.run(tf.function(lambda t: dist(t, training=True)["logits"]), args=(batch,))
    got = np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)])

    bn_single = single.get_layer("down_0_a_bn").moving_mean.numpy()
    bn_dist = dist.get_layer("down_0_a_bn").moving_mean.numpy()
    assert np.abs(bn_single).max() > 1e-3  # the training-mode call did update the moving mean
    if sync:
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn_dist, bn_single, rtol=1e-4, atol=1e-6)
    else:
        assert np.abs(got - ref).max() > 1e-3
