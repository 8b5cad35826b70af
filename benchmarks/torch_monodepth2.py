"""PyTorch reference of the self-supervised family (Monodepth2), for the speed benchmark (``benchmarks/speed.py``).

Monodepth2 is Godard, Mac Aodha, Firman and Brostow, "Digging Into Self-Supervised Monocular Depth Estimation",
ICCV 2019. This file was written from the paper's description of the architecture and the loss (sec. 3.1 for the
photometric error, eq. 1, the warp, eq. 2, and the edge-aware smoothness, eq. 3; sec. 3.2 for per-pixel minimum
reprojection, eq. 4, auto-masking, eq. 5, and full-resolution multi-scale; sec. 3.3 and the implementation details
of sec. 4 for the networks and hyperparameters). Facts the paper leaves open were checked against the authors' code
(github.com/nianticlabs/monodepth2: ``networks/``, ``layers.py``, ``trainer.py``, ``options.py``, default options).
It uses ``torch.nn`` only (no torchvision), and neither ``tfdepth/`` nor ``tests/`` imports it. The networks have
the same trainable parameters as ours (``tfdepth.models.build_model`` with ``configs/default.yaml``): depth
14,329,236 and pose 12,500,492, 26,829,728 together. With our Keras weights copied in (NCHW <-> NHWC), the four
disparities and the pose agree with ours to float32 round-off (max |diff| below 1e-6 at 96x320), and so does the
training loss on the same batch and tie-breaking noise (difference below 2e-7).

Rows (:data:`ROWS`, built by :func:`make`):

* ``selfsup_depth_infer``: the depth network in ``eval()`` under ``torch.inference_mode()``. Batch 1 image
  ``[1, 3, H, W]`` in [0, 1] goes in; the dict ``{s: disp_s}`` of the four sigmoid disparities ``[1, 1, H/2^s,
  W/2^s]``, s = 0..3, comes out.
* ``selfsup_pose_infer``: the pose network in ``eval()`` under ``torch.inference_mode()``. Two frames stacked in
  temporal order ``[1, 6, H, W]`` go in; ``(axisangle, translation)``, each ``[1, 1, 3]``, come out. That is frame
  0 of the decoder's two predicted frames, the one the original's trainer uses.
* ``selfsup_train_step`` (default batch 2): one step of the original's default monocular training
  (``frame_ids [0, -1, 1]``, ``pose_model_type separate_resnet``, ``pose_model_input pairs``, full-res
  multi-scale, auto-masking, per-pixel minimum). The step runs forward, loss, ``backward()``, ``Adam(lr=1e-4)
  .step()`` and ``zero_grad()``, and returns the detached loss. Its inputs are random (seeded): frames t-1, t, t+1
  uniform in [0, 1], and the original's normalised KITTI intrinsics scaled to H x W.

Structure (the original's; sec. 3.3):

* Encoders: a hand-written torchvision ResNet18 (BasicBlock, layers [2, 2, 2, 2], 1x1 strided downsample with BN,
  BN eps 1e-5, momentum 0.1; Kaiming-normal fan_out conv init, BN gamma 1 and beta 0). The classifier is left out.
  The input is normalised inside the encoder as ``(x - 0.45) / 0.225``. The encoder returns conv1+BN+ReLU (stride
  2) and layer1..layer4 (strides 4..32), with channels [64, 64, 128, 256, 512].
* Depth decoder: channels [16, 32, 64, 128, 256]. For i = 4..0: ConvBlock (1-pixel reflection pad, 3x3 conv with
  bias, ELU), nearest x2 upsampling, concatenation with encoder feature i-1 (for i > 0), and a second ConvBlock.
  At i in 0..3, a disparity head (reflection pad, 3x3 conv, sigmoid). Layers keep PyTorch's default init.
* Pose network (``separate_resnet``): a second ResNet18 whose first conv takes 6 channels (6 -> 64), run on
  ``[I_-1, I_0]`` and on ``[I_0, I_+1]``, always in temporal order. Its decoder (``num_input_features=1``,
  ``num_frames_to_predict_for=2``) is: squeeze 1x1 512 -> 256 + ReLU, then 3x3 conv 256 (padding 1) + ReLU twice,
  then a 1x1 conv (not 3x3, in the original and in ours) to 12 channels. Then the spatial mean, x 0.01, and a
  reshape to ``[B, 2, 1, 6]``: axis-angle ``[..., :3]``, translation ``[..., 3:]``. Only frame 0 is used. Its
  matrix is ``T(t) R(axisangle)``, inverted (``R^T T(-t)``) for the previous frame. R is Rodrigues' formula with
  ``axis = v / (|v| + 1e-7)``.
* Warp: each ``disp_s`` is upsampled to H x W (bilinear, ``align_corners=False``) and mapped to depth by
  ``disp_to_depth`` (min 0.1, max 100). The target pixels are back-projected with ``inv_K`` and projected with
  ``K @ T``, dividing by ``z + 1e-7``. The coordinates are normalised as ``(u / (W - 1) - 0.5) * 2``, and the
  source is sampled with ``F.grid_sample(bilinear, padding_mode="border", align_corners=True)``.
* Loss per scale: pe = 0.85 * mean_c clamp((1 - SSIM) / 2, 0, 1) + 0.15 * mean_c |a - b|, with SSIM from 3x3
  ``AvgPool2d`` over 1-pixel reflection-padded inputs, C1 = 0.01^2 and C2 = 0.03^2. The two identity errors
  pe(I_f, I_0) + N(0, 1) * 1e-5 come first, then the two reprojection errors pe(I_f->0, I_0). The loss is the
  per-pixel minimum over these four channels, averaged over pixels. Added to it is 1e-3 / 2^s times the edge-aware
  smoothness of ``disp_s / (mean disp_s + 1e-7)``, computed at the disparity's own resolution against the target
  image at that scale. The total is the mean over the four scales.

``align_corners``: the original calls ``grid_sample`` without the argument. It was written for PyTorch 0.4.1, whose
only behaviour was what is now ``align_corners=True``, and its ``(u / (W - 1) - 0.5) * 2`` normalisation is that
convention (pixel centres at -1 and +1). Later PyTorch versions (>= 1.3) default to ``False`` and warn, which shifts
the sampling by up to half a pixel. This file uses ``True``, as the paper's runs did and as ours does
(``tfdepth.geometry.bilinear_sample``).

Differences from the original. None of them changes the networks or the parameters, and only the pyramid filter
changes a loss value (the smoothness term's image gradients at scales 1..3):

* Layout: NCHW. Depth outputs are keyed by the scale ``s`` instead of ``("disp", s)``.
* The ResNet classifier (``fc``, 512 x 1000 + 1000) is not built. The original builds one in both encoders and
  never uses it, so its 513,000 parameters per encoder get no gradient and Adam skips them. The counts here (and
  ours) exclude it.
* The identity reprojection errors are computed once per step, not once per scale. With full-res multi-scale all
  four scales compare the same full-resolution images, so the original computes the same two maps four times,
  which is six redundant forward SSIMs per step. Ours computes them once too. The 1e-5 tie-breaking noise is still
  drawn fresh for each scale, as in the original.
* The original's data loader supplies the per-scale target images (PIL antialiased resize), ``K`` and ``inv_K``.
  Here they are built once in :func:`make`, and the pyramid is a 2^s box filter (``avg_pool2d``), as ours
  (``tfdepth.train.self_supervised.downscale``). Colour augmentation is a loader job in the original and is not
  timed here. The networks see the un-augmented frames.
* The step's order is forward, backward, step, ``zero_grad(set_to_none=True)``. The original calls ``zero_grad``
  first, and the two orders are equivalent from step to step.

One difference from ours, which this file shares with the original: in train mode PyTorch's BatchNorm updates
``running_var`` with the unbiased batch variance, while Keras uses the biased one, a factor n / (n - 1) with
n = B * h * w per update. Train-mode outputs, the loss and the timing are unaffected. Eval-mode outputs after
training drift apart slightly (0.3% in the running variance of layer4 after one update at 2x96x320).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from reference_args import check_hw, resolve_batch  # benchmarks/reference_args.py
from torch import nn

__all__ = ["ROWS", "make", "ResNet18Encoder", "DepthDecoder", "PoseDecoder", "DepthNet", "PoseNet",
           "disp_to_depth", "transformation_from_parameters", "SelfSupervisedLoss", "kitti_intrinsics"]

ROWS = ("selfsup_depth_infer", "selfsup_pose_infer", "selfsup_train_step")

SCALES = (0, 1, 2, 3)
SOURCE_FRAMES = (-1, 1)  # the original's frame_ids [0, -1, 1]
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0
LEARNING_RATE = 1e-4
SSIM_WEIGHT = 0.85
SMOOTHNESS_WEIGHT = 1e-3
NOISE_STD = 1e-5
NUM_CH_ENC = (64, 64, 128, 256, 512)
NUM_CH_DEC = (16, 32, 64, 128, 256)
POSE_FRAMES = 2  # num_frames_to_predict_for of the separate_resnet pose decoder
MEAN, STD = 0.45, 0.225


# ------------------------------------------------------------------------------------------------ encoder
class BasicBlock(nn.Module):
    """torchvision BasicBlock: 3x3 (stride) + BN + ReLU, 3x3 + BN, plus the (downsampled) shortcut, ReLU."""

    def __init__(self, in_ch, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_ch != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class ResNet18Encoder(nn.Module):
    """ResNet18 feature encoder: ``[B, 3 * num_input_images, H, W]`` in [0, 1] -> 5 features (strides 2..32).

    Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``...).
    """

    def __init__(self, num_input_images=1):
        super().__init__()
        self.conv1 = nn.Conv2d(3 * num_input_images, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for stage, planes in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if stage == 1 else 2
            blocks = [BasicBlock(in_ch, planes, stride), BasicBlock(planes, planes, 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            in_ch = planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, image):
        x = (image - MEAN) / STD
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


# ------------------------------------------------------------------------------------------------ depth
class Conv3x3(nn.Module):
    """1-pixel reflection pad + 3x3 convolution with bias."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x):
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 + ELU."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = Conv3x3(in_ch, out_ch)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x):
        return self.nonlin(self.conv(x))


