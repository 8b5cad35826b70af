"""Rigid transforms: axis-angle rotations, Monodepth2's pose parameterisation, inversion, relative poses.

Poses are 4x4 ``T_dst_from_src`` acting on homogeneous column vectors (see ``tfdepth/geometry/__init__.py``).
"""

import tensorflow as tf

from tfdepth.geometry.camera import _as_float, _check_shape


def _skew(v):
    """Cross-product matrix [v]_x, [..., 3] -> [..., 3, 3]."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]  # slicing, not unstack: works with an unknown rank
    zero = tf.zeros_like(x)
    return tf.stack(
        [tf.stack([zero, -z, y], axis=-1), tf.stack([z, zero, -x], axis=-1), tf.stack([-y, x, zero], axis=-1)],
        axis=-2,
    )


def _safe_norm(v, axis=-1):
    """Euclidean norm whose gradient at 0 is 0 instead of NaN (PyTorch's torch.norm subgradient, which
    Monodepth2's training relied on when a pose output is exactly zero)."""
    sq = tf.reduce_sum(tf.square(v), axis=axis)
    nonzero = sq > 0.0
    return tf.where(nonzero, tf.sqrt(tf.where(nonzero, sq, tf.ones_like(sq))), tf.zeros_like(sq))


def axis_angle_to_matrix(axisangle):
    """Rodrigues' formula in Monodepth2's parameterisation (spec A.4): angle = |v|, axis = v / (|v| + 1e-7).

    R = cos(a) I + sin(a) [k]_x + (1 - cos(a)) k k^T with k the axis. The +1e-7 is Monodepth2's; it makes k
    slightly shorter than unit length (relative 1e-7/|v|), which we keep so trained poses mean the same thing.

    Args:
      axisangle: [..., 3] rotation vector (radians).
    Returns:
      [..., 3, 3] rotation matrices.
    """
    v = _as_float(axisangle, "axisangle")
    _check_shape(v, "axisangle", (">=", 1), {-1: 3}, "[..., 3]")
    angle = _safe_norm(v)
    axis = v / (angle[..., tf.newaxis] + 1e-7)
    ca = tf.cos(angle)[..., tf.newaxis, tf.newaxis]
    sa = tf.sin(angle)[..., tf.newaxis, tf.newaxis]
    eye = tf.eye(3, dtype=v.dtype)
    outer = axis[..., :, tf.newaxis] * axis[..., tf.newaxis, :]
    return ca * eye + sa * _skew(axis) + (1.0 - ca) * outer


def _rt_to_matrix(R, t):
    """[..., 3, 3] rotation and [..., 3] translation -> [..., 4, 4] ``[[R, t], [0, 1]]``."""
    top = tf.concat([R, t[..., tf.newaxis]], axis=-1)
    bottom = tf.concat([tf.zeros_like(t[..., tf.newaxis, :]), tf.ones_like(t[..., :1])[..., tf.newaxis]], axis=-1)
    return tf.concat([top, bottom], axis=-2)


def _pose_vector(x, name):
    x = _as_float(x, name)
    _check_shape(x, name, {2, 3}, {-1: 3}, "[B, 1, 3] (or [B, 3])")
    if x.shape.rank == 3:
        if x.shape[1] is not None and x.shape[1] != 1:
            raise ValueError(f"{name} must have shape [B, 1, 3] (or [B, 3]), got shape {x.shape}")
        x = x[:, 0, :]
    return x


def pose_vec_to_matrix(axisangle, translation, invert=False):
    """Monodepth2's ``transformation_from_parameters`` (spec A.4): M = T(t) @ R, or R^T @ T(-t) if ``invert``.

    M maps frame-0 (target) camera points into the source camera frame; ``invert=True`` is used for the frame
    before the target (the network always sees the pair in temporal order), giving exactly inv(T(t) @ R).

    Args:
      axisangle: [B, 1, 3] (or [B, 3]) rotation vector.
      translation: [B, 1, 3] (or [B, 3]).
      invert: Python bool.
    Returns:
      [B, 4, 4].
    """
    v = _pose_vector(axisangle, "axisangle")
    t = tf.cast(_pose_vector(translation, "translation"), v.dtype)
    R = axis_angle_to_matrix(v)
    if invert:
        R_t = tf.linalg.matrix_transpose(R)
        # R^T @ T(-t) = [[R^T, -R^T t], [0, 1]]
        return _rt_to_matrix(R_t, -tf.linalg.matvec(R_t, t))
    return _rt_to_matrix(R, t)


def _check_pose(T, name, dtype=None):
    T = _as_float(T, name, dtype)
    _check_shape(T, name, (">=", 2), {-1: 4, -2: 4}, "[..., 4, 4]")
    return T


def invert_pose(T):
    """Closed-form inverse of a rigid transform: ``[[R, t], [0, 1]]^-1 = [[R^T, -R^T t], [0, 1]]``.

    Args:
      T: [..., 4, 4] rigid transform (last row 0 0 0 1).
    Returns:
      [..., 4, 4].
    """
    T = _check_pose(T, "T")
    R_t = tf.linalg.matrix_transpose(T[..., :3, :3])
    t = T[..., :3, 3]
    return _rt_to_matrix(R_t, -tf.linalg.matvec(R_t, t))


def relative_pose(T_world_from_a, T_world_from_b):
    """``T_a_from_b = inv(T_world_from_a) @ T_world_from_b``; for warping, a = source and b = target.

    Args:
      T_world_from_a, T_world_from_b: [..., 4, 4] camera poses (broadcastable).
    Returns:
      [..., 4, 4].
    """
    T_wa = _check_pose(T_world_from_a, "T_world_from_a")
    T_wb = _check_pose(T_world_from_b, "T_world_from_b", T_wa.dtype)
    return tf.matmul(invert_pose(T_wa), T_wb)


def matrix_to_axis_angle(R):
    """Rotation vector (axis * angle, angle in [0, pi]) of a rotation matrix; the inverse of Rodrigues.

    The angle is ``atan2(|s|, (trace - 1) / 2)`` with ``s = vee(R - R^T) / 2 = sin(a) k``, accurate over the whole
    range. The axis comes from ``s / sin(a)`` for angles below pi/2 (with a series for a -> 0, where a/sin(a) -> 1)
    and from the symmetric part ``((R + R^T)/2 - cos(a) I) / (1 - cos(a)) = k k^T`` above pi/2, where s vanishes
    near pi; its sign is taken from s. At exactly pi both signs are valid rotation vectors.

    Args:
      R: [..., 3, 3] (or [..., 4, 4]; its rotation block is used).
    Returns:
      [..., 3].
    """
    R = _as_float(R, "R")
    _check_shape(R, "R", (">=", 2), {-1: {3, 4}, -2: {3, 4}}, "[..., 3, 3] or [..., 4, 4]")
    R = R[..., :3, :3]
    dtype = R.dtype
    s = 0.5 * tf.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin_a = _safe_norm(s)
    cos_a = 0.5 * (tf.linalg.trace(R) - 1.0)
    angle = tf.atan2(sin_a, cos_a)

    # Small/medium angles: v = s * a / sin(a); a / sin(a) = 1 + a^2/6 + 7a^4/360 below 1e-2 avoids 0/0.
    small = angle < 1e-2
    safe_sin = tf.where(small, tf.ones_like(sin_a), sin_a)
    a2 = tf.square(angle)
    factor = tf.where(small, 1.0 + a2 / 6.0 + 7.0 * a2 * a2 / 360.0, angle / safe_sin)
    v_small = s * factor[..., tf.newaxis]

    # Large angles: k k^T from the symmetric part; take the column with the largest diagonal (best conditioned).
    sym = 0.5 * (R + tf.linalg.matrix_transpose(R))
    one_minus_cos = tf.maximum(1.0 - cos_a, 1e-6)[..., tf.newaxis, tf.newaxis]
    kkT = (sym - cos_a[..., tf.newaxis, tf.newaxis] * tf.eye(3, dtype=dtype)) / one_minus_cos
    diag = tf.linalg.diag_part(kkT)
    pick = tf.one_hot(tf.argmax(diag, axis=-1), 3, dtype=dtype)
    column = tf.reduce_sum(kkT * pick[..., tf.newaxis, :], axis=-1)
    k = column / tf.maximum(_safe_norm(column), 1e-12)[..., tf.newaxis]
    sign = tf.where(tf.reduce_sum(k * s, axis=-1) < 0.0, -tf.ones_like(angle), tf.ones_like(angle))
    v_large = k * (sign * angle)[..., tf.newaxis]

    large = cos_a < 0.0  # angle above pi/2
    return tf.where(large[..., tf.newaxis], v_large, v_small)
