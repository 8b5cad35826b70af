"""SDDR's training on the trainer core: the config sections and their errors, the batches of
tfdepth/data/refinement_data.py (targets, base maps, augmentation, checked against independent numpy), and the
trainer's two stages (tfdepth/train/refinement.py) optimising exactly Eq. 10 with the self-distilled labels.

The network is the full N_r at 128x128 (its smallest input) with one attention block, called eagerly: tracing the
full train step costs about 100 s (tests/test_sddr_runs.py, marked slow, trains through train.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import ConfigError, load_config
from tfdepth.config.sddr import SDDR_STAGES
from tfdepth.data.refinement_data import BATCH_KEYS, inverse_depth, refinement_dataset, sample_seed
from tfdepth.data.synthetic.degrade import degrade_depth
from tfdepth.losses.edges import sddr_loss
from tfdepth.models import build_model
from tfdepth.recipes import get_recipe
from tfdepth.train.refinement import STAGES, RefinementTrainer

N = 128


def _config(tmp_path=None, *overrides):
    base = ["data.render_height=256", "data.render_width=256", f"data.height={N}", f"data.width={N}",
            "data.train_scenes=1", "data.validation_scenes=1", "data.test_scenes=1", "data.batch_size=3",
            "loss.base_low_size=32", "loss.base_high_size=256"]
    if tmp_path is not None:
        base.append(f"data.data_dir={tmp_path}")
    return load_config("configs/sddr_synthetic.yaml", base + list(overrides))


def test_configs_load_and_split_into_the_papers_stages():
    assert STAGES == SDDR_STAGES
    recipe = get_recipe("sddr")
    for path in ("configs/sddr_synthetic.yaml", "configs/sddr_gpu.yaml"):
        config = load_config(path)
        recipe.check_config(config)
        assert recipe.stages(config) == [("supervised", 1), ("self_distillation", config.train.epochs - 1)]
        assert (config.loss.grad_weight, config.loss.fusion_weight) == (0.5, 0.1)  # Eq. 10, App. B.2
    assert load_config("configs/sddr_gpu.yaml").loss.distill_iterations == 3
    assert recipe.stages(load_config("configs/sddr_synthetic.yaml", ["loss.supervised_epochs=0"])) == [
        ("self_distillation", 3)]


@pytest.mark.parametrize("overrides, message", [
    (["data.render_height=128", "data.render_width=128"], "at least the network size"),
    (["data.width=384", "data.render_width=768"], "must be equal"),
    (["data.height=200"], "multiple of 128"),
    (["data.render_width=600"], "aspect"),
    (["data.dataset=kitti"], "synthetic scenes"),
])
def test_bad_sizes_and_datasets_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_recipe("sddr").check_config(load_config("configs/sddr_synthetic.yaml", overrides))


@pytest.mark.parametrize("override, key", [
    ("loss.fusion_bands=30", "loss.fusion_a x loss.fusion_bands"), ("loss.omega_keys=[omega_9]", "loss.omega_keys"),
    ("loss.distill_iterations=4", "loss.distill_overlaps"), ("loss.label_from=rgb", "loss.label_from"),
    ("loss.invert_probability=2", "loss.invert_probability"),
])
def test_bad_loss_values_fail_when_read(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("configs/sddr_synthetic.yaml", [override])


def _numpy_area(x, factor):
    h, w = x.shape
    return x.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def test_batches_hold_exact_targets_and_the_noise_models_base_maps(tmp_path):
    config = _config(tmp_path, "data.flip=false")
    batch = next(iter(refinement_dataset(config.data, config.loss, "validation", training=False)))
    assert set(batch) == set(BATCH_KEYS)
    assert batch["depth_high_full"].shape == (3, 256, 256, 1)
    for key in ("depth_low", "depth_high", "target", "mask", "depth"):
        assert batch[key].shape == (3, N, N, 1), key
    from tfdepth.recipes.sddr import SddrRecipe

    frames = list(SddrRecipe()._frames(config, "validation"))
    for i, frame in enumerate(frames):
        depth = frame["depth"]
        disparity = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-9), 0.0)
        disparity /= disparity.max()
        np.testing.assert_allclose(batch["target"][i, ..., 0], disparity[1::2, 1::2], rtol=1e-5, atol=1e-6)  # TF nearest
        np.testing.assert_array_equal(batch["mask"][i, ..., 0], (depth > 0)[1::2, 1::2])
        scene, index = (int(x) for x in frame["name"].split("_")[2::2])
        maps = degrade_depth(depth, sample_seed(config.data.seed, scene, index), low_size=32, high_size=256)
        np.testing.assert_allclose(batch["depth_high_full"][i, ..., 0], maps["depth_high"], atol=1e-6)
        for key in ("depth_low", "depth_high"):
            np.testing.assert_allclose(batch[key][i, ..., 0], _numpy_area(maps[key], 2), atol=1e-5)
            np.testing.assert_allclose(frame[key], maps[key], atol=1e-6)


def test_training_augmentation_flips_and_inverts_inputs_and_target_together(tmp_path):
    config = _config(tmp_path, "data.flip=false", "loss.invert_probability=1.0")
    plain = next(iter(refinement_dataset(config.data, config.loss, "train", training=False)))
    aug = next(iter(refinement_dataset(config.data, config.loss, "train", training=True)))
    # The training pipeline shuffles: pair the samples by their (never augmented) monitoring map.
    order = [int(np.argmin([np.abs(a - p).max() for p in plain["depth"].numpy()])) for a in aug["depth"].numpy()]
    assert sorted(order) == [0, 1, 2]
    flipped = 0
    for i, j in enumerate(order):
        for key in ("depth_low", "depth_high"):
            candidates = [1.0 - plain[key][j], 1.0 - plain[key][j][::-1]]
            k = int(np.argmin([np.abs(aug[key][i] - c).max() for c in candidates]))
            np.testing.assert_allclose(aug[key][i], candidates[k], atol=1e-5)
        np.testing.assert_allclose(aug["target"][i], -(plain["target"][j][::-1] if k else plain["target"][j]),
                                   atol=1e-6)
        flipped += k
    assert 0 < flipped < 3  # p = 1/2 per sample: with this seed some samples flip and some do not


def _tiny_net(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model({"name": "sddr", "height": N, "width": N, "attention_blocks": 1})["sddr"]


def _synthetic_batch(seed=0):
    """A step edge (near square on a far ramp): exact target, a blurred low map, a shifted sharp high map."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:N, 0:N] / N
    target = 0.3 + 0.2 * y + 0.4 * ((np.abs(x - 0.5) < 0.2) & (np.abs(y - 0.5) < 0.2))
    import cv2

    low = cv2.GaussianBlur(target.astype(np.float32), (0, 0), 4.0)
    high = target + 0.05 * (x > 0.5) + rng.normal(0, 0.01, target.shape)
    norm = lambda a: ((a - a.min()) / (a.max() - a.min())).astype(np.float32)[None, :, :, None]  # noqa: E731
    return {"depth_low": norm(low), "depth_high": norm(high), "depth_high_full": norm(high),
            "target": target.astype(np.float32)[None, :, :, None], "mask": np.ones((1, N, N, 1), np.float32),
            "depth": target.astype(np.float32)[None, :, :, None]}


