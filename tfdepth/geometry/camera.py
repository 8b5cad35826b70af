"""Pinhole intrinsics and the pixel grid (conventions in ``tfdepth/geometry/__init__.py``).

Also holds the small static-shape checks shared by the other geometry modules: they run on static shapes only, so
they cost nothing in a traced graph and never add runtime asserts that XLA cannot compile.
"""

import tensorflow as tf


def _as_float(x, name, dtype=None):
    """Converts ``x`` to a floating tensor (``dtype`` if given; integers become float32), or raises TypeError."""
    try:
        x = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array of real numbers, got {type(x).__name__}: {err}") from None
    if dtype is not None:
        if not (x.dtype.is_floating or x.dtype.is_integer):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype.name}")
        return tf.cast(x, dtype)
    if x.dtype.is_integer:
        return tf.cast(x, tf.float32)
    if not x.dtype.is_floating:
        raise TypeError(f"{name} must be a floating tensor (e.g. float32), got dtype {x.dtype.name}")
    return x


def _check_shape(x, name, rank, last, expected):
    """Static check: ``rank`` is an int, a set of ints, or ``(">=", n)``; ``last`` maps negative axes to sizes.

    Unknown ranks or dimensions pass (they are checked where they become known), so functions traced with
    ``None`` dimensions still work. ``expected`` is the human-readable shape put into the error message.
    """
    shape = x.shape
    if shape.rank is None:
        return
    if isinstance(rank, tuple):
        ok = shape.rank >= rank[1]
    elif isinstance(rank, (set, frozenset)):
        ok = shape.rank in rank
    else:
        ok = shape.rank == rank
    if not ok:
        raise ValueError(f"{name} must have shape {expected}, got shape {shape} (rank {shape.rank})")
    for axis, sizes in last.items():
        sizes = sizes if isinstance(sizes, (set, frozenset)) else {sizes}
        dim = shape[axis]
        if dim is not None and dim not in sizes:
            raise ValueError(f"{name} must have shape {expected}, got shape {shape}")


def _check_intrinsics(K, name="K", dtype=None):
    """Returns K as a float tensor after checking it is [..., 3, 3] or [..., 4, 4]."""
    K = _as_float(K, name, dtype)
    _check_shape(K, name, (">=", 2), {-1: {3, 4}, -2: {3, 4}}, "[..., 3, 3] or [..., 4, 4]")
    if K.shape.rank is not None and None not in (K.shape[-1], K.shape[-2]) and K.shape[-1] != K.shape[-2]:
        raise ValueError(f"{name} must be square, [..., 3, 3] or [..., 4, 4], got shape {K.shape}")
    return K


def _top_left_3x3(K):
    """The 3x3 intrinsics inside a [..., 3, 3] or [..., 4, 4] K (a 4x4 K is accepted wherever K is read)."""
    return K[..., :3, :3]


def _replace_top_left(K, K3):
    """Puts an updated 3x3 block back into K; a 4x4 K keeps its last row and column unchanged."""
    if K.shape[-1] == 3:
        return K3
    top = tf.concat([K3, K[..., :3, 3:]], axis=-1)
    return tf.concat([top, K[..., 3:, :]], axis=-2)


def _expand_scalar(value, name, dtype):
    """A scalar or per-batch value [...] as a tensor broadcastable against [..., 3, 3]."""
    value = _as_float(value, name, dtype)
    return value[..., tf.newaxis, tf.newaxis]


def scale_intrinsics(K, sx, sy):
    """Intrinsics after resizing the image by factors ``(sx, sy)`` with half-pixel alignment (``tf.image.resize``).

    ``fx -> fx * sx``, ``cx -> (cx + 0.5) * sx - 0.5`` (and the same for y): a pixel centre at ``u`` lands at
    ``(u + 0.5) * sx - 0.5`` after a half-pixel-aligned resize, so K is left-multiplied by that affine map.

    Args:
      K: [..., 3, 3] or [..., 4, 4]; a 4x4 K keeps its last row and column.
      sx, sy: scalars or [...] (one factor per batch element), new size / old size.
    Returns:
      K of the same shape and dtype.
    """
    K = _check_intrinsics(K)
    sx = _expand_scalar(sx, "sx", K.dtype)
    sy = _expand_scalar(sy, "sy", K.dtype)
    # Broadcast a scalar factor against a per-batch one so the rows concatenate.
    zero = 0.0 * (sx + sy)
    one = zero + 1.0
    sx, sy = sx + zero, sy + zero
    # S maps old pixel coordinates to new ones; as K's last row is (0, 0, 1) the offsets only touch cx and cy.
    row0 = tf.concat([sx, zero, 0.5 * sx - 0.5], axis=-1)
    row1 = tf.concat([zero, sy, 0.5 * sy - 0.5], axis=-1)
    row2 = tf.concat([zero, zero, one], axis=-1)
    S = tf.concat([row0, row1, row2], axis=-2)
    return _replace_top_left(K, tf.matmul(S, _top_left_3x3(K)))


