"""PyTorch reference of SDDR's refinement network N_r, for the speed benchmark (``benchmarks/speed.py``).

Written from the architecture description of ``specs/sddr.md`` (§2.1-2.4 network, §4.1 L_gt, §5 training) and layer
by layer against our Keras network (``tfdepth/models/sddr.py``, MiT-b0 in ``tfdepth/models/mit.py``) at its
defaults (``token_layout="joint"``, 8 attention blocks, ``upsample="bicubic_align_corners"``, drop-path 0.1):
10,302,483 trainable parameters, the same as ours, so the timing compares like with like. Uses ``torch.nn`` only
(no torchvision). Never imported by ``tfdepth/`` or ``tests/``.

Rows (:data:`ROWS`, built by :func:`make`):

* ``sddr_one_stage``: batch 1, ``model.eval()`` under ``torch.inference_mode()``: ``depth_low`` and ``depth_high``
  ``[1, 1, H, W]`` uniform in [0, 1] (seeded) -> N_r once -> the dict our ``SDDRNet`` returns: ``depth`` (D0,
  ``[B, 1, H, W]``), ``depth_1`` (H/2) and ``depth_2`` (H/4), the auxiliary depths, ``omega_1..omega_6``
  (``[B, 1, H/2^s, W/2^s]``, paper convention: the weight of the HIGH-resolution features, 1 - the code's mask).
* ``sddr_train_step`` (default batch 2): one step of our supervised stage (``tfdepth/train/refinement.py``, stage
  ``supervised``, the paper's epoch 1): N_r in train mode (MiT drop-path active), ``L = L_gt`` as
  ``tfdepth/losses/affine_invariant.py`` computes it with the options ``tfdepth/recipes/sddr.py`` passes (config
  defaults): on each of ``depth``, ``depth_1``, ``depth_2`` the target and mask nearest-resized to the output
  (``tf.image.resize`` "nearest" = ``F.interpolate`` "nearest-exact" for these x2/x4 factors), per image:
  robust normalisation of prediction and target (median over the valid pixels, numpy's even-count median, scale =
  mean absolute deviation, >= 1e-6; gradients flow through both), trimmed MAE (trim 0.2: the lowest
  floor(0.8 |M|) residuals, divided by 2 |M|) + 0.5 x gradient matching at 4 scales (steps 1, 2, 4, 8;
  ``reduction="image"``); the three outputs' losses summed per image, then the batch mean. Backward, then the
  optimiser of ``configs/sddr_gpu.yaml`` (``train.optimizer: adamw``, ``learning_rate: 1e-4``, ``weight_decay``
  0.0 (the default), Keras' epsilon 1e-7, betas (0.9, 0.999), constant rate: ``lr_decay_at: 1.0``):
  ``torch.optim.AdamW``; then ``zero_grad``. Random inputs (seeded): the two base maps uniform in [0, 1], the
  target uniform in [0.05, 1] (inverse depth / its maximum, as our data), the valid mask ~90 % of the pixels.
  Returns the (detached) loss.

Architecture (sddr.md §2.2; NCHW; names follow our Keras layers, so weights copy one to one):

0. ``prefilter``: conv 5x5 (1 -> 1, replicate padding, bias) on the HIGH input only.
1. Shared residual conv encoder (``encoder.e1..e3``, one module for both inputs): conv3x3 stride 2 (zero padding 1,
   bias) -> GroupNorm(C/8) -> LeakyReLU(0.01) -> conv3x3 -> GroupNorm; shortcut conv1x1 stride 2 -> GroupNorm; sum
   -> LeakyReLU. Channels 8, 16, 32 at 1/2, 1/4, 1/8.
2. Shared MiT-b0 (``mit``) on e2: overlap patch embeds (conv k7 s4 p3 from 16 channels, then k3 s2 p1; LayerNorm
   eps 1e-5), 2 blocks per stage (pre-LN eps 1e-6, spatial-reduction attention with ratios 8/4/2/1 (conv + LN eps
   1e-5), Mix-FFN Linear -> depthwise 3x3 -> exact GELU -> Linear, ratio 4, drop-path linspace(0, 0.1, 8)), stage
   LayerNorm eps 1e-6. Dims 32/64/160/256, heads 1/2/5/8, strides 1/16 ... 1/128 of the input.
3. Cross-resolution attention (``cross_attention``) on the two deepest maps: separable 1x1 conv (depthwise 1x1 +
   pointwise 1x1, no bias) on each map, the 2 (H/128)(W/128) tokens of both maps in one sequence (map, row,
   column; ``token_layout="joint"``), 8 pre-LN blocks (LN eps 1e-5; 8 heads of 32; q = k = LN(x) + PE, v = LN(x),
   q/k/v Linear without bias, output projection with bias; MLP 256 -> 1024 -> 256 exact GELU), DETR sine PE (128
   channels for the row, then 128 for the column, temperature 1e4, raw 1-based indices, the low map's PE for both
   maps), then depthwise 1x1 (bias) + pointwise 1x1 (no bias), added residually to each map.
4. Decoder: ``up0`` = GroupNorm(32) -> bicubic x2 (``align_corners=True``) -> conv3x3 (replicate padding, bias) ->
   LeakyReLU on low + high deepest features (256 -> 160); then per skip level k = 1..6 (1/64 ... 1/2): mask head
   (GroupNorm -> replicate conv3x3 -> sigmoid) on r gives m, ``F = m F_low + (1 - m) F_high``, ``r = up_k(r + F)``
   with up-channels 64, 32, 32, 16, 8, 1 (GroupNorm groups C/8, GN(1, 16) in ``up5``, GN(2, 16) in ``mask5``; the
   last up layer 5x5, no activation -> D0). Auxiliary depths on ``r + F``: ``aux_quarter`` (GN(2, 32) -> up ->
   conv3x3 32 -> 1, level 4 -> 1/4) and ``aux_half`` (GN(1, 16) -> up -> conv3x3 16 -> 1, level 5 -> 1/2).
5. Initialisation as ours (timing only; it keeps activations in the same ranges): convolutions outside MiT
   N(0, 0.01), biases 0, GroupNorm (1, 0), attention Linear N(0, 0.02); MiT Linear N(0, 0.02), convs
   N(0, sqrt(2 / fan_out)), LayerNorm (1, 0), its stage-1 conv PyTorch's default.

Fidelity (measured with a scratch script, not a test: torch is no dependency of ours): our Keras weights (re-drawn
at unit scale so that every path matters) copied into this network, eval mode, the same random inputs: max abs
difference 2.9e-5 (256x256) and 3.9e-5 (256x384) on D0 of range ~8, <= 2.1e-5 on the auxiliary depths, <= 1.0e-5
on Omega; parameter gradients of a linear objective agree to ~1e-5 relative. :func:`multi_output_gt_loss` equals
ours to <= 2e-6 on the same outputs and targets (values ~10-21), and so does its gradient.

Deviations from our network (none in the layers, the parameters or the numbers computed by the forward pass):

* Layout: NCHW (PyTorch's default) where ours is NHWC; outputs ``[B, 1, h, w]``.
* Optimiser epsilon placement: Keras' AdamW adds its 1e-7 to sqrt(v) before the sqrt(1 - beta2^t) bias
  correction, ``torch.optim.AdamW`` after it (``tfdepth/train/optimizers.py`` derives the difference); the same
  cost, slightly different steps while gradients are tiny.
* The trimmed MAE keeps the lowest residuals by one sort of the (masked) residuals; ours ranks them with two
  argsorts and a 0/1 mask (the same value and gradient).
* Nothing of ours outside the step is timed here (data pipeline, metric trackers, our trainer's non-finite check).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from reference_args import check_hw, resolve_batch  # benchmarks/reference_args.py
from torch import nn

__all__ = ["ROWS", "make", "SDDRNet", "ConvEncoder", "MixVisionTransformer", "CrossResolutionAttention",
           "sine_position_embedding", "affine_invariant_loss", "multi_output_gt_loss", "INPUT_MULTIPLE"]

ROWS = ("sddr_one_stage", "sddr_train_step")

INPUT_MULTIPLE = 128
ENCODER_CHANNELS = (8, 16, 32)
MIT_DIMS = (32, 64, 160, 256)
MIT_HEADS = (1, 2, 5, 8)
MIT_DEPTHS = (2, 2, 2, 2)
MIT_SR_RATIOS = (8, 4, 2, 1)
MIT_MLP_RATIO = 4
DROP_PATH_RATE = 0.1
ATTENTION_BLOCKS = 8
ATTENTION_HEADS = 8
# Decoder after up0, one row per skip level 1..6 (1/64 ... 1/2): (level channels, mask GN groups, up-layer output
# channels, up GN groups, up kernel, activation) -- the table of tfdepth/models/sddr.py.
DECODER = (
    (160, 20, 64, 20, 3, True),
    (64, 8, 32, 8, 3, True),
    (32, 4, 32, 4, 3, True),
    (32, 4, 16, 4, 3, True),
    (16, 2, 8, 1, 3, True),
    (8, 1, 1, 1, 5, False),
)
# L_gt (SddrLossConfig defaults) and the optimiser (configs/sddr_gpu.yaml + TrainConfig defaults)
TRIM = 0.2
GRADIENT_MATCHING_WEIGHT = 0.5
GRADIENT_SCALES = 4
GT_KEYS = ("depth", "depth_1", "depth_2")
LEARNING_RATE = 1e-4
ADAM_EPSILON = 1e-7  # Keras AdamW's default (train.optimizer_epsilon: null)
WEIGHT_DECAY = 0.0


# ------------------------------------------------------------------------------------------------ small pieces


def _conv(cin, cout, kernel, stride=1, padding=0, padding_mode="zeros", groups=1, bias=True):
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, padding_mode=padding_mode, groups=groups,
                     bias=bias)
    nn.init.normal_(conv.weight, std=0.01)  # FuseNet.init_weight / ours: N(0, 0.01), bias 0
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def _linear(cin, cout, bias=True):
    linear = nn.Linear(cin, cout, bias=bias)
    nn.init.trunc_normal_(linear.weight, std=0.02)
    if bias:
        nn.init.zeros_(linear.bias)
    return linear


class DropPath(nn.Module):
    """Stochastic depth per sample in training (kept branches rescaled by 1 / (1 - rate)); identity in eval."""

    def __init__(self, rate=0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        noise = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x / keep * torch.floor(keep + noise)


# ---------------------------------------------------------------------------------------------- conv encoder


class EncoderBlock(nn.Module):
    """``BasicBlock_ini``: conv3x3/s2 - GN - LeakyReLU - conv3x3 - GN + (conv1x1/s2 - GN), LeakyReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        groups = cout // 8
        self.conv1 = _conv(cin, cout, 3, stride=2, padding=1)
        self.gn1 = nn.GroupNorm(groups, cout)
        self.conv2 = _conv(cout, cout, 3, padding=1)
        self.gn2 = nn.GroupNorm(groups, cout)
        self.down = _conv(cin, cout, 1, stride=2)
        self.gn_down = nn.GroupNorm(groups, cout)

    def forward(self, x):
        y = F.leaky_relu(self.gn1(self.conv1(x)), 0.01)
        y = self.gn2(self.conv2(y))
        return F.leaky_relu(y + self.gn_down(self.down(x)), 0.01)


