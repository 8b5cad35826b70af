"""PyTorch reference of the Region-Support Network (RSN), for the speed benchmark (``benchmarks/speed.py``).

Written from the architecture description of ``specs/rsn.md`` (§4 generation module ``rsnet``, §5 refinement module
``drnet``, §6 losses, §7 training) and layer by layer against our Keras network (``tfdepth/models/rsn.py``) at the
faithful settings of ``configs/rsn_nyu.yaml`` (``width_multiplier: 1.0``, ``grid: absolute``, 3 iterations):
generation 30,444,718 + refinement 994,860 trainable parameters, the same as ours, so the timing compares like with
like. Uses ``torch.nn`` only (no torchvision). Never imported by ``tfdepth/`` or ``tests/``.

Rows (:data:`ROWS`, built by :func:`make`):

* ``rsn_infer``: batch 1, ``model.eval()`` under ``torch.inference_mode()``: image ``[1, 3, H, W]`` in [0, 1] ->
  generation module (region support S_hat) -> 3 weight-shared refinement iterations -> the final depth; returns the
  dict ``region_support``, ``depth_iter_1..3``, ``depth``, what our ``RegionSupportNetwork`` returns end to end.
* ``rsn_train_step`` (default batch 2): one step of our joint stage (``tfdepth/train/region_support.py``, stage
  ``joint``; spec §7 [interpretation]): generation + 3 refinement iterations in train mode, the iterative log loss
  L_i (natural log, eps 1e-6, weights 0.2/0.3/0.5, per image then the batch mean; ``tfdepth/losses/region.py``),
  the log region loss L_r computed without gradient (ours tracks it under ``stop_gradient``, it is not optimised),
  one backward, then two optimizers as ``tfdepth/recipes/rsn.py`` builds them from ``rsn_nyu.yaml``:
  ``torch.optim.SGD`` (momentum 0.99, coupled weight decay 5e-4 = our ``TorchSGD``), the generation module at
  ``train.learning_rate`` 1e-3 and the refinement module at ``loss.refinement_learning_rate`` 1e-4 (constant rate),
  then ``zero_grad``. Random targets (seeded): depth uniform in 0.5..10 m, support-region ids on 8x8-pixel cells
  (16 ids, 0 = no region) and the support depth SD constant per id. Returns the (detached) total loss.

Architecture (spec §4, §5; all convolutions without bias, BatchNorm eps 1e-5 momentum 0.1 = ours, CBR = conv + BN
+ ReLU with explicit zero padding as in the authors' code):

* Input RGB in [0, 1], ImageNet mean/std normalisation inside the network on the 3 RGB channels only (spec
  "Checked" item 5; the refinement's support and depth channels stay in metres).
* Generation: conv1 7x7 stride 1 padding 1 (H - 4) + BN + ReLU, no max-pool; ResNet34 layers [3, 4, 6, 3] of
  BasicBlocks, layer2 stride 2 (1x1 stride-2 downsample), layer3/4 stride 1 (1x1 downsample for the channels);
  skip branch full1/full2 (3x3 padding 2 each, 64 -> 128 -> 128, back to H x W) on layer1; pyramid unit on layer4
  (512 -> 512 + 7 x 73 = 1023); deconv0 CBR 3x3; deconv2 ConvTranspose 3x3 stride 2 padding 0 output_padding 1
  (2h + 2) + BN + ReLU; regress1 CBR 3x3 padding 2; concat with the skip; regress2..4, final (CBR 3x3) and final2
  (conv 3x3 + ReLU, no BN).
* Refinement: [RGB, S_hat, depth] (5 channels), conv1 7x7 padding 1 + BN + ReLU, layer1 (3 BasicBlocks = the six
  conv layers), full1/full2, the simplified pyramid unit at full resolution (128 -> 128 + 7 x 18 = 254), infer1..4
  (CBR 3x3) and infer5 (conv 3x3 + ReLU). Iterations: d_k = F([RGB, S_hat, d_{k-1}]), d_0 = S_hat.
* Pyramid unit: identity + 7 paths; path j = ``F.adaptive_avg_pool2d`` to grid j -> CBR 3x3 padding 1 to C // 7
  channels -> ``F.interpolate(bilinear, align_corners=True)`` back to the unit's input. :data:`GRID` "absolute"
  (``rsn_nyu.yaml``, the code, spec "Checked" item 2): the sizes (120, 160), (60, 80), (48, 64), (24, 32), (12, 16),
  (6, 8), (3, 4) at every input size; "relative": round(H / d), round(W / d) of the network's input image for d in
  4, 8, 10, 20, 40, 80, 160 (at least 1), as ours.
* Initialisation as ours (timing only, but it keeps the activations in the same ranges): conv1, layer1..4, full1,
  full2 N(0, 2 / (k^2 C_out)); BN gamma 1, beta 0; the pyramid and decoder layers PyTorch's default.

Deviations from our network (none in the layers, the parameters or the numbers computed):

* Layout: NCHW (PyTorch's default) where ours is NHWC; outputs ``[B, 1, H, W]``.
* The joint step does one backward pass for both modules; ours takes two gradients from one persistent
  ``GradientTape`` (one per optimizer group, ``DepthTrainer.train_step``), so its refinement iterations are
  back-propagated twice. That is an extra cost of our trainer, which this reference does not copy.
* Nothing of ours outside the step is timed here (data pipeline, metric trackers, the non-finite check).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from reference_args import check_hw, resolve_batch  # benchmarks/reference_args.py
from torch import nn

__all__ = ["ROWS", "make", "GenerationModule", "RefinementModule", "RegionSupportNetwork", "joint_losses",
           "GRID", "ABSOLUTE_GRIDS", "RELATIVE_GRID_DIVISORS"]

ROWS = ("rsn_infer", "rsn_train_step")

# configs/rsn_nyu.yaml
GRID = "absolute"
ITERATIONS = 3
ITERATION_WEIGHTS = (0.2, 0.3, 0.5)
LEARNING_RATE = 1e-3  # train.learning_rate: the generation module
REFINEMENT_LEARNING_RATE = 1e-4  # loss.refinement_learning_rate: the refinement module
MOMENTUM = 0.99
WEIGHT_DECAY = 5e-4
LOG_EPS = 1e-6

ABSOLUTE_GRIDS = ((120, 160), (60, 80), (48, 64), (24, 32), (12, 16), (6, 8), (3, 4))
RELATIVE_GRID_DIVISORS = (4, 8, 10, 20, 40, 80, 160)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1


def _he_fan_out(conv):
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # N(0, 2 / (k^2 C_out))


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class CBR(nn.Module):
    """Conv (explicit zero padding, no bias) + [BN] + ReLU; ``he`` = the code's init loop, else PyTorch default."""

    def __init__(self, cin, cout, kernel, padding, batchnorm=True, he=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False)
        self.bn = _bn(cout) if batchnorm else None
        if he:
            _he_fan_out(self.conv)

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