def test_each_stage_computes_eq_10_with_the_current_labels():
    net = _tiny_net()
    batch = {k: tf.constant(v) for k, v in _synthetic_batch().items()}
    labels = {"iterations": 1, "overlaps": (0.2,)}
    supervised = RefinementTrainer(net, stage="supervised", label_options=labels)
    distill = RefinementTrainer(net, stage="self_distillation", label_options=labels)
    assert supervised.loss_terms == ("gt",) and distill.loss_terms == ("gt", "grad", "fusion")

    outputs = net({"depth_low": batch["depth_low"], "depth_high": batch["depth_high"]}, training=False)
    g_s = distill.pseudo_labels(batch)["g_s"]
    assert g_s.shape == (1, N, N, 1) and float(tf.reduce_max(g_s)) > 0
    reference = sddr_loss(outputs, batch["target"], batch["mask"] > 0.5, g_s)  # Eq. 10: 0.5 and 0.1
    terms = distill.compute_losses(batch, training=False)
    for key in ("gt", "grad", "fusion", "loss"):
        np.testing.assert_allclose(float(terms[key]), float(reference[key][0]), rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(float(terms["loss"]), float(terms["gt"] + 0.5 * terms["grad"] + 0.1 * terms["fusion"]),
                               rtol=1e-5)
    assert float(terms["grad"]) > 0 and float(terms["fusion"]) > 0

    first = supervised.compute_losses(batch, training=False)
    assert set(first) == {"gt", "loss"}
    np.testing.assert_allclose(float(first["loss"]), float(reference["gt"][0]), rtol=1e-5)


def test_trainer_refuses_unknown_stages_options_and_batches():
    net = _tiny_net()
    with pytest.raises(ValueError, match="stage must be one of"):
        RefinementTrainer(net, stage="joint")
    with pytest.raises(ValueError, match="label_options: unknown keys"):
        RefinementTrainer(net, stage="supervised", label_options={"windows": 3})
    trainer = RefinementTrainer(net, stage="supervised")
    with pytest.raises(KeyError, match="missing target, mask"):
        trainer.compute_losses({"depth_low": tf.zeros([1, N, N, 1]), "depth_high": tf.zeros([1, N, N, 1])})
