"""The renderer and tfdepth.geometry agree: warping frame t+1 into frame t with the ground-truth depth of t and the
ground-truth relative pose reproduces frame t on co-visible pixels away from depth edges (synthetic.md, "Checks
that prove the engine"). A transposed matrix, an inverted pose or a half-pixel offset anywhere fails this test."""

import numpy as np
import pytest
from scipy import ndimage

from tfdepth.data.synthetic import render_sequence
from tfdepth.geometry import (
    backproject,
    bilinear_sample,
    invert_intrinsics,
    inverse_warp,
    project,
    relative_pose,
)

EDGE_TOLERANCE = 0.02  # relative second difference of inverse depth that marks a depth edge (0 on any plane)
EDGE_MARGIN = 2  # pixels kept away from edges (anti-aliased colours and bilinear mixing across the edge)
COVISIBLE_TOLERANCE = 0.03  # relative depth agreement for "the same surface point is seen in both frames"


def _edges(depth, instance):
    """[H, W] bool: depth edges, surface / no-surface (sky) boundaries and object outlines.

    Inverse depth is affine in (u, v) on a plane, so its second differences vanish there, also on the ground near
    the horizon where depth itself changes fast; a jump or a crease shows up as a large second difference. Object
    outlines (instance changes) are added because an object touching the floor or hung on a wall has almost no
    depth jump but a sharp colour edge, which bilinear resampling cannot reproduce exactly.
    """
    surface = depth > 0
    inv = np.where(surface, 1.0 / np.where(surface, depth, 1.0), 0.0)
    padded = np.pad(inv, 1, mode="edge")
    dxx = padded[1:-1, :-2] - 2.0 * inv + padded[1:-1, 2:]
    dyy = padded[:-2, 1:-1] - 2.0 * inv + padded[2:, 1:-1]
    crease = np.maximum(np.abs(dxx), np.abs(dyy)) > EDGE_TOLERANCE * inv

    def changes(labels):
        return ndimage.minimum_filter(labels, 3, mode="nearest") != ndimage.maximum_filter(labels, 3, mode="nearest")

    return crease | changes(surface.astype(np.int32)) | changes(instance)


def _away_from_edges(depth, instance):
    return ~ndimage.binary_dilation(_edges(depth, instance), iterations=EDGE_MARGIN)


def warp_next_into_current(seq):
    """Warps frame 1 into frame 0; returns (absolute error [H, W], evaluation mask [H, W], stats dict)."""
    image = seq["image"].astype(np.float32) / 255.0
    depth = seq["depth"].astype(np.float32)
    K = seq["intrinsics"][np.newaxis].astype(np.float32)
    poses = seq["poses"].astype(np.float64)
    # T_{t+1 from t} = inv(T_world_from_{t+1}) @ T_world_from_t, composed in float64 then cast.
    T = relative_pose(poses[1:2], poses[0:1]).numpy().astype(np.float32)

    warped, valid = inverse_warp(image[1:2], depth[0:1, ..., np.newaxis], T, K)
    error = np.abs(warped.numpy()[0] - image[0]).mean(axis=-1)

    # Co-visibility: the target point's depth in frame t+1 must match frame t+1's depth where it lands.
    points = backproject(depth[0:1, ..., np.newaxis], invert_intrinsics(K)).numpy()[0]
    z_next = points @ T[0, 2, :3] + T[0, 2, 3]
    coords, _ = project(points[np.newaxis], K, T)
    depth_next = bilinear_sample(depth[1:2, ..., np.newaxis], coords).numpy()[0, ..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        covisible = np.abs(z_next - depth_next) < COVISIBLE_TOLERANCE * depth_next
    # Away from edges in frame t, and in frame t+1 at the sampled location (all four bilinear taps clear).
    far_next = _away_from_edges(depth[1], seq["instance"][1]).astype(np.float32)[np.newaxis, ..., np.newaxis]
    far_next = bilinear_sample(far_next, coords).numpy()[0, ..., 0] == 1.0
    far = _away_from_edges(depth[0], seq["instance"][0]) & far_next

    mask = (valid.numpy()[0, ..., 0] == 1.0) & (depth[0] > 0) & covisible & far
    stats = {
        "mae_255": float(error[mask].mean() * 255.0),
        "mask_fraction": float(mask.mean()),
        "valid_fraction": float(valid.numpy().mean()),
        "p99_255": float(np.percentile(error[mask], 99) * 255.0),
    }
    return error, mask, stats


@pytest.mark.parametrize(
    "preset,seed,height,width,min_mask",
    [("street", 3, 96, 320, 0.25), ("street", 11, 96, 320, 0.25), ("room", 5, 96, 128, 0.5)],
)
def test_warping_next_frame_with_ground_truth_reproduces_current(preset, seed, height, width, min_mask):
    seq = render_sequence(preset, seed, 2, height, width)
    _, mask, stats = warp_next_into_current(seq)
    print(preset, seed, stats)
    assert stats["mask_fraction"] > min_mask, stats  # the check covers a large part of the image
    assert stats["mae_255"] < 2.0, stats


def _transpose_rotation(T):
    T = T.copy()
    T[:, :3, :3] = np.transpose(T[:, :3, :3], (0, 2, 1))
    return T


@pytest.mark.parametrize(
    "preset,seed,height,width,mistake",
    [("street", 3, 96, 320, "inverted_pose"), ("room", 5, 96, 128, "transposed_rotation"),
     ("street", 3, 96, 320, "half_pixel_sampling")],
)
def test_geometry_mistakes_are_detected(preset, seed, height, width, mistake):
    """The same check with a classic geometry mistake must give a clearly larger error: the test has teeth."""
    seq = render_sequence(preset, seed, 2, height, width)
    _, mask, stats = warp_next_into_current(seq)
    image = seq["image"].astype(np.float32) / 255.0
    K = seq["intrinsics"][np.newaxis].astype(np.float32)
    T = relative_pose(seq["poses"][1:2], seq["poses"][0:1]).numpy().astype(np.float32)
    depth = seq["depth"][0:1, ..., np.newaxis]
    if mistake == "half_pixel_sampling":
        # Sampling as if pixel centres were at half-integers (align_corners=False read with our coordinates).
        coords, valid = project(backproject(depth, invert_intrinsics(K)), K, T)
        warped = bilinear_sample(image[1:2], coords - 0.5)
    else:
        T = np.linalg.inv(T) if mistake == "inverted_pose" else _transpose_rotation(T)
        warped, valid = inverse_warp(image[1:2], depth, T, K)
    assert np.all(np.isfinite(warped.numpy()))
    both = mask & (valid.numpy()[0, ..., 0] == 1.0)
    wrong_mae = np.abs(warped.numpy()[0] - image[0]).mean(axis=-1)[both].mean() * 255.0
    print(preset, mistake, "wrong", wrong_mae, "right", stats["mae_255"])
    assert wrong_mae > 2.0 * stats["mae_255"] and wrong_mae > 1.0
