"""ResNet 18/34/50 feature encoder of Monodepth2 (spec monodepth_seg.md §A.2, §A.4).

The torchvision ResNet without its classifier: conv1 7x7/2 + BN + ReLU (``f0``), maxpool 3x3/2, layer1..layer4
(``f1``..``f4``). BasicBlock for 18/34, Bottleneck (stride on the 3x3 conv, torchvision v1.5) for 50.

PyTorch alignment: every strided convolution and the max-pool use explicit symmetric zero padding followed by a
'valid' op, as PyTorch does. TF's 'same' padding for stride 2 pads only at the bottom/right, which would shift every
feature map by half a pixel relative to torchvision and break ported ImageNet weights.

Inputs are ``num_input_images`` RGB images stacked on channels, in [0, 1]; the model normalises them with
``(x - 0.45) / 0.225`` (§A.2) itself. Conv kernels start from torchvision's Kaiming-normal (fan_out, ReLU) init,
BN from gamma = 1, beta = 0; ImageNet weights are opt-in via :mod:`tfdepth.models.weights`.
"""

import keras

from tfdepth.layers import FusedBatchNormalization, check_bool, check_hw, check_int, check_multiple_on_call

__all__ = ["ResnetEncoder", "RESNET_SPECS", "ResnetLayerBuilder"]

# depth -> (block type, blocks per stage); torchvision's resnet18/34/50.
RESNET_SPECS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}
_EXPANSION = {"basic": 1, "bottleneck": 4}
# torch BatchNorm2d defaults: eps 1e-5, momentum 0.1 (torch) == 0.9 (Keras' decay convention).
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9
_MEAN, _STD = 0.45, 0.225  # Monodepth2's input normalisation (§A.2), not ImageNet's per-channel values.


def _kaiming_fan_out():
    # torchvision ResNet: nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu") = N(0, 2 / fan_out).
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


class _Builder:
    """Creates the layers of one encoder and records the torchvision module name of each weighted layer."""

    def __init__(self, sync_batchnorm):
        self.sync = sync_batchnorm
        self.torch_names = {}  # keras layer name -> torchvision module name ("layer1.0.downsample.0")

    def conv(self, x, filters, kernel, stride, torch_name, padding=None):
        """``padding=None``: torchvision's ``kernel // 2``; an int: that explicit symmetric zero padding (RSN's
        7x7 stem pads 1, spec rsn.md §4)."""
        name = torch_name.replace(".", "_")
        if padding is not None:
            if padding:
                x = keras.layers.ZeroPadding2D(padding, name=name + "_pad")(x)
            padding = "valid"
        elif kernel // 2 and stride > 1:
            x = keras.layers.ZeroPadding2D(kernel // 2, name=name + "_pad")(x)
            padding = "valid"
        else:
            padding = "same"  # stride 1, odd kernel: TF 'same' is symmetric, identical to torch's padding.
        self.torch_names[name] = torch_name
        return keras.layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=False,
            kernel_initializer=_kaiming_fan_out(), name=name,
        )(x)

    def bn(self, x, torch_name):
        name = torch_name.replace(".", "_")
        self.torch_names[name] = torch_name
        # synchronized=True: statistics over the global batch under MirroredStrategy (stack_notes.md), so
        # 2-replica training equals single-device training on the same global batch.
        return FusedBatchNormalization(
            epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, synchronized=self.sync, name=name
        )(x)

    def block(self, x, kind, planes, stride, prefix):
        in_ch = x.shape[-1]
        out_ch = planes * _EXPANSION[kind]
        shortcut = x
        if stride != 1 or in_ch != out_ch:
            shortcut = self.conv(x, out_ch, 1, stride, prefix + ".downsample.0")
            shortcut = self.bn(shortcut, prefix + ".downsample.1")
        relu = lambda t, n: keras.layers.ReLU(name=(prefix + "." + n).replace(".", "_"))(t)  # noqa: E731
        if kind == "basic":
            y = relu(self.bn(self.conv(x, planes, 3, stride, prefix + ".conv1"), prefix + ".bn1"), "relu1")
            y = self.bn(self.conv(y, planes, 3, 1, prefix + ".conv2"), prefix + ".bn2")
        else:
            y = relu(self.bn(self.conv(x, planes, 1, 1, prefix + ".conv1"), prefix + ".bn1"), "relu1")
            y = relu(self.bn(self.conv(y, planes, 3, stride, prefix + ".conv2"), prefix + ".bn2"), "relu2")
            y = self.bn(self.conv(y, out_ch, 1, 1, prefix + ".conv3"), prefix + ".bn3")
        y = keras.layers.Add(name=(prefix + ".add").replace(".", "_"))([y, shortcut])
        return relu(y, "relu_out")


