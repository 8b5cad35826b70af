"""TensorFlow-only helpers that several layers need (DESIGN.md "ops"): imports nothing from tfdepth but itself."""

from tfdepth.ops.align import align_depth_tf, least_squares_scale_shift_tf
from tfdepth.ops.edges import bilateral_filter_tf, edge_representation_tf, minmax_normalize_tf, sobel_gradients_tf
from tfdepth.ops.tiling import align_affine_tf, crop_windows_tf, feather_mask, merge_windows_tf, refine_windows_tf, window_grid

__all__ = ["least_squares_scale_shift_tf", "align_depth_tf"]
__all__ += ["sobel_gradients_tf", "edge_representation_tf", "bilateral_filter_tf", "minmax_normalize_tf",
            "window_grid", "feather_mask", "align_affine_tf", "crop_windows_tf", "merge_windows_tf", "refine_windows_tf"]