class BasicBlock(nn.Module):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN + shortcut (1x1 conv(stride) + BN if the shape changes), ReLU."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False), _bn(planes))
            _he_fan_out(self.downsample[0])
        _he_fan_out(self.conv1)
        _he_fan_out(self.conv2)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + shortcut)


def _layer(cin, planes, blocks, stride):
    return nn.Sequential(*[BasicBlock(cin if i == 0 else planes, planes, stride if i == 0 else 1)
                           for i in range(blocks)])


def _normalize(x):
    """ImageNet mean/std on the first 3 (RGB) channels; the other channels pass unchanged."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (x[:, :3] - mean) / std
    return rgb if x.shape[1] == 3 else torch.cat([rgb, x[:, 3:]], dim=1)


def _grid_sizes(grid, image_hw):
    if grid == "absolute":
        return ABSOLUTE_GRIDS
    h, w = image_hw
    return tuple((max(1, (h + d // 2) // d), max(1, (w + d // 2) // d)) for d in RELATIVE_GRID_DIVISORS)


class PyramidUnit(nn.Module):
    """concat(x, path_0..path_6): adaptive average pool -> CBR 3x3 to C // 7 -> bilinear align_corners back."""

    def __init__(self, channels, grid=GRID):
        super().__init__()
        if grid not in ("absolute", "relative"):
            raise ValueError(f"grid must be 'absolute' or 'relative', got {grid!r}")
        self.grid = grid
        out = max(1, channels // len(ABSOLUTE_GRIDS))
        for j in range(len(ABSOLUTE_GRIDS)):
            self.add_module(f"path{j}", CBR(channels, out, 3, 1))

    def forward(self, x, image_hw):
        size = x.shape[-2:]
        outputs = [x]
        for j, grid in enumerate(_grid_sizes(self.grid, image_hw)):
            y = getattr(self, f"path{j}")(F.adaptive_avg_pool2d(x, grid))
            outputs.append(F.interpolate(y, size=size, mode="bilinear", align_corners=True))
        return torch.cat(outputs, dim=1)


class _Stem(nn.Module):
    """conv1 7x7 stride 1 padding 1 + BN + ReLU, layer1 (3 BasicBlocks) and the skip branch full1/full2."""

    def __init__(self, cin):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 64, 7, padding=1, bias=False)
        self.bn1 = _bn(64)
        _he_fan_out(self.conv1)
        self.layer1 = _layer(64, 64, 3, 1)
        self.full1 = CBR(64, 128, 3, 2, he=True)
        self.full2 = CBR(128, 128, 3, 2, he=True)


