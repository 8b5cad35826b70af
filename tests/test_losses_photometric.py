"""Tests for tfdepth.losses.photometric against numpy references and analytic cases (spec A.6)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.losses import min_reprojection, photometric_error, ssim_dissimilarity
from tfdepth.losses.photometric import PhotometricTarget, photometric_target

C1 = 0.01**2
C2 = 0.03**2


def ssim_dissimilarity_reference(x, y):
    """Per-pixel loop: explicit reflect pad, then statistics of each 3x3 window with numpy's mean/var."""
    b, h, w, c = x.shape
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    yp = np.pad(y.astype(np.float64), pad, mode="reflect")
    out = np.empty((b, h, w, c))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    wx = xp[n, i : i + 3, j : j + 3, k]
                    wy = yp[n, i : i + 3, j : j + 3, k]
                    mx, my = wx.mean(), wy.mean()
                    vx, vy = wx.var(), wy.var()
                    cov = ((wx - mx) * (wy - my)).mean()
                    ssim = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
                    out[n, i, j, k] = np.clip((1 - ssim) / 2, 0, 1)
    return out


def photometric_reference(pred, target, alpha=0.85):
    ssim = ssim_dissimilarity_reference(pred, target).mean(-1, keepdims=True)
    l1 = np.abs(pred.astype(np.float64) - target).mean(-1, keepdims=True)
    return alpha * ssim + (1 - alpha) * l1


# ---------------------------------------------------------------------------------------------------- SSIM


def test_ssim_matches_numpy_reference(rng):
    x = rng.random((2, 5, 7, 3), dtype=np.float32)
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    got = ssim_dissimilarity(x, y).numpy()
    assert got.shape == (2, 5, 7, 3)
    np.testing.assert_allclose(got, ssim_dissimilarity_reference(x, y), atol=2e-5)


