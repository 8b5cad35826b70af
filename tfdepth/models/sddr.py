"""SDDR refinement network N_r (Li et al., "Self-Distilled Depth Refinement with Noisy Poisson Fusion", NeurIPS 2024;
specs/sddr.md §2), written after the released ``FuseNet`` (the paper's App. A.3 gives only its outline).

Inputs: two single-channel base depth maps of one size, ``depth_low`` = N_d(L) and ``depth_high`` = N_d(H), both
up-sampled to the network size and min-max normalised to [0, 1] by the caller (§2.1; no RGB enters N_r). H and W
must be multiples of 128 (two stride-2 encoder blocks, then MiT strides 4..32: the deepest map is at 1/128).

Structure (channels [8, 16, 32 | 32, 64, 160, 256] at strides [2, 4, 8 | 16, 32, 64, 128]):

0. ``prefilter``: a learnable 5x5 conv (1 -> 1, replicate padding, bias) on the HIGH input only, initialised
   N(0, 0.01), so the high branch starts near zero (the code's ``grad``).
1. Shared residual conv encoder (the same weights for the low input and the pre-filtered high input), three
   blocks conv3x3/s2 -> GroupNorm(C/8) -> LeakyReLU(0.01) -> conv3x3 -> GroupNorm, shortcut conv1x1/s2 ->
   GroupNorm, sum -> LeakyReLU: e1 (8 ch, 1/2), e2 (16, 1/4), e3 (32, 1/8). Zero padding (PyTorch's default).
   The 1x1/s2 shortcut is written as :class:`Subsample2x` + a 1x1/s1 conv (the same function and kernel).
2. Shared MiT-b0 (``tfdepth.models.mit``) on **e2** (not e3), its stage-1 patch embedding a fresh 16-channel
   conv k7 s4: stages at 1/16, 1/32, 1/64, 1/128.
3. Joint cross-resolution attention over the deepest low and high features (:class:`CrossResolutionAttention`):
   separable 1x1 conv, ``attention_blocks`` pre-LN transformer blocks (8 in the code, 4 in the paper's Eq. 12;
   8 heads, dim 256, q = k = LN(x) + PE, v = LN(x)) over the 2 (H/128)(W/128) tokens of both maps, DETR sine
   positional embedding (128 + 128 channels, temperature 1e4, raw 1-based indices, the same for both maps; no
   PE_f), a separable 1x1 "deconv", added residually to each branch.
4. Decoder, 7 up layers (GroupNorm -> bicubic x2 -> replicate-padded conv -> LeakyReLU; the last 5x5, no
   activation). At each of the 6 skip levels a mask head (GroupNorm -> conv3x3 -> sigmoid) predicts m from the
   running feature r and mixes ``F = m F_low + (1 - m) F_high``, then ``r = Up(r + F)``. Auxiliary depths from
   ``(F + r)`` at the 1/8 level (-> 1/4) and the 1/4 level (-> 1/2). GroupNorm groups C/8, except GN(1, .) in
   the 16- and 8-channel up layers and the last mask, and the code's GN(2, 16) in the 1/4-level mask.

The small layers (replicate padding, bicubic x2, GroupNorm, mask fusion) are in ``tfdepth.models.sddr_layers``.

Outputs (dict): ``depth`` D0 ``[B, H, W, 1]`` (relative, affine-free, no activation); ``depth_1`` ``[B, H/2, W/2, 1]``
and ``depth_2`` ``[B, H/4, W/4, 1]`` (the code's out_half / out_quart, deep supervision); ``omega_s`` for
s = 1..6, ``[B, H/2^s, W/2^s, 1]``: the soft fusion masks **in the paper's convention** (Eq. 8), Omega = weight of
the HIGH-resolution features = 1 - m_code. The code supervises omega_2 and omega_1 (its m@512, m@1024 at 2048).

Decisions (sddr.md labels in brackets):

* ``token_layout`` [official code quirk, found while porting]: after every transformer block the released ``CVT``
  reshapes the ``[B, 2 h w, C]`` token tensor to ``[B, 2, C, h, w]`` without a permute, i.e. it reinterprets the
  memory, mixing channels and positions between blocks (and before the output deconv). ``"joint"`` (default)
  keeps tokens in place, the paper's Eq. 12 and the evident intent; ``"official_reshape"`` reproduces the
  released network exactly (for porting its weights and for the numerical comparison with it).
* ``upsample``: ``"bicubic_align_corners"`` (default) is PyTorch's ``nn.Upsample(scale_factor=2, mode="bicubic",
  align_corners=True)`` (cubic a = -0.75, corner-aligned, borders clamped), written with gathers
  (:class:`BicubicUpsample2x`); ``"bicubic"`` uses ``tf.image.resize`` (Keys a = -0.5, half-pixel centres), which
  only matters when porting weights (sddr.md §9).
* Initialisation (§2.2 item 5): convolutions outside MiT N(0, 0.01) and bias 0, GroupNorm (1, 0), Linear
  N(0, 0.02), LayerNorm (1, 0); the MiT stage-1 conv keeps PyTorch's default init (the code replaces it after
  its ``init_weight`` ran on everything outside the backbone). ImageNet MiT weights are not loaded (random init).
* Parameter count: 10,302,483 trainable for the defaults (MiT-b0 3,339,776; attention 6,443,776; conv encoder
  19,080; decoder, masks, auxiliary heads and pre-filter 499,851). sddr.md §2.4: "unique ~= 10.30M"; the paper's
  16.763M is a state_dict count in which the code's twice-registered attention and encoder modules appear twice
  (16,765,339 for the transcribed reference). ``tests/test_models_sddr.py`` checks it against an independent
  layer-by-layer count.
* Fidelity (measured, not a test: torch is no dependency): a scratch transcription of the released ``FuseNet``
  forward path, run with this network's weights copied over (``token_layout="official_reshape"``), agrees to a
  max abs difference of 4.5e-5 (256x256), 8.4e-5 (384x384), 9.9e-5 (256x384) on D0 of range ~5, and to <= 5.4e-5
  on the auxiliary depths and <= 4.9e-5 on Omega (float32 summation order). With the default ``"joint"``
  layout the same weights give different outputs (max diff 0.28 on D0), so weights ported from the released
  code need ``"official_reshape"``.
"""