class GenerationModule(_Stem):
    """``rsnet`` (spec §4): image ``[B, 3, H, W]`` in [0, 1] -> region support ``[B, 1, H, W]``; H, W even, >= 6."""

    def __init__(self, grid=GRID):
        super().__init__(3)
        self.layer2 = _layer(64, 128, 4, 2)
        self.layer3 = _layer(128, 256, 6, 1)
        self.layer4 = _layer(256, 512, 3, 1)
        self.pyramid = PyramidUnit(512, grid)
        self.deconv0 = CBR(1023, 512, 3, 1)
        self.deconv2 = nn.Module()
        self.deconv2.conv = nn.ConvTranspose2d(512, 256, 3, stride=2, padding=0, output_padding=1, bias=False)
        self.deconv2.bn = _bn(256)
        self.regress1 = CBR(256, 128, 3, 2)
        self.regress2 = CBR(256, 128, 3, 1)
        self.regress3 = CBR(128, 64, 3, 1)
        self.regress4 = CBR(64, 32, 3, 1)
        self.final = CBR(32, 16, 3, 1)
        self.final2 = CBR(16, 1, 3, 1, batchnorm=False)

    def forward(self, image):
        x = F.relu(self.bn1(self.conv1(_normalize(image))))  # H - 4
        x = self.layer1(x)
        skip = self.full2(self.full1(x))  # H
        x = self.layer4(self.layer3(self.layer2(x)))  # (H - 4) / 2
        x = self.pyramid(x, image.shape[-2:])
        x = self.deconv0(x)
        x = F.relu(self.deconv2.bn(self.deconv2.conv(x)))  # H - 2
        x = self.regress1(x)  # H
        x = torch.cat([x, skip], dim=1)
        x = self.final(self.regress4(self.regress3(self.regress2(x))))
        return self.final2(x)


class RefinementModule(_Stem):
    """``drnet`` (spec §5), one iteration: [RGB, region support, depth] ``[B, 5, H, W]`` -> depth ``[B, 1, H, W]``."""

    def __init__(self, grid=GRID):
        super().__init__(5)
        self.pyramid = PyramidUnit(128, grid)
        self.infer1 = CBR(254, 128, 3, 1)
        self.infer2 = CBR(128, 64, 3, 1)
        self.infer3 = CBR(64, 32, 3, 1)
        self.infer4 = CBR(32, 16, 3, 1)
        self.infer5 = CBR(16, 1, 3, 1, batchnorm=False)

    def forward(self, image, region_support, depth):
        x = _normalize(torch.cat([image, region_support, depth], dim=1))
        x = self.layer1(F.relu(self.bn1(self.conv1(x))))  # H - 4
        x = self.full2(self.full1(x))  # H
        x = self.pyramid(x, image.shape[-2:])
        x = self.infer4(self.infer3(self.infer2(self.infer1(x))))
        return self.infer5(x)


class RegionSupportNetwork(nn.Module):
    """Generation + ``iterations`` weight-shared refinement steps -> dict as our ``RegionSupportNetwork``."""

    def __init__(self, grid=GRID, iterations=ITERATIONS):
        super().__init__()
        self.generation = GenerationModule(grid)
        self.refinement = RefinementModule(grid)
        self.iterations = int(iterations)

    def forward(self, image):
        support = self.generation(image)
        out = {"region_support": support}
        depth = support
        for k in range(1, self.iterations + 1):
            depth = self.refinement(image, support, depth)
            out[f"depth_iter_{k}"] = depth
        out["depth"] = depth
        return out


# ------------------------------------------------------------------------------------------------------- losses
def _region_loss_log(pred, target, ids, eps=LOG_EPS):
    """Our ``region_loss(log=True)``: per image the mean over present ids of the per-region mean squared log error,
    then the mean over the images with a region (0 if none)."""
    b = ids.shape[0]
    err = (torch.log(pred + eps) - torch.log(target + eps)).square().reshape(b, -1)
    ids = ids.reshape(b, -1).long()
    n = int(ids.max().clamp(min=0)) + 1
    seg = ids + torch.arange(b, device=ids.device)[:, None] * n
    total = torch.zeros(b * n, dtype=err.dtype, device=err.device).scatter_add_(0, seg.reshape(-1), err.reshape(-1))
    count = torch.zeros(b * n, dtype=err.dtype, device=err.device).scatter_add_(
        0, seg.reshape(-1), torch.ones_like(err).reshape(-1))
    total, count = total.reshape(b, n)[:, 1:], count.reshape(b, n)[:, 1:]
    present = count > 0
    region_mean = torch.where(present, total / count.clamp(min=1.0), torch.zeros_like(total))
    k = present.sum(1).to(err.dtype)
    per_image = region_mean.sum(1) / k.clamp(min=1.0)
    has = (k > 0).to(err.dtype)
    return (per_image * has).sum() / has.sum().clamp(min=1.0)


