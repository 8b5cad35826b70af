"""Camera geometry in TensorFlow (channels-last, batch-first). Conventions, stated once for all of tfdepth:

* Camera frame: OpenCV. x to the right, y down, z forward along the optical axis. Depth is z-depth (metres, or
  the model's relative unit), not ray length.
* Pixels: ``(u, v) = (x, y)`` = (column, row). The centre of pixel (row i, column j) is at ``u = j, v = i``
  (pixel centres at integer coordinates, as Monodepth2's back-projection grid).
* Intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels of the tensor they describe, ``[B, 3, 3]``
  (a ``[B, 4, 4]`` K is accepted wherever K is read; its top-left 3x3 is used).
  Normalised intrinsics (fractions of the image size, in continuous coordinates where the image spans [0, W])
  convert as ``fx = fx_n * W``, ``cx = cx_n * W - 0.5``; so ``cx_n = 0.5`` is the exact image centre
  ``(W - 1) / 2`` and a horizontal flip leaves a centred K unchanged.
* Resizing by factors ``(sx, sy)`` with half-pixel alignment (``tf.image.resize``) maps
  ``fx -> fx * sx`` and ``cx -> (cx + 0.5) * sx - 0.5`` (``scale_intrinsics``).
* Poses are 4x4 rigid transforms named ``T_dst_from_src``: ``X_dst = T_dst_from_src @ X_src`` on homogeneous
  column vectors. Datasets store camera poses as ``T_world_from_cam``. The relative pose that maps target-frame
  points into a source frame is ``T_source_from_target = inv(T_world_from_source) @ T_world_from_target``.
"""

from tfdepth.geometry.camera import (
    flip_intrinsics_horizontally,
    intrinsics_from_normalized,
    invert_intrinsics,
    pixel_grid,
    scale_intrinsics,
)
from tfdepth.geometry.projection import backproject, project
from tfdepth.geometry.transforms import (
    axis_angle_to_matrix,
    invert_pose,
    matrix_to_axis_angle,
    pose_vec_to_matrix,
    relative_pose,
)
from tfdepth.geometry.warp import bilinear_sample, inverse_warp

__all__ = [
    "axis_angle_to_matrix",
    "backproject",
    "bilinear_sample",
    "flip_intrinsics_horizontally",
    "intrinsics_from_normalized",
    "invert_intrinsics",
    "invert_pose",
    "inverse_warp",
    "matrix_to_axis_angle",
    "pixel_grid",
    "pose_vec_to_matrix",
    "project",
    "relative_pose",
    "scale_intrinsics",
]