import keras
import tensorflow as tf

from tfdepth.layers import check_int, check_multiple_on_call, torch_default_kernel_initializer
from tfdepth.models.mit import LayerNorm, MixVisionTransformer
from tfdepth.models.sddr_layers import (
    UPSAMPLE_MODES,
    BicubicUpsample2x,
    GroupNorm,
    MinMaxNormalize,
    ReplicatePad2D,
    SoftMaskFusion,
    Subsample2x,
)

__all__ = [
    "SDDRNet",
    "SDDRInference",
    "CrossResolutionAttention",
    "JointAttentionBlock",
    "BicubicUpsample2x",
    "ReplicatePad2D",
    "Subsample2x",
    "SoftMaskFusion",
    "GroupNorm",
    "MinMaxNormalize",
    "sine_position_embedding",
    "UPSAMPLE_MODES",
    "TOKEN_LAYOUTS",
    "INPUT_MULTIPLE",
    "build_sddr_net",
]

TOKEN_LAYOUTS = ("joint", "official_reshape")
INPUT_MULTIPLE = 128
ENCODER_CHANNELS = (8, 16, 32)
MIT_CHANNELS = (32, 64, 160, 256)


def _conv_init():
    return keras.initializers.RandomNormal(stddev=0.01)  # FuseNet.init_weight: conv N(0, 0.01), bias 0


def _linear_init():
    return keras.initializers.RandomNormal(stddev=0.02)  # trunc_normal_(std=.02), truncation at +-2 never bites


def sine_position_embedding(height, width, channels=256, temperature=10000.0):
    """DETR sine embedding [height, width, channels]: first half encodes the row, second half the column.

    Raw 1-based indices (``normalize=False``); channel ``2j`` is ``sin(pos / T^(2j/c))``, ``2j + 1`` is
    ``cos(pos / T^(2j/c))`` with ``c = channels / 2`` (the code's ``PositionEmbeddingSine(num_pos_feats=256)``).
    """
    half = channels // 2
    dim_t = tf.cast(tf.range(half), tf.float32)
    dim_t = temperature ** (2.0 * tf.floor(dim_t / 2.0) / half)
    even = tf.cast(tf.range(half) % 2 == 0, tf.float32)

    def embed(positions):  # [n] -> [n, half]
        angle = positions[:, None] / dim_t[None, :]
        return even * tf.sin(angle) + (1.0 - even) * tf.cos(angle)

    rows = embed(tf.cast(tf.range(1, height + 1), tf.float32))  # [h, half]
    cols = embed(tf.cast(tf.range(1, width + 1), tf.float32))  # [w, half]
    rows = tf.broadcast_to(rows[:, None, :], [height, width, half])
    cols = tf.broadcast_to(cols[None, :, :], [height, width, half])
    return tf.concat([rows, cols], axis=-1)


