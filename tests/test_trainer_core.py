"""The trainer core (tfdepth/train/base.py, runner.py, callbacks.py) on a minimal family, so each behaviour is
checked in isolation and fast: monitoring alignment and depth cap, the non-finite guard (stop and skip), optimizer
groups, mid-epoch resume equal to an uninterrupted run, and what a killed checkpoint write leaves behind."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.train.base import DepthTrainer, SkipNonFiniteOptimizer
from tfdepth.train.callbacks import clean_partial_checkpoints
from tfdepth.train.runner import NonFiniteError, fit_trainer


class PlainDepth(DepthTrainer):
    """A one-conv 'family': depth = softplus(conv(image)), loss = mean |depth - gt| (+ a tracked second term).

    ``monitor_depth`` returns ``batch["pred"]`` when the batch carries one, so monitoring can be fed exact values.
    """

    def __init__(self, second_group=False, **core):
        super().__init__(loss_terms=("l1", "mean_depth"), **core)
        self.net = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(1, 3, padding="same")])
        self.head = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1)]) if second_group else None

    def networks(self):
        return {"net": self.net, **({"head": self.head} if self.head is not None else {})}

    def variable_groups(self):
        groups = {"main": list(self.net.trainable_variables)}
        if self.head is not None:
            groups["head"] = list(self.head.trainable_variables)
        return groups

    def _depth(self, image):
        x = self.net(image)
        if self.head is not None:
            x = self.head(x)
        return tf.nn.softplus(x)

    def compute_losses(self, batch, training=False):
        depth = self._depth(batch["image"])
        l1 = tf.reduce_mean(tf.abs(depth - batch["depth"]))
        return {"l1": l1, "mean_depth": tf.reduce_mean(depth), "loss": l1}

    def monitor_depth(self, batch):
        return batch["pred"] if "pred" in batch else self._depth(batch["image"])


def batches(n, seed=0, nan_at=None, size=8):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.random((2, size, size, 3)).astype(np.float32)
        if i == nan_at:
            image[0, 0, 0, 0] = np.nan
        out.append({"image": image, "depth": (1.0 + image.mean(-1, keepdims=True)).astype(np.float32)})
    return tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in out]) for k in out[0]})


def trainer(seed=3, lr=1e-2, **core):
    keras.utils.set_random_seed(seed)
    model = PlainDepth(**core)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    return model


def weights(model):
    return [w.copy() for w in model.get_weights()]


# ------------------------------------------------------------------------------------------------ monitoring
@pytest.mark.parametrize(
    "alignment,pred_of_gt,expected",
    [("median", lambda g: 2.0 * g, 0.0), ("none", lambda g: 2.0 * g, 1.0), ("least_squares", lambda g: 3.0 * g - 1.0, 0.0)],
)
def test_monitoring_uses_the_family_alignment(alignment, pred_of_gt, expected):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 3.0, (2, 6, 6, 1)).astype(np.float32)  # 3 gt - 1 stays under the 10 m clamp
    gt[1] *= 0.5  # a second image at another scale: median and least squares align each image on its own
    model = trainer(monitor_alignment=alignment, monitor_max_depth=10.0)
    logs = model.test_step({"image": rng.random((2, 6, 6, 3), np.float32), "depth": gt, "pred": pred_of_gt(gt)})
    assert float(logs["abs_rel"]) == pytest.approx(expected, abs=1e-5)


def test_monitoring_caps_depth_at_the_family_maximum():
    """Ground truth beyond ``monitor_max_depth`` (NYU: 10 m) is not counted; with the KITTI cap (80 m) it is."""
    gt = np.full((1, 4, 4, 1), 5.0, np.float32)
    gt[0, :2] = 15.0
    pred = np.where(gt > 10, 1.0, gt).astype(np.float32)  # wrong only where gt is beyond 10 m
    batch = {"image": np.zeros((1, 4, 4, 3), np.float32), "depth": gt, "pred": pred}
    nyu = trainer(monitor_alignment="none", monitor_max_depth=10.0).test_step(batch)
    kitti = trainer(monitor_alignment="none", monitor_max_depth=80.0).test_step(batch)
    assert float(nyu["abs_rel"]) == pytest.approx(0.0, abs=1e-6)
    assert float(kitti["abs_rel"]) == pytest.approx(0.5 * (14.0 / 15.0), rel=1e-5)


def test_without_monitoring_no_depth_metric_is_logged():
    model = trainer(monitor=False)
    history = model.fit(batches(2), validation_data=batches(1), epochs=1, verbose=0)
    assert not any("abs_rel" in k or "a1" in k for k in history.history), history.history.keys()


# ------------------------------------------------------------------------------------------------ finite check
def test_nonfinite_loss_stops_naming_the_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
    model = trainer()
    with pytest.raises(NonFiniteError) as info:
        fit_trainer(model, tmp_path, batches(6, nan_at=3).repeat(), epochs=1, steps_per_epoch=6,
                    checkpoint_every_steps=1, log=lambda *_: None)
    message = str(info.value)
    assert "step 4" in message and "'loss'" in message and "'l1'" in message and "ckpt-3" in message, message
    assert "train.on_nonfinite=skip" in message
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-3"))
    tensors = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    floats = [t for t in tensors if isinstance(t, np.ndarray) and np.issubdtype(t.dtype, np.floating) and t.size > 1]
    assert floats and all(np.all(np.isfinite(t)) for t in floats)
    assert not list((tmp_path / "checkpoints").glob("ckpt-4*"))


def test_skip_mode_skips_and_counts_the_nonfinite_step(tmp_path):
    model = trainer(on_nonfinite="skip")
    assert isinstance(model.optimizer, SkipNonFiniteOptimizer)
    result = fit_trainer(model, tmp_path, batches(6, nan_at=3).repeat(), epochs=1, steps_per_epoch=6,
                         log=lambda *_: None)
    logs = result.history[-1]
    assert logs["nonfinite_steps"][-1] == 1.0
    assert math.isfinite(logs["loss"][-1])  # the trackers ignored the skipped step
    assert int(model.optimizer.iterations.numpy()) == 5  # the step counter did not advance on the skipped step
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_skip_mode_equals_training_without_the_bad_batch():
    good = batches(6, nan_at=None)
    with_nan = batches(6, nan_at=3)
    skipping = trainer(on_nonfinite="skip")
    skipping.fit(with_nan, epochs=1, verbose=0)
    reference = trainer()
    reference.fit(good.enumerate().filter(lambda i, b: i != 3).map(lambda i, b: b), epochs=1, verbose=0)
    for a, b in zip(skipping.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------ groups
def test_optimizer_groups_step_their_own_variables():
    keras.utils.set_random_seed(3)
    model = PlainDepth(second_group=True)
    frozen = keras.optimizers.SGD(0.0)  # the head's own optimizer with LR 0: its weights must not move
    model.compile(optimizer=keras.optimizers.SGD(0.1), group_optimizers={"head": frozen})
    head_before, net_before = weights(model.head), weights(model.net)
    model.fit(batches(2), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(head_before, weights(model.head)))
    assert not all(np.array_equal(a, b) for a, b in zip(net_before, weights(model.net)))
    assert int(frozen.iterations.numpy()) == 2
    with pytest.raises(ValueError, match="not variable groups"):
        PlainDepth().compile(optimizer="adam", group_optimizers={"segmentation": keras.optimizers.Adam()})


# ------------------------------------------------------------------------------------------------ strategies
def test_strategy_fit_reads_the_data_once_and_trains_on_the_same_batches():
    """Keras 3 under a strategy reads a first pass of the data to build the model; the core skips it (base.py).

    Measured with the hook removed: the generator starts twice and the reshuffled second pass gives other weights.
    """
    def run(strategy):
        starts = []
        images = np.random.default_rng(5).random((6, 2, 8, 8, 3)).astype(np.float32)

        def generate():
            starts.append(1)
            for image in images:
                yield {"image": image, "depth": 1.0 + image.mean(-1, keepdims=True)}

        spec = {"image": tf.TensorSpec((2, 8, 8, 3), tf.float32), "depth": tf.TensorSpec((2, 8, 8, 1), tf.float32)}
        with strategy.scope():
            model = trainer()  # seeds everything, the shuffle too
        data = tf.data.Dataset.from_generator(generate, output_signature=spec).shuffle(6)
        model.fit(data, epochs=1, verbose=0)
        return len(starts), model.get_weights()

    default_starts, default_weights = run(tf.distribute.get_strategy())
    mirrored_starts, mirrored_weights = run(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert default_starts == mirrored_starts == 1
    for a, b in zip(default_weights, mirrored_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_two_replicas_step_equals_one_device_on_the_global_batch(mirrored_strategy):
    """2 replicas x 2 samples == 1 device x 4 samples: the per-replica loss is divided by num_replicas_in_sync
    and the gradients summed, so loss and weights agree. (Without the division the step is twice as large: the
    weights differ by far more than the tolerance.) The full self-supervised family: test_self_supervised.py
    (marked slow)."""
    rng = np.random.default_rng(9)
    image = rng.random((4, 8, 8, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensors({"image": image, "depth": 1.0 + image.mean(-1, keepdims=True)}).repeat()
    single = trainer(lr=0.05)
    single.compile(optimizer=keras.optimizers.SGD(0.05))
    start = weights(single)
    loss_single = single.fit(data, epochs=1, steps_per_epoch=2, verbose=0).history["loss"][0]
    with mirrored_strategy.scope():
        mirrored = trainer(lr=0.05)
        mirrored.set_weights(start)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.05))
    loss_mirrored = mirrored.fit(data, epochs=1, steps_per_epoch=2, verbose=0).history["loss"][0]
    np.testing.assert_allclose(loss_mirrored, loss_single, rtol=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(single.get_weights(), start)]
    assert all(moved)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------ resume
class StopAfter(keras.callbacks.Callback):
    def __init__(self, n):
        super().__init__()
        self.n, self.seen = n, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            self.model.stop_training = True


def test_mid_epoch_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    data = batches(6, seed=1)  # 2 epochs x 3 steps, every batch different
    reference = trainer()
    fit_trainer(reference, tmp_path / "ref", data.repeat(), epochs=2, steps_per_epoch=3, log=lambda *_: None)

    # "Killed" after 4 batches (mid-epoch 2), with checkpoints every 2 steps: the latest is ckpt-4.
    interrupted = trainer()
    original_fit = interrupted.fit

    def fit_then_stop(*args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [StopAfter(4)]
        return original_fit(*args, **kwargs)

    monkeypatch.setattr(interrupted, "fit", fit_then_stop)
    fit_trainer(interrupted, tmp_path / "run", data.repeat(), epochs=2, steps_per_epoch=3, checkpoint_every_steps=2,
                log=lambda *_: None)
    messages = []
    resumed = trainer(seed=99)  # fresh, different weights: everything must come from the checkpoint
    result = fit_trainer(resumed, tmp_path / "run", data.repeat(), epochs=2, steps_per_epoch=3,
                         checkpoint_every_steps=2, log=messages.append)
    assert result.start_step == 4 and result.end_step == 6
    assert any("ckpt-4" in m and "4 training steps done" in m for m in messages), messages
    assert int(resumed.optimizer.iterations.numpy()) == 6
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_partial_checkpoint_files_are_removed(tmp_path):
    model = trainer()
    fit_trainer(model, tmp_path, batches(2).repeat(), epochs=1, steps_per_epoch=2, log=lambda *_: None)
    ckpt = tmp_path / "checkpoints"
    (ckpt / "ckpt-3_temp").mkdir()
    (ckpt / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 10)
    (ckpt / "ckpt-5.index").write_bytes(b"orphan")  # renamed into place, killed before the index was replaced
    removed = clean_partial_checkpoints(ckpt)
    assert sorted(removed) == ["ckpt-3_temp", "ckpt-5.index"]
    assert (ckpt / "ckpt-2.index").is_file() and (ckpt / "checkpoint").is_file()
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-2")