def invert_intrinsics(K):
    """Closed-form inverse of ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` (upper triangular; skew ``s`` allowed).

    Args:
      K: [..., 3, 3] or [..., 4, 4] (its top-left 3x3 is inverted).
    Returns:
      inv_K: [..., 3, 3].
    """
    K = _check_intrinsics(K)
    K3 = _top_left_3x3(K)
    fx, s, cx = K3[..., 0, 0], K3[..., 0, 1], K3[..., 0, 2]
    fy, cy = K3[..., 1, 1], K3[..., 1, 2]
    zero = tf.zeros_like(fx)
    one = tf.ones_like(fx)
    inv_fx = 1.0 / fx
    inv_fy = 1.0 / fy
    rows = [
        tf.stack([inv_fx, -s * inv_fx * inv_fy, (s * cy - cx * fy) * inv_fx * inv_fy], axis=-1),
        tf.stack([zero, inv_fy, -cy * inv_fy], axis=-1),
        tf.stack([zero, zero, one], axis=-1),
    ]
    return tf.stack(rows, axis=-2)


def pixel_grid(height, width, dtype=tf.float32):
    """The (u, v) coordinates of every pixel centre, ``grid[i, j] = (j, i)``; ``height``/``width`` may be tensors.

    Returns:
      [height, width, 2] of ``dtype``.
    """
    u = tf.range(tf.cast(width, tf.int32))
    v = tf.range(tf.cast(height, tf.int32))
    uu, vv = tf.meshgrid(u, v, indexing="xy")  # "xy" gives [height, width] arrays
    return tf.cast(tf.stack([uu, vv], axis=-1), dtype)


def flip_intrinsics_horizontally(K, width):
    """Intrinsics of the horizontally flipped image ``u' = W - 1 - u``: ``cx -> W - 1 - cx`` (and skew -> -skew).

    Flipping is the camera with x negated (x' = -x), so fx is unchanged and only the principal point (and the
    sign of a skew term) move; a 4x4 K keeps its last row and column.

    Args:
      K: [..., 3, 3] or [..., 4, 4].
      width: image width W in pixels, scalar or [...].
    """
    K = _check_intrinsics(K)
    width = _as_float(width, "width", K.dtype)
    K3 = _top_left_3x3(K)
    fx, s, cx = K3[..., 0, 0], K3[..., 0, 1], K3[..., 0, 2]
    row0 = tf.stack([fx, -s, (width - 1.0) - cx], axis=-1)
    flipped = tf.concat([row0[..., tf.newaxis, :], K3[..., 1:, :]], axis=-2)
    return _replace_top_left(K, flipped)


def intrinsics_from_normalized(fx_n, fy_n, cx_n, cy_n, height, width):
    """Pixel intrinsics [..., 3, 3] from normalised ones (fractions of the image size; the image spans [0, W]).

    ``fx = fx_n * W``, ``fy = fy_n * H``, ``cx = cx_n * W - 0.5``, ``cy = cy_n * H - 0.5``: the -0.5 moves from
    continuous coordinates to pixel-centre coordinates, so ``cx_n = 0.5`` is the centre ``(W - 1) / 2``.
    Each argument is a scalar or broadcastable [...]; the dtype is fx_n's (float32 for Python numbers).
    """
    fx_n = _as_float(fx_n, "fx_n")
    dtype = fx_n.dtype
    fy_n = _as_float(fy_n, "fy_n", dtype)
    cx_n = _as_float(cx_n, "cx_n", dtype)
    cy_n = _as_float(cy_n, "cy_n", dtype)
    height = _as_float(height, "height", dtype)
    width = _as_float(width, "width", dtype)
    fx, fy = fx_n * width, fy_n * height
    cx, cy = cx_n * width - 0.5, cy_n * height - 0.5
    # Broadcast the four entries to one batch shape so they stack into [..., 3, 3].
    zero = 0.0 * (fx + fy + cx + cy)
    fx, fy, cx, cy = fx + zero, fy + zero, cx + zero, cy + zero
    one = zero + 1.0
    rows = [
        tf.stack([fx, zero, cx], axis=-1),
        tf.stack([zero, fy, cy], axis=-1),
        tf.stack([zero, zero, one], axis=-1),
    ]
    return tf.stack(rows, axis=-2)
