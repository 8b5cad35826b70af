"""Mix Transformer (MiT) encoder of SegFormer (Xie et al., NeurIPS 2021), the backbone of SDDR (specs/sddr.md §2.2).

Channels-last throughout: every stage works on ``[B, h, w, C]`` maps, attention flattens them internally.

* :class:`OverlapPatchEmbed`: zero padding ``k // 2`` + ``Conv(k, stride)`` + LayerNorm (eps 1e-5, PyTorch's
  default, as SegFormer's ``nn.LayerNorm(embed_dim)``). Stage 1 uses k7 s4, stages 2-4 k3 s2.
* :class:`EfficientSelfAttention`: multi-head self-attention whose keys and values come from the map reduced by a
  ``Conv(sr, stride sr)`` + LayerNorm (eps 1e-5) when ``sr_ratio > 1`` ("spatial-reduction attention"); q and kv
  are one Linear each (``qkv_bias``), kv's output is ``[k | v]``, split into heads as ``(heads, head_dim)``.
* :class:`MixFFN`: Linear -> depthwise 3x3 conv (bias, zero padding) -> GELU (exact, erf) -> Linear (the Linear
  layers as 1x1 convolutions).
* :class:`MiTBlock`: pre-LN residual block (LayerNorm eps 1e-6) with stochastic depth (:class:`DropPath`).
* :class:`MixVisionTransformer`: four stages of (patch embed, blocks, LayerNorm eps 1e-6); outputs
  ``stage_1..stage_4`` at strides 4, 8, 16, 32 of its input. The default arguments are MiT-b0: embed dims
  [32, 64, 160, 256], heads [1, 2, 5, 8], depths [2, 2, 2, 2], reduction ratios [8, 4, 2, 1], MLP ratio 4,
  qkv_bias, drop-path rate 0.1 spread linearly over the 8 blocks (0 for the first, 0.1 for the last).

Initialisation as SegFormer's ``_init_weights``: Linear N(0, 0.02) (timm's ``trunc_normal_(std=.02)`` truncates
at +-2 absolute, i.e. never at this std), biases 0, LayerNorm (1, 0), convolutions N(0, sqrt(2 / fan_out)) with
``fan_out = k * k * out_channels / groups``. ``stem_kernel_initializer`` overrides the stage-1 conv (SDDR
replaces it by a fresh 16-channel conv with PyTorch's default init). ImageNet weights are not loaded here (no
download at run time; sddr.md §9): the default is random initialisation.

Sizes: each stage's map must be divisible by its reduction ratio. Stage 1 is H/4 x W/4 and reduces by 8, so H and W
must be multiples of 32 (stages 2 and 3 then divide by 4 and 2 too). In SDDR the MiT input is the 1/4-resolution
encoder feature of a multiple of 128, i.e. a multiple of 32.
"""

import math

import keras
import tensorflow as tf

__all__ = [
    "LayerNorm",
    "DropPath",
    "OverlapPatchEmbed",
    "EfficientSelfAttention",
    "MixFFN",
    "MiTBlock",
    "MixVisionTransformer",
    "MIT_B0",
]

MIT_B0 = {
    "embed_dims": (32, 64, 160, 256),
    "num_heads": (1, 2, 5, 8),
    "depths": (2, 2, 2, 2),
    "sr_ratios": (8, 4, 2, 1),
    "mlp_ratio": 4,
    "drop_path_rate": 0.1,
}


def _linear_init():
    # timm trunc_normal_(std=.02) truncates at [-2, 2] (absolute), i.e. it is a plain N(0, 0.02) at this std.
    return keras.initializers.RandomNormal(stddev=0.02)


def _conv_init(kernel, out_channels, groups=1):
    fan_out = kernel * kernel * out_channels // groups
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan_out))


