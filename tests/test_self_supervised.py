"""Self-supervised trainer: gradients, learning, auto-masking, distribution parity, input validation."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfdepth.models import build_model
from tfdepth.train.self_supervised import SelfSupervisedDepthModel, validate_video_batch_spec

H, W = 64, 192


def make_trainer(segmentation=False, **kwargs):
    nets = build_model({"name": "monodepth", "segmentation": segmentation})
    return SelfSupervisedDepthModel(nets["depth"], nets["pose"], nets.get("segmentation"), **kwargs)


def test_gradients_reach_every_trainable_weight(video_batch):
    batch = video_batch(segmentation=True)
    trainer = make_trainer(segmentation=True)
    variables = trainer.trainable_variables
    with tf.GradientTape() as tape:
        terms = trainer.compute_losses(batch, training=True)
    grads = tape.gradient(terms["loss"], variables)
    missing = [v.path for v, g in zip(variables, grads) if g is None or not np.any(g.numpy())]
    assert not missing, f"no gradient reaches: {missing[:10]}"
    owners = {"depth": trainer.depth_net, "pose": trainer.pose_net, "segmentation": trainer.segmentation_net}
    for name, net in owners.items():
        assert net.trainable_variables, name
    assert set(terms) == {"loss", "photometric", "smoothness", "automask_fraction", "segmentation"}
    expected = terms["photometric"] + 1e-3 * terms["smoothness"] + 5e-4 * terms["segmentation"]
    np.testing.assert_allclose(terms["loss"].numpy(), expected.numpy(), rtol=1e-6)


class FixedMotionTrainer(SelfSupervisedDepthModel):
    """Predicts a fixed sideways camera motion, whatever the frames show (a network that 'sees' motion)."""

    def predict_poses(self, batch, training=False):
        b = tf.shape(batch["image"])[0]
        T = tf.tile(tf.constant([[[1, 0, 0, 0.3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], tf.float32), [b, 1, 1])
        return {-1: T, 1: tf.linalg.inv(T)}


def test_static_camera_is_masked_by_automasking(video_batch):
    static = video_batch(static_camera=True)
    nets = build_model({"name": "monodepth"})
    trainer = FixedMotionTrainer(nets["depth"], nets["pose"])
    terms = trainer.compute_losses(static, training=False)
    # Sources equal the target: the identity error is 0 (+1e-5 noise) and beats any warp, so auto-masking selects
    # the identity almost everywhere and the photometric loss vanishes (A.6: static frames give no signal).
    assert terms["automask_fraction"].numpy() > 0.99
    assert terms["photometric"].numpy() < 1e-3
    moving = trainer.compute_losses(video_batch(), training=False)
    assert moving["automask_fraction"].numpy() < 0.9
    no_mask = FixedMotionTrainer(nets["depth"], nets["pose"], automask=False)
    no_mask_terms = no_mask.compute_losses(static, training=False)
    assert no_mask_terms["automask_fraction"].numpy() == 0.0
    assert no_mask_terms["photometric"].numpy() > 10 * terms["photometric"].numpy()


def test_a_few_steps_lower_the_loss(video_batch):
    """The full loss on one batch falls over 12 steps (each step's loss is computed before its update)."""
    batch = video_batch(seed=3)
    trainer = make_trainer()
    trainer.compile(optimizer=keras.optimizers.Adam(5e-4))
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    losses = trainer.fit(ds, epochs=12, steps_per_epoch=1, verbose=0).history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.slow  # 2 minutes; the core's replica arithmetic is tested fast in test_trainer_core.py
def test_mirrored_step_equals_single_device_step(mirrored_strategy, video_batch):
    """One step on 2 replicas (2 samples each) == one step on the global batch of 4 (loss and weights).

    Two scales instead of four: the multi-scale sum is still reduced across replicas, at half the graph to trace."""
    if len(tf.config.list_logical_devices("CPU")) < 2:
        raise RuntimeError("conftest.py must configure 2 logical CPUs before TensorFlow initialises")
    batch = video_batch(seed=5, batch=4)
    ds = tf.data.Dataset.from_tensors(batch).repeat()

    keras.utils.set_random_seed(7)
    single = make_trainer(scales=(0, 1))
    single.compile(optimizer=keras.optimizers.SGD(0.05))
    initial = single.get_weights()
    history_single = single.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)

    strategy = mirrored_strategy
    with strategy.scope():
        mirrored = make_trainer(scales=(0, 1))
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.05))
    history_mirrored = mirrored.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)

    np.testing.assert_allclose(history_mirrored.history["loss"][0], history_single.history["loss"][0], rtol=2e-4)
    moved = 0
    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), initial):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=2e-6)
        moved += int(not np.allclose(a, w0))
    assert moved > 10  # the step really changed the weights


def test_batch_validation_names_the_problem():
    spec = {
        "image": tf.TensorSpec([None, 64, 192, 3]),
        "image_next": tf.TensorSpec([None, 64, 192, 3]),
        "intrinsics": tf.TensorSpec([None, 3, 3]),
    }
    with pytest.raises(ValueError, match="image_prev"):
        validate_video_batch_spec(spec)
    spec["image_prev"] = spec["image"]
    validate_video_batch_spec(spec)
    bad = {k: tf.TensorSpec([None, 100, 192, 3]) if k.startswith("image") else v for k, v in spec.items()}
    with pytest.raises(ValueError, match="height 100"):
        validate_video_batch_spec(bad)
    with pytest.raises(ValueError, match="seg_mask"):
        validate_video_batch_spec(spec, segmentation=True)


def test_unknown_encoder_depth_is_rejected():
    with pytest.raises(ValueError, match="20"):
        build_model({"name": "monodepth", "encoder_depth": 20})


