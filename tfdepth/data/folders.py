"""A user's own videos from folders -> per-scene sequence elements for ``make_video_dataset`` (spec Part C).

Layout: ``root`` holds one sub-folder per video (other files in ``root`` are ignored)::

    root/
      street_walk/                 one video
        000000.png 000001.png ...  its frames (.png, .jpg, .jpeg), in natural name order (f2 before f10);
                                   all frames of one video have the same size, videos may differ
        000000.txt ...             optional per-image intrinsics of that frame
        intrinsics.txt | .json     optional intrinsics for the whole video
        depth/000000.npy | .png    optional ground-truth depth of frame 000000 (for evaluation)
        poses.txt                  optional camera poses
      kitchen/ ...

Intrinsics, in pixels of the stored frames unless said otherwise; the most specific source wins:

1. per image: ``<frame>.txt`` next to the frame, a 3x3 matrix (9 numbers) or Monodepth2's padded 4x4 (16
   numbers, last row ``0 0 0 1``; its top-left 3x3 is used, Monodepth2 issue #432);
2. per video: ``intrinsics.txt`` (a matrix as above) or ``intrinsics.json`` with ``{"fx", "fy", "cx", "cy"}`` or
   ``{"K": [[...]]}``, optionally ``"normalized": true`` (fractions of the image size, Monodepth2 style: fx/W,
   fy/H, cx/W, cy/H) and ``"width"``/``"height"`` (the image size the pixel K was measured at; it is rescaled to
   the stored frames);
3. for everything: ``folder_sequences(root, intrinsics=...)`` with a 3x3/4x4 matrix in pixels (only when every
   video has the same size), 4 numbers ``(fx_n, fy_n, cx_n, cy_n)`` normalised, or a dict with the JSON keys.

Normalised intrinsics convert as in ``tfdepth.geometry``: ``fx = fx_n * W``, ``cx = cx_n * W - 0.5`` (so
``cx_n = 0.5`` is the exact centre). Depth files hold z-depth in metres: ``.npy`` float ``[H, W]`` or a 16-bit
``.png`` with ``depth = value / depth_scale`` (256 as KITTI; NYU and TUM use 1000 and 5000); 0 or non-finite =
no data. Frames without a depth file get zeros. Depth lives in ``depth/`` because a ``<frame>.npy`` beside the
frame is SegDepth's segmentation-mask convention (spec B.2). ``poses.txt``: one line per frame, 12 numbers (a
row-major 3x4 ``T_world_from_cam``, the KITTI odometry format) or 16; without it poses are NaN (pose evaluation
unavailable; self-supervised training never reads them). ``semantic``/``instance`` are zeros (no labels).

Elements: with ``frame_offsets=None`` one element per video (every frame; the video needs >= 3 frames and one K,
which evaluation with pose snippets wants); with e.g. ``frame_offsets=(-1, 0, 1)`` one element per frame t that
has all its neighbours, holding frames ``t + o`` and frame t's K (Monodepth2's per-image intrinsics: the target's
K serves the whole triplet), which lets K change from frame to frame. Images are decoded lazily in the tf.data
map; sizes, intrinsics and files are checked up front, so bad input fails before training starts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from tfdepth.data.video import sequence_signature
from tfdepth.geometry import scale_intrinsics

__all__ = ["IMAGE_EXTENSIONS", "Video", "folder_sequences", "image_size", "parse_intrinsics", "read_image",
           "scan_folders", "sequences_from_loader"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_HOW_TO_GIVE_K = (
    "give intrinsics in one of 3 ways: (a) folder_sequences(..., intrinsics=...) with one 3x3 matrix in pixels or "
    "4 normalised numbers (fx/W, fy/H, cx/W, cy/H) for everything; (b) an intrinsics.txt (3x3 or 4x4) or "
    "intrinsics.json file in the video folder; (c) a <frame>.txt (3x3 or 4x4) next to each frame"
)


# ----------------------------------------------------------------------------------------------- files
def natural_key(name: str) -> list:
    """Sort key putting ``f2`` before ``f10`` (digit runs compare as numbers)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t]


