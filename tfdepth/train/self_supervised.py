"""Self-supervised depth + pose training (Monodepth2), optionally with SegDepth's segmentation guidance.

Loss (specs/monodepth_seg.md A.6 and B.4), with every weight applied here and nowhere else::

    L = (1/|S|) * sum_s [ mu * Lp_s + lambda * Ls_s / 2^s ]  +  alpha * Lb

* ``Lp_s``: per-pixel minimum over source frames of the photometric error (0.85 SSIM + 0.15 L1) between the
  target and each source warped with ``disp_s`` (bilinearly upsampled to full resolution: "full-res multi-scale")
  and the predicted pose, with identity-reprojection auto-masking (+1e-5 tie-breaking noise), mean over pixels.
* ``Ls_s``: edge-aware smoothness of the mean-normalised ``disp_s`` at its native scale with the target image at
  that scale.
* ``Lb``: U-Net boundary-weighted cross-entropy of the segmentation U-Net fed with the full-resolution disparity
  (B.1, B.3); computed once per step (B.5 item 7), trained jointly with its own Adam (B.4 interpretation: both
  optimisers step on the gradients of the same total loss; B.5 item 1 is not replicated).

Networks see the colour-jittered images (``*_aug`` keys, A.1); the losses use the un-augmented ones.

``automask_warmup_steps`` (not in the paper; default 0): auto-masking starts after the first N optimiser steps;
before that the loss is the plain per-pixel minimum over the warped sources. Why: trained from scratch, the depth
and pose networks can settle into a wrong but self-consistent pair, a near-constant sideways camera translation
with a depth map bent to fit it (README "Measured"). Auto-masking feeds that trap: a pixel only counts once the
current, still wrong, motion explains it better than no motion at all, so the pixels that agree with the wrong
motion are kept and the rest are masked away. Without the mask every pixel must be explained, and the pose
network finds the direction of travel within a few dozen steps (measured on synthetic streets: |t_x| / |t| averaged
over the first 60 steps 0.035-0.041 in four runs, against 0.27 and 0.38 with the mask on). The mask then does its
real job (static frames, objects moving with the camera) for the rest of training.

Distribution, precision, optimizer groups, the finite check and validation monitoring are the trainer core's
(``tfdepth/train/base.py``); this module writes the loss and how depth is read from the outputs.
"""

from __future__ import annotations

import tensorflow as tf

from tfdepth.geometry import inverse_warp, pose_vec_to_matrix
from tfdepth.losses.photometric import min_reprojection, photometric_error, photometric_target
from tfdepth.losses.segmentation import weighted_cross_entropy
from tfdepth.losses.smoothness import edge_aware_smoothness
from tfdepth.models.depth_decoder import disp_to_depth
from tfdepth.train.base import DepthTrainer

__all__ = ["SelfSupervisedDepthModel", "validate_video_batch_spec", "REQUIRED_KEYS", "scale_intrinsics_original"]

REQUIRED_KEYS = ("image", "image_prev", "image_next", "intrinsics")
SOURCE_FRAMES = (-1, 1)  # Monodepth2 frame_ids [0, -1, 1]
_SOURCE_KEYS = {-1: "image_prev", 1: "image_next"}


def validate_video_batch_spec(element_spec: dict, multiple: int = 32, segmentation: bool = False) -> None:
    """Check a batched video dataset's ``element_spec`` before training; raise ValueError naming what is wrong.

    Needs ``image``, ``image_prev``, ``image_next`` ([B,H,W,3]) and ``intrinsics`` ([B,3,3] or [B,4,4]); H and W
    multiples of ``multiple`` (the ResNet encoder's output stride, A.2); with ``segmentation`` also ``seg_mask``.
    """
    if not isinstance(element_spec, dict):
        raise ValueError(f"training batches must be dicts with keys {REQUIRED_KEYS}; got {element_spec!r}")
    required = REQUIRED_KEYS + (("seg_mask",) if segmentation else ())
    missing = [k for k in required if k not in element_spec]
    if missing:
        raise ValueError(
            f"the training batch lacks {missing} (has {sorted(element_spec)}). Self-supervised training needs the "
            "target frame and its neighbours: use tfdepth.data.pipeline.make_video_dataset (frames t-1, t, t+1)"
            + ("; the segmentation-guided model also needs seg_mask (and seg_weight)" if segmentation else "")
        )
    shape = element_spec["image"].shape
    if shape.rank != 4 or shape[-1] != 3:
        raise ValueError(f"batch 'image' must be [B, H, W, 3]; got shape {shape}")
    for axis, name in ((1, "height"), (2, "width")):
        size = shape[axis]
        if size is not None and size % multiple:
            raise ValueError(
                f"image {name} {size} is not a multiple of {multiple} (the ResNet encoder's stride); resize the "
                f"data, e.g. data.{name}={max(multiple, round(size / multiple) * multiple)}"
            )
    for key in ("image_prev", "image_next"):
        if element_spec[key].shape[1:] != shape[1:]:
            raise ValueError(f"batch {key!r} has shape {element_spec[key].shape}, 'image' has {shape}")


