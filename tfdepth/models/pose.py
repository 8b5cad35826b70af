"""Monodepth2 pose network: separate ResNet pose encoder + pose decoder (spec monodepth_seg.md §A.4).

:class:`PoseDecoder` (``num_input_features = 1``): squeeze 1x1 (C -> 256) + ReLU, 3x3 256 + ReLU twice (zero
padding, bias), 1x1 -> 6 * num_frames, mean over H and W, x 0.01, split into axis-angle and translation.
:class:`PoseNet` stacks two RGB frames in temporal order (``[I_-1, I_0]`` or ``[I_0, I_+1]``) into a 6-channel
:class:`ResnetEncoder` and keeps only frame index 0 of the decoder output, as Monodepth2 does. Turning the output
into a 4x4 transform (with inversion for f < 0) is the trainer's job (``geometry.pose_vec_to_matrix``).
"""

import keras
import tensorflow as tf

from tfdepth.layers import (activation_input, check_bool, check_hw, check_int, check_multiple_on_call,
                            torch_default_kernel_initializer)
from tfdepth.models.depth_decoder import check_image_input
from tfdepth.models.resnet import ResnetEncoder

__all__ = ["PoseDecoder", "PoseNet", "PoseVector", "POSE_SCALE"]

POSE_SCALE = 0.01  # §A.4: Monodepth2 scales the mean-pooled pose output by 0.01 so initial motions are small.


@keras.saving.register_keras_serializable(package="tfdepth")
class PoseVector(keras.layers.Layer):
    """Pose head read-out: ``[B, h, w, 6 * F]`` -> dict ``axisangle``, ``translation`` ``[B, F, 3]`` (§A.4).

    Spatial mean, x ``scale`` (0.01), reshape to ``[B, F, 6]``; the first three numbers are the axis-angle, the
    last three the translation. Runs in float32 (pose parameters feed the geometry in float32).
    """

    def __init__(self, num_frames=2, scale=POSE_SCALE, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_frames = check_int(num_frames, "num_frames", 1)
        self.scale = float(scale)

    def call(self, inputs):
        pose = self.scale * tf.reduce_mean(inputs, axis=[1, 2])
        pose = tf.reshape(pose, [-1, self.num_frames, 6])
        return {"axisangle": pose[..., :3], "translation": pose[..., 3:]}

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.num_frames, 3)
        return {"axisangle": shape, "translation": shape}

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "scale": self.scale}


@keras.saving.register_keras_serializable(package="tfdepth")
class PoseDecoder(keras.Model):
    """Last encoder feature ``[B, h, w, num_ch_enc[-1]]`` -> dict ``axisangle``/``translation`` ``[B, F, 3]``.

    ``F = num_frames_to_predict_for`` (Monodepth2 default 2; only index 0 is used by :class:`PoseNet`).
    """

    def __init__(self, num_ch_enc, num_frames_to_predict_for=2, name="pose_decoder", **kwargs):
        try:
            in_ch = int(list(num_ch_enc)[-1])
        except (TypeError, IndexError, ValueError) as err:
            raise TypeError(f"num_ch_enc must be the encoder's channel list (e.g. [64, 64, 128, 256, 512]), "
                            f"got {num_ch_enc!r}.") from err
        check_int(num_frames_to_predict_for, "num_frames_to_predict_for", 1)
        conv = lambda filters, kernel, name: keras.layers.Conv2D(  # noqa: E731
            filters, kernel, padding="same", use_bias=True, kernel_initializer=torch_default_kernel_initializer(),
            name=name,
        )

        feature = activation_input((None, None, in_ch), "f4")
        x = keras.layers.ReLU(name="squeeze_relu")(conv(256, 1, "squeeze")(feature))
        # 3x3 stride-1 'same' = PyTorch's zero padding 1 (symmetric for stride 1).
        x = keras.layers.ReLU(name="pose_0_relu")(conv(256, 3, "pose_0")(x))
        x = keras.layers.ReLU(name="pose_1_relu")(conv(256, 3, "pose_1")(x))
        x = conv(6 * num_frames_to_predict_for, 1, "pose_2")(x)
        outputs = PoseVector(num_frames_to_predict_for, name="pose_vector")(x)

        super().__init__(inputs=feature, outputs=outputs, name=name, **kwargs)
        self.num_ch_enc = [int(c) for c in num_ch_enc]
        self.num_frames_to_predict_for = num_frames_to_predict_for

    def get_config(self):
        return {
            "name": self.name,
            "num_ch_enc": list(self.num_ch_enc),
            "num_frames_to_predict_for": self.num_frames_to_predict_for,
        }


@keras.saving.register_keras_serializable(package="tfdepth")
class _TakeFirstFrame(keras.layers.Layer):
    """``[B, F, 3]`` -> ``[B, 1, 3]``: Monodepth2 uses only the first predicted frame (§A.4)."""

    def call(self, inputs):
        return inputs[:, :1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[2])


@keras.saving.register_keras_serializable(package="tfdepth")
class PoseNet(keras.Model):
    """Two RGB frames stacked in temporal order ``[B, H, W, 6]`` in [0, 1] -> dict ``axisangle``, ``translation``
    ``[B, 1, 3]`` (§A.4, ``separate_resnet`` pose model with ``pose_model_input = pairs``).

    Attributes ``encoder`` (6-channel :class:`ResnetEncoder`) and ``decoder`` (:class:`PoseDecoder`). Integer
    frames, a missing batch axis, a channel count other than 6 and sizes that are not multiples of 32 raise a
    ValueError saying so (``depth_decoder.check_image_input``).
    """

    def __init__(self, encoder_depth=18, sync_batchnorm=True, height=None, width=None, name="pose_net", **kwargs):
        check_bool(sync_batchnorm, "sync_batchnorm")
        height = check_hw(height, "height", 32, "PoseNet")
        width = check_hw(width, "width", 32, "PoseNet")
        encoder = ResnetEncoder(encoder_depth, 2, sync_batchnorm, height, width, name="encoder")
        decoder = PoseDecoder(encoder.num_ch_enc, 2, name="decoder")

        frames = keras.Input((height, width, 6), name="frames")
        pose = decoder(encoder(frames)["f4"])
        outputs = {key: _TakeFirstFrame(name=key, dtype="float32")(pose[key]) for key in ("axisangle", "translation")}

        super().__init__(inputs=frames, outputs=outputs, name=name, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_depth = encoder_depth
        self.sync_batchnorm = sync_batchnorm
        self.height = height
        self.width = width

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras casts the input to float32 (uint8 frames would otherwise pass silently).
        check_image_input(inputs, 6, type(self).__name__, "frame pairs (two RGB frames stacked on channels)", 32)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        check_multiple_on_call(inputs, 32, type(self).__name__)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "encoder_depth": self.encoder_depth,
            "sync_batchnorm": self.sync_batchnorm,
            "height": self.height,
            "width": self.width,
        }