# Public name of the block builder for other torchvision-style encoders (RSN's stride-1 ResNet34, spec rsn.md §4).
ResnetLayerBuilder = _Builder


@keras.saving.register_keras_serializable(package="tfdepth")
class ResnetEncoder(keras.Model):
    """Monodepth2 ResNet encoder: ``[B, H, W, 3 * num_input_images]`` in [0, 1] -> dict ``f0``..``f4``.

    Feature strides 2, 4, 8, 16, 32; channels ``num_ch_enc`` = [64, 64, 128, 256, 512] (x4 except ``f0`` for 50).
    ``height``/``width`` fix the spatial input size (must be multiples of 32, §A.2); ``None`` keeps it dynamic.
    Attributes: ``num_ch_enc`` (list of 5 ints) and ``torch_names`` (Keras layer name -> torchvision module name,
    used by :func:`tfdepth.models.weights.load_torchvision_resnet_weights`).
    """

    def __init__(self, depth=18, num_input_images=1, sync_batchnorm=True, height=None, width=None, name=None,
                 **kwargs):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth not in RESNET_SPECS:
            raise ValueError(f"depth must be one of 18, 34 or 50 (ResNet variants), got {depth!r}.")
        check_int(num_input_images, "num_input_images", 1)
        check_bool(sync_batchnorm, "sync_batchnorm")
        height = check_hw(height, "height", 32, "ResnetEncoder")
        width = check_hw(width, "width", 32, "ResnetEncoder")
        kind, blocks = RESNET_SPECS[depth]
        expansion = _EXPANSION[kind]
        num_ch_enc = [64] + [p * expansion for p in (64, 128, 256, 512)]

        b = _Builder(sync_batchnorm)
        image = keras.Input((height, width, 3 * num_input_images), name="image")
        # (x - 0.45) / 0.225 written as x * (1/0.225) + (-0.45/0.225) (§A.2).
        x = keras.layers.Rescaling(1.0 / _STD, offset=-_MEAN / _STD, name="normalize")(image)
        x = b.conv(x, 64, 7, 2, "conv1")
        f0 = keras.layers.ReLU(name="relu")(b.bn(x, "bn1"))
        # torch MaxPool2d(3, 2, padding=1) pads with -inf; zero padding is equivalent here because its input is a
        # ReLU output (>= 0) and every window holds at least one real pixel.
        x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(f0)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
        features = {"f0": f0}
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            for i in range(n):
                stride = 2 if (i == 0 and stage > 1) else 1
                x = b.block(x, kind, planes, stride, f"layer{stage}.{i}")
            features[f"f{stage}"] = x

        super().__init__(inputs=image, outputs=features, name=name or f"resnet{depth}_encoder", **kwargs)
        self.depth = depth
        self.num_input_images = num_input_images
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width
        self.num_ch_enc = num_ch_enc
        self.torch_names = dict(b.torch_names)

    def call(self, inputs, training=None, mask=None):
        check_multiple_on_call(inputs, 32, type(self).__name__)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "depth": self.depth,
            "num_input_images": self.num_input_images,
            "sync_batchnorm": self.sync_batchnorm,
            "height": self.height,
            "width": self.width,
        }