class SelfSupervisedDepthModel(DepthTrainer):
    """Owns the depth, pose and (optional) segmentation networks; ``fit()`` trains them together.

    Built on :class:`tfdepth.train.base.DepthTrainer` (replica scaling, precision, optimizer groups, finite check,
    validation monitoring with per-image median scaling). Args:
        depth_net: image [B,H,W,3] -> dict ``disp_0..disp_k`` (sigmoid disparities, scale s at H/2^s).
        pose_net: two frames [B,H,W,6] in temporal order -> dict ``axisangle``, ``translation`` ([B,1,3]).
        segmentation_net: optional U-Net, disparity (+ image) -> logits [B,H,W,K]; with its own optimizer pass
            ``compile(group_optimizers={"segmentation": ...})`` (SegDepth: Adam 1e-3), else the main one steps it.
        scales: disparity scales used in the loss.
        min_depth, max_depth: range of ``disp_to_depth`` (A.3).
        photometric_weight, smoothness_weight, segmentation_weight: mu, lambda, alpha of B.4.
        ssim_weight: 0.85 (A.6); 0 gives L1 only.
        automask, min_reprojection, full_res_multiscale: the Monodepth2 contributions (positive flags; A.9).
        segmentation_input: "disparity" or "disparity_and_image" (U-Net input, B.1).
        segmentation_weight_map: use the batch's ``seg_weight`` map (U-Net weighting) or plain CE.
        automask_warmup_steps: auto-masking starts after this many steps (module docstring); 0 = paper.
        **core: keyword arguments of ``DepthTrainer`` (monitor_alignment, monitor_min/max_depth, monitor,
            on_nonfinite).
    """

    def __init__(
        self,
        depth_net,
        pose_net,
        segmentation_net=None,
        *,
        scales=(0, 1, 2, 3),
        min_depth=0.1,
        max_depth=100.0,
        photometric_weight=1.0,
        smoothness_weight=1e-3,
        segmentation_weight=5e-4,
        ssim_weight=0.85,
        automask=True,
        min_reprojection=True,
        full_res_multiscale=True,
        segmentation_input="disparity",
        segmentation_weight_map=True,
        automask_warmup_steps=0,
        name="self_supervised_depth",
        **core,
    ):
        if segmentation_input not in ("disparity", "disparity_and_image"):
            raise ValueError(f"segmentation_input must be 'disparity' or 'disparity_and_image', got {segmentation_input!r}")
        scales = tuple(int(s) for s in scales)
        if not scales or min(scales) < 0:
            raise ValueError(f"scales must be non-negative integers, got {scales}")
        warmup = automask_warmup_steps
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"automask_warmup_steps must be a non-negative integer (0 = off), got {warmup!r}")
        terms = ("photometric", "smoothness", "automask_fraction") + (("segmentation",) if segmentation_net else ())
        super().__init__(loss_terms=terms, name=name, **core)
        self.depth_net = depth_net
        self.pose_net = pose_net
        self.segmentation_net = segmentation_net
        self.scales = scales
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.photometric_weight = float(photometric_weight)
        self.smoothness_weight = float(smoothness_weight)
        self.segmentation_weight = float(segmentation_weight)
        self.ssim_weight = float(ssim_weight)
        self.automask = bool(automask)
        self.min_reprojection = bool(min_reprojection)
        self.full_res_multiscale = bool(full_res_multiscale)
        self.segmentation_input = segmentation_input
        self.segmentation_weight_map = bool(segmentation_weight_map)
        self.automask_warmup_steps = warmup

    # ------------------------------------------------------------------------------------------------ core API
    def networks(self):
        nets = {"depth": self.depth_net, "pose": self.pose_net}
        if self.segmentation_net is not None:
            nets["segmentation"] = self.segmentation_net
        return nets

    def variable_groups(self):
        groups = {"main": list(self.depth_net.trainable_variables) + list(self.pose_net.trainable_variables)}
        if self.segmentation_net is not None:
            groups["segmentation"] = list(self.segmentation_net.trainable_variables)
        return groups

    @property
    def segmentation_optimizer(self):
        """The U-Net's own optimizer, if it has one (SegDepth B.4)."""
        return self.group_optimizers.get("segmentation")

    def monitor_depth(self, batch):
        """Depth of ``disp_0`` at the network's input size (the core resizes it to the ground truth's)."""
        disp = self.depth_net(self._aug(batch, "image"), training=False)["disp_0"]
        return disp_to_depth(tf.cast(disp, tf.float32), self.min_depth, self.max_depth)[1]

    def call(self, inputs, training=False):
        """Depth prediction for an image batch (the part used at inference): dict of disparities and depths."""
        image = inputs["image"] if isinstance(inputs, dict) else inputs
        disps = self.depth_net(image, training=training)
        out = dict(disps)
        for s in self.scales:
            out[f"depth_{s}"] = disp_to_depth(disps[f"disp_{s}"], self.min_depth, self.max_depth)[1]
        return out

    # ------------------------------------------------------------------------------------------------ losses
    def predict_poses(self, batch, training=False):
        """T_source_from_target [B,4,4] for each source frame f in (-1, +1) (A.4)."""
        target = self._aug(batch, "image")
        poses = {}
        for f in SOURCE_FRAMES:
            source = self._aug(batch, _SOURCE_KEYS[f])
            # Pose inputs are always in temporal order: [I-1, I0] for f = -1 and [I0, I+1] for f = +1 (A.4).
            pair = tf.concat([source, target] if f < 0 else [target, source], axis=-1)
            out = self.pose_net(pair, training=training)
            axisangle = tf.cast(out["axisangle"], tf.float32)
            translation = tf.cast(out["translation"], tf.float32)
            # The network predicts the motion from the earlier to the later frame; for f < 0 it is inverted so
            # that every matrix maps target (frame 0) points into the source camera (A.4).
            poses[f] = pose_vec_to_matrix(axisangle, translation, invert=f < 0)
        return poses

    @staticmethod
    def _aug(batch, key):
        return batch.get(f"{key}_aug", batch[key])

    def compute_losses(self, batch, training=False):
        """Named loss terms for one (per-replica) batch; ``loss`` is the weighted total."""
        target = tf.cast(batch["image"], tf.float32)
        sources = {f: tf.cast(batch[_SOURCE_KEYS[f]], tf.float32) for f in SOURCE_FRAMES}
        K = tf.cast(batch["intrinsics"], tf.float32)[:, :3, :3]
        height, width = tf.shape(target)[1], tf.shape(target)[2]

        disps = {k: tf.cast(v, tf.float32) for k, v in self.depth_net(self._aug(batch, "image"), training=training).items()}
        poses = self.predict_poses(batch, training=training)
        step = self.step

        # The target with its SSIM statistics, compared with every warped and unwarped source (same numbers as
        # passing the image; photometric_target's docstring).
        target_full = photometric_target(target) if self.ssim_weight else target
        identity_full = None
        if self.automask:
            # Identity reprojection of the unwarped sources, computed once at full resolution (A.6 step 2); used
            # by every scale in full-res multi-scale mode and by scale 0 in Monodepth1-style mode.
            identity_full = [photometric_error(sources[f], target_full, self.ssim_weight) for f in SOURCE_FRAMES]

        photometric_total = 0.0
        smoothness_total = 0.0
        automask_fraction = 0.0
        for index, s in enumerate(self.scales):
            disp = disps[f"disp_{s}"]
            if self.full_res_multiscale or s == 0:
                # Full-res multi-scale (A.5): upsample disp_s (bilinear, half-pixel = align_corners False) and
                # compute the photometric loss at full resolution with the full-resolution K.
                disp_warp = tf.image.resize(disp, [height, width], method="bilinear") if s else disp
                tgt, srcs, K_s = target_full, sources, K
                identity = identity_full
            else:
                # Monodepth1-style (--v1_multiscale): images and K at scale s. K as the original scales it
                # (fx/2^s and cx/2^s; the half-pixel reading of tfdepth.geometry.scale_intrinsics would give
                # (cx + 0.5)/2^s - 0.5, a shift of 0.5 (1 - 2^-s) px). As in the original, the warped sources,
                # the target and the identity reprojection are all at scale s. The pyramid is `downscale`'s box
                # filter; the original's loader resizes with PIL's Lanczos (a sharper target at scale s).
                tgt = downscale(target, s)
                tgt = photometric_target(tgt) if self.ssim_weight else tgt
                srcs = {f: downscale(v, s) for f, v in sources.items()}
                K_s = scale_intrinsics_original(K, s)
                disp_warp = disp
                identity = [photometric_error(srcs[f], tgt, self.ssim_weight) for f in SOURCE_FRAMES] if self.automask else None
            _, depth = disp_to_depth(disp_warp, self.min_depth, self.max_depth)
            reprojection = []
            for f in SOURCE_FRAMES:
                warped, _valid = inverse_warp(srcs[f], depth, poses[f], K_s)
                reprojection.append(photometric_error(warped, tgt, self.ssim_weight))
            loss_map, identity_selected = min_reprojection(
                reprojection,
                identity if self.automask else None,
                seed=tf.stack([step, tf.constant(index, tf.int32)]),
                automask=self.automask,
                average_reprojection=not self.min_reprojection,
            )
            if self.automask and self.automask_warmup_steps:
                # Auto-masking starts after the warm-up (module docstring); before it every pixel counts.
                unmasked, _ = min_reprojection(
                    reprojection, automask=False, average_reprojection=not self.min_reprojection
                )
                masking = step >= self.automask_warmup_steps
                loss_map = tf.where(masking, loss_map, unmasked)
                identity_selected = tf.where(masking, identity_selected, tf.zeros_like(identity_selected))
            photometric_s = tf.reduce_mean(loss_map)
            # Smoothness at the native scale with the colour image at that scale (A.6 step 6).
            image_s = downscale(target, s)
            smoothness_s = tf.reduce_mean(edge_aware_smoothness(disp, image_s)) / (2.0**s)
            photometric_total += photometric_s
            smoothness_total += smoothness_s
            automask_fraction += tf.reduce_mean(identity_selected)

        n = float(len(self.scales))
        terms = {
            "photometric": photometric_total / n,
            "smoothness": smoothness_total / n,
            "automask_fraction": automask_fraction / n,
        }
        total = self.photometric_weight * terms["photometric"] + self.smoothness_weight * terms["smoothness"]
        if self.segmentation_net is not None:
            terms["segmentation"] = self._segmentation_loss(batch, disps["disp_0"], training)
            total += self.segmentation_weight * terms["segmentation"]
        terms["loss"] = total
        return terms

    def _segmentation_loss(self, batch, disp_full, training):
        """L_b: boundary-weighted CE of the U-Net fed with the full-resolution disparity (B.1, B.3)."""
        if "seg_mask" not in batch:
            raise ValueError("the segmentation-guided model needs 'seg_mask' (and 'seg_weight') in every batch")
        seg_input = disp_full
        if self.segmentation_input == "disparity_and_image":
            seg_input = tf.concat([disp_full, tf.cast(self._aug(batch, "image"), tf.float32)], axis=-1)
        logits = tf.cast(self.segmentation_net(seg_input, training=training)["logits"], tf.float32)
        weights = batch.get("seg_weight") if self.segmentation_weight_map else None
        return tf.reduce_mean(weighted_cross_entropy(logits, tf.cast(batch["seg_mask"], tf.int32), weights))


