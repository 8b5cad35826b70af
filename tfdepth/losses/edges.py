"""SDDR's edge-based losses (specs/sddr.md §4.2-4.3, paper Eq. 7-10) and the total SDDR loss.

* :func:`edge_regions_tf`: the regions P_n of L_grad (App. A.2): the top ``top_fraction`` (5 %) pixels of G_S by
  rank are the edge pixels; k-means on their coordinates gives ``num_regions`` (N_g = 4, Fig. 10) clusters; region
  n is the set of pixels of the edge band (the edge pixels dilated by ``band_radius`` px, a (2r+1)^2 max-pool)
  whose nearest centroid is n. Regions are edge-dense, do not overlap, and flat areas away from edges belong to
  none ("flat regions unconstrained").
* :func:`edge_guided_gradient_loss` (L_grad, Eq. 7): ``1/N_g sum_n mean_{P_n} |beta1 G0 + beta0 - G_S|`` with
  ``G0 = |S_x * D0| + |S_y * D0|`` of the current prediction (gradients flow, also through beta) and (beta1, beta0)
  the least-squares fit of G0 to G_S on P_n (as Eq. 6); G_S is a fixed target. N_g counts the non-empty regions.
* :func:`edge_fusion_loss` (L_fusion, Eq. 8-9): for n = 1..N_w (4) with a = 0.02 the band of the ``k_n = ceil(n a
  N_p)`` lowest-G_S pixels must have Omega below T_{n a}, the ``k_n``-th smallest Omega, and the band of the
  ``k_n`` highest-G_S pixels Omega above T_{1 - n a}, the ``k_n``-th largest: hinge ``max(0, Omega_i - T)`` /
  ``max(0, T - Omega_i)``, summed and divided by N_w N_p. Bands are chosen by rank (stable sort), so exact ties in
  G_S (e.g. the zeros of flat areas) cannot empty or overfill them (sddr.md §4.3 interpretation); a perfectly
  rank-consistent Omega has zero loss. Thresholds T are stop-gradient (the code's sort-based thresholds carry
  none; sddr.md: [not found]). Omega is the paper's (weight of the HIGH-resolution features), so edges push it
  up. G_S is area-averaged to Omega's resolution.
* :func:`sddr_loss`: ``L = L_gt + grad_weight L_grad + fusion_weight L_fusion`` (Eq. 10; 0.5 and 0.1), the one
  place the SDDR weights are applied. L_fusion is averaged over the supervised Omega levels (default omega_1 and
  omega_2, the code's m@1024 and m@512 at 2048), so that fusion_weight keeps the paper's meaning for one Omega
  (the code sums its two levels). Epoch 1 of the paper trains L_gt only: pass ``grad_weight=0``,
  ``fusion_weight=0`` (python zeros skip the terms and ``g_s`` may be None).

Other [not found] decisions, documented here: N_g = 4; k-means on the (row, column) coordinates normalised by the
longer side, farthest-point initialisation from the edge pixel nearest the edge centroid (deterministic),
10 Lloyd iterations; band radius 1 px (a 3x3 dilation, as the code's ``TrimmedProcrustesLoss_multimask``).
Edge pixels also require G_S > 0, so a flat label has no regions and L_grad = 0 for it.

All functions return per-image values ``[B]``; the trainer averages them.
"""

import tensorflow as tf

from tfdepth.losses.affine_invariant import multi_output_gt_loss
from tfdepth.ops.align import least_squares_scale_shift_tf
from tfdepth.ops.edges import edge_representation_tf

__all__ = ["edge_regions_tf", "edge_guided_gradient_loss", "edge_fusion_loss", "sddr_loss"]


def _as_map(x, name):
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    if x.shape.rank != 4 or (x.shape[-1] is not None and x.shape[-1] != 1):
        raise ValueError(f"`{name}` must be a [B, H, W, 1] map, got shape {x.shape}")
    return x


