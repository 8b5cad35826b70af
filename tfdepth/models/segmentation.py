"""SegDepth's segmentation branch: a small vanilla U-Net on the predicted disparity (spec monodepth_seg.md §B.1).

The student project feeds the full-resolution disparity ``disp_0`` to a separate U-Net (the paper's figure shows a
vanilla U-Net; the released code uses an EfficientNet-B3 U-Net). tfdepth's default is the figure's small U-Net
[interpretation, §B.1]:

* per level: 2 x (3x3 conv, zero 'same' padding, no bias + BatchNorm + ReLU); filters ``filters[l]``;
* down: 2x2 max-pool between levels; up: nearest x2 upsampling, concat with the same-level skip, then the double
  conv (Ronneberger's up-conv is replaced by nearest upsampling + conv to avoid checkerboard artefacts);
* head: 1x1 conv to ``num_classes`` **logits** (no sigmoid, avoiding the student code's sigmoid + log_softmax
  double squashing, §B.5 bug 2). Logits are float32 under mixed precision.

Input: disparity (``in_channels=1``) or disparity + RGB image (``in_channels=4``). H and W must be multiples of
``2 ** (len(filters) - 1)`` so every pooled map upsamples back to its skip's size. Used in training only.
"""

import keras

from tfdepth.layers import (
    FusedBatchNormalization,
    UpsampleNearest2x,
    check_bool,
    check_hw,
    check_int,
    check_multiple_on_call,
)

__all__ = ["SegmentationUNet"]


def _conv_bn_relu(x, filters, sync, name):
    # No bias: the following BatchNorm's beta makes it redundant.
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                            name=name + "_conv")(x)
    x = FusedBatchNormalization(epsilon=1e-5, momentum=0.9, synchronized=sync, name=name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def _double_conv(x, filters, sync, name):
    return _conv_bn_relu(_conv_bn_relu(x, filters, sync, name + "_a"), filters, sync, name + "_b")


@keras.saving.register_keras_serializable(package="tfdepth")
class SegmentationUNet(keras.Model):
    """Vanilla U-Net: ``[B, H, W, in_channels]`` -> dict ``logits`` ``[B, H, W, num_classes]`` (§B.1).

    ``filters`` lists the channels per level, top to bottom (default 5 levels: H, W multiples of 16).
    """

    def __init__(self, in_channels=1, num_classes=2, filters=(16, 32, 64, 128, 256), sync_batchnorm=True,
                 height=None, width=None, name="segmentation_unet", **kwargs):
        check_int(in_channels, "in_channels", 1)
        check_int(num_classes, "num_classes", 1)
        if isinstance(filters, (int, str)) or not hasattr(filters, "__iter__"):
            raise TypeError(f"filters must be a sequence of positive ints, e.g. (16, 32, 64, 128, 256); "
                            f"got {filters!r}.")
        filters = tuple(filters)
        if len(filters) < 2:
            raise ValueError(f"filters needs at least 2 levels for a U-Net, got {filters!r}.")
        for i, f in enumerate(filters):
            check_int(f, f"filters[{i}]", 1)
        check_bool(sync_batchnorm, "sync_batchnorm")
        multiple = 2 ** (len(filters) - 1)
        height = check_hw(height, "height", multiple, "SegmentationUNet")
        width = check_hw(width, "width", multiple, "SegmentationUNet")

        inputs = keras.Input((height, width, in_channels), name="input")
        x = inputs
        skips = []
        for level, f in enumerate(filters):
            if level > 0:
                x = keras.layers.MaxPooling2D(2, name=f"down_{level}_pool")(x)
            x = _double_conv(x, f, sync_batchnorm, f"down_{level}")
            skips.append(x)
        for level in range(len(filters) - 2, -1, -1):
            x = UpsampleNearest2x(name=f"up_{level}_upsample")(x)
            x = keras.layers.Concatenate(axis=-1, name=f"up_{level}_skip")([x, skips[level]])
            x = _double_conv(x, filters[level], sync_batchnorm, f"up_{level}")
        x = keras.layers.Conv2D(num_classes, 1, use_bias=True, name="head")(x)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)

        super().__init__(inputs=inputs, outputs={"logits": logits}, name=name, **kwargs)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.filters = filters
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width
        self.size_multiple = multiple

    def call(self, inputs, training=None, mask=None):
        check_multiple_on_call(inputs, self.size_multiple, type(self).__name__)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "filters": list(self.filters),
            "sync_batchnorm": self.sync_batchnorm,
            "height": self.height,
            "width": self.width,
        }