def image_size(path) -> tuple[int, int]:
    """``(height, width)`` read from a PNG or JPEG header (no decoding), so every frame is checked up front."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return int(height), int(width)
            if head[:2] == b"\xff\xd8":
                handle.seek(2)
                while True:
                    marker = handle.read(2)
                    if len(marker) < 2 or marker[0] != 0xFF:
                        break
                    length = struct.unpack(">H", handle.read(2))[0]
                    # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frame headers.
                    if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                        height, width = struct.unpack(">xHH", handle.read(5))
                        return int(height), int(width)
                    handle.seek(length - 2, 1)
    except (OSError, struct.error) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    raise ValueError(f"unreadable image {path}: not a PNG or JPEG file (or its header is damaged); replace or "
                     "remove it.")


def read_image(path, expected_hw=None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (grey images are replicated; EXIF orientation is ignored, as ``image_size``)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"unreadable image {path}: OpenCV could not decode it; replace or remove the file.")
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise ValueError(f"image {path} is {image.shape[0]}x{image.shape[1]}, expected {expected_hw[0]}x"
                         f"{expected_hw[1]} like the other frames of its sequence; frames of one video share a size.")
    return np.ascontiguousarray(image[..., ::-1])


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """The 3x3 pixel map of a half-pixel-aligned resize, ``u -> (u + 0.5) sx - 0.5`` (``scale_intrinsics``)."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------- intrinsics
def parse_intrinsics(values, source: str) -> np.ndarray:
    """A 3x3 or 4x4 K (nested or flat: 9 or 16 numbers, pixels) -> validated 3x3 float64; ``source`` names it."""
    try:
        arr = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: intrinsics must be numbers, got {values!r}") from None
    if arr.size == 9:
        K = arr.reshape(3, 3)
    elif arr.size == 16:
        K4 = arr.reshape(4, 4)
        if not np.allclose(K4[3], [0, 0, 0, 1]):
            raise ValueError(f"{source}: a 4x4 intrinsics matrix needs the last row 0 0 0 1, got {K4[3].tolist()}")
        K = K4[:3, :3]
    else:
        raise ValueError(f"{source}: intrinsics must be a 3x3 (9 numbers) or 4x4 (16 numbers) matrix, got "
                         f"{arr.size} numbers (shape {arr.shape})")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{source}: fx = K[0,0] and fy = K[1,1] must be finite and > 0, got K = {K.tolist()}")
    if not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
        raise ValueError(f"{source}: intrinsics must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got K = {K.tolist()}")
    return K


def _read_numbers(path) -> list[float]:
    try:
        return [float(t) for t in Path(path).read_text().replace(",", " ").split()]
    except ValueError as err:
        raise ValueError(f"{path}: not a whitespace/comma-separated list of numbers ({err})") from None


def _intrinsics_for(spec, hw, source: str) -> np.ndarray:
    """Pixel K for an image of size ``hw`` from a matrix, 4 normalised numbers or a JSON-style dict."""
    height, width = hw
    if isinstance(spec, dict):
        unknown = set(spec) - {"fx", "fy", "cx", "cy", "K", "normalized", "width", "height"}
        if unknown:
            raise ValueError(f"{source}: unknown intrinsics keys {sorted(unknown)}; use fx, fy, cx, cy or K, "
                             "optionally normalized, width, height")
        if "K" in spec:
            K = parse_intrinsics(spec["K"], source)
        elif all(k in spec for k in ("fx", "fy", "cx", "cy")):
            K = parse_intrinsics([[spec["fx"], 0, spec["cx"]], [0, spec["fy"], spec["cy"]], [0, 0, 1]], source)
        else:
            raise ValueError(f"{source}: intrinsics need 'K' or all of 'fx', 'fy', 'cx', 'cy'; got {sorted(spec)}")
        if spec.get("normalized", False):
            if "width" in spec or "height" in spec:
                raise ValueError(f"{source}: normalised intrinsics do not take width/height (they fit any size)")
            return _intrinsics_for([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], hw, source)
        if ("width" in spec) != ("height" in spec):
            raise ValueError(f"{source}: give both 'width' and 'height' of the image the intrinsics belong to")
        if "width" in spec:
            return scale_matrix(width / float(spec["width"]), height / float(spec["height"])) @ K
        return K
    arr = np.asarray(spec, np.float64)
    if arr.size == 4:
        fx_n, fy_n, cx_n, cy_n = arr.ravel()
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{source}: normalised intrinsics must be finite numbers, got {arr.ravel().tolist()}")
        if fx_n <= 0 or fy_n <= 0:
            raise ValueError(f"{source}: normalised fx, fy must be > 0, got {arr.ravel().tolist()}")
        return np.array([[fx_n * width, 0, cx_n * width - 0.5], [0, fy_n * height, cy_n * height - 0.5], [0, 0, 1]])
    return parse_intrinsics(arr, source)


