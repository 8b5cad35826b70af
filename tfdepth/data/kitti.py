"""KITTI raw from a local copy (nothing downloads): split files, calibration, Velodyne depth, OXTS poses.

Layout (the official raw-data archives unpacked under ``root``, as Monodepth2 expects; spec monodepth_seg.md A.1)::

    root/2011_09_26/calib_cam_to_cam.txt  calib_velo_to_cam.txt  calib_imu_to_velo.txt
    root/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png   (or .jpg; image_03 = right)
                                               velodyne_points/data/0000000000.bin
                                               oxts/data/0000000000.txt

Split files have Monodepth2's lines ``folder frame_index side`` (``2011_09_26/2011_09_26_drive_0001_sync 42 l``;
``l`` = image_02, ``r`` = image_03). ``kitti_sequences`` makes one sequence element per line holding frames
``frame_index + o`` for ``o`` in ``frame_offsets``: (-1, 0, 1) gives ``make_video_dataset`` exactly one triplet
per line centred on the listed frame (Monodepth2's frame ids [0, -1, 1]); (0,) gives the listed frames alone
(evaluation). Stereo frames ("s") are not provided.

Choices (the spec is silent or leaves them open):

* Intrinsics come from ``P_rect_02``/``P_rect_03`` of the drive's date, in pixels of the stored image (rescaled
  with ``scale_intrinsics`` when the images were resized offline), not Monodepth2's fixed normalised K: exact for
  every date (image sizes differ: 1242x375, 1241x376, 1224x370, ...). Flips stay exact (``augment.random_flip``).
* Depth: ``velodyne_depth_map`` of the listed frame's scan at the stored image size; zeros where no ``.bin``
  exists and for the neighbour frames (only the target's depth is ever used; evaluate with ``frame_offsets=(0,)``).
  The default ``depth_from="velodyne"`` reproduces Monodepth2's Eigen ground truth (``export_gt_depth.py`` calls
  ``generate_depth_map(..., vel_depth=True)``: the Velodyne x distance, about 0.27 m more than the camera
  z-depth), so evaluation numbers compare with the published tables; ``"camera"`` gives the z-depth.
* Poses: ``poses="oxts"`` (default) reads the GPS/IMU packets and returns ``T_world_from_cam`` of the rectified
  camera (world = local Mercator frame, east-north-up, origin at the element's first frame; KITTI devkit's
  ``convertOxtsToPose``); a missing OXTS file is an error. ``poses="none"`` fills NaN: pose evaluation is then
  unavailable (never an identity placeholder posing as ground truth). Self-supervised training reads no poses.
* ``segmentation_masks=True`` reads SegDepth's masks (``<frame>.npy`` beside each image, [1, h, w] or [h, w],
  > 0 = foreground; spec B.2), nearest-resized to the image, into ``semantic`` (foreground id 1) and ``instance``.
  Otherwise both are zeros.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from tfdepth.data.folders import (check_frame_offsets, image_size, read_image, scale_matrix,
                                  sequences_from_loader)

__all__ = ["KittiCalib", "SplitLine", "kitti_sequences", "oxts_poses", "parse_calib_file", "read_calib",
           "read_oxts", "read_split_file", "read_velodyne", "velodyne_depth_map"]

SIDE_TO_CAMERA = {"l": 2, "r": 3}
EARTH_RADIUS = 6378137.0  # metres, the KITTI devkit's Mercator constant


# ----------------------------------------------------------------------------------------------- split files
@dataclasses.dataclass(frozen=True)
class SplitLine:
    folder: str  # <date>/<drive>
    frame_index: int
    side: str  # "l" or "r"
    line_number: int  # 1-based, for error messages

    @property
    def camera(self) -> int:
        return SIDE_TO_CAMERA[self.side]


def read_split_file(path) -> list[SplitLine]:
    """Parse a Monodepth2 split file (``folder frame_index side`` per line; blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"split file {path} does not exist; pass a Monodepth2-format split such as "
                         "splits/eigen_zhou/train_files.txt")
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        where = f"split file {path}, line {number} ({raw.strip()!r})"
        if len(parts) != 3:
            raise ValueError(f"{where}: expected 3 fields 'folder frame_index side', e.g. "
                             "'2011_09_26/2011_09_26_drive_0001_sync 42 l'")
        folder, frame, side = parts
        if not frame.isdigit():
            raise ValueError(f"{where}: frame_index must be a non-negative integer, got {frame!r}")
        if side not in SIDE_TO_CAMERA:
            raise ValueError(f"{where}: side must be 'l' (image_02) or 'r' (image_03), got {side!r}")
        if len(Path(folder).parts) != 2:
            raise ValueError(f"{where}: folder must be '<date>/<drive>' like 2011_09_26/2011_09_26_drive_0001_sync")
        lines.append(SplitLine(folder.strip("/"), int(frame), side, number))
    if not lines:
        raise ValueError(f"split file {path} has no lines")
    return lines