def scale_intrinsics_original(K, scale):
    """K [B,3,3] (or [B,4,4]) at scale s as Monodepth2's loader builds it: the first two rows divided by 2^s.

    The original normalises K by the network input size and multiplies row 0 by ``W // 2^s`` and row 1 by
    ``H // 2^s`` for each scale (datasets/mono_dataset.py); with H and W multiples of 32 that is exactly
    ``fx_s = fx / 2^s``, ``cx_s = cx / 2^s`` (not the half-pixel ``(cx + 0.5) / 2^s - 0.5`` of
    ``tfdepth.geometry.scale_intrinsics``).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 0:
        raise ValueError(f"scale must be a non-negative integer (the pyramid level s), got {scale!r}")
    K = tf.convert_to_tensor(K)
    size = K.shape[-1]
    if K.shape.rank != 3 or size not in (3, 4) or K.shape[-2] != size:
        raise ValueError(f"K must be [B, 3, 3] or [B, 4, 4] intrinsics, got shape {K.shape}")
    factor = tf.constant([[1.0 / 2**scale], [1.0 / 2**scale]] + [[1.0]] * (size - 2), K.dtype)
    return K * factor


def downscale(image, scale):
    """Area-downsample by 2^scale (H and W are multiples of 32): exact box averaging, XLA-compatible.

    Monodepth2 builds its scale pyramid with antialiased resizing (A.1); for integer factors the box filter is the
    area resize, and unlike ``tf.image.resize(method="area")`` it compiles under XLA.
    """
    if scale == 0:
        return image
    k = 2**scale
    return tf.nn.avg_pool2d(image, ksize=k, strides=k, padding="VALID")