@keras.saving.register_keras_serializable(package="tfdepth")
class LayerNorm(keras.layers.Layer):
    """LayerNorm over the last axis, ``(x - mean) / sqrt(var + eps) * gamma + beta`` (PyTorch ``nn.LayerNorm``).

    Computed in float32 (also under mixed precision) with ``tf.nn.moments`` (biased variance, as PyTorch). Written
    here because ``keras.layers.LayerNormalization`` traces into about 26 graph ops per call and SDDR has 76 of
    them per forward pass (graph building and tracing time); this one is 8 ops and numerically the same.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        out = (x32 - mean) * tf.math.rsqrt(var + self.epsilon) * tf.cast(self.gamma, tf.float32)
        return tf.cast(out + tf.cast(self.beta, tf.float32), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfdepth")
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al. 2016): zeroes a residual branch per sample with probability ``rate`` in
    training and rescales the kept ones by ``1 / (1 - rate)``; identity at inference."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = [tf.shape(x)[0]] + [1] * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        return x / keep * tf.floor(keep + noise)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfdepth")
class OverlapPatchEmbed(keras.layers.Layer):
    """Overlapping patch embedding: zero pad k//2, Conv(k, stride), LayerNorm(eps 1e-5) -> [B, h, w, embed_dim]."""

    def __init__(self, embed_dim, patch_size, stride, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.patch_size, self.stride = int(embed_dim), int(patch_size), int(stride)
        init = kernel_initializer or _conv_init(self.patch_size, self.embed_dim)
        self.kernel_initializer = keras.initializers.get(init)
        self.pad = keras.layers.ZeroPadding2D(self.patch_size // 2)
        self.proj = keras.layers.Conv2D(self.embed_dim, self.patch_size, strides=self.stride, padding="valid",
                                        kernel_initializer=self.kernel_initializer, name="proj")
        self.norm = LayerNorm(epsilon=1e-5, name="norm")

    def build(self, input_shape):
        # Explicit builds (also below): Keras would otherwise trace ``call`` in a scratch graph to create the
        # sublayers' weights, which made building SDDR take seconds per composite layer.
        self.proj.build((None, None, None, input_shape[-1]))
        self.norm.build((None, None, None, self.embed_dim))

    def call(self, x):
        return self.norm(self.proj(self.pad(x)))

    def compute_output_shape(self, input_shape):
        def out(n):
            pad = self.patch_size // 2
            return None if n is None else (n + 2 * pad - self.patch_size) // self.stride + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "patch_size": self.patch_size,
                "stride": self.stride,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="tfdepth")
class EfficientSelfAttention(keras.layers.Layer):
    """SegFormer's spatial-reduction multi-head self-attention on a [B, h, w, C] map (module docstring)."""

    def __init__(self, dim, num_heads, sr_ratio=1, qkv_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.sr_ratio, self.qkv_bias = int(dim), int(num_heads), int(sr_ratio), qkv_bias
        if self.dim % self.num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.head_dim = self.dim // self.num_heads
        self.q = keras.layers.Dense(self.dim, use_bias=qkv_bias, kernel_initializer=_linear_init(), name="q")
        self.kv = keras.layers.Dense(2 * self.dim, use_bias=qkv_bias, kernel_initializer=_linear_init(), name="kv")
        self.proj = keras.layers.Dense(self.dim, kernel_initializer=_linear_init(), name="proj")
        if self.sr_ratio > 1:
            self.sr = keras.layers.Conv2D(self.dim, self.sr_ratio, strides=self.sr_ratio, padding="valid",
                                          kernel_initializer=_conv_init(self.sr_ratio, self.dim), name="sr")
            self.sr_norm = LayerNorm(epsilon=1e-5, name="norm")

    def build(self, input_shape):
        for layer in (self.q, self.kv, self.proj):
            layer.build((None, self.dim))
        if self.sr_ratio > 1:
            self.sr.build((None, None, None, self.dim))
            self.sr_norm.build((None, self.dim))

    def _heads(self, x, batch):
        """[B * N, C] -> [B, heads, N, head_dim]."""
        x = tf.reshape(x, [batch, -1, self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, x):
        # Linear layers act on 2-D [B * N, C] token matrices: one matmul each (Dense on a 3-D tensor with dynamic
        # shapes lowers to tensordot, about 20 graph ops per call, which made the model slow to build and trace).
        shape = tf.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        tokens = tf.reshape(x, [-1, self.dim])
        q = self._heads(self.q(tokens), batch)
        if self.sr_ratio > 1:
            reduced = self.sr_norm(tf.reshape(self.sr(x), [-1, self.dim]))
        else:
            reduced = tokens
        kv = self.kv(reduced)
        k = self._heads(kv[:, : self.dim], batch)
        v = self._heads(kv[:, self.dim:], batch)
        attn = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * (self.head_dim**-0.5), axis=-1)
        out = tf.reshape(tf.transpose(tf.matmul(attn, v), [0, 2, 1, 3]), [-1, self.dim])
        return tf.reshape(self.proj(out), [batch, height, width, self.dim])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "sr_ratio": self.sr_ratio,
                "qkv_bias": self.qkv_bias}


@keras.saving.register_keras_serializable(package="tfdepth")
class MixFFN(keras.layers.Layer):
    """Mix-FFN: Linear(dim -> hidden) -> depthwise 3x3 conv -> GELU -> Linear(hidden -> dim), on [B, h, w, C]."""

    def __init__(self, dim, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden_dim = int(dim), int(hidden_dim)
        # The two Linear layers act per pixel: written as 1x1 convolutions (identical maths, kernel [1, 1, in, out];
        # a Dense on a 4-D map lowers to tensordot, many more graph ops).
        self.fc1 = keras.layers.Conv2D(self.hidden_dim, 1, kernel_initializer=_linear_init(), name="fc1")
        self.dwconv = keras.layers.DepthwiseConv2D(
            3, padding="same", depthwise_initializer=_conv_init(3, self.hidden_dim, self.hidden_dim), name="dwconv")
        self.fc2 = keras.layers.Conv2D(self.dim, 1, kernel_initializer=_linear_init(), name="fc2")

    def build(self, input_shape):
        self.fc1.build((None, None, None, self.dim))
        self.dwconv.build((None, None, None, self.hidden_dim))
        self.fc2.build((None, None, None, self.hidden_dim))

    def call(self, x):
        return self.fc2(keras.activations.gelu(self.dwconv(self.fc1(x)), approximate=False))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "hidden_dim": self.hidden_dim}


@keras.saving.register_keras_serializable(package="tfdepth")
class MiTBlock(keras.layers.Layer):
    """x + DropPath(Attn(LN(x))); x + DropPath(MixFFN(LN(x))), LayerNorm eps 1e-6 (SegFormer ``Block``)."""

    def __init__(self, dim, num_heads, sr_ratio, mlp_ratio=4, drop_path=0.0, qkv_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.sr_ratio = int(dim), int(num_heads), int(sr_ratio)
        self.mlp_ratio, self.drop_path, self.qkv_bias = mlp_ratio, float(drop_path), qkv_bias
        self.norm1 = LayerNorm(epsilon=1e-6, name="norm1")
        self.attn = EfficientSelfAttention(self.dim, self.num_heads, self.sr_ratio, qkv_bias, name="attn")
        self.norm2 = LayerNorm(epsilon=1e-6, name="norm2")
        self.mlp = MixFFN(self.dim, int(self.dim * mlp_ratio), name="mlp")
        self.drop1 = DropPath(self.drop_path, name="drop_path_attn")
        self.drop2 = DropPath(self.drop_path, name="drop_path_mlp")

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.mlp, self.drop1, self.drop2):
            layer.build(input_shape)

    def call(self, x, training=None):
        x = x + self.drop1(self.attn(self.norm1(x)), training=training)
        return x + self.drop2(self.mlp(self.norm2(x)), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "sr_ratio": self.sr_ratio,
                "mlp_ratio": self.mlp_ratio, "drop_path": self.drop_path, "qkv_bias": self.qkv_bias}


def _tuple4(value, name):
    value = tuple(value)
    if len(value) != 4:
        raise ValueError(f"{name} must have 4 entries (one per stage), got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="tfdepth")
class MixVisionTransformer(keras.Model):
    """MiT encoder: ``[B, H, W, in_channels]`` -> ``{"stage_1": [B, H/4, W/4, C1], ..., "stage_4": [.., H/32]}``.

    Defaults are MiT-b0 (module docstring). ``stem_kernel_initializer`` optionally replaces the stage-1 conv's
    initialiser (a Keras initializer or its name).
    """

    def __init__(self, in_channels=3, embed_dims=MIT_B0["embed_dims"], num_heads=MIT_B0["num_heads"],
                 depths=MIT_B0["depths"], sr_ratios=MIT_B0["sr_ratios"], mlp_ratio=MIT_B0["mlp_ratio"],
                 drop_path_rate=MIT_B0["drop_path_rate"], stem_kernel_initializer=None, name="mit", **kwargs):
        embed_dims, num_heads = _tuple4(embed_dims, "embed_dims"), _tuple4(num_heads, "num_heads")
        depths, sr_ratios = _tuple4(depths, "depths"), _tuple4(sr_ratios, "sr_ratios")
        total = sum(depths)
        # Stochastic depth decay rule of SegFormer: linspace(0, rate, sum(depths)).
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        inputs = keras.Input((None, None, in_channels), name="features")
        x = inputs
        outputs = {}
        block = 0
        stem_init = keras.initializers.get(stem_kernel_initializer) if stem_kernel_initializer else None
        for stage in range(4):
            patch, stride = (7, 4) if stage == 0 else (3, 2)
            x = OverlapPatchEmbed(embed_dims[stage], patch, stride,
                                  kernel_initializer=stem_init if stage == 0 else None,
                                  name=f"patch_embed{stage + 1}")(x)
            for i in range(depths[stage]):
                x = MiTBlock(embed_dims[stage], num_heads[stage], sr_ratios[stage], mlp_ratio, rates[block],
                             name=f"block{stage + 1}_{i}")(x)
                block += 1
            x = LayerNorm(epsilon=1e-6, name=f"norm{stage + 1}")(x)
            outputs[f"stage_{stage + 1}"] = x
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.in_channels = int(in_channels)
        self.embed_dims, self.num_heads, self.depths, self.sr_ratios = embed_dims, num_heads, depths, sr_ratios
        self.mlp_ratio, self.drop_path_rate = mlp_ratio, float(drop_path_rate)
        self.stem_kernel_initializer = (keras.initializers.serialize(stem_init) if stem_init is not None else None)

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "embed_dims": list(self.embed_dims),
            "num_heads": list(self.num_heads),
            "depths": list(self.depths),
            "sr_ratios": list(self.sr_ratios),
            "mlp_ratio": self.mlp_ratio,
            "drop_path_rate": self.drop_path_rate,
            "stem_kernel_initializer": self.stem_kernel_initializer,
        }
