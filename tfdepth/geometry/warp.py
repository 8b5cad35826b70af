"""Bilinear sampling with border padding and the inverse warp of a source image into the target view (spec A.5)."""

import tensorflow as tf

from tfdepth.geometry.camera import _as_float, _check_intrinsics, _check_shape, invert_intrinsics
from tfdepth.geometry.projection import backproject, project


def bilinear_sample(image, coords):
    """Samples ``image`` at pixel coordinates ``coords`` with bilinear interpolation and border padding.

    Matches PyTorch ``grid_sample(mode="bilinear", padding_mode="border", align_corners=True)`` as Monodepth2 used
    it (spec A.5): pixel centres sit at integer coordinates and a coordinate outside the image is clamped to
    [0, W-1] x [0, H-1] first, so the gradient w.r.t. a clamped coordinate is zero, as in PyTorch's border mode.
    One gather of the four neighbours over the batch-flattened image; no Python loop over the batch.

    Args:
      image: [B, H, W, C].
      coords: [B, Ho, Wo, 2] pixel (x, y) = (u, v) into image (Ho, Wo may differ from H, W).
    Returns:
      [B, Ho, Wo, C] in image's dtype; differentiable w.r.t. image and coords.
    """
    image = _as_float(image, "image")
    _check_shape(image, "image", 4, {}, "[B, H, W, C]")
    coords = _as_float(coords, "coords")
    _check_shape(coords, "coords", 4, {-1: 2}, "[B, Ho, Wo, 2]")
    if image.shape[0] is not None and coords.shape[0] is not None and image.shape[0] != coords.shape[0]:
        raise ValueError(
            f"image and coords must have the same batch size, got image {image.shape} and coords {coords.shape}"
        )
    # Weights are computed in the coordinates' precision (sub-pixel accuracy matters under mixed precision).
    cdtype = coords.dtype
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    max_x = tf.cast(width - 1, cdtype)
    max_y = tf.cast(height - 1, cdtype)
    # Border padding: clamp the sample position, not the neighbours; clip_by_value passes no gradient outside.
    x = tf.clip_by_value(coords[..., 0], 0.0, max_x)
    y = tf.clip_by_value(coords[..., 1], 0.0, max_y)
    x0f = tf.floor(x)
    y0f = tf.floor(y)
    wx = x - x0f  # d(wx)/dx = 1: floor has zero gradient
    wy = y - y0f
    x0 = tf.cast(x0f, tf.int32)
    y0 = tf.cast(y0f, tf.int32)
    # At x == W-1 exactly, x0 = W-1 and wx = 0; the clamped x1 keeps the gather in bounds.
    x1 = tf.minimum(x0 + 1, width - 1)
    y1 = tf.minimum(y0 + 1, height - 1)

    out_shape = tf.shape(coords)[:-1]
    base = tf.reshape(tf.range(batch) * (height * width), [-1, 1, 1])
    row0 = base + y0 * width
    row1 = base + y1 * width
    index = tf.stack([row0 + x0, row0 + x1, row1 + x0, row1 + x1], axis=-1)  # [B, Ho, Wo, 4]
    weight = tf.stack([(1.0 - wx) * (1.0 - wy), wx * (1.0 - wy), (1.0 - wx) * wy, wx * wy], axis=-1)

    flat = tf.reshape(image, tf.stack([-1, channels]))
    corners = tf.gather(flat, tf.reshape(index, [-1]))  # [B*Ho*Wo*4, C]
    corners = tf.reshape(corners, tf.concat([out_shape, [4, channels]], axis=0))
    weight = tf.cast(weight, image.dtype)[..., tf.newaxis]
    out = tf.reduce_sum(corners * weight, axis=-2)
    out.set_shape(coords.shape[:-1].concatenate(image.shape[-1:]))
    return out


def inverse_warp(source, depth, T_source_from_target, K):
    """Synthesises the target view from ``source``: back-project target depth, move by T, project, sample.

    Args:
      source: [B, Hs, Ws, C] source image.
      depth: [B, H, W, 1] target z-depth.
      T_source_from_target: [B, 4, 4] maps target camera points into the source camera frame
        (``inv(T_world_from_source) @ T_world_from_target``).
      K: [B, 3, 3] or [B, 4, 4] intrinsics, shared by target and source (in pixels of these tensors).
    Returns:
      warped: [B, H, W, C] source resampled into the target view.
      valid: [B, H, W, 1] float, 1.0 where the point is in front of the source camera and inside its image.
    """
    source = _as_float(source, "source")
    _check_shape(source, "source", 4, {}, "[B, H, W, C]")
    depth = _as_float(depth, "depth", source.dtype)
    _check_shape(depth, "depth", 4, {-1: 1}, "[B, H, W, 1]")
    K = _check_intrinsics(K, "K", source.dtype)
    T = _as_float(T_source_from_target, "T_source_from_target", source.dtype)
    _check_shape(T, "T_source_from_target", 3, {-1: 4, -2: 4}, "[B, 4, 4]")
    points = backproject(depth, invert_intrinsics(K))
    src_shape = tf.shape(source)
    coords, valid = project(points, K, T, image_size=(src_shape[1], src_shape[2]))
    return bilinear_sample(source, coords), valid
