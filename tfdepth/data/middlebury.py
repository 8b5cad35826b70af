"""High-resolution evaluation data for SDDR (specs/sddr.md §6.1-6.2): Middlebury 2021 scenes, PFM files and a
generic "image + dense depth or disparity" folder format.

**Middlebury 2021 layout** (https://vision.middlebury.edu/stereo/data/scenes2021/), one folder per scene::

    artroom1/  im0.png  im1.png  disp0.pfm  disp1.pfm  calib.txt

``calib.txt`` holds ``cam0=[f 0 cx; 0 f cy; 0 0 1]``, ``cam1``, ``doffs``, ``baseline`` (mm), ``width``,
``height``, ``ndisp``, ``vmin``, ``vmax``. Depth (mm) = ``baseline * f / (disparity + doffs)`` (the Middlebury
definition and the official ``previous_evaluate_mid21.py``); :func:`load_middlebury_scene` returns it in
**metres**. Invalid disparity is ``inf`` in the PFM; every non-finite or non-positive ``disparity + doffs`` is
invalid: ``valid`` False and depth 0 (tfdepth's "no ground truth" value). [interpretation, documented decision]
The official script casts the depth with ``.astype('uint8')`` (values above 255 wrap modulo 256, a GBDF
inheritance; sddr.md §6.2); that is not reproduced (depth stays float).

**PFM** (Portable Float Map): header ``PF`` (3 channels) or ``Pf`` (1), then ``width height``, then a scale whose
sign gives the byte order (negative = little-endian), then float32 rows stored bottom to top.
:func:`read_pfm` returns top-to-bottom ``[H, W]`` or ``[H, W, 3]`` float32 and raises one clear ``ValueError``
naming the file for a wrong magic, a malformed size or scale line, or truncated data; :func:`write_pfm` writes
atomically (``tfdepth.io``).

**Generic folder** (:func:`load_dense_folder`) for users' own high-resolution data::

    root/
      images/<stem>.png|.jpg|.jpeg|.tif|.tiff
      depth/<stem>.npy|.pfm|.png|.tif|.tiff        z-depth (metres, or any unit), or instead
      disparity/<stem>.npy|.pfm|.png|.tif|.tiff    disparity (inverse depth up to scale; larger = nearer)

Exactly one of ``depth/`` and ``disparity/`` (or pass ``kind``). 16-bit PNG maps are ``value / png_scale``.
0, negative and non-finite values are invalid. Images are RGB float32 in [0, 1]: 8-bit / 255, 16-bit / 65535,
float images in [0, 1] as they are and float images with values above 1 as 0..255 data (e.g. the Middlebury 2003
Cones TIFFs). :func:`load_image_and_map` reads one explicit pair (e.g. the Cones sample, whose file names do not
share a stem).

Every element is a dict: ``image`` [H, W, 3] float32, ``valid`` [H, W] bool, and ``depth`` (metres or the file's
unit; 0 where invalid) and/or ``disparity`` (0 where invalid), plus ``name``. A disparity-only element has no
``depth`` key (no calibration): evaluate it in inverse-depth space or with scale-and-shift-invariant metrics.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tfdepth.io import atomic_write_bytes

__all__ = ["read_pfm", "write_pfm", "parse_calib", "disparity_to_depth", "load_middlebury_scene",
           "list_middlebury_scenes", "read_image_file", "read_map_file", "load_image_and_map", "load_dense_folder",
           "IMAGE_EXTENSIONS", "MAP_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MAP_EXTENSIONS = (".npy", ".pfm", ".png", ".tif", ".tiff")
_MIDDLEBURY_FILES = ("im0.png", "disp0.pfm", "calib.txt")


# ------------------------------------------------------------------------------------------------------- PFM


def _header_line(data, start, path, what):
    end = data.find(b"\n", start)
    if end < 0:
        raise ValueError(f"{path}: truncated PFM header (no end of line after the {what})")
    return data[start:end].decode("ascii", errors="replace").strip(), end + 1


def read_pfm(path):
    """PFM file -> float32 ``[H, W]`` (``Pf``) or ``[H, W, 3]`` (``PF``), top row first (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PFM file {path} does not exist")
    data = path.read_bytes()
    magic, pos = _header_line(data, 0, path, "magic")
    if magic not in ("PF", "Pf"):
        shown = magic[:16] if magic.isprintable() else repr(data[:8])
        raise ValueError(f"{path}: not a PFM file: header {shown!r} (expected 'PF' for colour or 'Pf' for one "
                         "channel); write it with tfdepth.data.middlebury.write_pfm or convert it")
    channels = 3 if magic == "PF" else 1
    size, pos = _header_line(data, pos, path, "magic")
    while size.startswith("#"):  # tolerate comment lines some writers add
        size, pos = _header_line(data, pos, path, "comment")
    parts = size.split()
    if len(parts) == 1:  # width and height on two lines
        second, pos = _header_line(data, pos, path, "width")
        parts += second.split()
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{path}: malformed PFM size line {size!r}; expected 'width height' (positive integers)")
    width, height = int(parts[0]), int(parts[1])
    scale_text, pos = _header_line(data, pos, path, "size")
    try:
        scale = float(scale_text)
    except ValueError:
        raise ValueError(f"{path}: malformed PFM scale line {scale_text!r}; expected a non-zero number "
                         "(negative = little-endian)") from None
    if scale == 0 or not np.isfinite(scale):
        raise ValueError(f"{path}: PFM scale {scale_text!r} must be a finite non-zero number")
    count = width * height * channels
    payload = data[pos:]
    if len(payload) < 4 * count:
        raise ValueError(f"{path}: truncated PFM data: {len(payload)} bytes for a {width}x{height}x{channels} "
                         f"image ({4 * count} expected)")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    array = np.frombuffer(payload, dtype=dtype, count=count).astype(np.float32)
    shape = (height, width, channels) if channels == 3 else (height, width)
    return np.ascontiguousarray(np.flipud(array.reshape(shape)))


def write_pfm(path, array, little_endian=True):
    """Write ``array`` [H, W] or [H, W, 3] (top row first) as PFM, atomically; returns the path."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        raise ValueError(f"write_pfm needs a non-empty [H, W] or [H, W, 3] array, got shape {array.shape}")
    magic = b"PF" if array.ndim == 3 else b"Pf"
    height, width = array.shape[:2]
    dtype = "<f4" if little_endian else ">f4"
    scale = b"-1.0" if little_endian else b"1.0"
    header = magic + b"\n" + f"{width} {height}".encode() + b"\n" + scale + b"\n"
    return atomic_write_bytes(path, header + np.flipud(array).astype(dtype).tobytes())


# -------------------------------------------------------------------------------------------- Middlebury 2021


def parse_calib(path):
    """``calib.txt`` -> dict: ``cam0``/``cam1`` 3x3 float arrays, other keys as floats (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Middlebury calibration {path} does not exist")
    calib = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{number}: expected 'key=value', got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if value.startswith("["):
            rows = value.strip("[]").split(";")
            try:
                matrix = np.array([[float(v) for v in row.split()] for row in rows], dtype=np.float64)
            except ValueError:
                raise ValueError(f"{path}:{number}: malformed matrix {value!r}") from None
            if matrix.shape != (3, 3):
                raise ValueError(f"{path}:{number}: {key} must be a 3x3 matrix, got shape {matrix.shape}")
            calib[key] = matrix
        else:
            try:
                calib[key] = float(value)
            except ValueError:
                raise ValueError(f"{path}:{number}: {key}={value!r} is not a number") from None
    for key in ("cam0", "baseline", "doffs"):
        if key not in calib:
            raise ValueError(f"{path}: missing {key!r} (Middlebury calib.txt needs cam0, baseline and doffs)")
    return calib


def disparity_to_depth(disparity, focal, baseline, doffs=0.0):
    """``(depth, valid)``: depth = focal * baseline / (disparity + doffs) where finite and positive, else 0."""
    disparity = np.asarray(disparity, dtype=np.float64)
    denom = disparity + doffs
    valid = np.isfinite(denom) & (denom > 0)
    depth = np.zeros(disparity.shape, np.float64)
    depth[valid] = focal * baseline / denom[valid]
    return depth.astype(np.float32), valid


def load_middlebury_scene(scene_dir, view=0):
    """One Middlebury 2021 scene (``view`` 0 = left, 1 = right) -> element dict (module docstring)."""
    scene_dir = Path(scene_dir)
    if view not in (0, 1):
        raise ValueError(f"view must be 0 (im0/disp0, left) or 1 (im1/disp1, right), got {view!r}")
    files = {"image": scene_dir / f"im{view}.png", "disparity": scene_dir / f"disp{view}.pfm",
             "calib": scene_dir / "calib.txt"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Middlebury scene {scene_dir} lacks {', '.join(missing)} (layout: im0.png, "
                                "disp0.pfm, calib.txt per scene folder)")
    calib = parse_calib(files["calib"])
    disparity = read_pfm(files["disparity"])
    if disparity.ndim != 2:
        raise ValueError(f"{files['disparity']}: expected a one-channel ('Pf') disparity map")
    image = read_image_file(files["image"])
    if image.shape[:2] != disparity.shape:
        raise ValueError(f"{files['image']} is {image.shape[:2]} but {files['disparity']} is {disparity.shape}")
    focal = float(calib[f"cam{view}"][0, 0]) if f"cam{view}" in calib else float(calib["cam0"][0, 0])
    depth_mm, valid = disparity_to_depth(disparity, focal, calib["baseline"], calib["doffs"])
    return {"name": f"{scene_dir.name}_{'l' if view == 0 else 'r'}", "image": image,
            "depth": depth_mm / 1000.0, "disparity": np.where(valid, disparity, 0.0).astype(np.float32),
            "valid": valid, "calib": calib}


def list_middlebury_scenes(root):
    """Sorted scene folders under ``root`` holding im0.png, disp0.pfm and calib.txt; an error if none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Middlebury root {root} is not a directory")
    scenes = sorted(p for p in root.iterdir() if p.is_dir() and all((p / f).is_file() for f in _MIDDLEBURY_FILES))
    if not scenes:
        raise FileNotFoundError(f"no Middlebury 2021 scene under {root}: each scene folder needs "
                                f"{', '.join(_MIDDLEBURY_FILES)}")
    return scenes


# ---------------------------------------------------------------------------------------- generic folders


def _read_tiff(path):
    import tifffile  # noqa: PLC0415 (only TIFF inputs need it)

    return tifffile.imread(str(path))


def read_image_file(path):
    """RGB float32 [H, W, 3] in [0, 1] from PNG/JPEG/TIFF (module docstring for the value ranges)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unsupported image type {suffix!r} (use one of {', '.join(IMAGE_EXTENSIONS)})")
    if suffix in (".tif", ".tiff"):
        image = np.asarray(_read_tiff(path))
    else:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{path}: cannot decode the image (corrupt or not a {suffix} file)")
        if image.ndim == 3:
            image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"{path}: expected an RGB image, got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise ValueError(f"{path}: the image has non-finite values")
    return image / 255.0 if image.max() > 1.0 else image


def read_map_file(path, png_scale=1.0):
    """A dense single-channel map [H, W] float32 from .npy, .pfm, .png (value / png_scale) or .tif/.tiff."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth/disparity map {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif suffix == ".pfm":
        array = read_pfm(path)
    elif suffix == ".png":
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ValueError(f"{path}: cannot decode the PNG")
        if array.ndim != 2:
            raise ValueError(f"{path}: a depth/disparity PNG must have one channel (16-bit grey), got {array.shape}")
        if not png_scale > 0:
            raise ValueError(f"png_scale must be > 0, got {png_scale!r}")
        array = array.astype(np.float32) / float(png_scale)
    elif suffix in (".tif", ".tiff"):
        array = np.asarray(_read_tiff(path))
    else:
        raise ValueError(f"{path}: unsupported map type {suffix!r} (use one of {', '.join(MAP_EXTENSIONS)})")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel [H, W] map, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: map must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32)


def load_image_and_map(image_path, map_path, kind="depth", png_scale=1.0, name=None):
    """One element (module docstring) from an image and a ``kind`` ("depth" or "disparity") map file."""
    if kind not in ("depth", "disparity"):
        raise ValueError(f"kind must be 'depth' or 'disparity', got {kind!r}")
    image = read_image_file(image_path)
    values = read_map_file(map_path, png_scale)
    if values.shape != image.shape[:2]:
        raise ValueError(f"{map_path} is {values.shape[0]}x{values.shape[1]} but {image_path} is "
                         f"{image.shape[0]}x{image.shape[1]}; a dense map must have the image's size")
    valid = np.isfinite(values) & (values > 0)
    element = {"name": name or Path(image_path).stem, "image": image, "valid": valid,
               kind: np.where(valid, values, 0.0).astype(np.float32)}
    return element


def load_dense_folder(root, kind=None, png_scale=1.0):
    """Elements of a generic folder (module docstring), sorted by stem; a clear error for a wrong layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{root} has no images/ folder (layout: images/, and depth/ or disparity/)")
    present = [k for k in ("depth", "disparity") if (root / k).is_dir()]
    if kind is None:
        if len(present) != 1:
            raise ValueError(f"{root} must hold exactly one of depth/ and disparity/ (found: {present or 'none'}); "
                             "pass kind='depth' or kind='disparity'")
        kind = present[0]
    elif kind not in present:
        raise FileNotFoundError(f"{root} has no {kind}/ folder")
    maps = {p.stem: p for p in sorted((root / kind).iterdir()) if p.suffix.lower() in MAP_EXTENSIONS}
    elements = []
    for image_path in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        if image_path.stem not in maps:
            raise FileNotFoundError(f"{image_path} has no {kind} map {root / kind / image_path.stem}.* "
                                    f"({', '.join(MAP_EXTENSIONS)})")
        elements.append(load_image_and_map(image_path, maps[image_path.stem], kind, png_scale))
    if not elements:
        raise FileNotFoundError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return elements

