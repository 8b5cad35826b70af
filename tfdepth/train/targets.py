"""Per-sample training targets derived from labels, as ``Dataset.map`` functions (dict in, dict out).

SegDepth's segmentation ground truth is a 2-class mask, foreground = any object class a VOC-style segmenter
would label (specs/monodepth_seg.md B.2); on the synthetic scenes the class table says which classes those are.
The U-Net weight map (B.3) is computed from the foreground instances with the numpy function of
``tfdepth.losses.segmentation`` inside ``tf.numpy_function``. Applied after flips, so mask and weight map always
follow the image (B.5 item 4 is not replicated).
"""

import numpy as np
import tensorflow as tf

from tfdepth.losses.segmentation import unet_weight_map

__all__ = ["segmentation_targets_fn"]


def segmentation_targets_fn(foreground_class_ids, *, w0=10.0, sigma=5.0, class_balance=True, weight_map=True):
    """Return ``fn(sample) -> sample`` adding ``seg_mask`` [H,W] int32 and ``seg_weight`` [H,W] float32.

    ``sample`` needs ``semantic`` and ``instance`` [H,W] (or [H,W,1]) maps.
    """
    ids = np.asarray(sorted(set(int(i) for i in foreground_class_ids)), np.int32)
    if ids.size == 0:
        raise ValueError("foreground_class_ids is empty: the segmentation target would be all background")

    def _weights(instances):
        return unet_weight_map(instances, w0=w0, sigma=sigma, class_balance=class_balance).astype(np.float32)

    def fn(sample):
        if "semantic" not in sample or "instance" not in sample:
            raise ValueError(
                f"segmentation targets need 'semantic' and 'instance' maps in each sample; got {sorted(sample)}"
            )
        sample = dict(sample)
        semantic = tf.cast(sample["semantic"], tf.int32)
        instance = tf.cast(sample["instance"], tf.int32)
        if semantic.shape.rank == 3:
            semantic, instance = semantic[..., 0], instance[..., 0]
        foreground = tf.reduce_any(tf.equal(semantic[..., None], tf.constant(ids)), axis=-1)
        sample["seg_mask"] = tf.cast(foreground, tf.int32)
        if weight_map:
            fg_instances = tf.where(foreground, instance, tf.zeros_like(instance))
            weight = tf.numpy_function(_weights, [fg_instances], tf.float32, stateful=False)
            weight.set_shape(instance.shape)
        else:
            weight = tf.ones(tf.shape(instance), tf.float32)
        sample["seg_weight"] = weight
        return sample

    return fn
