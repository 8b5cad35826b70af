"""Loss functions: pure tensor functions returning per-pixel maps or per-sample values; reduction and loss weights
are the trainer's (DESIGN.md). May import tensorflow, numpy, scipy and ``tfdepth.geometry`` only, never models.

* ``photometric``: Monodepth2 SSIM, photometric error, minimum reprojection with auto-masking (spec A.6).
* ``smoothness``: edge-aware smoothness of the mean-normalised disparity (spec A.6 step 6).
* ``segmentation``: U-Net boundary weight map and pixel-weighted cross entropy, SegDepth's L_b (spec B.3).
"""

from tfdepth.losses.photometric import min_reprojection, photometric_error, ssim_dissimilarity
from tfdepth.losses.segmentation import unet_weight_map, weighted_cross_entropy
from tfdepth.losses.smoothness import edge_aware_smoothness

__all__ = [
    "ssim_dissimilarity",
    "photometric_error",
    "min_reprojection",
    "edge_aware_smoothness",
    "unet_weight_map",
    "weighted_cross_entropy",
]
