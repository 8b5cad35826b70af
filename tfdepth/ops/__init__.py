"""TensorFlow-only helpers that several layers need (DESIGN.md "ops"): imports nothing from tfdepth but itself."""

from tfdepth.ops.align import align_depth_tf, least_squares_scale_shift_tf

__all__ = ["least_squares_scale_shift_tf", "align_depth_tf"]
