"""Algorithm 1 (RSN ground-truth region support, spec rsn.md §2) on hand-built images whose answer is worked out
here by hand: dense slabs, sparse slabs merged into the next, the final slab swallowing a dense one, flat regions,
strict (code) versus inclusive bounds, class-level versus connected-component regions, support ids by cell or by
value, the constant-depth image, the tf.data op and its errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.data.region_support import add_region_support, region_support_numpy, region_support_targets


def f32_mean(values):
    """Mean of depths as the op sees them: float32 inputs averaged in float64."""
    return float(np.mean(np.asarray(values, np.float32).astype(np.float64)))


def image_from(pixels, width):
    """[(depth, label), ...] -> depth and label maps filled row by row (1 row per `width` pixels)."""
    depth = np.array([p[0] for p in pixels], np.float32).reshape(-1, width)
    labels = np.array([p[1] for p in pixels], np.int32).reshape(-1, width)
    return depth, labels


# --- case 1: sparse slabs merged, final slab taking over a dense one --------------------------------------------
# One region (label 3), depths 1.0 .. 3.5: v = 2.5 / 10 = 0.25 (exact in binary, so slab ends are exact);
# n = 20 pixels, tau = n * v / r = 20 * 0.25 / 2.5 = 2: a slab is dense with >= 3 pixels.
#   [1.00, 1.25): 1.0 1.1 1.2 -> 3, dense                          -> cell A
#   [1.25, 1.50): 1.25 1.3 -> 2, sparse: grow to [1.25, 1.75): + 1.6 -> 3, dense -> cell B
#   [1.75, 2.00): 1.8 1.9 1.95 -> 3, dense                         -> cell C
#   [2.00, 2.25) .. [2.00, 3.00): 0, 0, 1, 2 pixels: sparse, grown each time
#   [2.00, 3.25): 6 pixels, dense, but 3.25 + 0.25 is not < 3.5: the rest [2.0, 3.5] becomes cell D
A = [1.0, 1.1, 1.2]
B = [1.25, 1.3, 1.6]
C = [1.8, 1.9, 1.95]
D = [2.6, 2.9, 3.0, 3.05, 3.1, 3.2, 3.3, 3.4, 3.45, 3.5, 3.5]


def test_slabs_dense_sparse_and_final_by_hand():
    values = A + B + C + D
    assert len(values) == 20
    rng = np.random.default_rng(0)
    perm = rng.permutation(20)  # pixel positions must not matter
    depth, labels = image_from([(values[i], 3) for i in perm], width=5)
    out = region_support_numpy(depth, labels)
    expected_cell = {}
    for cell, members in zip("ABCD", (A, B, C, D)):
        for v in members:
            expected_cell[np.float32(v)] = (cell, f32_mean(members))
    sd = out["region_support"].ravel()
    for value, got in zip(depth.ravel(), sd):
        assert got == pytest.approx(expected_cell[value][1], abs=1e-6), value
    # one region, id 1; four support regions ordered by decreasing depth: D=1, C=2, B=3, A=4
    assert np.all(out["region_ids"] == 1)
    rank = {"D": 1, "C": 2, "B": 3, "A": 4}
    assert [int(s) for s in out["support_ids"].ravel()] == [rank[expected_cell[v][0]] for v in depth.ravel()]
    assert out["region_support"].dtype == np.float32 and out["support_ids"].dtype == np.int32


def test_a_uniform_threshold_mistake_is_caught():
    # Classic slip: calling a slab dense at >= tau instead of > tau turns [1.25, 1.5) (2 pixels, tau = 2) into a
    # support region of its own; the correct algorithm merges it with 1.6 (cell B above).
    values = A + B + C + D
    depth, labels = image_from([(v, 3) for v in values], width=10)
    sd = region_support_numpy(depth, labels)["region_support"].ravel()
    assert sd[3] == sd[4] == sd[5] == pytest.approx(f32_mean(B), abs=1e-6)  # 1.25, 1.3 and 1.6 share one mean
    assert sd[3] != pytest.approx(f32_mean([1.25, 1.3]), abs=1e-3)


# --- case 2: strict (code) versus inclusive bounds ----------------------------------------------------------------
# Region label 3: depths 1.0 .. 3.5 again (v = 0.25), n = 12, tau = 1.2.
#   inclusive: [1, 1.25) = {1.0, 1.05, 1.1, 1.15, 1.2} dense; [1.25, 1.5) = {1.25 .. 1.45} dense; then empty
#              slabs grow until [1.5, 3.5] = {3.4, 3.5}.
#   strict:    (1, 1.25) = {1.05 .. 1.2}; (1.25, 1.5) = {1.3 .. 1.45}; (1.5, 3.5) = {3.4}: the pixels at the
#              region minimum 1.0, at the dense-slab boundary 1.25 and at the maximum 3.5 are holes (SD = SI = 0).
# Region label 7 (flat): {2.0, 2.1}, r = 0.1 < 2v: one support region in both modes. One unlabeled pixel (2.0).
SLAB1 = [1.0, 1.05, 1.1, 1.15, 1.2]
SLAB2 = [1.25, 1.3, 1.35, 1.4, 1.45]
TAIL = [3.4, 3.5]
FLAT = [2.0, 2.1]


def bounds_image():
    pixels = [(v, 3) for v in SLAB1 + SLAB2 + TAIL] + [(v, 7) for v in FLAT] + [(2.0, 0)]
    return image_from(pixels, width=5)


def test_inclusive_bounds_leave_no_holes():
    depth, labels = bounds_image()
    out = region_support_numpy(depth, labels, bounds="inclusive")
    sd = out["region_support"].ravel()
    expected = ([f32_mean(SLAB1)] * 5 + [f32_mean(SLAB2)] * 5 + [f32_mean(TAIL)] * 2 + [f32_mean(FLAT)] * 2 + [0.0])
    np.testing.assert_allclose(sd, expected, atol=1e-6)
    # R: label 7 -> 1, label 3 -> 2 (decreasing raw label), unlabeled -> 0
    assert out["region_ids"].ravel().tolist() == [2] * 12 + [1, 1, 0]
    # SI by decreasing depth: tail 3.45 -> 1, flat 2.05 -> 2, slab2 1.35 -> 3, slab1 1.1 -> 4
    assert out["support_ids"].ravel().tolist() == [4] * 5 + [3] * 5 + [1, 1] + [2, 2] + [0]


def test_strict_bounds_are_the_codes_holes_exactly():
    depth, labels = bounds_image()
    inclusive = region_support_numpy(depth, labels, bounds="inclusive")
    strict = region_support_numpy(depth, labels, bounds="strict")
    sd = strict["region_support"].ravel()
    expected = ([0.0] + [f32_mean(SLAB1[1:])] * 4 + [0.0] + [f32_mean(SLAB2[1:])] * 4 + [f32_mean([3.4]), 0.0]
                + [f32_mean(FLAT)] * 2 + [0.0])
    np.testing.assert_allclose(sd, expected, atol=1e-6)
    holes = np.flatnonzero((strict["support_ids"].ravel() == 0) & (labels.ravel() != 0))
    assert depth.ravel()[holes].tolist() == [1.0, 1.25, 3.5]  # region min, dense-slab boundary, region max
    assert np.all(inclusive["support_ids"].ravel()[labels.ravel() != 0] > 0)
    # region ids do not depend on the bounds
    np.testing.assert_array_equal(strict["region_ids"], inclusive["region_ids"])


# --- case 3: regions = class (code) versus 8-connected components ------------------------------------------------
def test_class_regions_versus_components():
    # Label 5 in two blobs (left: depth 1.0, right: depth 1.2; the blobs touch nothing), label 5 also on a pixel
    # diagonal to the left blob (8-connected to it). Label 9 fills the rest at depth 3.0; global v = 0.2, so every
    # region here is flat (r < 2v = 0.4) and gets its own mean.
    depth = np.full((4, 6), 3.0, np.float32)
    labels = np.full((4, 6), 9, np.int32)
    labels[0:2, 0:2] = 5
    depth[0:2, 0:2] = 1.0
    labels[2, 2] = 5  # diagonal neighbour of (1, 1)
    depth[2, 2] = 1.0
    labels[0:2, 4:6] = 5
    depth[0:2, 4:6] = 1.2
    by_class = region_support_numpy(depth, labels, regions="class")
    comps = region_support_numpy(depth, labels, regions="components")
    left = (labels == 5) & (np.arange(6)[None, :] < 4)
    right = (labels == 5) & (np.arange(6)[None, :] >= 4)
    # class level: all label-5 pixels one region (id 2, after label 9 -> 1), one mean over both blobs
    assert np.all(by_class["region_ids"][labels == 9] == 1) and np.all(by_class["region_ids"][labels == 5] == 2)
    np.testing.assert_allclose(by_class["region_support"][labels == 5], f32_mean([1.0] * 5 + [1.2] * 4), atol=1e-6)
    # components: label 9 (one component) -> 1; label 5 -> left blob incl. its diagonal pixel 2, right blob 3
    assert np.all(comps["region_ids"][labels == 9] == 1)
    assert np.all(comps["region_ids"][left] == 2) and np.all(comps["region_ids"][right] == 3)
    np.testing.assert_allclose(comps["region_support"][left], 1.0, atol=1e-6)
    np.testing.assert_allclose(comps["region_support"][right], 1.2, atol=1e-6)
    # support ids by decreasing depth: 3.0 -> 1, 1.2 -> 2, 1.0 -> 3
    assert np.all(comps["support_ids"][labels == 9] == 1)
    assert np.all(comps["support_ids"][right] == 2) and np.all(comps["support_ids"][left] == 3)


def test_support_ids_by_cell_or_by_value_differ_only_on_equal_means():
    # Two flat classes at exactly the same depth 2.0 and one at 4.0 (v = 0.2): cells are three support regions,
    # the code's relabel-by-value merges the two at 2.0.
    depth = np.array([[2.0, 2.0, 2.0, 2.0, 4.0, 4.0]], np.float32)
    labels = np.array([[1, 1, 2, 2, 8, 8]], np.int32)
    cell = region_support_numpy(depth, labels, support_ids="cell")["support_ids"].ravel().tolist()
    value = region_support_numpy(depth, labels, support_ids="value")["support_ids"].ravel().tolist()
    # cell: 4.0 -> 1; the 2.0 tie ordered by region id (label 2 -> R 2, label 1 -> R 3)
    assert cell == [3, 3, 2, 2, 1, 1]
    assert value == [2, 2, 2, 2, 1, 1]


def test_constant_depth_image_and_num_slabs():
    depth = np.full((3, 4), 2.5, np.float32)
    labels = np.array([[1, 1, 2, 2]] * 3, np.int32)
    out = region_support_numpy(depth, labels)
    np.testing.assert_array_equal(out["region_support"], depth)  # v = 0: each region one support region
    assert sorted(np.unique(out["support_ids"]).tolist()) == [1, 2]
    # num_slabs=1: v = the full range, every region has r < 2v -> plain per-region means
    d, lab = image_from([(v, 3) for v in A + B + C + D], width=10)
    coarse = region_support_numpy(d, lab, num_slabs=1)["region_support"]
    np.testing.assert_allclose(coarse, f32_mean(A + B + C + D), atol=1e-6)


def test_invalid_depth_is_unlabeled():
    depth = np.array([[1.0, 0.0, np.nan, 2.0]], np.float32)
    labels = np.array([[4, 4, 4, 4]], np.int32)
    out = region_support_numpy(depth, labels)
    # v over valid pixels = 0.1, r = 1.0: slabs; only pixels 0 and 3 are valid members of the region
    assert out["region_ids"].ravel().tolist() == [1, 0, 0, 1]
    assert out["region_support"].ravel()[1] == 0 and out["region_support"].ravel()[2] == 0
    assert np.all(out["support_ids"].ravel()[[0, 3]] > 0)


# --- bad input -------------------------------------------------------------------------------------------------
def test_bad_inputs_give_one_clear_error():
    depth = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"labels have shape \(4, 6\).*depth has shape \(4, 5\)"):
        region_support_numpy(depth, np.ones((4, 6), np.int32), sample="room_0007.mat#3")
    with pytest.raises(ValueError, match="room_0007.mat#3.*no pixel has both a valid depth"):
        region_support_numpy(np.zeros((4, 5), np.float32), np.ones((4, 5), np.int32), sample="room_0007.mat#3")
    with pytest.raises(ValueError, match="no pixel has both"):
        region_support_numpy(depth, np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="bounds"):
        region_support_numpy(depth, np.ones((4, 5), np.int32), bounds="open")
    with pytest.raises(ValueError, match="semantic labels have size"):
        region_support_targets(tf.ones((4, 5)), tf.ones((4, 6), tf.int32), sample="frame 12")


# --- the tf.data op ----------------------------------------------------------------------------------------------
def test_tf_data_op_matches_numpy_and_has_static_shapes():
    d1, l1 = bounds_image()
    d2, l2 = image_from([(v, 3) for v in A + B + C + D][:15], width=5)
    depths = np.stack([d1, d2])[..., None]
    labels = np.stack([l1, l2]).astype(np.uint16)  # NYU-style uint16 labels
    ds = tf.data.Dataset.from_tensor_slices({"depth": depths, "semantic": labels.astype(np.int32),
                                             "index": np.array([0, 1])})
    ds = ds.map(add_region_support(sample_key="index", bounds="strict"), num_parallel_calls=2, deterministic=True)
    spec = ds.element_spec
    assert spec["region_support"].shape == (3, 5, 1) and spec["region_support"].dtype == tf.float32
    assert spec["support_ids"].shape == (3, 5, 1) and spec["region_ids"].dtype == tf.int32
    for element, d, lab in zip(ds, (d1, d2), (l1, l2)):
        ref = region_support_numpy(d, lab, bounds="strict")
        for key in ("region_support", "region_ids", "support_ids"):
            np.testing.assert_array_equal(element[key].numpy()[..., 0], ref[key])


def test_tf_data_error_names_the_sample():
    ds = tf.data.Dataset.from_tensor_slices({"depth": np.zeros((1, 3, 3), np.float32),
                                             "semantic": np.ones((1, 3, 3), np.int32),
                                             "name": np.array([b"nyu_labeled.mat:frame 17"])})
    ds = ds.map(add_region_support(sample_key="name"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="nyu_labeled.mat:frame 17.*no pixel has both"):
        next(iter(ds))