def _top_by_rank(values, count, strict_positive=True):
    """0/1 [B, N] of the ``count`` largest ``values`` [B, N] per row by rank (stable: ties go to lower indices)."""
    order = tf.argsort(values, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    chosen = rank < count
    if strict_positive:
        chosen &= values > 0
    return chosen


def edge_regions_tf(g_s, num_regions=4, top_fraction=0.05, band_radius=1, iterations=10):
    """Region index map [B, H, W] int32 (-1 = no region) for L_grad (module docstring)."""
    g_s = _as_map(g_s, "g_s")
    if not (isinstance(num_regions, int) and num_regions >= 1):
        raise ValueError(f"num_regions must be an int >= 1, got {num_regions!r}")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    shape = tf.shape(g_s)
    batch, height, width = shape[0], shape[1], shape[2]
    n_pix = height * width
    flat = tf.reshape(g_s, [batch, n_pix])
    count = tf.cast(tf.math.ceil(top_fraction * tf.cast(n_pix, tf.float32)), tf.int32)
    edge = _top_by_rank(flat, count)  # [B, N] bool
    edge_f = tf.cast(edge, tf.float32)

    norm = tf.cast(tf.maximum(height, width), tf.float32)
    rows, cols = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    coords = tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1])], axis=-1)
    coords = tf.cast(coords, tf.float32) / norm  # [N, 2]

    def sq_dist(centroids):  # [B, K, 2] -> [B, N, K]
        return tf.reduce_sum(tf.square(coords[None, :, None, :] - centroids[:, None, :, :]), axis=-1)

    # Farthest-point initialisation: start at the edge pixel nearest the edge centroid.
    n_edge = tf.maximum(tf.reduce_sum(edge_f, axis=1, keepdims=True), 1.0)
    mean = tf.reduce_sum(edge_f[..., None] * coords[None], axis=1) / n_edge  # [B, 2]
    big = tf.constant(1e9, tf.float32)
    d_mean = tf.reduce_sum(tf.square(coords[None] - mean[:, None]), axis=-1)
    first = tf.argmin(tf.where(edge, d_mean, big), axis=1)
    centroids = tf.gather(coords, first)[:, None, :]  # [B, 1, 2]
    for _ in range(num_regions - 1):
        d_min = tf.reduce_min(sq_dist(centroids), axis=-1)
        nxt = tf.argmax(tf.where(edge, d_min, -big), axis=1)
        centroids = tf.concat([centroids, tf.gather(coords, nxt)[:, None, :]], axis=1)

    for _ in range(iterations):  # Lloyd; an empty cluster keeps its centroid
        assign = tf.one_hot(tf.argmin(sq_dist(centroids), axis=-1), num_regions) * edge_f[..., None]  # [B, N, K]
        members = tf.reduce_sum(assign, axis=1)  # [B, K]
        sums = tf.einsum("bnk,nd->bkd", assign, coords)
        centroids = tf.where(members[..., None] > 0, sums / tf.maximum(members[..., None], 1.0), centroids)

    band = tf.reshape(edge_f, [batch, height, width, 1])
    if band_radius > 0:
        size = 2 * band_radius + 1
        band = tf.nn.max_pool2d(band, size, strides=1, padding="SAME")
    band = tf.reshape(band, [batch, n_pix]) > 0
    nearest = tf.cast(tf.argmin(sq_dist(centroids), axis=-1), tf.int32)
    regions = tf.where(band, nearest, -tf.ones_like(nearest))
    return tf.reshape(regions, [batch, height, width])


def edge_guided_gradient_loss(depth, g_s, *, num_regions=4, top_fraction=0.05, band_radius=1, iterations=10,
                              padding="replicate", regions=None):
    """L_grad (Eq. 7) per image [B]: region-wise least-squares-aligned L1 between G0 = G(depth) and G_S.

    Args:
        depth: D0 [B, H, W, 1], the network's current prediction (gradients flow).
        g_s: the pseudo-label G_S [B, H, W, 1] (a fixed target; stop-gradient is applied here too).
        regions: optional precomputed :func:`edge_regions_tf` map [B, H, W] (e.g. cached with the label).
    """
    depth = _as_map(depth, "depth")
    g_s = tf.stop_gradient(_as_map(g_s, "g_s"))
    if regions is None:
        regions = edge_regions_tf(g_s, num_regions, top_fraction, band_radius, iterations)
    g0 = edge_representation_tf(depth, padding)
    total = tf.zeros([tf.shape(depth)[0]], tf.float32)
    present = tf.zeros_like(total)
    for n in range(num_regions):
        m = tf.cast(regions == n, tf.float32)[..., None]
        count = tf.reduce_sum(m, axis=[1, 2, 3])
        scale, shift = least_squares_scale_shift_tf(g0, g_s, m)
        err = tf.reduce_sum(m * tf.abs(scale * g0 + shift - g_s), axis=[1, 2, 3]) / tf.maximum(count, 1.0)
        has = tf.cast(count > 0, tf.float32)
        total += has * err
        present += has
    return total / tf.maximum(present, 1.0)