def _video_intrinsics_spec(folder: Path):
    txt, js = folder / "intrinsics.txt", folder / "intrinsics.json"
    if txt.is_file() and js.is_file():
        raise ValueError(f"{folder}: both intrinsics.txt and intrinsics.json exist; keep one")
    if txt.is_file():
        return parse_intrinsics(_read_numbers(txt), str(txt)), str(txt)
    if js.is_file():
        try:
            spec = json.loads(js.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{js}: not valid JSON ({err})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{js}: expected a JSON object with fx, fy, cx, cy (or K)")
        return spec, str(js)
    return None, None


# ----------------------------------------------------------------------------------------------- scanning
@dataclasses.dataclass(frozen=True)
class Video:
    """One scanned video folder: frames, their size, per-frame K [F, 3, 3], depth files and poses [F, 4, 4]."""

    name: str
    frames: tuple[Path, ...]
    size: tuple[int, int]
    intrinsics: np.ndarray
    depth_files: tuple[Path | None, ...]
    poses: np.ndarray | None


def _read_poses(path: Path, count: int) -> np.ndarray:
    rows = [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]
    if len(rows) != count:
        raise ValueError(f"{path}: {len(rows)} pose lines for {count} frames; give one line per frame")
    poses = np.tile(np.eye(4), (count, 1, 1))
    for i, row in enumerate(rows):
        try:
            if len(row) not in (12, 16):
                raise ValueError
            poses[i, :3] = np.array([float(t) for t in row]).reshape(-1, 4)[:3]
        except ValueError:
            raise ValueError(f"{path}, line {i + 1}: expected 12 numbers (a row-major 3x4 T_world_from_cam) or 16, "
                             f"got {' '.join(row)!r}") from None
    return poses


def scan_folders(root, *, intrinsics=None) -> list[Video]:
    """Scan ``root`` (layout in the module docstring) and check frames, sizes, intrinsics, depth and poses."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"folder_sequences: root {root} is not a directory; pass the folder holding one "
                         "sub-folder per video")
    videos = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        frames = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                        key=lambda p: natural_key(p.name))
        if not frames:
            continue
        sizes = {f: image_size(f) for f in frames}
        if len(set(sizes.values())) > 1:
            first = frames[0]
            odd = next(f for f in frames if sizes[f] != sizes[first])
            raise ValueError(f"video {folder}: frames differ in size ({first.name} is {sizes[first]}, {odd.name} is "
                             f"{sizes[odd]}); all frames of one video must share a size")
        hw = sizes[frames[0]]
        video_spec, video_source = _video_intrinsics_spec(folder)
        Ks = []
        for frame in frames:
            per_image = frame.with_suffix(".txt")
            if per_image.is_file():
                K = parse_intrinsics(_read_numbers(per_image), str(per_image))
            elif video_spec is not None:
                K = _intrinsics_for(video_spec, hw, video_source)
            elif intrinsics is not None:
                K = _intrinsics_for(intrinsics, hw, "folder_sequences(intrinsics=...)")
            else:
                raise ValueError(f"no intrinsics for frame {frame}: {_HOW_TO_GIVE_K}")
            Ks.append(K)
        depth_files = []
        for frame in frames:
            found = [p for p in (folder / "depth" / f"{frame.stem}.npy", folder / "depth" / f"{frame.stem}.png")
                     if p.is_file()]
            if len(found) > 1:
                raise ValueError(f"{folder / 'depth'}: both {frame.stem}.npy and {frame.stem}.png exist; keep one")
            depth_files.append(found[0] if found else None)
        poses_file = folder / "poses.txt"
        poses = _read_poses(poses_file, len(frames)) if poses_file.is_file() else None
        videos.append(Video(folder.name, tuple(frames), hw, np.stack(Ks), tuple(depth_files), poses))
    if not videos:
        raise ValueError(f"folder_sequences: no video folders with frames ({', '.join(IMAGE_EXTENSIONS)}) under "
                         f"{root}; put each video's frames in its own sub-folder")
    if intrinsics is not None and not isinstance(intrinsics, dict) and np.asarray(intrinsics).size != 4:
        if len({v.size for v in videos}) > 1:
            raise ValueError("folder_sequences: a pixel intrinsics matrix fits one image size, but the videos have "
                             f"sizes {sorted({v.size for v in videos})}; pass normalised (fx/W, fy/H, cx/W, cy/H) "
                             "intrinsics or an intrinsics file per video")
    return videos


def read_depth(path, hw, depth_scale: float) -> np.ndarray:
    """Depth in metres ``[H, W]`` float32 from ``.npy`` or a 16-bit PNG (``value / depth_scale``); 0 = no data."""
    path = Path(path)
    if path.suffix == ".npy":
        depth = np.load(path).astype(np.float32)
        depth = depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
            raise ValueError(f"depth file {path} must be a single-channel 16-bit PNG (got "
                             f"{'unreadable' if raw is None else f'{raw.dtype} {raw.shape}'})")
        depth = raw.astype(np.float32) / np.float32(depth_scale)
    if depth.shape != tuple(hw):
        raise ValueError(f"depth file {path} is {depth.shape}, but its frame is {tuple(hw)}; they must match")
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------- tf.data
def check_frame_offsets(frame_offsets, fn_name: str) -> tuple[int, ...]:
    """Distinct ascending ints containing 0 (the target frame); e.g. (-1, 0, 1) for Monodepth2 triplets."""
    try:
        offsets = tuple(int(o) for o in frame_offsets)
    except (TypeError, ValueError):
        raise ValueError(f"{fn_name}: `frame_offsets` must be a sequence of ints like (-1, 0, 1), got "
                         f"{frame_offsets!r}") from None
    if 0 not in offsets or list(offsets) != sorted(set(offsets)):
        raise ValueError(f"{fn_name}: `frame_offsets` must be distinct ascending ints containing 0, e.g. (-1, 0, 1) "
                         f"for training triplets or (0,) for evaluation; got {frame_offsets!r}")
    return offsets


def _resize_sequence(element, height: int, width: int) -> dict:
    # The same ops as augment.resize on each frame (bilinear + antialias for images, nearest for maps,
    # scale_intrinsics for K), so resizing here or in make_video_dataset agrees up to uint8 rounding.
    out = dict(element)
    size = tf.constant([height, width])
    hw = tf.cast(tf.shape(element["image"])[1:3], tf.float32)
    image = tf.image.resize(tf.cast(element["image"], tf.float32), size, method="bilinear", antialias=True)
    out["image"] = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    for key in ("depth", "semantic", "instance"):
        out[key] = tf.image.resize(element[key][..., None], size, method="nearest")[..., 0]
    out["intrinsics"] = scale_intrinsics(element["intrinsics"], width / hw[1], height / hw[0])
    return out


def sequences_from_loader(load_fn, intrinsics, sizes, *, frames, height=None, width=None, shuffle=False, seed=0,
                          fn_name="sequences_from_loader") -> tf.data.Dataset:
    """Per-scene dataset (``tfdepth.data.video.SEQUENCE_KEYS``) whose element ``i`` comes from ``load_fn(i)``.

    ``load_fn(i)`` returns numpy ``image`` uint8 [F, H, W, 3], ``depth`` float32 [F, H, W], ``poses`` float64
    [F, 4, 4] and ``mask`` uint8 [F, H, W] (-> ``semantic``; ``instance`` is its int32 copy); it runs inside
    ``tf.numpy_function`` in a parallel map (OpenCV decodes without the GIL). ``intrinsics`` [N, 3, 3] and
    ``sizes`` [N, 2] (H, W) are known up front. ``shuffle`` permutes the element order (cheap: indices, before any
    decoding) anew each iteration; ``height``/``width`` resize at the source like ``augment.resize``.
    """
    intrinsics = np.asarray(intrinsics, np.float32).reshape(-1, 3, 3)
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    if len(intrinsics) == 0 or len(sizes) != len(intrinsics):
        raise ValueError(f"{fn_name}: no elements to load (empty split or folder)")
    if (height is None) != (width is None):
        raise ValueError(f"{fn_name}: give both `height` and `width` to resize, or neither (got {height}, {width})")
    for name, value, low in (("height", height, 1), ("width", width, 1), ("seed", seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low):
            raise ValueError(f"{fn_name}: `{name}` must be an int >= {low}, got {value!r}")
    uniform = bool((sizes == sizes[0]).all())
    static_hw = [height, width] if height else (sizes[0].tolist() if uniform else [None, None])
    K_table = tf.constant(intrinsics)

    def load(index):
        out = load_fn(int(index))
        return out["image"], out["depth"], out["poses"], out["mask"]

    def element(index):
        image, depth, poses, mask = tf.numpy_function(
            load, [index], (tf.uint8, tf.float32, tf.float64, tf.uint8), stateful=False)
        hw = [None, None] if height else static_hw
        image.set_shape([frames, *hw, 3])
        depth.set_shape([frames, *hw])
        mask.set_shape([frames, *hw])
        poses.set_shape([frames, 4, 4])
        out = {"image": image, "depth": depth, "semantic": mask, "instance": tf.cast(mask, tf.int32),
               "intrinsics": tf.gather(K_table, index), "poses": poses, "seed": index}
        if height:
            out = _resize_sequence(out, height, width)
        signature = sequence_signature(frames, *static_hw)
        return {key: tf.ensure_shape(out[key], spec.shape) for key, spec in signature.items()}

    ds = tf.data.Dataset.range(len(intrinsics))
    if shuffle:
        ds = ds.shuffle(len(intrinsics), seed=seed, reshuffle_each_iteration=True)
    return ds.map(element, num_parallel_calls=tf.data.AUTOTUNE)


def folder_sequences(root, *, intrinsics=None, frame_offsets=None, depth_scale=256.0, height=None, width=None,
                     shuffle=False, seed=0) -> tf.data.Dataset:
    """Per-scene elements from a folder of videos (layout and intrinsics rules in the module docstring).

    Args:
      root: folder with one sub-folder of frames per video.
      intrinsics: default K for videos without intrinsics files (3x3/4x4 pixels, 4 normalised numbers or a dict).
      frame_offsets: None = one element per video; e.g. (-1, 0, 1) = one element per target frame (its own K).
      depth_scale: 16-bit depth PNG value per metre.
      height, width: resize every element at the source (K rescaled), or None to keep the stored size.
      shuffle, seed: shuffle the element order each iteration (before decoding).
    Returns:
      ``tf.data.Dataset`` of dicts with ``tfdepth.data.video.SEQUENCE_KEYS`` for ``make_video_dataset``.
    """
    fn = "folder_sequences"
    if isinstance(depth_scale, bool) or not isinstance(depth_scale, (int, float)) or not depth_scale > 0:
        raise ValueError(f"{fn}: `depth_scale` must be a number > 0 (PNG value per metre), got {depth_scale!r}")
    offsets = None if frame_offsets is None else check_frame_offsets(frame_offsets, fn)
    videos = scan_folders(root, intrinsics=intrinsics)
    elements = []  # (video, frame indices, K)
    for video in videos:
        count = len(video.frames)
        if offsets is None:
            if count < 3:
                raise ValueError(f"{fn}: video {video.name!r} has {count} frame(s); a video needs at least 3 "
                                 "(a triplet is t-1, t, t+1). Add frames or remove the folder.")
            K = video.intrinsics[0]
            varying = np.flatnonzero(~np.all(np.isclose(video.intrinsics, K, rtol=1e-6, atol=1e-9), axis=(1, 2)))
            if varying.size:
                raise ValueError(f"{fn}: video {video.name!r} has per-image intrinsics that differ between frames "
                                 f"({video.frames[0].name} and {video.frames[varying[0]].name}); one element per "
                                 "video carries one K: pass frame_offsets=(-1, 0, 1) to use each target frame's K")
            elements.append((video, list(range(count)), K))
            continue
        span = offsets[-1] - offsets[0] + 1
        if count < span:
            raise ValueError(f"{fn}: video {video.name!r} has {count} frame(s), fewer than the {span} that "
                             f"frame_offsets={offsets} spans")
        for t in range(-offsets[0], count - offsets[-1]):
            elements.append((video, [t + o for o in offsets], video.intrinsics[t]))

    def load(index):
        video, picks, _ = elements[index]
        image = np.stack([read_image(video.frames[i], video.size) for i in picks])
        depth = np.zeros((len(picks), *video.size), np.float32)
        for j, i in enumerate(picks):
            if video.depth_files[i] is not None:
                depth[j] = read_depth(video.depth_files[i], video.size, depth_scale)
        poses = video.poses[picks] if video.poses is not None else np.full((len(picks), 4, 4), np.nan)
        return {"image": image, "depth": depth, "poses": poses.astype(np.float64),
                "mask": np.zeros(depth.shape, np.uint8)}

    frames = len(offsets) if offsets else (len(videos[0].frames) if len({len(v.frames) for v in videos}) == 1
                                           else None)
    return sequences_from_loader(load, [e[2] for e in elements], [e[0].size for e in elements], frames=frames,
                                 height=height, width=width, shuffle=shuffle, seed=seed, fn_name=fn)

