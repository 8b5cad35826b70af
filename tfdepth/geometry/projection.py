"""Back-projection of a depth map to camera-frame points and projection of points into pixels (spec A.5)."""

import tensorflow as tf

from tfdepth.geometry.camera import (
    _as_float,
    _check_intrinsics,
    _check_shape,
    _top_left_3x3,
    invert_intrinsics,
    pixel_grid,
)

# Monodepth2's Project3D divides by (z + 1e-7) so that a point on the camera plane gives a huge but finite pixel.
_Z_GUARD = 1e-7


def backproject(depth, inv_K):
    """Camera-frame 3D points of every pixel: ``X = depth * inv_K @ (u, v, 1)`` (spec A.5, BackprojectDepth).

    Args:
      depth: [B, H, W, 1] z-depth.
      inv_K: [B, 3, 3] (or [B, 4, 4]; its top-left 3x3 is used), e.g. ``invert_intrinsics(K)``.
    Returns:
      points: [B, H, W, 3] (x, y, z) in the camera frame, same dtype as depth.
    """
    depth = _as_float(depth, "depth")
    _check_shape(depth, "depth", 4, {-1: 1}, "[B, H, W, 1]")
    inv_K = _check_intrinsics(inv_K, "inv_K", depth.dtype)
    _check_shape(inv_K, "inv_K", 3, {}, "[B, 3, 3] or [B, 4, 4]")
    shape = tf.shape(depth)
    grid = pixel_grid(shape[1], shape[2], depth.dtype)
    homogeneous = tf.concat([grid, tf.ones_like(grid[..., :1])], axis=-1)  # [H, W, 3] = (u, v, 1)
    rays = tf.einsum("bij,hwj->bhwi", _top_left_3x3(inv_K), homogeneous)
    return depth * rays


def project(points, K, T, min_depth=1e-3, image_size=None):
    """Pixel coordinates of camera-frame points after a rigid transform (spec A.5, Project3D).

    ``c = K @ (T @ X)[:3]``; ``(u, v) = c[:2] / (c[2] + 1e-7)`` like Monodepth2. The coordinates are not clamped
    (the sampler clamps, as grid_sample's border mode); ``valid`` says which points really land in the image.

    Args:
      points: [B, H, W, 3] points in the frame T maps from.
      K: [B, 3, 3] or [B, 4, 4] intrinsics of the destination image.
      T: [B, 4, 4] ``T_dst_from_src``.
      min_depth: a point is valid only if its depth in the destination frame exceeds this (in front of the camera).
      image_size: (height, width) of the destination image; defaults to the H, W of ``points``.
    Returns:
      coords: [B, H, W, 2] pixel (x, y) = (u, v) in the destination image.
      valid: [B, H, W, 1] float 1.0 where z > min_depth and (u, v) lies in [0, W-1] x [0, H-1], else 0.0.
    """
    points = _as_float(points, "points")
    _check_shape(points, "points", 4, {-1: 3}, "[B, H, W, 3]")
    K = _check_intrinsics(K, "K", points.dtype)
    _check_shape(K, "K", 3, {}, "[B, 3, 3] or [B, 4, 4]")
    T = _as_float(T, "T", points.dtype)
    _check_shape(T, "T", 3, {-1: 4, -2: 4}, "[B, 4, 4]")
    # One 3x4 matrix K @ [R | t] per batch element, applied once to every point.
    P = tf.matmul(_top_left_3x3(K), T[:, :3, :])
    cam = tf.einsum("bij,bhwj->bhwi", P[:, :, :3], points) + P[:, tf.newaxis, tf.newaxis, :, 3]
    if image_size is None:
        shape = tf.shape(points)
        image_size = (shape[1], shape[2])
    x, y, valid = _perspective(*tf.unstack(cam, axis=-1), image_size, min_depth)
    return tf.stack([x, y], axis=-1), valid


def source_pixel_planes(depth, K, T, image_size, min_depth=1e-3):
    """Where each target pixel lands in the source image: ``backproject`` then ``project``, as planes.

    The same map as ``project(backproject(depth, inv(K)), K, T)`` with the matrices multiplied first:
    ``c = depth * (M @ (u, v, 1)) + p`` with ``M = K R inv(K)`` and ``p = K t`` (``[R | t]`` = top 3 rows of T), so
    each of the three camera coordinates is one multiply-add of the depth map with a per-pixel plane. It returns
    x, y and valid as separate ``[B, H, W]`` maps: the warp of the training loss runs 8 times per step, and
    interleaving coordinates into a last axis of 2 or 3 (stack, slices, einsum over it) and back in the backward
    pass cost more than the arithmetic (measured on the 192x640 loss: 476 -> 330 ms forward + backward with the
    planar sampler of ``tfdepth.geometry.warp``). Equal to the two-step form up to float32 rounding.

    Args:
      depth: [B, H, W, 1] target z-depth.
      K: [B, 3, 3] or [B, 4, 4] intrinsics shared by target and source.
      T: [B, 4, 4] ``T_source_from_target``.
      image_size: (height, width) of the source image.
      min_depth: as in :func:`project`.
    Returns:
      ``(x, y, valid)``: x and y [B, H, W] pixel coordinates in the source, valid [B, H, W, 1] as ``project``'s.
    """
    P = tf.matmul(_top_left_3x3(K), T[:, :3, :])
    M = tf.matmul(P[:, :, :3], _top_left_3x3(invert_intrinsics(K)))  # [B, 3, 3]
    shape = tf.shape(depth)
    u, v = tf.unstack(pixel_grid(shape[1], shape[2], depth.dtype), axis=-1)  # [H, W] each, no gradient
    d = tf.squeeze(depth, axis=-1)
    cam = []
    for i in range(3):
        row = M[:, i, :, tf.newaxis, tf.newaxis]  # [B, 3, 1, 1], broadcast over the [H, W] planes
        cam.append(d * (row[:, 0] * u + row[:, 1] * v + row[:, 2]) + P[:, i, 3, tf.newaxis, tf.newaxis])
    return _perspective(*cam, image_size, min_depth)


def _perspective(cam_x, cam_y, cam_z, image_size, min_depth):
    """``(u, v) = (x, y) / (z + 1e-7)`` of camera-frame coordinate planes, and where the point is visible."""
    height, width = image_size
    x = cam_x / (cam_z + _Z_GUARD)
    y = cam_y / (cam_z + _Z_GUARD)
    max_x = tf.cast(width, x.dtype) - 1.0
    max_y = tf.cast(height, x.dtype) - 1.0
    inside = (x >= 0.0) & (x <= max_x) & (y >= 0.0) & (y <= max_y)
    valid = tf.cast((cam_z > min_depth) & inside, x.dtype)[..., tf.newaxis]
    return x, y, valid