def edge_fusion_loss(omega, g_s, *, a=0.02, num_bands=4):
    """L_fusion (Eq. 8-9) per image [B] on one Omega map (module docstring).

    Args:
        omega: [B, h, w, 1] soft mask in the paper's convention (weight of the high-resolution features).
        g_s: [B, H, W, 1] pseudo-label; area-resized to h x w when the sizes differ.
    """
    omega = _as_map(omega, "omega")
    g_s = tf.stop_gradient(_as_map(g_s, "g_s"))
    if not (0.0 < a and num_bands >= 1 and num_bands * a < 0.5):
        raise ValueError(f"need a > 0, num_bands >= 1 and num_bands * a < 0.5 (disjoint bands), got a={a}, "
                         f"num_bands={num_bands}")
    if g_s.shape[1:3] != omega.shape[1:3] or None in tuple(omega.shape[1:3]):
        g_s = tf.image.resize(g_s, tf.shape(omega)[1:3], method="area")
    batch = tf.shape(omega)[0]
    flat_o = tf.reshape(omega, [batch, -1])
    flat_g = tf.reshape(g_s, [batch, -1])
    n_pix = tf.shape(flat_o)[1]
    n_pix_f = tf.cast(n_pix, tf.float32)
    rank = tf.argsort(tf.argsort(flat_g, axis=1, stable=True), axis=1, stable=True)  # ascending rank of G_S
    sorted_o = tf.stop_gradient(tf.sort(flat_o, axis=1))
    total = tf.zeros([batch], tf.float32)
    for n in range(1, num_bands + 1):
        k = tf.maximum(tf.cast(tf.math.ceil(n * a * n_pix_f - 1e-6), tf.int32), 1)
        low_t = sorted_o[:, k - 1: k]  # T_{n a}: the k-th smallest Omega
        high_t = sorted_o[:, n_pix - k: n_pix - k + 1]  # T_{1 - n a}: the k-th largest Omega
        low_band = tf.cast(rank < k, tf.float32)
        high_band = tf.cast(rank >= n_pix - k, tf.float32)
        total += tf.reduce_sum(low_band * tf.nn.relu(flat_o - low_t) + high_band * tf.nn.relu(high_t - flat_o),
                               axis=1)
    return total / (num_bands * n_pix_f)


def _is_zero(weight):
    return isinstance(weight, (int, float)) and float(weight) == 0.0


def sddr_loss(outputs, gt, mask=None, g_s=None, *, grad_weight=0.5, fusion_weight=0.1,
              gt_keys=("depth", "depth_1", "depth_2"), omega_keys=("omega_1", "omega_2"), trim=0.2,
              gradient_matching_weight=0.5, scales=4, reduction="image", official_median=False, num_regions=4,
              top_fraction=0.05, band_radius=1, fusion_a=0.02, fusion_bands=4, edge_padding="replicate"):
    """SDDR's total loss (Eq. 10) per image: ``{"loss", "gt", "grad", "fusion"}``, each [B] float32.

    Args:
        outputs: the SDDRNet output dict (``depth``, ``depth_1``, ``depth_2``, ``omega_*``).
        gt: ground truth [B, H, W, 1] at the network size (same space as the training targets); mask: valid pixels.
        g_s: the self-distilled pseudo-label G_S [B, H, W, 1] (``tfdepth.train.self_distillation``); needed when a
            weight of L_grad or L_fusion is non-zero.
        grad_weight, fusion_weight: lambda_1 = 0.5 and lambda_2 = 0.1 (App. B.2); python 0 skips a term. Tensors
            (e.g. a schedule) are accepted and always compute the term.
    Other arguments are the terms' (see :func:`multi_output_gt_loss`, :func:`edge_guided_gradient_loss`,
    :func:`edge_fusion_loss`).
    """
    loss_gt = multi_output_gt_loss(outputs, gt, mask, keys=gt_keys, trim=trim,
                                   gradient_weight=gradient_matching_weight, scales=scales, reduction=reduction,
                                   official_median=official_median)
    zeros = tf.zeros_like(loss_gt)
    need_label = not (_is_zero(grad_weight) and _is_zero(fusion_weight))
    if need_label and g_s is None:
        raise ValueError("sddr_loss: g_s (the self-distilled pseudo-label) is required when grad_weight or "
                         "fusion_weight is non-zero; pass grad_weight=0, fusion_weight=0 for the L_gt-only epoch")
    loss_grad = zeros
    if not _is_zero(grad_weight):
        loss_grad = edge_guided_gradient_loss(outputs["depth"], g_s, num_regions=num_regions,
                                              top_fraction=top_fraction, band_radius=band_radius,
                                              padding=edge_padding)
    loss_fusion = zeros
    if not _is_zero(fusion_weight):
        if not omega_keys:
            raise ValueError("sddr_loss: omega_keys is empty but fusion_weight is non-zero")
        loss_fusion = sum(edge_fusion_loss(outputs[key], g_s, a=fusion_a, num_bands=fusion_bands)
                          for key in omega_keys) / float(len(omega_keys))
    total = loss_gt
    if not _is_zero(grad_weight):
        total = total + tf.cast(grad_weight, tf.float32) * loss_grad
    if not _is_zero(fusion_weight):
        total = total + tf.cast(fusion_weight, tf.float32) * loss_fusion
    return {"loss": total, "gt": loss_gt, "grad": loss_grad, "fusion": loss_fusion}