class ConvEncoder(nn.Module):
    """The shared residual conv encoder: ``[B, 1, H, W]`` -> (e1 8@1/2, e2 16@1/4, e3 32@1/8)."""

    def __init__(self):
        super().__init__()
        cins = (1,) + ENCODER_CHANNELS[:-1]
        for i, (cin, cout) in enumerate(zip(cins, ENCODER_CHANNELS), start=1):
            self.add_module(f"e{i}", EncoderBlock(cin, cout))

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(e1)
        return e1, e2, self.e3(e2)


# ------------------------------------------------------------------------------------------------------ MiT-b0


def _mit_conv_init(conv):
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
    nn.init.normal_(conv.weight, std=math.sqrt(2.0 / fan_out))
    nn.init.zeros_(conv.bias)


class OverlapPatchEmbed(nn.Module):
    """Conv(k, stride, zero padding k // 2) + LayerNorm(eps 1e-5) -> tokens [B, h w, C] and (h, w)."""

    def __init__(self, cin, dim, kernel, stride, default_init=False):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
        if not default_init:
            _mit_conv_init(self.proj)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """SegFormer's spatial-reduction attention: keys/values from the map reduced by Conv(sr, stride sr) + LN."""

    def __init__(self, dim, heads, sr_ratio):
        super().__init__()
        self.heads, self.head_dim, self.sr_ratio = heads, dim // heads, sr_ratio
        self.scale = self.head_dim ** -0.5
        self.q = _linear(dim, dim)
        self.kv = _linear(dim, 2 * dim)
        self.proj = _linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            _mit_conv_init(self.sr)
            self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x, h, w):
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            reduced = self.norm(reduced)
        else:
            reduced = x
        kv = self.kv(reduced).reshape(b, -1, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv (zero padding, bias) -> exact GELU -> Linear, on tokens."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = _linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        _mit_conv_init(self.dwconv)
        self.fc2 = _linear(hidden, dim)

    def forward(self, x, h, w):
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """x + DropPath(Attn(LN(x))); x + DropPath(MixFFN(LN(x))), LayerNorm eps 1e-6."""

    def __init__(self, dim, heads, sr_ratio, mlp_ratio, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, h, w):
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(nn.Module):
    """MiT-b0 on a 16-channel map ``[B, 16, h, w]`` -> four maps ``[B, C_i, h / 4 / 2^i, ...]`` (i = 0..3)."""

    def __init__(self, in_channels=ENCODER_CHANNELS[1], drop_path_rate=DROP_PATH_RATE):
        super().__init__()
        total = sum(MIT_DEPTHS)
        rates = [drop_path_rate * i / (total - 1) for i in range(total)]
        cin, index = in_channels, 0
        for stage in range(4):
            kernel, stride = (7, 4) if stage == 0 else (3, 2)
            dim = MIT_DIMS[stage]
            self.add_module(f"patch_embed{stage + 1}",
                            OverlapPatchEmbed(cin, dim, kernel, stride, default_init=stage == 0))
            blocks = []
            for _ in range(MIT_DEPTHS[stage]):
                blocks.append(MiTBlock(dim, MIT_HEADS[stage], MIT_SR_RATIOS[stage], MIT_MLP_RATIO, rates[index]))
                index += 1
            self.add_module(f"block{stage + 1}", nn.ModuleList(blocks))
            self.add_module(f"norm{stage + 1}", nn.LayerNorm(dim, eps=1e-6))
            cin = dim

    def forward(self, x):
        outputs = []
        for stage in range(1, 5):
            tokens, h, w = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, h, w)
            tokens = getattr(self, f"norm{stage}")(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
            outputs.append(x)
        return outputs


# --------------------------------------------------------------------------------- cross-resolution attention


def sine_position_embedding(height, width, channels=256, temperature=10000.0, device=None):
    """DETR sine embedding ``[h w, channels]`` (row-major): first half the row, second half the column; raw 1-based
    indices; channel 2j sin, 2j + 1 cos of ``pos / T^(2 floor(i / 2) / half)``."""
    half = channels // 2
    i = torch.arange(half, dtype=torch.float32, device=device)
    dim_t = temperature ** (2.0 * torch.floor(i / 2.0) / half)
    even = (torch.arange(half, device=device) % 2 == 0)

    def embed(n):
        angle = torch.arange(1, n + 1, dtype=torch.float32, device=device)[:, None] / dim_t[None, :]
        return torch.where(even, torch.sin(angle), torch.cos(angle))

    rows = embed(height)[:, None, :].expand(height, width, half)
    cols = embed(width)[None, :, :].expand(height, width, half)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, channels)