# ------------------------------------------------------------------------------ cross-resolution attention


@keras.saving.register_keras_serializable(package="tfdepth")
class JointAttentionBlock(keras.layers.Layer):
    """Pre-LN transformer block over tokens [B, N, C] (Eq. 12): q = k = LN(x) + pos, v = LN(x); MLP 4x, GELU."""

    def __init__(self, dim=256, num_heads=8, mlp_ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.mlp_ratio = int(dim), int(num_heads), mlp_ratio
        if self.dim % self.num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.head_dim = self.dim // self.num_heads
        dense = lambda n, bias, name: keras.layers.Dense(n, use_bias=bias, kernel_initializer=_linear_init(),  # noqa
                                                         name=name)
        self.norm1 = LayerNorm(epsilon=1e-5, name="norm1")
        self.q, self.k, self.v = dense(self.dim, False, "q"), dense(self.dim, False, "k"), dense(self.dim, False, "v")
        self.proj = dense(self.dim, True, "proj")
        self.norm2 = LayerNorm(epsilon=1e-5, name="norm2")
        self.fc1 = dense(int(self.dim * mlp_ratio), True, "fc1")
        self.fc2 = dense(self.dim, True, "fc2")

    def build(self, x_shape, pos_shape=None):
        # Explicit builds: Keras would otherwise trace ``call`` in a scratch graph to create the sublayers.
        hidden = int(self.dim * self.mlp_ratio)
        for layer in (self.norm1, self.q, self.k, self.v, self.proj, self.norm2, self.fc1):
            layer.build((None, self.dim))
        self.fc2.build((None, hidden))

    def _heads(self, x, batch):
        """[B * N, C] -> [B, heads, N, head_dim]."""
        return tf.transpose(tf.reshape(x, [batch, -1, self.num_heads, self.head_dim]), [0, 2, 1, 3])

    def call(self, x, pos):
        # Linear layers on 2-D [B * N, C] matrices (one matmul each; a 3-D Dense lowers to many tensordot ops).
        shape = tf.shape(x)
        batch = shape[0]
        x = tf.reshape(x, [-1, self.dim])
        pos = tf.reshape(tf.broadcast_to(pos, shape), [-1, self.dim])
        normed = self.norm1(x)
        query_key = normed + pos
        q, k = self._heads(self.q(query_key), batch), self._heads(self.k(query_key), batch)
        v = self._heads(self.v(normed), batch)
        attn = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * (self.head_dim**-0.5), axis=-1)
        out = tf.reshape(tf.transpose(tf.matmul(attn, v), [0, 2, 1, 3]), [-1, self.dim])
        x = x + self.proj(out)
        x = x + self.fc2(keras.activations.gelu(self.fc1(self.norm2(x)), approximate=False))
        return tf.reshape(x, shape)

    def compute_output_shape(self, x_shape, pos_shape):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="tfdepth")