class DepthDecoder(nn.Module):
    """Encoder features -> dict ``{s: disp_s}`` of sigmoid disparities ``[B, 1, H/2^s, W/2^s]``, s in 0..3."""

    def __init__(self, num_ch_enc=NUM_CH_ENC, scales=SCALES):
        super().__init__()
        self.scales = tuple(scales)
        self.convs = nn.ModuleDict()
        for i in range(4, -1, -1):
            in_ch = num_ch_enc[-1] if i == 4 else NUM_CH_DEC[i + 1]
            self.convs[f"upconv_{i}_0"] = ConvBlock(in_ch, NUM_CH_DEC[i])
            in_ch = NUM_CH_DEC[i] + (num_ch_enc[i - 1] if i > 0 else 0)
            self.convs[f"upconv_{i}_1"] = ConvBlock(in_ch, NUM_CH_DEC[i])
        for s in self.scales:
            self.convs[f"dispconv_{s}"] = Conv3x3(NUM_CH_DEC[s], 1)

    def forward(self, features):
        outputs = {}
        x = features[-1]
        for i in range(4, -1, -1):
            x = self.convs[f"upconv_{i}_0"](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i > 0:
                x = torch.cat([x, features[i - 1]], 1)
            x = self.convs[f"upconv_{i}_1"](x)
            if i in self.scales:
                outputs[i] = torch.sigmoid(self.convs[f"dispconv_{i}"](x))
        return {s: outputs[s] for s in sorted(outputs)}


class DepthNet(nn.Module):
    """Image ``[B, 3, H, W]`` in [0, 1] -> ``{s: disp_s}`` (ResNet18 encoder + depth decoder)."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Encoder(1)
        self.decoder = DepthDecoder()

    def forward(self, image):
        return self.decoder(self.encoder(image))


# ------------------------------------------------------------------------------------------------ pose
class PoseDecoder(nn.Module):
    """Last encoder feature -> ``(axisangle, translation)``, each ``[B, num_frames, 1, 3]``."""

    def __init__(self, in_ch=NUM_CH_ENC[-1], num_frames=POSE_FRAMES):
        super().__init__()
        self.num_frames = num_frames
        self.squeeze = nn.Conv2d(in_ch, 256, 1)
        self.pose_0 = nn.Conv2d(256, 256, 3, 1, 1)
        self.pose_1 = nn.Conv2d(256, 256, 3, 1, 1)
        self.pose_2 = nn.Conv2d(256, 6 * num_frames, 1)

    def forward(self, feature):
        x = F.relu(self.squeeze(feature))
        x = F.relu(self.pose_0(x))
        x = F.relu(self.pose_1(x))
        x = self.pose_2(x).mean(3).mean(2)
        x = 0.01 * x.view(-1, self.num_frames, 1, 6)
        return x[..., :3], x[..., 3:]


class PoseNet(nn.Module):
    """Two frames in temporal order ``[B, 6, H, W]`` -> ``(axisangle, translation)`` of frame 0, ``[B, 1, 3]``."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Encoder(2)
        self.decoder = PoseDecoder()

    def forward(self, frames):
        axisangle, translation = self.decoder(self.encoder(frames)[-1])
        return axisangle[:, 0], translation[:, 0]


# ------------------------------------------------------------------------------------------------ geometry
def disp_to_depth(disp, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH):
    """Sigmoid disparity -> (scaled disparity, depth), depth in [min_depth, max_depth]."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def _rotation(axisangle):
    """``[B, 1, 3]`` axis-angle -> ``[B, 4, 4]`` rotation (Rodrigues, axis = v / (|v| + 1e-7))."""
    v = axisangle[:, 0]
    angle = v.norm(dim=-1, keepdim=True)
    k = v / (angle + 1e-7)
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    zero = torch.zeros_like(k[:, 0])
    skew = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    R = cos * eye + sin * skew + (1.0 - cos) * k[:, :, None] * k[:, None, :]
    M = torch.zeros(v.shape[0], 4, 4, dtype=v.dtype, device=v.device)
    M[:, :3, :3] = R
    M[:, 3, 3] = 1.0
    return M


def _translation(t):
    M = torch.eye(4, dtype=t.dtype, device=t.device).repeat(t.shape[0], 1, 1)
    M[:, :3, 3] = t[:, 0]
    return M


def transformation_from_parameters(axisangle, translation, invert=False):
    """``[B, 1, 3]`` pose vectors -> ``[B, 4, 4]``: ``T(t) R``, or ``R^T T(-t)`` when ``invert``."""
    R = _rotation(axisangle)
    if invert:
        return torch.matmul(R.transpose(1, 2), _translation(-translation))
    return torch.matmul(_translation(translation), R)


def kitti_intrinsics(batch, height, width):
    """The original's normalised KITTI K scaled to ``height`` x ``width``: ``(K, inv_K)``, each ``[B, 4, 4]``."""
    K = np.array([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    K[0, :] *= width
    K[1, :] *= height
    inv_K = np.linalg.pinv(K).astype(np.float32)
    expand = lambda m: torch.from_numpy(m)[None].repeat(batch, 1, 1)  # noqa: E731
    return expand(K), expand(inv_K)


class _Warper:
    """Back-projects target depth, moves by T, projects with K and samples the source image (sec. 3.1, eq. 2)."""

    def __init__(self, batch, height, width):
        self.height, self.width = height, width
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")
        self.ones = torch.ones(batch, 1, height * width)
        pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], 0)[None].repeat(batch, 1, 1)
        self.pix = torch.cat([pix, self.ones], 1)  # [B, 3, HW]
        self.norm = torch.tensor([width - 1.0, height - 1.0])

    def __call__(self, source, depth, T, K, inv_K):
        batch = depth.shape[0]
        cam = torch.matmul(inv_K[:, :3, :3], self.pix) * depth.view(batch, 1, -1)
        cam = torch.cat([cam, self.ones], 1)
        P = torch.matmul(K, T)[:, :3, :]
        proj = torch.matmul(P, cam)
        uv = proj[:, :2] / (proj[:, 2:3] + 1e-7)
        uv = uv.view(batch, 2, self.height, self.width).permute(0, 2, 3, 1)
        grid = (uv / self.norm - 0.5) * 2.0
        return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ------------------------------------------------------------------------------------------------ loss
class SSIM(nn.Module):
    """Per-pixel clamp((1 - SSIM) / 2, 0, 1) with 3x3 average pooling over reflection-padded inputs."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1)
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x, y):
        x, y = self.pad(x), self.pad(y)
        mu_x, mu_y = self.pool(x), self.pool(y)
        sigma_x = self.pool(x * x) - mu_x * mu_x
        sigma_y = self.pool(y * y) - mu_y * mu_y
        sigma_xy = self.pool(x * y) - mu_x * mu_y
        c1, c2 = 0.01**2, 0.03**2
        num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
        den = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
        return torch.clamp((1 - num / den) / 2, 0, 1)


def smoothness(disp, image):
    """Edge-aware smoothness (eq. 3) of an already mean-normalised disparity against ``image``."""
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


class SelfSupervisedLoss(nn.Module):
    """Monodepth2's training loss for one batch (sec. 3.2 "Final Training Loss"), averaged over the scales."""

    def __init__(self, depth_net, pose_net, batch, height, width):
        super().__init__()
        self.depth_net, self.pose_net = depth_net, pose_net
        self.height, self.width = height, width
        self.ssim = SSIM()
        self.warp = _Warper(batch, height, width)

    def photometric(self, pred, target):
        l1 = (target - pred).abs().mean(1, True)
        return SSIM_WEIGHT * self.ssim(pred, target).mean(1, True) + (1 - SSIM_WEIGHT) * l1

    def poses(self, data):
        """``{f: T}`` mapping frame-0 camera points into source frame f (pairs in temporal order)."""
        poses = {}
        for f in SOURCE_FRAMES:
            pair = [data[f], data[0]] if f < 0 else [data[0], data[f]]
            axisangle, translation = self.pose_net(torch.cat(pair, 1))
            poses[f] = transformation_from_parameters(axisangle, translation, invert=f < 0)
        return poses

    def forward(self, data, noise=None):
        """``data``: frames ``-1, 0, 1`` ``[B, 3, H, W]``, ``("color", s)`` (target at scale s), ``K``, ``inv_K``.

        ``noise``: optional ``{s: [B, 2, H, W]}`` standard-normal draws for the tie-breaking (tests); default
        ``torch.randn``. Returns the scalar loss.
        """
        target = data[0]
        disps = self.depth_net(target)
        poses = self.poses(data)
        identity = torch.cat([self.photometric(data[f], target) for f in SOURCE_FRAMES], 1)
        total = 0.0
        for s in SCALES:
            disp = disps[s]
            disp_full = F.interpolate(disp, [self.height, self.width], mode="bilinear", align_corners=False)
            _, depth = disp_to_depth(disp_full)
            reprojection = torch.cat([
                self.photometric(self.warp(data[f], depth, poses[f], data["K"], data["inv_K"]), target)
                for f in SOURCE_FRAMES
            ], 1)
            draw = torch.randn(identity.shape, device=identity.device) if noise is None else noise[s]
            combined = torch.cat([identity + draw * NOISE_STD, reprojection], 1)
            loss = torch.min(combined, dim=1)[0].mean()
            norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
            loss = loss + SMOOTHNESS_WEIGHT * smoothness(norm_disp, data[("color", s)]) / (2**s)
            total = total + loss
        return total / len(SCALES)


# ------------------------------------------------------------------------------------------------ rows
def _random_batch(generator, batch, height, width):
    frames = {f: torch.rand(batch, 3, height, width, generator=generator) for f in (-1, 0, 1)}
    data = dict(frames)
    for s in SCALES:
        data[("color", s)] = F.avg_pool2d(frames[0], 2**s) if s else frames[0]
    data["K"], data["inv_K"] = kitti_intrinsics(batch, height, width)
    return data


def _count(*modules):
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


def _inference(net, x, description):
    """(run_once, info) of an eval-mode forward pass of ``net`` on ``x`` under ``torch.inference_mode()``."""
    net = net.eval()

    def run_once():
        with torch.inference_mode():
            return net(x)

    return run_once, {"parameters": _count(net), "description": description}


def make(row: str, height: int = 192, width: int = 640, batch: int | None = None, seed: int = 0):
    """Build the row's networks, random inputs (seeded) and optimizer; return ``(run_once, info)``.

    ``run_once()`` performs one timed iteration. ``selfsup_depth_infer`` returns ``{s: disp_s}``,
    ``selfsup_pose_infer`` returns ``(axisangle, translation)`` and ``selfsup_train_step`` returns the detached
    loss. ``info`` is ``{"parameters": int (trainable parameters of the networks involved), "description": str}``.
    """
    if row not in ROWS:
        raise ValueError(f"row must be one of {ROWS}, got {row!r}")
    check_hw(height, width, lambda v: v >= 64 and v % 32 == 0, "a multiple of 32 and >= 64 (the encoder's stride)")
    batch = resolve_batch(batch, 2 if row == "selfsup_train_step" else 1)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    size = f"{batch}x{height}x{width}"

    if row == "selfsup_depth_infer":
        return _inference(DepthNet(), torch.rand(batch, 3, height, width, generator=generator),
                          f"PyTorch Monodepth2 depth net (ResNet18 + decoder) inference, eval mode, {size} -> 4 "
                          "disparities")

    if row == "selfsup_pose_infer":
        return _inference(PoseNet(), torch.rand(batch, 6, height, width, generator=generator),
                          f"PyTorch Monodepth2 pose net (6-channel ResNet18 + pose decoder) inference, eval mode, "
                          f"{size}")

    depth_net, pose_net = DepthNet().train(), PoseNet().train()
    criterion = SelfSupervisedLoss(depth_net, pose_net, batch, height, width)
    optimizer = torch.optim.Adam(list(depth_net.parameters()) + list(pose_net.parameters()), lr=LEARNING_RATE)
    data = _random_batch(generator, batch, height, width)

    def run_once():
        loss = criterion(data)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    description = (f"PyTorch Monodepth2 train step, {size}: depth net on t, pose net on (t-1, t) and (t, t+1), "
                   f"full-res 4-scale min reprojection + automask + smoothness, backward, Adam {LEARNING_RATE:g}")
    return run_once, {"parameters": _count(depth_net, pose_net), "description": description}