class JointAttentionBlock(nn.Module):
    """Pre-LN transformer block on tokens [B, N, C]: q = k = LN(x) + pos, v = LN(x); MLP 4x, exact GELU."""

    def __init__(self, dim=256, heads=ATTENTION_HEADS, mlp_ratio=4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.q = _linear(dim, dim, bias=False)
        self.k = _linear(dim, dim, bias=False)
        self.v = _linear(dim, dim, bias=False)
        self.proj = _linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = _linear(dim, dim * mlp_ratio)
        self.fc2 = _linear(dim * mlp_ratio, dim)

    def _split(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, pos):
        b, n, c = x.shape
        normed = self.norm1(x)
        query_key = normed + pos
        q, k, v = self._split(self.q(query_key)), self._split(self.k(query_key)), self._split(self.v(normed))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class CrossResolutionAttention(nn.Module):
    """Joint self-attention over the deepest low and high maps ``[B, 256, h, w]`` -> (low + A_low, high + A_high)."""

    def __init__(self, dim=MIT_DIMS[-1], blocks=ATTENTION_BLOCKS):
        super().__init__()
        self.dim = dim
        self.sep_conv_dw = _conv(dim, dim, 1, groups=dim, bias=False)
        self.sep_conv_pw = _conv(dim, dim, 1, bias=False)
        self.blocks = nn.ModuleList([JointAttentionBlock(dim) for _ in range(blocks)])
        self.sep_deconv_dw = _conv(dim, dim, 1, groups=dim, bias=True)  # transposed depthwise 1x1 = this conv
        self.sep_deconv_pw = _conv(dim, dim, 1, bias=False)

    def forward(self, low, high):
        b, c, h, w = low.shape
        both = self.sep_conv_pw(self.sep_conv_dw(torch.cat([low, high], dim=0)))  # [2B, C, h, w]: low, then high
        tokens = both.reshape(2, b, c, h * w).permute(1, 0, 3, 2).reshape(b, 2 * h * w, c)  # (map, row, column)
        pos = sine_position_embedding(h, w, c, device=low.device).to(tokens.dtype).repeat(2, 1)[None]
        for block in self.blocks:
            tokens = block(tokens, pos)
        both = tokens.reshape(b, 2, h * w, c).permute(1, 0, 3, 2).reshape(2 * b, c, h, w)
        both = self.sep_deconv_pw(self.sep_deconv_dw(both))
        return low + both[:b], high + both[b:]


# -------------------------------------------------------------------------------------------------- decoder


class UpLayer(nn.Module):
    """GroupNorm -> bicubic x2 (align_corners) -> conv (replicate padding, bias) -> [LeakyReLU]."""

    def __init__(self, cin, cout, groups, kernel=3, activation=True):
        super().__init__()
        self.gn = nn.GroupNorm(groups, cin)
        self.conv = _conv(cin, cout, kernel, padding=kernel // 2, padding_mode="replicate")
        self.activation = activation

    def forward(self, x):
        x = F.interpolate(self.gn(x), scale_factor=2, mode="bicubic", align_corners=True)
        x = self.conv(x)
        return F.leaky_relu(x, 0.01) if self.activation else x


class MaskHead(nn.Module):
    """GroupNorm -> conv3x3 (C -> 1, replicate padding) -> sigmoid: the code's mask m (weight of the LOW features)."""

    def __init__(self, cin, groups):
        super().__init__()
        self.gn = nn.GroupNorm(groups, cin)
        self.conv = _conv(cin, 1, 3, padding=1, padding_mode="replicate")

    def forward(self, x):
        return torch.sigmoid(self.conv(self.gn(x)))


class SDDRNet(nn.Module):
    """N_r: ``(depth_low, depth_high)`` ``[B, 1, H, W]`` in [0, 1] -> dict ``depth``, ``depth_1``, ``depth_2``,
    ``omega_1..omega_6`` (module docstring). H, W multiples of 128."""

    def __init__(self, attention_blocks=ATTENTION_BLOCKS, drop_path_rate=DROP_PATH_RATE):
        super().__init__()
        self.prefilter = _conv(1, 1, 5, padding=2, padding_mode="replicate")
        self.encoder = ConvEncoder()
        self.mit = MixVisionTransformer(ENCODER_CHANNELS[1], drop_path_rate)
        self.cross_attention = CrossResolutionAttention(MIT_DIMS[-1], attention_blocks)
        self.up0 = UpLayer(MIT_DIMS[-1], 160, 32)
        for level, (channels, mask_groups, out_channels, up_groups, kernel, act) in enumerate(DECODER, start=1):
            self.add_module(f"mask{level}", MaskHead(channels, mask_groups))
            self.add_module(f"up{level}", UpLayer(channels, out_channels, up_groups, kernel, act))
        self.aux_quarter = UpLayer(32, 1, 2, 3, activation=False)
        self.aux_half = UpLayer(16, 1, 1, 3, activation=False)

    def _features(self, x):
        e1, e2, e3 = self.encoder(x)
        s1, s2, s3, s4 = self.mit(e2)
        return [s4, s3, s2, s1, e3, e2, e1]

    def forward(self, depth_low, depth_high):
        for name, x in (("depth_low", depth_low), ("depth_high", depth_high)):
            if x.dim() != 4 or x.shape[1] != 1 or x.shape[-2] % INPUT_MULTIPLE or x.shape[-1] % INPUT_MULTIPLE:
                raise ValueError(f"SDDRNet: {name} must be [B, 1, H, W] with H, W multiples of {INPUT_MULTIPLE}, "
                                 f"got {tuple(x.shape)}")
        if depth_low.shape != depth_high.shape:
            raise ValueError(f"SDDRNet: depth_low {tuple(depth_low.shape)} and depth_high "
                             f"{tuple(depth_high.shape)} must have the same shape")
        low = self._features(depth_low)
        high = self._features(self.prefilter(depth_high))
        low[0], high[0] = self.cross_attention(low[0], high[0])
        r = self.up0(low[0] + high[0])
        outputs = {}
        for level in range(1, 7):
            m = getattr(self, f"mask{level}")(r)
            outputs[f"omega_{7 - level}"] = 1.0 - m
            mixed = r + (m * low[level] + (1.0 - m) * high[level])
            if level == 4:
                outputs["depth_2"] = self.aux_quarter(mixed)
            elif level == 5:
                outputs["depth_1"] = self.aux_half(mixed)
            r = getattr(self, f"up{level}")(mixed)
        outputs["depth"] = r
        return {key: outputs[key] for key in ("depth", "depth_1", "depth_2") + tuple(f"omega_{s}" for s in range(1, 7))}


# ----------------------------------------------------------------------------------------------------- L_gt


def _masked_median(x, mask):
    """Per-image median ``[B, 1, 1, 1]`` of ``x`` over ``mask`` (numpy's even-count convention); 0 if empty."""
    flat, valid = x.flatten(1), mask.flatten(1) > 0
    ordered = torch.sort(torch.where(valid, flat, torch.full_like(flat, float("inf"))), dim=1).values
    count = valid.sum(dim=1)
    low = ordered.gather(1, ((count - 1) // 2).clamp(min=0)[:, None])[:, 0]
    high = ordered.gather(1, (count // 2).clamp(min=0)[:, None])[:, 0]
    median = torch.where(count > 0, 0.5 * (low + high), torch.zeros_like(low))
    return median.view(-1, 1, 1, 1)


def _robust_normalize(x, mask, eps=1e-6):
    centred = x - _masked_median(x, mask)
    count = mask.sum(dim=(1, 2, 3), keepdim=True)
    scale = (mask * centred.abs()).sum(dim=(1, 2, 3), keepdim=True) / count.clamp(min=1.0)
    return centred / scale.clamp(min=eps)


def _trimmed_mae(pred_n, gt_n, mask, trim):
    residual = (pred_n - gt_n).abs().flatten(1)
    valid = mask.flatten(1) > 0
    count = valid.sum(dim=1).to(residual.dtype)
    keep = torch.floor(count * (1.0 - trim)).long()
    ordered = torch.sort(torch.where(valid, residual, torch.full_like(residual, float("inf"))), dim=1).values
    rank = torch.arange(ordered.shape[1], device=ordered.device)[None, :]
    kept = torch.where(rank < keep[:, None], ordered, torch.zeros_like(ordered)).sum(dim=1)
    return kept / (2.0 * count).clamp(min=1.0)


def _gradient_matching(pred_n, gt_n, mask, scales):
    total = 0.0
    for scale in range(scales):
        step = 2 ** scale
        m = mask[:, :, ::step, ::step]
        diff = m * (pred_n[:, :, ::step, ::step] - gt_n[:, :, ::step, ::step])
        grad_x = (diff[..., 1:] - diff[..., :-1]).abs() * (m[..., 1:] * m[..., :-1])
        grad_y = (diff[..., 1:, :] - diff[..., :-1, :]).abs() * (m[..., 1:, :] * m[..., :-1, :])
        image = grad_x.sum(dim=(1, 2, 3)) + grad_y.sum(dim=(1, 2, 3))
        total = total + image / m.sum(dim=(1, 2, 3)).clamp(min=1.0)
    return total


def affine_invariant_loss(pred, gt, mask, trim=TRIM, gradient_weight=GRADIENT_MATCHING_WEIGHT,
                          scales=GRADIENT_SCALES):
    """Trimmed SSI MAE + ``gradient_weight`` x multi-scale gradient matching per image ``[B]`` (``reduction="image"``,
    median over the valid pixels: our ``affine_invariant_loss`` with its defaults); maps ``[B, 1, H, W]``."""
    pred, gt, mask = pred.float(), gt.float(), mask.float()
    finite = torch.isfinite(gt)
    mask = mask * finite.float()
    gt = torch.where(finite, gt, torch.zeros_like(gt))
    pred_n, gt_n = _robust_normalize(pred, mask), _robust_normalize(gt, mask)
    loss = _trimmed_mae(pred_n, gt_n, mask, trim)
    if gradient_weight:
        loss = loss + gradient_weight * _gradient_matching(pred_n, gt_n, mask, scales)
    return loss


def multi_output_gt_loss(outputs, gt, mask, keys=GT_KEYS):
    """Sum over ``keys`` of :func:`affine_invariant_loss` per image ``[B]``; target and mask nearest-resized to each
    output (``nearest-exact`` = ``tf.image.resize(method="nearest")`` for integer down-scaling factors)."""
    gt, mask = gt.float(), mask.float()
    total = 0.0
    for key in keys:
        pred = outputs[key]
        if pred.shape[-2:] == gt.shape[-2:]:
            gt_k, mask_k = gt, mask
        else:
            gt_k = F.interpolate(gt, size=pred.shape[-2:], mode="nearest-exact")
            mask_k = F.interpolate(mask, size=pred.shape[-2:], mode="nearest-exact")
        total = total + affine_invariant_loss(pred, gt_k, mask_k)
    return total


# ------------------------------------------------------------------------------------------------ benchmark


def _random_batch(generator, batch, height, width):
    shape = (batch, 1, height, width)
    return {
        "depth_low": torch.rand(shape, generator=generator),
        "depth_high": torch.rand(shape, generator=generator),
        "target": 0.05 + 0.95 * torch.rand(shape, generator=generator),
        "mask": (torch.rand(shape, generator=generator) > 0.1).float(),
    }


def make(row: str, height: int = 1024, width: int = 1024, batch: int | None = None, seed: int = 0):
    """Build N_r, random inputs (seeded) and the optimizer for ``row``; return ``(run_once, info)``.

    ``run_once()`` performs one iteration: ``sddr_one_stage`` returns the output dict (module docstring),
    ``sddr_train_step`` the detached loss L_gt. ``info``: ``{"parameters": int, "description": str}``.
    """
    if row not in ROWS:
        raise ValueError(f"row must be one of {ROWS}, got {row!r}")
    check_hw(height, width, lambda v: v % INPUT_MULTIPLE == 0,
             f"a positive multiple of {INPUT_MULTIPLE} (N_r's deepest map is at 1/{INPUT_MULTIPLE})")
    batch = resolve_batch(batch, 1 if row == "sddr_one_stage" else 2)
    torch.manual_seed(seed)
    model = SDDRNet()
    data = _random_batch(torch.Generator().manual_seed(seed), batch, height, width)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = f"{batch}x{height}x{width}"

    if row == "sddr_one_stage":
        model.eval()
        low, high = data["depth_low"], data["depth_high"]

        def run_once():
            with torch.inference_mode():
                return model(low, high)

        description = (f"PyTorch SDDR N_r one-stage inference, eval mode, {size}: conv encoder + MiT-b0 on both "
                       f"base maps, {ATTENTION_BLOCKS} joint attention blocks, mask-fusion decoder -> D0 + aux + Omega")
        return run_once, {"parameters": parameters, "description": description}

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.999), eps=ADAM_EPSILON,
                                  weight_decay=WEIGHT_DECAY)

    def run_once():
        outputs = model(data["depth_low"], data["depth_high"])
        loss = multi_output_gt_loss(outputs, data["target"], data["mask"]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    description = (f"PyTorch SDDR N_r supervised train step, {size}: L_gt (trimmed SSI MAE + 0.5 x 4-scale gradient "
                   f"matching) on D0 and both aux depths, backward, AdamW lr={LEARNING_RATE:g} wd={WEIGHT_DECAY:g} "
                   f"eps={ADAM_EPSILON:g}")
    return run_once, {"parameters": parameters, "description": description}