def _iterative_loss_log(depths, target, weights=ITERATION_WEIGHTS, eps=LOG_EPS):
    """Our ``iterative_loss(log=True)``: sum_k w_k * (per-image mean over valid pixels, then the batch mean)."""
    valid = torch.isfinite(target) & (target > 0)
    valid_f = valid.to(target.dtype)
    count = valid_f.sum(dim=(1, 2, 3))
    has = (count > 0).to(target.dtype)
    safe_target = torch.where(valid, target, torch.ones_like(target))
    total = target.new_zeros(())
    terms = {}
    for k, (depth, w) in enumerate(zip(depths, weights), start=1):
        d = torch.where(valid, depth, torch.ones_like(depth))
        err = (torch.log(d + eps) - torch.log(safe_target + eps)).square() * valid_f
        per_image = err.sum(dim=(1, 2, 3)) / count.clamp(min=1.0)
        value = (per_image * has).sum() / has.sum().clamp(min=1.0)
        terms[f"iter_{k}"] = value
        total = total + w * value
    terms["iterative"] = total
    return terms


def joint_losses(outputs, batch):
    """Our joint stage's terms: L_i (optimised, ``loss``) and the log L_r (tracked without gradient, ``region``)."""
    with torch.no_grad():
        region = _region_loss_log(outputs["region_support"].detach(), batch["region_support"], batch["support_ids"])
    depths = [outputs[f"depth_iter_{k}"] for k in range(1, ITERATIONS + 1)]
    terms = _iterative_loss_log(depths, batch["depth"])
    terms["region"] = region
    terms["loss"] = terms["iterative"]
    return terms


# -------------------------------------------------------------------------------------------------- benchmark
def _random_batch(generator, batch, height, width):
    image = torch.rand(batch, 3, height, width, generator=generator)
    depth = 0.5 + 9.5 * torch.rand(batch, 1, height, width, generator=generator)
    cells = torch.randint(0, 16, (batch, 1, math.ceil(height / 8), math.ceil(width / 8)), generator=generator)
    ids = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)[:, :, :height, :width].contiguous()
    id_depth = 0.5 + 9.5 * torch.rand(batch, 16, generator=generator)
    support = torch.gather(id_depth, 1, ids.reshape(batch, -1)).reshape(batch, 1, height, width)
    support = torch.where(ids > 0, support, torch.zeros_like(support))  # id 0 = no region (SD 0), as Algorithm 1
    return {"image": image, "depth": depth, "region_support": support, "support_ids": ids.to(torch.int32)}


def make(row: str, height: int = 480, width: int = 640, batch: int | None = None, seed: int = 0):
    """Build the network, random inputs (seeded) and optimizers for ``row``; return ``(run_once, info)``.

    ``run_once()`` performs one iteration: ``rsn_infer`` returns the output dict (module docstring),
    ``rsn_train_step`` the detached total loss L_i. ``info``: ``{"parameters": int, "description": str}``.
    """
    if row not in ROWS:
        raise ValueError(f"row must be one of {ROWS}, got {row!r}")
    check_hw(height, width, lambda v: v >= 6 and v % 2 == 0,
             "an even int >= 6 (the generation module's padding arithmetic)")
    batch = resolve_batch(batch, 1 if row == "rsn_infer" else 2)
    torch.manual_seed(seed)
    model = RegionSupportNetwork(GRID, ITERATIONS)
    generator = torch.Generator().manual_seed(seed)
    data = _random_batch(generator, batch, height, width)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = f"{batch}x{height}x{width}"

    if row == "rsn_infer":
        model.eval()
        image = data["image"]

        def run_once():
            with torch.inference_mode():
                return model(image)

        description = (f"PyTorch RSN inference, eval mode, {size}: generation + {ITERATIONS} weight-shared "
                       f"refinement iterations ({GRID} pyramid grids)")
        return run_once, {"parameters": parameters, "description": description}

    model.train()
    optimizers = [
        torch.optim.SGD(model.generation.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                        weight_decay=WEIGHT_DECAY),
        torch.optim.SGD(model.refinement.parameters(), lr=REFINEMENT_LEARNING_RATE, momentum=MOMENTUM,
                        weight_decay=WEIGHT_DECAY),
    ]

    def run_once():
        terms = joint_losses(model(data["image"]), data)
        terms["loss"].backward()
        for optimizer in optimizers:
            optimizer.step()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        return terms["loss"].detach()

    description = (f"PyTorch RSN joint train step, {size}: generation + {ITERATIONS} refinement iterations, L_i "
                   f"(0.2/0.3/0.5) + tracked L_r, one backward, SGD m={MOMENTUM} wd={WEIGHT_DECAY} at "
                   f"{LEARNING_RATE:g} (generation) / {REFINEMENT_LEARNING_RATE:g} (refinement)")
    return run_once, {"parameters": parameters, "description": description}