class CrossResolutionAttention(keras.layers.Layer):
    """Joint self-attention over the deepest low- and high-resolution features (the code's ``CVT``, Eq. 12).

    ``call(low, high)`` with both [B, h, w, dim] returns ``(low + A_low, high + A_high)`` (module docstring).
    """

    def __init__(self, dim=256, num_blocks=8, num_heads=8, mlp_ratio=4, token_layout="joint", **kwargs):
        super().__init__(**kwargs)
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout must be one of {TOKEN_LAYOUTS}, got {token_layout!r}")
        self.dim, self.num_blocks, self.num_heads = int(dim), check_int(num_blocks, "attention_blocks", 1), num_heads
        self.mlp_ratio, self.token_layout = mlp_ratio, token_layout
        init = _conv_init()
        # Separable 1x1 conv (depthwise 1x1 + pointwise 1x1, no bias) in; transposed depthwise 1x1 (stride 1 = a
        # per-channel scale + bias) + pointwise 1x1 (no bias) out.
        self.in_dw = keras.layers.DepthwiseConv2D(1, use_bias=False, depthwise_initializer=init, name="sep_conv_dw")
        self.in_pw = keras.layers.Conv2D(self.dim, 1, use_bias=False, kernel_initializer=init, name="sep_conv_pw")
        self.blocks = [JointAttentionBlock(self.dim, num_heads, mlp_ratio, name=f"block_{i}")
                       for i in range(self.num_blocks)]
        self.out_dw = keras.layers.DepthwiseConv2D(1, use_bias=True, depthwise_initializer=init,
                                                   name="sep_deconv_dw")
        self.out_pw = keras.layers.Conv2D(self.dim, 1, use_bias=False, kernel_initializer=init,
                                          name="sep_deconv_pw")

    def build(self, low_shape, high_shape=None):
        image = (None, None, None, self.dim)
        for layer in (self.in_dw, self.in_pw, self.out_dw, self.out_pw):
            layer.build(image)
        for block in self.blocks:
            block.build((None, None, self.dim))

    def _official_reshape(self, tokens, hw):
        """The released code's ``[B, 2hw, C] -> [B, 2, C, h, w] -> permute -> [B, 2hw, C]`` memory reinterpretation."""
        batch = tf.shape(tokens)[0]
        x = tf.reshape(tokens, [batch, 2, self.dim, hw])
        return tf.reshape(tf.transpose(x, [0, 1, 3, 2]), [batch, 2 * hw, self.dim])

    def call(self, low, high):
        shape = tf.shape(low)
        batch, height, width = shape[0], shape[1], shape[2]
        hw = height * width
        # [B, 2h, w, C] -> [2B, h, w, C] orders the maps (batch, map) like a stack on axis 1, in 4-D ops that
        # XNNPACK runs (it has no 5-D PACK / STRIDED_SLICE)
        both = tf.reshape(tf.concat([low, high], axis=1), [2 * batch, height, width, self.dim])
        both = self.in_pw(self.in_dw(both))
        tokens = tf.reshape(both, [batch, 2 * hw, self.dim])  # order: (map, row, column)
        pos = tf.reshape(sine_position_embedding(height, width, self.dim), [hw, self.dim])
        pos = tf.cast(tf.tile(pos, [2, 1])[None], tokens.dtype)  # the low map's embedding, repeated for both
        for block in self.blocks:
            tokens = block(tokens, pos)
            if self.token_layout == "official_reshape":
                tokens = self._official_reshape(tokens, hw)
        both = tf.reshape(tokens, [2 * batch, height, width, self.dim])
        both = tf.reshape(self.out_pw(self.out_dw(both)), [batch, 2 * height, width, self.dim])
        return low + both[:, :height], high + both[:, height:]

    def compute_output_shape(self, low_shape, high_shape):
        return low_shape, high_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_blocks": self.num_blocks,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio, "token_layout": self.token_layout}


# --------------------------------------------------------------------------------------------- the network


def _conv(filters, kernel, name, stride=1, bias=True):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=bias,
                               kernel_initializer=_conv_init(), name=name)


def _gn(channels, groups, name):
    return GroupNorm(groups, epsilon=1e-5, name=name)  # PyTorch's eps (Keras' GroupNormalization default: 1e-3)


def _leaky(name):
    return keras.layers.LeakyReLU(negative_slope=0.01, name=name)  # PyTorch's default slope (Keras: 0.3)


def _conv_encoder():
    """The shared residual conv encoder (``BasicBlock_ini`` x 3) as a functional model: {e1, e2, e3}."""
    inputs = keras.Input((None, None, 1), name="depth")
    x = inputs
    outputs = {}
    for i, filters in enumerate(ENCODER_CHANNELS, start=1):
        groups = filters // 8
        y = keras.layers.ZeroPadding2D(1, name=f"e{i}_pad1")(x)
        y = _conv(filters, 3, f"e{i}_conv1", stride=2)(y)
        y = _leaky(f"e{i}_act1")(_gn(filters, groups, f"e{i}_gn1")(y))
        y = keras.layers.ZeroPadding2D(1, name=f"e{i}_pad2")(y)
        y = _gn(filters, groups, f"e{i}_gn2")(_conv(filters, 3, f"e{i}_conv2")(y))
        # conv1x1/s2 as subsample + conv1x1/s1: the same function and weights (Subsample2x says why)
        shortcut = _conv(filters, 1, f"e{i}_down")(Subsample2x(name=f"e{i}_subsample")(x))
        shortcut = _gn(filters, groups, f"e{i}_gn_down")(shortcut)
        x = _leaky(f"e{i}_act2")(keras.layers.Add(name=f"e{i}_add")([y, shortcut]))
        outputs[f"e{i}"] = x
    return keras.Model(inputs, outputs, name="conv_encoder")