# ----------------------------------------------------------------------------------------------- calibration
def parse_calib_file(path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines -> {key: float64 array}; non-numeric entries (``calib_time``) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"KITTI calibration file {path} is missing; unpack the date's calib archive next to its "
                         "drive folders")
    out = {}
    for line in path.read_text().splitlines():
        key, sep, values = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(v) for v in values.split()], np.float64)
        except ValueError:
            continue
    return out


def _entry(calib: dict, key: str, size: int, path) -> np.ndarray:
    if key not in calib or calib[key].size != size:
        found = "missing" if key not in calib else f"{calib[key].size} numbers"
        raise ValueError(f"KITTI calibration file {path}: entry {key!r} must have {size} numbers ({found})")
    return calib[key]


def _rigid(R, T) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = np.reshape(R, (3, 3))
    M[:3, 3] = T
    return M


@dataclasses.dataclass(frozen=True)
class KittiCalib:
    """Calibration of one KITTI date: ``P_rect`` {cam: 3x4}, ``R_rect`` (R_rect_00, 3x3), ``velo_to_cam``
    (4x4 ``T_cam0_from_velo``, unrectified), ``image_sizes`` {cam: (H, W)} (S_rect), ``imu_to_velo`` (4x4
    ``T_velo_from_imu``) or None."""

    P_rect: dict
    R_rect: np.ndarray
    velo_to_cam: np.ndarray
    image_sizes: dict = dataclasses.field(default_factory=dict)
    imu_to_velo: np.ndarray | None = None

    def _camera(self, cam: int) -> np.ndarray:
        if cam not in self.P_rect:
            raise ValueError(f"camera {cam} has no P_rect in this calibration (cameras: {sorted(self.P_rect)})")
        return np.asarray(self.P_rect[cam], np.float64).reshape(3, 4)

    def projection(self, cam: int = 2) -> np.ndarray:
        """3x4 ``P_rect @ R_rect @ T_cam0_from_velo``: Velodyne points -> homogeneous pixels (spec A.8)."""
        R = np.eye(4)
        R[:3, :3] = self.R_rect
        return self._camera(cam) @ R @ self.velo_to_cam

    def intrinsics(self, cam: int = 2) -> np.ndarray:
        """3x3 K of the rectified camera (pixels of the S_rect image)."""
        return self._camera(cam)[:, :3].copy()

    def T_cam_from_velo(self, cam: int = 2) -> np.ndarray:
        """4x4 Velodyne -> rectified camera ``cam``: ``P_rect = K [I | t]`` so the camera sits at ``t = K^-1 p4``."""
        P = self._camera(cam)
        shift = np.eye(4)
        shift[:3, 3] = np.linalg.solve(P[:, :3], P[:, 3])
        R = np.eye(4)
        R[:3, :3] = self.R_rect
        return shift @ R @ self.velo_to_cam

    def T_cam_from_imu(self, cam: int = 2) -> np.ndarray:
        if self.imu_to_velo is None:
            raise ValueError("this calibration has no calib_imu_to_velo.txt: OXTS poses are unavailable; pass "
                             "poses='none' or add the file")
        return self.T_cam_from_velo(cam) @ self.imu_to_velo


def read_calib(calib_dir) -> KittiCalib:
    """Read ``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt`` and (if present) ``calib_imu_to_velo.txt``."""
    calib_dir = Path(calib_dir)
    c2c_path = calib_dir / "calib_cam_to_cam.txt"
    v2c_path = calib_dir / "calib_velo_to_cam.txt"
    c2c, v2c = parse_calib_file(c2c_path), parse_calib_file(v2c_path)
    cams = sorted(int(k[-2:]) for k in c2c if k.startswith("P_rect_"))
    if not cams:
        raise ValueError(f"KITTI calibration file {c2c_path}: no P_rect_0X entries")
    P_rect = {cam: _entry(c2c, f"P_rect_{cam:02d}", 12, c2c_path).reshape(3, 4) for cam in cams}
    sizes = {}
    for cam in cams:
        if f"S_rect_{cam:02d}" in c2c:
            width, height = _entry(c2c, f"S_rect_{cam:02d}", 2, c2c_path)
            sizes[cam] = (int(round(height)), int(round(width)))
    R_rect = _entry(c2c, "R_rect_00", 9, c2c_path).reshape(3, 3)
    velo_to_cam = _rigid(_entry(v2c, "R", 9, v2c_path), _entry(v2c, "T", 3, v2c_path))
    imu_path = calib_dir / "calib_imu_to_velo.txt"
    imu_to_velo = None
    if imu_path.is_file():
        i2v = parse_calib_file(imu_path)
        imu_to_velo = _rigid(_entry(i2v, "R", 9, imu_path), _entry(i2v, "T", 3, imu_path))
    return KittiCalib(P_rect, R_rect, velo_to_cam, sizes, imu_to_velo)