def test_automask_warmup_counts_every_pixel_until_it_ends(video_batch):
    """loss.automask_warmup_steps: before step N the loss equals the automask=False loss (a static camera is not
    masked); from step N on it equals the plain auto-masked loss."""
    static = video_batch(static_camera=True)
    nets = build_model({"name": "monodepth"})
    plain = FixedMotionTrainer(nets["depth"], nets["pose"])
    no_mask = FixedMotionTrainer(nets["depth"], nets["pose"], automask=False)
    warm = FixedMotionTrainer(nets["depth"], nets["pose"], automask_warmup_steps=3)
    warm.compile(optimizer=keras.optimizers.Adam(1e-4))
    reference_off = no_mask.compute_losses(static, training=False)
    reference_on = plain.compute_losses(static, training=False)

    during = warm.compute_losses(static, training=False)
    assert during["automask_fraction"].numpy() == 0.0
    np.testing.assert_allclose(during["photometric"].numpy(), reference_off["photometric"].numpy(), rtol=1e-6)
    warm.optimizer.iterations.assign(3)
    after = warm.compute_losses(static, training=False)
    assert after["automask_fraction"].numpy() > 0.99
    # The noise seed depends on the step, so compare with a tolerance far below the unmasked loss.
    np.testing.assert_allclose(after["photometric"].numpy(), reference_on["photometric"].numpy(), atol=1e-4)
    assert reference_off["photometric"].numpy() > 10 * after["photometric"].numpy()
    with pytest.raises(ValueError, match="automask_warmup_steps"):
        FixedMotionTrainer(nets["depth"], nets["pose"], automask_warmup_steps=-5)


def test_scale_intrinsics_original_matches_a_hand_computed_k():
    """Monodepth2's loader: K normalised by the input size, then row 0 times W // 2^s and row 1 times H // 2^s."""
    from tfdepth.geometry import scale_intrinsics
    from tfdepth.train.self_supervised import scale_intrinsics_original

    K = tf.constant([[[111.36, 0.0, 95.5], [0.0, 122.88, 31.5], [0.0, 0.0, 1.0]]])  # 64x192 input
    # By hand at s = 2 (48x16 pixels): fx 111.36 / 4 = 27.84, cx 95.5 / 4 = 23.875, fy 30.72, cy 7.875.
    expected = np.array([[27.84, 0.0, 23.875], [0.0, 30.72, 7.875], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(scale_intrinsics_original(K, 2).numpy()[0], expected, rtol=1e-6)
    # The loader's own arithmetic, written out: normalise by (W, H) = (192, 64), multiply by (192 // 8, 64 // 8).
    normalised = K.numpy()[0] / np.array([[192.0], [64.0], [1.0]])
    for s in range(4):
        loader = normalised * np.array([[192 // 2**s], [64 // 2**s], [1.0]])
        np.testing.assert_allclose(scale_intrinsics_original(K, s).numpy()[0], loader, rtol=1e-6)
    # The half-pixel rule (tfdepth.geometry.scale_intrinsics) puts cx 0.5 (1 - 2^-s) px further left: 0.375 at s = 2.
    half_pixel = scale_intrinsics(K, 0.25, 0.25).numpy()[0]
    assert half_pixel[0, 2] == pytest.approx(23.875 - 0.375, abs=1e-5)
    # A [B,4,4] K keeps its last two rows; bad shapes and scales name the argument.
    K4 = tf.constant(np.pad(K.numpy(), ((0, 0), (0, 1), (0, 1))) + np.diag([0, 0, 0, 1.0]), tf.float32)
    scaled4 = scale_intrinsics_original(K4, 1).numpy()[0]
    np.testing.assert_allclose(scaled4[:3, :3], [[55.68, 0, 47.75], [0, 61.44, 15.75], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_array_equal(scaled4[3], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="scale"):
        scale_intrinsics_original(K, -1)
    with pytest.raises(ValueError, match="K must be"):
        scale_intrinsics_original(tf.zeros([1, 2, 3]), 1)


def test_v1_multiscale_with_automasking_trains_with_finite_losses(video_batch):
    """loss.full_res_multiscale=false with auto-masking (Monodepth2 --v1_multiscale): every scale warps, masks and
    compares at its own resolution; one real optimizer step runs and every loss term is finite."""
    batch = video_batch(seed=1, batch=1, H=64, W=64)
    nets = build_model({"name": "monodepth"})
    full_res = SelfSupervisedDepthModel(nets["depth"], nets["pose"], full_res_multiscale=True, automask=True)
    v1 = SelfSupervisedDepthModel(nets["depth"], nets["pose"], full_res_multiscale=False, automask=True)
    v1.compile(optimizer=keras.optimizers.Adam(1e-4))
    v1.optimizer.build(v1.trainable_variables)
    # Same weights, inference mode: lower-scale targets differ from full-res ones, so the photometric losses differ.
    before_full = full_res.compute_losses(batch)["photometric"].numpy()
    before_v1 = v1.compute_losses(batch)["photometric"].numpy()
    assert np.isfinite(before_v1) and abs(before_v1 - before_full) > 1e-4 * before_full
    initial = [v.numpy().copy() for v in v1.trainable_variables]
    logs = {k: float(v) for k, v in v1.train_step(batch).items()}  # eager: no tracing, the core's real step
    assert set(logs) >= {"loss", "photometric", "smoothness", "automask_fraction"}
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert 0.0 < logs["automask_fraction"] < 1.0  # some pixels masked, some not, at the lower scales too
    moved = sum(int(not np.array_equal(w, v.numpy())) for w, v in zip(initial, v1.trainable_variables))
    assert moved == len(initial) and int(v1.optimizer.iterations) == 1