def _up(x, out_channels, groups, kernel, activation, upsample, name):
    x = _gn(x.shape[-1], groups, f"{name}_gn")(x)
    x = BicubicUpsample2x(upsample, name=f"{name}_up")(x)
    x = ReplicatePad2D(kernel // 2, name=f"{name}_pad")(x)
    x = _conv(out_channels, kernel, f"{name}_conv")(x)
    return _leaky(f"{name}_act")(x) if activation else x


def _mask(x, groups, name):
    x = _gn(x.shape[-1], groups, f"{name}_gn")(x)
    x = _conv(1, 3, f"{name}_conv")(ReplicatePad2D(1, name=f"{name}_pad")(x))
    return keras.layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)


# Decoder levels after the first up layer, one row per skip level 1..6 (1/64 ... 1/2 of the input; sddr.md §2.2
# table): (channels of the level, mask GN groups, up-layer output channels, up GN groups, up kernel, activation).
_DECODER = (
    (160, 20, 64, 20, 3, True),
    (64, 8, 32, 8, 3, True),
    (32, 4, 32, 4, 3, True),
    (32, 4, 16, 4, 3, True),
    (16, 2, 8, 1, 3, True),  # the code's GN(2, 16) in this mask, GN(1, 16) in its up layer
    (8, 1, 1, 1, 5, False),  # last layer: 5x5 conv, no activation -> D0
)


