"""Ground-truth region support (RSN Algorithm 1, spec rsn.md §2) from depth + semantic labels, for tf.data.

The paper's pseudo-code is not available; the authors' ``region.py`` is the source. Inputs: depth D ``[H, W]``
(metres) and semantic labels S ``[H, W]`` (integers, 0 = unlabeled). Outputs, all ``[H, W]``:

* ``region_ids`` R: the regions, ids 1..K (0 = unlabeled / invalid).
* ``region_support`` SD: the support depth, piecewise constant: every support region (one region x one depth
  slab) holds the mean depth of its pixels; 0 where no support region covers the pixel.
* ``support_ids`` SI: support-region ids 1..M ordered by decreasing support depth (farthest = 1), 0 = none.

The algorithm (§2, steps 1-4):

1. R = the classes present, relabelled by decreasing raw label (highest label -> 1) ``regions="class"``, the
   code's behaviour (its neighbour tests look like connected components but its outer loop gives every pixel of
   a class the same id). ``regions="components"`` splits each class into 8-connected components (the paper's
   "regions of pixels"; spec [interpretation]); ids then run over classes by decreasing label and, within a
   class, in scipy's raster order.
2. Slab width v = (max D - min D) / ``num_slabs`` over the valid pixels of the image (``num_slabs`` = 10 in the
   code; it calls v "variance").
3. For each region with n pixels and depth range r = dmax - dmin: if r < 2v the whole region is one support
   region (its mean). Otherwise slabs of width v are walked from dmin with the dense-slab threshold
   tau = n * v / r (the expected count of a slab for uniform depths): a slab with more than tau pixels becomes a
   support region and the next slab starts at its end; a sparse slab is grown by v (start unchanged) and tested
   again; when the next end would reach dmax, the rest [start, dmax] becomes the last support region (for a
   dense slab this last region includes the slab itself: the code overwrites it).
4. SI = the support regions relabelled by decreasing depth.

Decisions (each a parameter; defaults first):

* ``bounds="inclusive"`` (our reading, spec §2 [interpretation]): slabs are half-open ``[start, end)`` and the
  last one closed ``[start, dmax]``, so every labelled pixel gets support. ``bounds="strict"`` is the code:
  ``start < D < end`` and ``start < D < dmax``, which leaves pixels at exactly the region minimum, maximum or a
  boundary between two dense slabs as holes (SD = 0, SI = 0). Regions with r < 2v have no holes in either mode.
* ``support_ids="cell"``: one id per support region (region x slab), the spec's definition; ties in depth are
  ordered by region id. ``support_ids="value"`` is the code's relabel(SD), which merges cells whose means are
  bit-identical (e.g. two flat regions at the same depth). They differ only on such exact ties.
* Invalid depth (<= 0 or non-finite) counts as unlabeled: not in any region and not in v (the labelled NYU depths
  are dense, so this never triggers there; the synthetic scenes use depth 0 for "no surface", label 0 too).
  A depth with no valid labelled pixel at all is an error naming the sample: such a sample has no target.
* A constant-depth image (v = 0) makes every region one support region (the code would leave them all 0 since
  r < 2v is false for r = v = 0 and its slab loop never runs).
* Comparisons are in float64 on the float32 depth, slab ends accumulate as ``end = end + v`` like the code.

Use in tf.data: :func:`region_support_targets` (tensors in, tensors out, static shapes set) or
:func:`add_region_support` as a ``Dataset.map`` function on element dicts. The numpy core
:func:`region_support_numpy` is the same computation.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["BOUNDS", "REGIONS", "SUPPORT_IDS", "region_support_numpy", "region_support_targets",
           "add_region_support"]

BOUNDS = ("inclusive", "strict")
REGIONS = ("class", "components")
SUPPORT_IDS = ("cell", "value")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"region support: `{name}` must be one of {choices}, got {value!r}.")
    return value


def _squeeze_map(array, name, where):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{where}: `{name}` must be a [H, W] (or [H, W, 1]) map, got shape {array.shape}.")
    return array


def _region_map(labels, valid, regions):
    """R: ids 1..K over classes by decreasing label (and components within a class); 0 elsewhere."""
    out = np.zeros(labels.shape, dtype=np.int32)
    classes = np.unique(labels[valid & (labels != 0)])[::-1]  # decreasing raw label, as seg2instance
    next_id = 1
    for cls in classes:
        mask = valid & (labels == cls)
        if regions == "class":
            out[mask] = next_id
            next_id += 1
        else:
            from scipy import ndimage  # noqa: PLC0415 (only this option needs scipy)

            comp, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
            out[mask] = comp[mask] + (next_id - 1)
            next_id += count
    return out


def _slabs(d_sorted, v, strict):
    """Depth intervals of one region's support regions (Algorithm 1 step 3) as ``(lo, hi, last)`` tuples.

    ``d_sorted``: the region's depths, ascending (float64). Interval membership is ``lo < d < hi`` (strict) or
    ``lo <= d < hi`` (inclusive; ``lo <= d <= hi`` when ``last``).
    """
    dmin, dmax = float(d_sorted[0]), float(d_sorted[-1])
    r = dmax - dmin
    if r < 2.0 * v or v <= 0.0:
        return None  # one support region: the whole region
    n = d_sorted.size
    tau = n / (r / v)
    left_side = "right" if strict else "left"  # count of d > lo (strict) or d >= lo (inclusive)

    def count(lo, hi):
        return int(np.searchsorted(d_sorted, hi, side="left") - np.searchsorted(d_sorted, lo, side=left_side))

    intervals = []
    start, end = dmin, dmin + v
    while end < dmax:  # always left through a break below (end < dmax is kept by both branches)
        if count(start, end) > tau:  # dense slab
            if end + v < dmax:
                intervals.append((start, end, False))
                start, end = end, end + v
                continue
            intervals.append((start, dmax, True))  # the code overwrites the dense slab with [start, dmax]
            break
        if end + v < dmax:  # sparse slab: grow it, start unchanged
            end = end + v
            continue
        intervals.append((start, dmax, True))
        break
    return intervals


def region_support_numpy(depth, labels, *, bounds="inclusive", regions="class", support_ids="cell",
                         num_slabs=10, sample=None):
    """Algorithm 1 (module docstring) on numpy arrays.

    Args:
      depth: ``[H, W]`` or ``[H, W, 1]`` float depth in metres; <= 0 or non-finite = invalid.
      labels: ``[H, W]`` or ``[H, W, 1]`` integer semantic labels of the same size, 0 = unlabeled.
      bounds: ``"inclusive"`` (default, no holes) or ``"strict"`` (the code's open slabs).
      regions: ``"class"`` (default, the code) or ``"components"`` (8-connected components per class).
      support_ids: ``"cell"`` (default) or ``"value"`` (the code's relabel of SD by value).
      num_slabs: slab width v = depth range / num_slabs (10 in the code).
      sample: optional name of the sample (file, index) used in error messages.

    Returns:
      dict ``region_support`` float32 ``[H, W]``, ``region_ids`` int32 ``[H, W]``, ``support_ids`` int32 ``[H, W]``.
    """
    where = f"region support of {sample}" if sample else "region support"
    _check_choice(bounds, "bounds", BOUNDS)
    _check_choice(regions, "regions", REGIONS)
    _check_choice(support_ids, "support_ids", SUPPORT_IDS)
    if isinstance(num_slabs, bool) or not isinstance(num_slabs, (int, np.integer)) or num_slabs < 1:
        raise ValueError(f"{where}: `num_slabs` must be a positive int (10 in the code), got {num_slabs!r}.")
    depth = _squeeze_map(depth, "depth", where)
    labels = _squeeze_map(labels, "labels", where)
    if depth.shape != labels.shape:
        raise ValueError(f"{where}: semantic labels have shape {labels.shape} but the depth has shape {depth.shape}; "
                         "they must describe the same pixels (resize the labels with nearest neighbour).")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{where}: `labels` must hold integer class ids, got non-integer values "
                             f"(dtype {labels.dtype}).")
        labels = labels.astype(np.int64)
    depth = depth.astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    labelled = valid & (labels != 0)
    if not labelled.any():
        raise ValueError(f"{where}: no pixel has both a valid depth (> 0, finite) and a semantic label (!= 0); "
                         "the sample has no region-support target: drop it from the dataset.")

    region_ids = _region_map(labels, valid, regions)
    v = float(depth[valid].max() - depth[valid].min()) / num_slabs
    strict = bounds == "strict"

    flat_r = region_ids.ravel()
    flat_d = depth.ravel()
    order = np.argsort(flat_r, kind="stable")
    sorted_r = flat_r[order]
    bounds_idx = np.searchsorted(sorted_r, np.arange(1, int(flat_r.max()) + 2), side="left")

    support = np.zeros(flat_d.shape, dtype=np.float64)
    cell = np.zeros(flat_d.shape, dtype=np.int64)  # running cell number, 0 = none
    cells = []  # (mean depth, region id, slab index) per cell, cell number = position + 1
    for rid in range(1, int(flat_r.max()) + 1):
        idx = order[bounds_idx[rid - 1]:bounds_idx[rid]]
        d = flat_d[idx]
        intervals = _slabs(np.sort(d), v, strict)
        if intervals is None:
            members = [np.ones(d.shape, dtype=bool)]
        else:
            members = []
            for lo, hi, last in intervals:
                lower = d > lo if strict else d >= lo
                upper = d < hi if (strict or not last) else d <= hi
                members.append(lower & upper)
        for k, member in enumerate(members):
            if not member.any():
                continue
            mean = float(d[member].mean())
            cells.append((mean, rid, k))
            support[idx[member]] = mean
            cell[idx[member]] = len(cells)

    sid = np.zeros(flat_d.shape, dtype=np.int32)
    if cells:
        if support_ids == "cell":
            # decreasing depth, ties by region id then slab: a stable ordering of the cells
            ranking = sorted(range(len(cells)), key=lambda c: (-cells[c][0], cells[c][1], cells[c][2]))
            new_id = np.zeros(len(cells) + 1, dtype=np.int32)
            new_id[np.asarray(ranking) + 1] = np.arange(1, len(cells) + 1, dtype=np.int32)
            sid = new_id[cell]
        else:
            values = np.unique(support[cell > 0])[::-1]  # distinct SD values, decreasing (farthest = 1)
            assigned = cell > 0
            sid[assigned] = (len(values) - np.searchsorted(values[::-1], support[assigned])).astype(np.int32)
    shape = depth.shape
    return {
        "region_support": support.reshape(shape).astype(np.float32),
        "region_ids": region_ids,
        "support_ids": sid.reshape(shape),
    }


def region_support_targets(depth, labels, *, bounds="inclusive", regions="class", support_ids="cell",
                           num_slabs=10, sample=None):
    """Algorithm 1 as a TensorFlow op (``tf.numpy_function`` around :func:`region_support_numpy`).

    Usable inside ``tf.data.Dataset.map`` on unbatched elements. ``depth`` ``[H, W]`` or ``[H, W, 1]`` float,
    ``labels`` the same size, integer; static shapes are checked when known. ``sample`` (a Python string or a
    scalar string tensor, e.g. the file name of the element) names the sample in errors. The error of a bad
    sample (no labelled valid pixel, label/depth size mismatch found at run time) surfaces from the pipeline as
    ``tf.errors.InvalidArgumentError`` carrying the one-line message of :func:`region_support_numpy`.

    Returns:
      dict ``region_support`` float32 ``[H, W, 1]``, ``region_ids`` int32 ``[H, W, 1]``, ``support_ids`` int32
      ``[H, W, 1]`` with static H, W where the inputs have them.
    """
    _check_choice(bounds, "bounds", BOUNDS)
    _check_choice(regions, "regions", REGIONS)
    _check_choice(support_ids, "support_ids", SUPPORT_IDS)
    depth = tf.convert_to_tensor(depth)
    labels = tf.convert_to_tensor(labels)
    if not depth.dtype.is_floating:
        raise TypeError(f"region_support_targets: `depth` must be float (metres), got {depth.dtype.name}.")
    if not labels.dtype.is_integer:
        raise TypeError(f"region_support_targets: `labels` must be an integer class map, got {labels.dtype.name}.")
    for tensor, name in ((depth, "depth"), (labels, "labels")):
        rank = tensor.shape.rank
        if rank is not None and not (rank == 2 or (rank == 3 and tensor.shape[-1] in (1, None))):
            raise ValueError(f"region_support_targets: `{name}` must be [H, W] or [H, W, 1], got shape "
                             f"{tensor.shape}.")
    hw_depth = depth.shape[:2]
    hw_labels = labels.shape[:2]
    if depth.shape.rank is not None and labels.shape.rank is not None and not hw_depth.is_compatible_with(hw_labels):
        raise ValueError(f"region_support_targets{f' ({sample})' if isinstance(sample, str) else ''}: semantic labels "
                         f"have size {hw_labels} but the depth has size {hw_depth}; they must describe the same "
                         "pixels (resize the labels with nearest neighbour).")
    sample_t = tf.constant("", tf.string) if sample is None else tf.convert_to_tensor(sample, tf.string)

    def compute(d, s, name):
        name = name.decode() if isinstance(name, bytes) else str(name)
        out = region_support_numpy(d, s, bounds=bounds, regions=regions, support_ids=support_ids,
                                   num_slabs=num_slabs, sample=name or None)
        return out["region_support"], out["region_ids"], out["support_ids"]

    sd, rid, sid = tf.numpy_function(compute, [depth, labels, sample_t], [tf.float32, tf.int32, tf.int32],
                                     stateful=False, name="region_support")
    static_hw = hw_depth.merge_with(hw_labels) if depth.shape.rank and labels.shape.rank else tf.TensorShape(
        [None, None])
    out = {}
    for key, tensor in (("region_support", sd), ("region_ids", rid), ("support_ids", sid)):
        tensor = tf.reshape(tensor, tf.concat([tf.shape(tensor)[:2], [1]], axis=0))
        tensor.set_shape(static_hw.concatenate([1]))
        out[key] = tensor
    return out


def add_region_support(depth_key="depth", labels_key="semantic", sample_key=None, **options):
    """A ``Dataset.map`` function adding ``region_support``, ``region_ids``, ``support_ids`` to element dicts.

    Reads ``element[depth_key]`` and ``element[labels_key]`` (unbatched ``[H, W]`` or ``[H, W, 1]``) and, if
    ``sample_key`` is given, names the sample in errors with ``element[sample_key]`` (a string or an integer
    scalar). ``options`` are those of :func:`region_support_targets`. Apply it after geometric augmentation
    (flip, resize), so the targets follow the pixels they describe: SD is not resampled.
    """
    def fn(element):
        if depth_key not in element or labels_key not in element:
            raise KeyError(f"add_region_support: the element needs `{depth_key}` and `{labels_key}`; it has "
                           f"{sorted(element)}.")
        sample = None
        if sample_key is not None:
            value = element[sample_key]
            sample = value if value.dtype == tf.string else tf.strings.as_string(value)
        out = dict(element)
        out.update(region_support_targets(element[depth_key], element[labels_key], sample=sample, **options))
        return out

    return fn
