"""One- and two-stage SDDR inference (tfdepth.models.sddr_inference; specs/sddr.md §3.3, §6).

"Two-stage inference of an image whose base equals the truth returns it unchanged up to scale": with random
weights N_r is not an identity, so the property is tested where it is meaningful, on the machinery around the
network. A refiner that answers every window with its input up to an arbitrary per-window affine map (what a
perfect N_r does when its inputs are already right: relative depth is defined only up to scale and shift, and
SDDR's noise model calls exactly this "local inconsistency") must give back the truth through the least-squares
alignment and the feathered merge: exactly when nothing is resampled (windows of the network size), and within
the resampling error through the full one-stage + two-stage pipeline. A window flipped by mistake is caught.
The real network then runs both modes at a small size.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.sddr import SDDRNet
from tfdepth.models.sddr_inference import network_size_for, one_stage_tf, refine_depth, two_stage_tf


def _truth(height, width, sharp=True):
    rows, cols = np.mgrid[0:height, 0:width]
    depth = 1.0 + rows / height + 0.5 * np.sin(3 * cols / width)
    if sharp:
        depth[height // 4: height // 2, width // 5: width // 2] = 3.0
    return depth.astype(np.float32)[None, :, :, None]


def _affine_refiner(source="low", flip=False):
    def refine(low, high):
        x = low if source == "low" else high
        n = tf.shape(x)[0]
        scale = 0.5 + tf.cast(tf.range(n), tf.float32)[:, None, None, None]
        out = scale * x + 3.0 - scale
        return tf.reverse(out, axis=[2]) if flip else out

    return refine


def _aligned_error(pred, truth):
    a = np.vstack([pred.ravel(), np.ones(pred.size)]).T
    coef, *_ = np.linalg.lstsq(a, truth.ravel(), rcond=None)
    return np.abs(a @ coef - truth.ravel()).max() / np.ptp(truth)


def test_two_stage_returns_a_true_base_unchanged_when_nothing_resamples():
    truth = _truth(254, 254)  # windows: 2x2 at overlap 0 and 3x3 at 0.5 are exactly 128x128 on 254x254
    steps = ((2, 0.0), (3, 0.5))
    for source in ("low", "high"):
        out = two_stage_tf(_affine_refiner(source), truth, truth, window_hw=(128, 128), steps=steps,
                           initial=truth).numpy()
        assert _aligned_error(out, truth) < 1e-5, source
    flipped = two_stage_tf(_affine_refiner(flip=True), truth, truth, window_hw=(128, 128), steps=steps,
                           initial=truth).numpy()
    assert _aligned_error(flipped, truth) > 0.1


def test_full_pipeline_returns_a_true_base_up_to_scale_within_resampling_error():
    truth = _truth(200, 300, sharp=False)
    out = two_stage_tf(_affine_refiner(), truth, truth, network_hw=(128, 128), window_hw=(128, 128)).numpy()
    assert out.shape == truth.shape
    assert _aligned_error(out, truth) < 0.02
    one = one_stage_tf(_affine_refiner(), truth, truth, (128, 128)).numpy()
    assert one.shape == truth.shape and _aligned_error(one, truth) < 0.02


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(5)
    return SDDRNet()


def test_real_network_one_and_two_stage(net):
    truth = _truth(160, 240)[0, :, :, 0]
    low = truth[::4, ::4]  # a coarse base prediction (its own resolution, same aspect)
    one = refine_depth(net, low, truth, mode="one_stage", size=128)
    two = refine_depth(net, low, truth, mode="two_stage", size=128, window_size=128, output_size=(160, 240))
    for out in (one, two):
        assert out.shape == (160, 240) and np.isfinite(out).all()
    assert network_size_for(160, 240, 256, keep_aspect=True) == (128, 256)
    assert network_size_for(1080, 1920, 1024, keep_aspect=True) == (640, 1024)


def test_bad_inputs(net):
    truth = _truth(160, 240)[0, :, :, 0]
    with pytest.raises(ValueError, match="multiple of 128"):
        refine_depth(net, truth, truth, size=100)
    with pytest.raises(ValueError, match="aspect ratio"):
        refine_depth(net, truth[:, :120], truth, size=128)
    bad = truth.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="depth_high has 1 non-finite"):
        refine_depth(net, truth, bad, size=128)
    with pytest.raises(ValueError, match="cannot hold"):
        refine_depth(net, truth[:2, :3], truth[:2, :3], mode="two_stage", size=128, window_size=128)
    with pytest.raises(ValueError, match="mode"):
        refine_depth(net, truth, truth, mode="three_stage")


def test_zeros_and_constant_base_maps_give_finite_output(net):
    truth = _truth(128, 128)[0, :, :, 0]
    with_zeros = truth.copy()
    with_zeros[:10] = 0.0  # zeros are ordinary values (a min-max-normalised map has its minimum at 0)
    out = refine_depth(net, with_zeros, with_zeros, size=128)
    assert np.isfinite(out).all() and np.ptp(out) > 0
    const = np.full((128, 128), 7.0, np.float32)
    np.testing.assert_array_equal(refine_depth(net, const, const, size=128), 0.0)  # documented fallback
    # Two-stage on a constant map: every window aligns to the constant base (the refiner's answer is irrelevant).
    two = refine_depth(_affine_refiner(), const, const, mode="two_stage", size=128, window_size=128)
    np.testing.assert_allclose(two, 0.0, atol=1e-6)