def test_ssim_identical_images_give_zero(rng):
    x = rng.random((1, 6, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(ssim_dissimilarity(x, x).numpy(), 0.0, atol=1e-5)


@pytest.mark.parametrize("a, b", [(0.2, 0.7), (0.0, 1.0), (0.5, 0.5), (0.9, 0.1)])
def test_ssim_constant_images_analytic(a, b):
    # Constant windows: sigma terms vanish, the contrast/structure factor is C2 / C2 = 1.
    ssim = (2 * a * b + C1) / (a**2 + b**2 + C1)
    x = np.full((1, 4, 5, 3), a, np.float64)
    y = np.full((1, 4, 5, 3), b, np.float64)
    np.testing.assert_allclose(ssim_dissimilarity(x, y).numpy(), (1 - ssim) / 2, atol=1e-10)
    # float32: E[x^2] - E[x]^2 cancels to ~1e-8 instead of 0, which is ~1e-4 of C2.
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    np.testing.assert_allclose(ssim_dissimilarity(x32, y32).numpy(), (1 - ssim) / 2, atol=1e-4)


def test_ssim_follows_tf_image_ssim_trend(rng):
    # Loose cross-check only: different windows (3x3 box vs 11x11 Gaussian), same ordering with noise level.
    x = rng.random((1, 32, 32, 3), dtype=np.float32)
    ours, theirs = [], []
    for noise in (0.02, 0.1, 0.3):
        y = np.clip(x + noise * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
        ours.append(float(tf.reduce_mean(ssim_dissimilarity(x, y))))
        theirs.append(float(tf.image.ssim(x, y, max_val=1.0)[0]))
    assert ours[0] < ours[1] < ours[2]
    assert theirs[0] > theirs[1] > theirs[2]


def test_ssim_rejects_bad_inputs(rng):
    x = rng.random((1, 4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="`x` and `y` must have the same shape"):
        ssim_dissimilarity(x, x[:, :3])
    with pytest.raises(ValueError, match="rank 4"):
        ssim_dissimilarity(x[0], x[0])
    with pytest.raises(TypeError, match="floating-point"):
        ssim_dissimilarity((x * 255).astype(np.uint8), x)
    with pytest.raises(ValueError, match="height >= 2"):
        ssim_dissimilarity(x[:, :1], x[:, :1])


# ---------------------------------------------------------------------------------------------------- pe


def test_photometric_error_matches_numpy_reference(rng):
    pred = rng.random((2, 4, 6, 3), dtype=np.float32)
    target = rng.random((2, 4, 6, 3), dtype=np.float32)
    got = photometric_error(pred, target).numpy()
    assert got.shape == (2, 4, 6, 1)
    np.testing.assert_allclose(got, photometric_reference(pred, target), atol=2e-5)
    got_half = photometric_error(pred, target, ssim_weight=0.5).numpy()
    np.testing.assert_allclose(got_half, photometric_reference(pred, target, alpha=0.5), atol=2e-5)


def test_photometric_error_without_ssim_is_mean_abs_diff(rng):
    pred = rng.random((1, 3, 5, 3), dtype=np.float32)
    target = rng.random((1, 3, 5, 3), dtype=np.float32)
    got = photometric_error(pred, target, ssim_weight=0).numpy()
    np.testing.assert_allclose(got, np.abs(pred - target).mean(-1, keepdims=True), atol=1e-6)


def test_photometric_error_gradient_is_finite(rng):
    pred = tf.Variable(rng.random((1, 4, 4, 3), dtype=np.float32))
    target = rng.random((1, 4, 4, 3), dtype=np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(photometric_error(pred, target))
    grad = tape.gradient(loss, pred).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def _numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64), one element at a time."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def test_photometric_error_gradient_matches_finite_differences_of_the_numpy_reference(rng):
    """The hand-derived backward pass (SSIM through its window moments, the box filters' adjoints, the reflection
    pad's, and the L1 sign) against central differences of the per-window numpy loop, for the prediction and for
    the target, on random weights per pixel so every position's gradient is checked."""
    pred = rng.uniform(0.1, 0.9, (1, 4, 5, 3))
    target = np.clip(pred + 0.15 * rng.standard_normal(pred.shape), 0, 1)
    weights = rng.uniform(0.5, 1.5, (1, 4, 5, 1))

    def loss_np(p, t):
        return float((photometric_reference(p, t) * weights).sum())

    x, y = tf.Variable(pred), tf.Variable(target)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(photometric_error(x, y) * weights)
    g_pred, g_target = tape.gradient(loss, [x, y])
    np.testing.assert_allclose(loss.numpy(), loss_np(pred, target), rtol=1e-12)
    np.testing.assert_allclose(g_pred.numpy(), _numeric_gradient(lambda p: loss_np(p, target), pred), atol=2e-8)
    np.testing.assert_allclose(g_target.numpy(), _numeric_gradient(lambda t: loss_np(pred, t), target), atol=2e-8)
    # Through photometric_target too (the trainer's path), and with another SSIM weight.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(photometric_error(x, photometric_target(y), ssim_weight=0.4) * weights)
    g_pred, g_target = tape.gradient(loss, [x, y])
    ref = lambda p, t: float((photometric_reference(p, t, alpha=0.4) * weights).sum())  # noqa: E731
    np.testing.assert_allclose(g_pred.numpy(), _numeric_gradient(lambda p: ref(p, target), pred), atol=2e-8)
    np.testing.assert_allclose(g_target.numpy(), _numeric_gradient(lambda t: ref(pred, t), target), atol=2e-8)


def test_photometric_error_gradient_equals_autodiff_in_float32_and_under_xla(rng):
    """float32 at a training size: the hand gradient equals autodiff of the same formula (ssim_dissimilarity + L1)
    to float32 rounding, eagerly, in tf.function and under XLA; an injected mistake (L1 sign flipped) is caught."""
    pred = tf.constant(rng.uniform(0, 1, (2, 12, 20, 3)).astype(np.float32))
    target = photometric_target(rng.uniform(0, 1, (2, 12, 20, 3)).astype(np.float32))

    def autodiff_form(p, l1_sign=1.0):
        ssim = tf.reduce_mean(ssim_dissimilarity(p, target), -1, keepdims=True)
        l1 = tf.reduce_mean(tf.abs(target.image - p), -1, keepdims=True)
        return 0.85 * ssim + 0.15 * l1_sign * l1

    def grad_of(fn):
        with tf.GradientTape() as tape:
            tape.watch(pred)
            loss = tf.reduce_mean(fn(pred))
        return loss, tape.gradient(loss, pred)

    ref_loss, ref = grad_of(autodiff_form)
    scale = np.abs(ref.numpy()).max()
    for label, run in (("eager", lambda: grad_of(lambda p: photometric_error(p, target))),
                       ("function", tf.function(lambda: grad_of(lambda p: photometric_error(p, target)))),
                       ("xla", tf.function(lambda: grad_of(lambda p: photometric_error(p, target)), jit_compile=True))):
        loss, got = run()
        np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=1e-6, err_msg=label)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5 * scale, err_msg=label)
    _, wrong = grad_of(lambda p: autodiff_form(p, l1_sign=-1.0))
    assert np.abs(wrong.numpy() - ref.numpy()).max() > 1000 * 1e-5 * scale  # far outside the tolerance


def test_photometric_error_rejects_bad_weight(rng):
    x = rng.random((1, 4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="ssim_weight"):
        photometric_error(x, x, ssim_weight=1.5)


# ---------------------------------------------------------------------------------------------------- min reprojection


def test_min_reprojection_hand_built_minimum(rng):
    reps = [rng.random((2, 3, 4, 1), dtype=np.float32) for _ in range(2)]
    idents = [rng.random((2, 3, 4, 1), dtype=np.float32) for _ in range(2)]
    loss, selected = min_reprojection(reps, idents, noise_std=0.0)
    all_maps = np.concatenate(idents + reps, axis=-1)
    np.testing.assert_allclose(loss.numpy(), all_maps.min(-1, keepdims=True))
    expected_sel = np.concatenate(idents, -1).min(-1) < np.concatenate(reps, -1).min(-1)
    np.testing.assert_array_equal(selected.numpy()[..., 0], expected_sel.astype(np.float32))
    assert 0 < expected_sel.mean() < 1  # both outcomes are exercised


def test_automask_selects_identity_where_it_is_smaller():
    rep = np.full((1, 2, 4, 1), 0.5, np.float32)
    ident = np.full((1, 2, 4, 1), 0.8, np.float32)
    ident[:, :, :2] = 0.2
    loss, selected = min_reprojection([rep], [ident], seed=(1, 2))
    np.testing.assert_array_equal(selected.numpy()[0, :, :, 0], [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(loss.numpy()[0, :, :, 0], [[0.2, 0.2, 0.5, 0.5]] * 2, atol=1e-4)


def test_static_scene_is_fully_masked(rng):
    target = rng.random((1, 6, 8, 3), dtype=np.float32)
    sources = [target.copy(), target.copy()]  # the camera did not move
    # A wrongly predicted motion: warped sources are shifted copies, so reprojection errors are > 0.
    warped = [np.roll(target, 1, axis=2), np.roll(target, -1, axis=1)]
    reps = [photometric_error(w, target) for w in warped]
    idents = [photometric_error(s, target) for s in sources]
    loss, selected = min_reprojection(reps, idents, seed=(3, 4))
    np.testing.assert_array_equal(selected.numpy(), 1.0)
    assert np.abs(loss.numpy()).max() < 1e-4  # only the tie-breaking noise is left


def test_noise_only_breaks_ties():
    value = 0.3
    rep = np.full((1, 16, 16, 1), value, np.float32)
    ident = rep.copy()
    ident[:, :, 8:] += 1e-3  # no tie on the right: far larger than the noise
    loss, selected = min_reprojection([rep], [ident], seed=(5, 6), noise_std=1e-5)
    loss, selected = loss.numpy()[0, :, :, 0], selected.numpy()[0, :, :, 0]
    tied = selected[:, :8]
    assert 0.2 < tied.mean() < 0.8  # exact ties go either way
    np.testing.assert_array_equal(selected[:, 8:], 0.0)
    np.testing.assert_allclose(loss[:, 8:], value, atol=1e-7)
    offset = loss[:, :8] - value  # min(noise, 0): non-positive and of order 1e-5
    assert offset.max() <= 1e-7 and 1e-6 < -offset.min() < 6e-5


def test_average_reprojection_path(rng):
    reps = [rng.random((1, 3, 3, 1), dtype=np.float32) for _ in range(3)]
    idents = [rng.random((1, 3, 3, 1), dtype=np.float32) for _ in range(3)]
    loss, selected = min_reprojection(reps, idents, average_reprojection=True, noise_std=0.0)
    mean_rep = np.mean(reps, axis=0)
    mean_ident = np.mean(idents, axis=0)
    np.testing.assert_allclose(loss.numpy(), np.minimum(mean_rep, mean_ident), atol=1e-6)
    np.testing.assert_array_equal(selected.numpy(), (mean_ident < mean_rep).astype(np.float32))
    # min_reprojection off and automask off: the plain average over sources (Monodepth2 baseline).
    loss, selected = min_reprojection(reps, automask=False, average_reprojection=True)
    np.testing.assert_allclose(loss.numpy(), mean_rep, atol=1e-6)
    np.testing.assert_array_equal(selected.numpy(), 0.0)


def test_automask_off_ignores_identity(rng):
    reps = [rng.random((2, 3, 3, 1), dtype=np.float32) for _ in range(2)]
    idents = [np.zeros((2, 3, 3, 1), np.float32)] * 2
    loss, selected = min_reprojection(reps, idents, automask=False)
    np.testing.assert_allclose(loss.numpy(), np.minimum(*reps))
    np.testing.assert_array_equal(selected.numpy(), 0.0)


def test_stacked_tensor_equals_list(rng):
    reps = [rng.random((1, 3, 4, 1), dtype=np.float32) for _ in range(2)]
    idents = [rng.random((1, 3, 4, 1), dtype=np.float32) for _ in range(2)]
    a = min_reprojection(reps, idents, seed=(1, 1))
    b = min_reprojection(np.concatenate(reps, -1), np.concatenate(idents, -1), seed=(1, 1))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_gradient_reaches_only_the_selected_source(rng):
    r1 = tf.Variable(rng.random((1, 4, 4, 1), dtype=np.float32))
    r2 = tf.Variable(rng.random((1, 4, 4, 1), dtype=np.float32))
    ident = np.full((1, 4, 4, 1), 0.5, np.float32)
    with tf.GradientTape() as tape:
        loss, _ = min_reprojection([r1, r2], [ident], noise_std=0.0)
        total = tf.reduce_sum(loss)
    g1, g2 = tape.gradient(total, [r1, r2])
    r1v, r2v = r1.numpy(), r2.numpy()
    np.testing.assert_array_equal(g1.numpy(), ((r1v < r2v) & (r1v < 0.5)).astype(np.float32))
    np.testing.assert_array_equal(g2.numpy(), ((r2v < r1v) & (r2v < 0.5)).astype(np.float32))


def test_ties_send_the_gradient_to_the_first_minimum_and_count_as_identity():
    """On an exact tie the whole gradient goes to the first map holding the minimum (PyTorch's torch.min(dim) in
    the official code; TF's reduce_min would give each tied map half), and an identity error equal to the best
    reprojection error selects the pixel (argmin's first minimum, identity maps first)."""
    r1 = tf.Variable(np.full((1, 2, 3, 1), 0.4, np.float32))
    r2 = tf.Variable(np.full((1, 2, 3, 1), 0.4, np.float32))  # ties r1 everywhere
    ident = np.full((1, 2, 3, 1), 0.9, np.float32)
    ident[0, 0] = 0.4  # ties both reprojection errors on the first row
    with tf.GradientTape() as tape:
        loss, selected = min_reprojection([r1, r2], [ident], noise_std=0.0)
        total = tf.reduce_sum(loss)
    g1, g2 = tape.gradient(total, [r1, r2])
    np.testing.assert_array_equal(selected.numpy()[0, :, :, 0], [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(g1.numpy()[0, :, :, 0], [[0, 0, 0], [1, 1, 1]])  # row 0: the identity won
    np.testing.assert_array_equal(g2.numpy(), 0.0)
    # Injected mistake: reduce_min over the stacked maps splits the tied gradient instead.
    with tf.GradientTape() as tape:
        split = tf.reduce_sum(tf.reduce_min(tf.concat([r1, r2], -1), -1))
    assert np.allclose(tape.gradient(split, r1).numpy(), 0.5)


def test_min_reprojection_rejects_a_stacked_tensor_of_unknown_width():
    spec = tf.TensorSpec([1, 2, 2, None], tf.float32)
    fn = tf.function(lambda e: min_reprojection(e, automask=False)[0], input_signature=[spec])
    with pytest.raises(ValueError, match="reprojection_errors.*static number"):
        fn.get_concrete_function()


def test_seeded_noise_is_deterministic_and_works_in_tf_function():
    rep = np.full((2, 8, 8, 1), 0.3, np.float32)  # exact ties everywhere: the result depends on the noise
    ident = rep.copy()
    eager_a = min_reprojection([rep, rep], [ident, ident], seed=(7, 8))
    eager_b = min_reprojection([rep, rep], [ident, ident], seed=(7, 8))
    other = min_reprojection([rep, rep], [ident, ident], seed=(9, 8))
    np.testing.assert_array_equal(eager_a[0].numpy(), eager_b[0].numpy())
    assert not np.array_equal(eager_a[0].numpy(), other[0].numpy())

    spec = tf.TensorSpec([None, None, None, 1], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([2], tf.int64)])
    def graph_fn(r, i, seed):
        return min_reprojection([r, r], [i, i], seed=seed)

    graph = graph_fn(rep, ident, tf.constant([7, 8], tf.int64))
    for x, y in zip(eager_a, graph):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_works_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy
    rep = np.full((4, 4, 4, 1), 0.3, np.float32)
    ident = rep + np.linspace(-0.1, 0.1, 4, dtype=np.float32)[:, None, None, None]
    dataset = tf.data.Dataset.from_tensor_slices((rep, ident)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(r, i):
        loss, selected = min_reprojection([r], [i], seed=tf.constant([1, 2], tf.int64))
        return tf.reduce_sum(loss), tf.reduce_sum(selected)

    loss, selected = strategy.run(step, args=batch)
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
    selected = strategy.reduce(tf.distribute.ReduceOp.SUM, selected, axis=None)
    # Identity offsets -0.1, -0.033, +0.033, +0.1 per sample: no ties, so samples 0-1 (2 x 16 px) are masked.
    np.testing.assert_allclose(float(loss), np.minimum(rep, ident).sum(), atol=1e-3)
    assert float(selected) == 32.0


def test_min_reprojection_rejects_bad_inputs(rng):
    rep = rng.random((1, 3, 3, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="identity_errors` is required"):
        min_reprojection([rep])
    with pytest.raises(ValueError, match="empty sequence"):
        min_reprojection([], automask=False)
    with pytest.raises(ValueError, match=r"reprojection_errors\[1\]"):
        min_reprojection([rep, np.concatenate([rep, rep], -1)], automask=False)
    with pytest.raises(ValueError, match="seed"):
        min_reprojection([rep], [rep], seed=(1, 2, 3))
    with pytest.raises(TypeError, match="seed"):
        min_reprojection([rep], [rep], seed=(1.0, 2.0))
    with pytest.raises(ValueError, match="noise_std"):
        min_reprojection([rep], [rep], noise_std=-1.0)
    with pytest.raises(ValueError, match="same \\[B, H, W\\]"):
        min_reprojection([rep], [rep[:, :2]])


def test_photometric_target_gives_the_same_errors_and_gradients_bit_for_bit(rng):
    """One target's statistics reused for several images: the same numbers as passing the image each time."""
    target = tf.constant(rng.uniform(size=(2, 6, 9, 3)).astype(np.float32))
    prepared = photometric_target(target)
    assert isinstance(prepared, PhotometricTarget) and prepared.padded.shape == (2, 8, 11, 3)
    np.testing.assert_allclose(prepared.mean.numpy()[0, 2, 3], target.numpy()[0, 1:4, 2:5].mean(axis=(0, 1)),
                               rtol=1e-5)
    for _ in range(2):
        pred = tf.Variable(rng.uniform(size=(2, 6, 9, 3)).astype(np.float32))
        with tf.GradientTape(persistent=True) as tape:
            plain = photometric_error(pred, target)
            reused = photometric_error(pred, prepared)
        np.testing.assert_array_equal(reused.numpy(), plain.numpy())
        np.testing.assert_array_equal(tape.gradient(reused, pred).numpy(), tape.gradient(plain, pred).numpy())
        np.testing.assert_array_equal(ssim_dissimilarity(pred, prepared).numpy(),
                                      ssim_dissimilarity(pred, target).numpy())
    with pytest.raises(ValueError, match="same shape"):
        photometric_error(tf.zeros([2, 6, 8, 3]), prepared)
    with pytest.raises(ValueError, match="target.*height >= 2"):
        photometric_target(tf.zeros([1, 1, 5, 3]))