# ----------------------------------------------------------------------------------------------- Velodyne
def read_velodyne(path) -> np.ndarray:
    """A Velodyne scan ``.bin`` -> float32 [N, 4] (x, y, z, reflectance; x forward, y left, z up)."""
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise ValueError(f"Velodyne file {path} holds {raw.size} float32 values, not a multiple of 4 (x, y, z, r); "
                         "the file is truncated or not a KITTI scan")
    return raw.reshape(-1, 4)


def velodyne_depth_map(velo_points, calib: KittiCalib, image_shape, cam: int = 2, *, depth_from: str = "camera",
                       monodepth2_indexing: bool = True) -> np.ndarray:
    """Sparse depth [H, W] float32 (0 = no point) with the semantics of Monodepth2's ``generate_depth_map`` (A.8).

    Points with x >= 0 (ahead of the Velodyne) are projected with ``P_rect @ R_rect @ T_cam0_from_velo``; where
    several land on one pixel the smallest depth wins; negative depths become 0. ``depth_from="camera"`` stores
    the projection's third coordinate (camera z-depth; ``vel_depth=False``), ``"velodyne"`` the Velodyne x
    (``vel_depth=True``, the Eigen ground truth). ``monodepth2_indexing`` puts a point at ``round(u) - 1,
    round(v) - 1`` (np.round: halves to even) as Monodepth2 does, a legacy of 1-based indexing that shifts the map
    one pixel up-left; ``False`` uses ``round(u), round(v)``, exact under tfdepth's pixel-centre convention.
    ``image_shape`` (H, W) other than the calibration's S_rect size rescales the projection like
    ``scale_intrinsics`` (images resized offline).
    """
    if depth_from not in ("camera", "velodyne"):
        raise ValueError(f"velodyne_depth_map: `depth_from` must be 'camera' or 'velodyne', got {depth_from!r}")
    points = np.asarray(velo_points)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f"velodyne_depth_map: `velo_points` must be [N, 3] or [N, 4] (x, y, z[, r]), got "
                         f"{points.shape}")
    if len(image_shape) < 2 or int(image_shape[0]) < 1 or int(image_shape[1]) < 1:
        raise ValueError(f"velodyne_depth_map: `image_shape` must start with (height, width), got {image_shape!r}")
    height, width = int(image_shape[0]), int(image_shape[1])
    P = calib.projection(cam)
    native = calib.image_sizes.get(cam)
    if native is not None and tuple(native) != (height, width):
        P = scale_matrix(width / native[1], height / native[0]) @ P
    points = points[points[:, 0] >= 0]
    X = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    p = X @ P.T
    depth = p[:, 2] if depth_from == "camera" else X[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    offset = 1 if monodepth2_indexing else 0
    finite = np.isfinite(u) & np.isfinite(v)
    col = np.where(finite, np.round(u), -1.0) - offset
    row = np.where(finite, np.round(v), -1.0) - offset
    keep = finite & (col >= 0) & (row >= 0) & (col < width) & (row < height)
    index = row[keep].astype(np.int64) * width + col[keep].astype(np.int64)
    depth = depth[keep]
    order = np.lexsort((depth, index))  # by pixel, then nearest first
    index, depth = index[order], depth[order]
    first = np.ones(index.shape, bool)
    first[1:] = index[1:] != index[:-1]
    out = np.zeros(height * width, np.float64)
    out[index[first]] = depth[first]
    out[out < 0] = 0.0  # as generate_depth_map: a point behind the camera voids its pixel
    return out.reshape(height, width).astype(np.float32)


# ----------------------------------------------------------------------------------------------- OXTS
def read_oxts(path) -> np.ndarray:
    """One OXTS packet (30 numbers: lat, lon, alt, roll, pitch, yaw, ...) as float64 [30]."""
    try:
        values = np.array([float(v) for v in Path(path).read_text().split()], np.float64)
    except ValueError as err:
        raise ValueError(f"OXTS file {path}: not a list of numbers ({err})") from None
    if values.size < 6:
        raise ValueError(f"OXTS file {path}: expected 30 numbers (lat lon alt roll pitch yaw ...), got {values.size}")
    return values


def oxts_poses(packets) -> np.ndarray:
    """``T_world_from_imu`` [F, 4, 4] from OXTS packets [F, >=6] (KITTI devkit ``convertOxtsToPose``).

    Mercator projection with the scale of the first packet's latitude, ``R = Rz(yaw) Ry(pitch) Rx(roll)``; the
    world origin is moved to the first position (only relative poses matter; keeps the numbers small).
    """
    packets = np.asarray(packets, np.float64)
    lat, lon, alt = packets[:, 0], packets[:, 1], packets[:, 2]
    roll, pitch, yaw = packets[:, 3], packets[:, 4], packets[:, 5]
    scale = np.cos(np.deg2rad(lat[0]))
    t = np.stack([scale * EARTH_RADIUS * np.deg2rad(lon),
                  scale * EARTH_RADIUS * np.log(np.tan(np.deg2rad(90.0 + lat) / 2.0)), alt], axis=-1)
    c, s = np.cos, np.sin
    one, zero = np.ones_like(roll), np.zeros_like(roll)
    Rx = np.stack([one, zero, zero, zero, c(roll), -s(roll), zero, s(roll), c(roll)], -1).reshape(-1, 3, 3)
    Ry = np.stack([c(pitch), zero, s(pitch), zero, one, zero, -s(pitch), zero, c(pitch)], -1).reshape(-1, 3, 3)
    Rz = np.stack([c(yaw), -s(yaw), zero, s(yaw), c(yaw), zero, zero, zero, one], -1).reshape(-1, 3, 3)
    poses = np.tile(np.eye(4), (len(packets), 1, 1))
    poses[:, :3, :3] = Rz @ Ry @ Rx
    poses[:, :3, 3] = t - t[0]
    return poses


# ----------------------------------------------------------------------------------------------- sequences
def _listing(directory: Path, cache: dict) -> frozenset:
    if directory not in cache:
        cache[directory] = frozenset(os.listdir(directory)) if directory.is_dir() else frozenset()
    return cache[directory]


def kitti_sequences(root, split_file, *, frame_offsets=(-1, 0, 1), image_ext=None, depth=True,
                    depth_from="velodyne", monodepth2_indexing=True, poses="oxts", segmentation_masks=False,
                    height=None, width=None, shuffle=False, seed=0):
    """Per-scene elements (``tfdepth.data.video.SEQUENCE_KEYS``) for the lines of a KITTI raw split file.

    Args:
      root: folder holding the ``<date>/`` directories of KITTI raw (layout in the module docstring).
      split_file: Monodepth2-format split (``folder frame_index side`` per line).
      frame_offsets: frames ``frame_index + o`` of each element; (-1, 0, 1) = one training triplet per line,
        (0,) = the listed frame alone (evaluation).
      image_ext: ".png" or ".jpg"; None = per frame, .png if present else .jpg.
      depth: project the listed frame's Velodyne scan (zeros when its .bin is absent, and for the other frames
        of the element); False = zeros throughout.
      depth_from, monodepth2_indexing: see ``velodyne_depth_map`` (defaults = Monodepth2's Eigen ground truth).
      poses: "oxts" (GPS/IMU ``T_world_from_cam``) or "none" (NaN: pose evaluation unavailable).
      segmentation_masks: read SegDepth ``<frame>.npy`` masks into ``semantic``/``instance``.
      height, width: resize at the source (K rescaled, depth nearest); None keeps the stored size (evaluation).
      shuffle, seed: shuffle the line order each iteration, before any file is read.
    Every file an element needs is checked now: a missing one raises ValueError naming it and the split line.
    """
    fn = "kitti_sequences"
    offsets = check_frame_offsets(frame_offsets, fn)
    if image_ext not in (None, ".png", ".jpg"):
        raise ValueError(f"{fn}: `image_ext` must be '.png', '.jpg' or None (auto), got {image_ext!r}")
    if poses not in ("oxts", "none"):
        raise ValueError(f"{fn}: `poses` must be 'oxts' (read GPS/IMU) or 'none' (NaN, no pose evaluation), "
                         f"got {poses!r}")
    if depth_from not in ("camera", "velodyne"):
        raise ValueError(f"{fn}: `depth_from` must be 'camera' or 'velodyne', got {depth_from!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{fn}: KITTI root {root} is not a directory; pass the folder holding 2011_09_26/ etc.")
    lines = read_split_file(split_file)
    listings, calibs, sizes = {}, {}, {}
    elements, Ks, hws = [], [], []
    for line in lines:
        drive = root / line.folder
        where = f"split file {split_file}, line {line.line_number} ({line.folder} {line.frame_index} {line.side})"
        date = Path(line.folder).parts[0]
        if date not in calibs:
            calibs[date] = read_calib(root / date)
            if poses == "oxts" and calibs[date].imu_to_velo is None:
                raise ValueError(f"{fn}: poses='oxts' needs {root / date / 'calib_imu_to_velo.txt'}; add it or pass "
                                 "poses='none' (no pose ground truth)")
        calib = calibs[date]
        image_dir = drive / f"image_{line.camera:02d}" / "data"
        images = []
        for index in (line.frame_index + o for o in offsets):
            names = [f"{index:010d}{ext}" for ext in ((image_ext,) if image_ext else (".png", ".jpg"))]
            found = [n for n in names if n in _listing(image_dir, listings)]
            if not found:
                raise ValueError(f"{where}: frame {image_dir / names[0]} does not exist (needed for offset "
                                 f"{index - line.frame_index} of {offsets}); check root, the split and image_ext")
            images.append(image_dir / found[0])
            if poses == "oxts" and f"{index:010d}.txt" not in _listing(drive / "oxts" / "data", listings):
                raise ValueError(f"{where}: OXTS file {drive / 'oxts' / 'data' / f'{index:010d}.txt'} is missing; "
                                 "add the drive's oxts folder or pass poses='none' (no pose ground truth)")
            if segmentation_masks and images[-1].with_suffix(".npy").name not in _listing(image_dir, listings):
                raise ValueError(f"{where}: segmentation mask {images[-1].with_suffix('.npy')} is missing "
                                 "(SegDepth B.2 masks); create it or pass segmentation_masks=False")
        velo_dir = drive / "velodyne_points" / "data"
        # Ground truth for the listed frame only (Monodepth2 loads depth for frame 0 alone): a triplet's
        # neighbours never need it, and projecting a 120k-point scan costs about as much as decoding a frame.
        name = f"{line.frame_index:010d}.bin"
        velo = velo_dir / name if depth and name in _listing(velo_dir, listings) else None
        key = (line.folder, line.camera)
        if key not in sizes:
            sizes[key] = image_size(images[0])
        hw = sizes[key]
        K = calib.intrinsics(line.camera)
        native = calib.image_sizes.get(line.camera, hw)
        K = scale_matrix(hw[1] / native[1], hw[0] / native[0]) @ K
        elements.append((line, tuple(images), velo, calib, hw))
        Ks.append(K)
        hws.append(hw)

    def load(index):
        line, images, velo, calib, hw = elements[index]
        image = np.stack([read_image(path, hw) for path in images])
        depth_maps = np.zeros((len(images), *hw), np.float32)
        if velo is not None:
            depth_maps[offsets.index(0)] = velodyne_depth_map(
                read_velodyne(velo), calib, hw, line.camera, depth_from=depth_from,
                monodepth2_indexing=monodepth2_indexing)
        if poses == "oxts":
            oxts_dir = root / line.folder / "oxts" / "data"
            packets = [read_oxts(oxts_dir / f"{line.frame_index + o:010d}.txt") for o in offsets]
            world = oxts_poses(np.stack([p[:6] for p in packets])) @ np.linalg.inv(calib.T_cam_from_imu(line.camera))
        else:
            world = np.full((len(images), 4, 4), np.nan)
        mask = np.zeros((len(images), *hw), np.uint8)
        if segmentation_masks:
            for j, path in enumerate(images):
                mask[j] = _read_mask(path.with_suffix(".npy"), hw)
        return {"image": image, "depth": depth_maps, "poses": world, "mask": mask}

    return sequences_from_loader(load, Ks, hws, frames=len(offsets), height=height, width=width, shuffle=shuffle,
                                 seed=seed, fn_name=fn)


def _read_mask(path: Path, hw) -> np.ndarray:
    mask = np.load(path)
    mask = mask[0] if mask.ndim == 3 else mask
    if mask.ndim != 2:
        raise ValueError(f"segmentation mask {path} must be [h, w] or [1, h, w], got shape {np.shape(mask)}")
    mask = (mask > 0).astype(np.uint8)
    if mask.shape != tuple(hw):  # SegDepth stores masks at 640x192 (B.2); nearest keeps them binary
        mask = cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
    return mask