@keras.saving.register_keras_serializable(package="tfdepth")
class SDDRNet(keras.Model):
    """SDDR's N_r: ``{"depth_low", "depth_high"}`` [B, H, W, 1] in [0, 1] -> ``depth``, ``depth_1``, ``depth_2``,
    ``omega_1..omega_6`` (module docstring). H, W multiples of 128; ``height``/``width`` optionally fix them."""

    def __init__(self, height=None, width=None, attention_blocks=8, token_layout="joint",
                 upsample="bicubic_align_corners", drop_path_rate=0.1, name="sddr_net", **kwargs):
        for value, label in ((height, "height"), (width, "width")):
            if value is not None and (check_int(value, label, INPUT_MULTIPLE) % INPUT_MULTIPLE):
                raise ValueError(f"SDDRNet: {label}={value} is not a multiple of {INPUT_MULTIPLE}; resize the "
                                 f"base depth maps to a multiple of {INPUT_MULTIPLE} (e.g. 1024) or pass None.")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        low = keras.Input((height, width, 1), name="depth_low")
        high = keras.Input((height, width, 1), name="depth_high")

        prefiltered = _conv(1, 5, "prefilter")(ReplicatePad2D(2, name="prefilter_pad")(high))
        encoder = _conv_encoder()
        mit = MixVisionTransformer(in_channels=ENCODER_CHANNELS[1], drop_path_rate=drop_path_rate,
                                   stem_kernel_initializer=torch_default_kernel_initializer(), name="mit_b0")
        feats = {}
        for branch, x in (("low", low), ("high", prefiltered)):
            enc = encoder(x)
            stages = mit(enc["e2"])
            feats[branch] = [stages["stage_4"], stages["stage_3"], stages["stage_2"], stages["stage_1"],
                             enc["e3"], enc["e2"], enc["e1"]]
        attention = CrossResolutionAttention(MIT_CHANNELS[-1], attention_blocks, token_layout=token_layout,
                                             name="cross_attention")
        feats["low"][0], feats["high"][0] = attention(feats["low"][0], feats["high"][0])

        r = keras.layers.Add(name="deep_sum")([feats["low"][0], feats["high"][0]])
        r = _up(r, 160, 32, 3, True, upsample, "up0")
        outputs = {}
        for level, (channels, mask_groups, out_channels, up_groups, kernel, act) in enumerate(_DECODER, start=1):
            scale = 7 - level  # level 1 is at 1/64 (omega_6), level 6 at 1/2 (omega_1)
            mask = _mask(r, mask_groups, f"mask{level}")
            fused, omega = SoftMaskFusion(name=f"fuse{level}")(mask, feats["low"][level], feats["high"][level])
            outputs[f"omega_{scale}"] = omega
            mixed = keras.layers.Add(name=f"skip{level}")([r, fused])
            if level == 4:  # 1/8 level: out_quart -> 1/4
                outputs["depth_2"] = _up(mixed, 1, 2, 3, False, upsample, "aux_quarter")
            if level == 5:  # 1/4 level: out_half -> 1/2
                outputs["depth_1"] = _up(mixed, 1, 1, 3, False, upsample, "aux_half")
            r = _up(mixed, out_channels, up_groups, kernel, act, upsample, f"up{level}")
        outputs["depth"] = r
        ordered = {key: outputs[key] for key in ["depth", "depth_1", "depth_2"] +
                   [f"omega_{s}" for s in range(1, 7)]}
        super().__init__(inputs={"depth_low": low, "depth_high": high}, outputs=ordered, name=name, **kwargs)
        self.height, self.width = height, width
        self.attention_blocks, self.token_layout = attention_blocks, token_layout
        self.upsample, self.drop_path_rate = upsample, float(drop_path_rate)

    def call(self, inputs, training=None, mask=None):
        if not isinstance(inputs, dict) or set(inputs) != {"depth_low", "depth_high"}:
            keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"SDDRNet takes a dict with keys 'depth_low' and 'depth_high', got {keys}")
        low, high = inputs["depth_low"], inputs["depth_high"]
        check_multiple_on_call(low, INPUT_MULTIPLE, "SDDRNet depth_low")
        check_multiple_on_call(high, INPUT_MULTIPLE, "SDDRNet depth_high")
        if low.shape[1:3] != high.shape[1:3] and None not in (tuple(low.shape[1:3]) + tuple(high.shape[1:3])):
            raise ValueError(f"SDDRNet: depth_low {tuple(low.shape[1:3])} and depth_high {tuple(high.shape[1:3])} "
                             "must have the same size; resize both base maps to the network size first")
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {"name": self.name, "height": self.height, "width": self.width,
                "attention_blocks": self.attention_blocks, "token_layout": self.token_layout,
                "upsample": self.upsample, "drop_path_rate": self.drop_path_rate}


@keras.saving.register_keras_serializable(package="tfdepth")
class SDDRInference(keras.Model):
    """Inference wrapper: raw base maps ``{"depth_low", "depth_high"}`` at the network size -> ``{"depth"}``.

    Both maps are min-max normalised inside (the official ``inference()``), so any units work (depth or
    disparity, 16-bit PNG values, metres); ``depth`` is the raw D0 (relative, affine-invariant).
    """

    def __init__(self, refine_net, name="sddr_inference", **kwargs):
        low = keras.Input((refine_net.height, refine_net.width, 1), name="depth_low", dtype="float32")
        high = keras.Input((refine_net.height, refine_net.width, 1), name="depth_high", dtype="float32")
        norm = MinMaxNormalize(name="minmax")
        out = refine_net({"depth_low": norm(low), "depth_high": norm(high)}, training=False)
        depth = keras.layers.Activation("linear", dtype="float32", name="depth")(out["depth"])
        super().__init__(inputs={"depth_low": low, "depth_high": high}, outputs={"depth": depth}, name=name,
                         **kwargs)
        self.refine_net = refine_net

    def get_config(self):
        return {"name": self.name, "refine_net": keras.saving.serialize_keras_object(self.refine_net)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["refine_net"] = keras.saving.deserialize_keras_object(config["refine_net"])
        return cls(**config)


def build_sddr_net(height=None, width=None, attention_blocks=8, token_layout="joint",
                   upsample="bicubic_align_corners", drop_path_rate=0.1):
    """:class:`SDDRNet` with explicit arguments (the registry's ``build_sddr`` reads them from a config)."""
    return SDDRNet(height=height, width=width, attention_blocks=attention_blocks, token_layout=token_layout,
                   upsample=upsample, drop_path_rate=drop_path_rate)
