"""Predict depth for images, folders of images and videos with a trained run or an export.

    python predict.py --run-dir runs/default photo.jpg more_photos/ clip.mp4 --out predictions/
    python predict.py --model export/depth/1 photo.jpg --out predictions/ --save png,npy,png16,panel,ply
    python predict.py --model depth.tflite photo.jpg --out predictions/ --save ply --intrinsics 720,720,319.5,239.5

What is written, per image (``--save``, a comma list; default ``png,npy``):
  png     <name>.png          colourised inverse depth (MAGMA, near = bright) with a colour bar in depth units,
                              titled "depth (m)" (metric models) or "depth (relative)" (up to scale)
  npy     <name>.npy          float32 depth [H, W] at the input's resolution
  png16   <name>_depth16.png  16-bit depth, value = round(depth * scale), 0 = no depth; scale in
          <name>_depth16.json metric: 256 (KITTI's convention, 1/256 m steps, up to 256 m); relative:
                              65535 / (the map's largest depth), i.e. normalised per image
  panel   <name>_panel.png    RGB | colourised depth | colour bar, side by side
  ply     <name>.ply          coloured point cloud (binary PLY, OpenCV camera axes, depth units), back-projected
                              with --intrinsics or the run's camera; at most --ply-max-points points
Videos (.mp4 .avi .mov .mkv ...): --video-out video (default) writes <name>_depth.mp4 (the png picture, or the panel
if --save has panel, colour range fixed from the first frame); frames writes the --save files of each predicted
frame into <name>/<frame index>.*; both does both. --every N predicts every N-th frame.

Inputs that cannot be predicted get one line on stderr naming them and why, and the rest are still processed:
missing paths, empty folders, unreadable or truncated images (a JPEG without its end marker, a PNG without IEND),
images over --max-pixels (checked from the file header before decoding), videos OpenCV cannot open, and files that
are not photos. Photos are 8-bit colour or grey images (RGBA, grey+alpha, palette), 16-bit colour images and
float colour TIFFs (values in [0, 1], or [0, 255] as Middlebury's); 16-bit or float single-channel images are depth
maps (e.g. the *_depth.png of an RGB-D folder) and are skipped unless --include-non-photos. An image whose aspect
ratio is over 4x off the network's gets a warning (it is squashed to the network size). Every file is written
atomically: an interrupted run leaves no half-written file.

Exit code: 0 if every input was predicted, 1 if any input was skipped, 2 for a usage error (bad option, --out is a
file, the model cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages: each skipped video gets our one line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
SAVE_CHOICES = ("png", "npy", "png16", "panel", "ply")
DEFAULT_SAVE = "png,npy"
DEFAULT_MAX_PIXELS = 50_000_000  # ~50 MP: far above phone photos (12-48 MP), far below a decompression bomb
# Aspect-ratio mismatch (image vs network) above which a warning is printed. A 4:3 photo on the default 64x192
# (3:1) network is 2.25x off and is the ordinary use; beyond 4x (a portrait photo: 4.4x, 50x2000: 13x) objects
# are squashed to a quarter of their width or less, far from anything the network was trained on.
EXTREME_ASPECT = 4.0
DEFAULT_PLY_MAX_POINTS = 1_000_000  # ~15 MB per cloud; a 12 MP photo is sampled every 4th row and column


class Skip(Exception):
    """An input that is skipped: the message says why (one line)."""


class UsageError(Exception):
    """A problem with the options: exit code 2."""


# ------------------------------------------------------------------------------------------ image headers


@dataclass(frozen=True)
class Header:
    """What an image file's header says, read without decoding the pixels."""

    format: str  # PNG | JPEG | BMP | PNM | TIFF | WEBP
    width: int
    height: int
    channels: int  # 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha (or CMYK JPEG)
    sample: str  # "uint8" (<= 8 bits), "uint16", "float", or another sample type (not a photo)


def _png_header(f, path):
    head = f.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise Skip("damaged PNG (no IHDR header)")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type)
    if channels is None:
        raise Skip(f"damaged PNG (colour type {colour_type})")
    f.seek(0, os.SEEK_END)
    if f.tell() >= 12:
        f.seek(-12, os.SEEK_END)
        if f.read(12)[4:8] != b"IEND":
            raise Skip("truncated PNG (the file does not end with the IEND chunk)")
    return Header("PNG", width, height, channels, "uint16" if bit_depth == 16 else "uint8")


_JPEG_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}  # C4 DHT, C8 JPG, CC DAC are not frames


def _jpeg_header(f, path):
    """Walks the marker segments to the frame header (SOFn) and the first scan (SOS), then looks for the end of
    image marker FFD9 after it: entropy-coded data stuffs every FF byte (FF00) and restart markers are FFD0-D7, so
    FFD9 after the first scan is the end of this image (an EXIF thumbnail's own FFD9 sits before it, inside APP1;
    data appended after the end, e.g. a motion photo's video, does not matter)."""
    data = f.read()
    pos, frame = 2, None
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise Skip("truncated or damaged JPEG (marker segments end before the image data)")
        marker = data[pos + 1]
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            if pos + 10 > len(data):
                raise Skip("truncated JPEG (frame header cut)")
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            frame = (precision, height, width, components)
        if marker == 0xDA:
            break
        pos += 2 + length
    if frame is None:
        raise Skip("damaged JPEG (no frame header before the image data)")
    if data.find(b"\xff\xd9", pos) < 0:
        raise Skip("truncated JPEG (no end-of-image marker FFD9: the file was cut short)")
    precision, height, width, components = frame
    if height == 0 or width == 0:
        raise Skip("JPEG without its size in the frame header (DNL), not supported")
    return Header("JPEG", width, height, components, "uint8" if precision <= 8 else "uint16")  # 12-bit JPEG


def _bmp_header(f, path):
    head = f.read(30)
    if len(head) < 26:
        raise Skip("damaged BMP header")
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:
        width, height, _, bits = struct.unpack("<HHHH", head[18:26])
    else:
        width, height, _, bits = struct.unpack("<iiHH", head[18:30])
    return Header("BMP", abs(width), abs(height), 4 if bits == 32 else 3, "uint8")


def _pnm_header(f, path):
    head = f.read(512)
    tokens, i = [], 0
    text = head.decode("latin-1")
    while len(tokens) < 4 and i < len(text):
        if text[i] == "#":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
        elif text[i].isspace():
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] != "#":
                j += 1
            tokens.append(text[i:j])
            i = j
    magic = tokens[0] if tokens else ""
    if magic not in ("P2", "P3", "P5", "P6") or len(tokens) < 4 or not all(t.isdigit() for t in tokens[1:4]):
        raise Skip("unsupported or damaged PNM header (P2/P3/P5/P6 grey or colour maps are read)")
    width, height, maxval = (int(t) for t in tokens[1:4])
    return Header("PNM", width, height, 1 if magic in ("P2", "P5") else 3, "uint16" if maxval > 255 else "uint8")


def _webp_header(f, path):
    head = f.read(30)
    if len(head) < 30:
        raise Skip("damaged WebP header")
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", head[26:30]))
        channels = 3
    elif chunk == b"VP8L":
        (bits,) = struct.unpack("<I", head[21:25])
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        channels = 4 if (bits >> 28) & 1 else 3
    elif chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        channels = 4 if head[20] & 0x10 else 3
    else:
        raise Skip("damaged WebP header")
    return Header("WEBP", width, height, channels, "uint8")


def _tiff_header(path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            width, height = int(page.imagewidth), int(page.imagelength)
            channels, dtype = int(page.samplesperpixel), page.dtype
    except Exception as err:  # noqa: BLE001 (tifffile raises several types for damaged files)
        raise Skip(f"damaged TIFF ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if dtype is None:
        raise Skip("TIFF with mixed sample types, not supported")
    kind = dtype.kind
    sample = "float" if kind == "f" else ("uint8" if dtype.itemsize == 1 and kind in "ub" else str(dtype))
    return Header("TIFF", width, height, channels, sample)


def read_header(path: Path) -> Header:
    """The image's size, channels and sample type from its header (the format is sniffed from the bytes)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(12)
            f.seek(0)
            if magic.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png_header(f, path)
            if magic.startswith(b"\xff\xd8"):
                return _jpeg_header(f, path)
            if magic.startswith(b"BM"):
                return _bmp_header(f, path)
            if magic[:1] == b"P" and magic[1:2] in (b"2", b"3", b"5", b"6"):
                return _pnm_header(f, path)
            if magic[:4] == b"RIFF" and magic[8:12] == b"WEBP":
                return _webp_header(f, path)
            if magic[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                return _tiff_header(path)
    except (struct.error, OSError) as err:
        raise Skip(f"unreadable image ({err})") from None
    if not magic:
        raise Skip("empty file")
    raise Skip("not an image this tool reads (PNG, JPEG, BMP, PNM, TIFF, WebP; checked from the file's bytes)")


def photo_problem(header: Header) -> str | None:
    """Why the image is not a photo (module docstring), or None."""
    colour = header.channels in (3, 4)
    if header.sample == "uint8" and header.channels in (1, 2, 3, 4):
        return None
    if header.sample in ("uint16", "float") and colour:
        return None
    if header.sample in ("uint16", "float") and header.channels in (1, 2):
        bits = "16-bit" if header.sample == "uint16" else "float"
        return f"{bits} single-channel image, a depth map rather than a photo"
    return f"{header.channels}-channel {header.sample} image, not a photo"


def decode_image(path: Path, header: Header):
    """RGB ``[H, W, 3]`` uint8, uint16 or float32 in [0, 1] (EXIF orientation applied for JPEGs, alpha dropped)."""
    import cv2
    import numpy as np

    if header.format == "TIFF":
        import tifffile

        try:
            image = tifffile.imread(path, key=0)
        except Exception as err:  # noqa: BLE001
            raise Skip(f"damaged TIFF ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        if image.ndim == 3 and image.shape[0] == header.channels and image.shape[-1] != header.channels:
            image = np.moveaxis(image, 0, -1)  # planar TIFF
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise Skip(f"TIFF of shape {image.shape}, not an image")
    else:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if image is None:
            raise Skip(f"{header.format} that OpenCV could not decode (damaged file)")
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 2:
        image = np.repeat(image[..., :1], 3, axis=-1)
    elif image.shape[-1] >= 4:
        image = np.ascontiguousarray(image[..., :3])
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype.kind == "f":
        image = image.astype(np.float32, copy=False)
        lo, hi = float(image.min()), float(image.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise Skip("float image with NaN or infinite values")
        if lo < 0 or hi > 255:
            raise Skip(f"float image with values in [{lo:.4g}, {hi:.4g}], not a photo in [0, 1] or [0, 255]")
        return image / np.float32(255.0) if hi > 1.0 else image  # Middlebury's float TIFFs hold 0..255
    if image.dtype.kind in "ui":  # e.g. uint32 with --include-non-photos: scale its range to [0, 1]
        top = float(image.max()) or 1.0
        return (image.astype(np.float32) / np.float32(top)).clip(0, 1)
    raise Skip(f"{image.dtype} samples, not an image type")


# ------------------------------------------------------------------------------------------- progress bar


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise."""

    def __init__(self, total: int | None, label: str, stream=None, enabled=True):
        import shutil

        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = max(40, min(160, shutil.get_terminal_size((100, 24)).columns - 1))
        self.done, self.last_decile, self.drawn = 0, -1, False
        self.started = time.monotonic()

    def _line(self, name):
        elapsed = time.monotonic() - self.started
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(round(20 * frac)) + "." * (20 - int(round(20 * frac)))
            return f"{self.label} [{bar}] {self.done}/{self.total} {100 * frac:3.0f}% {elapsed:.0f}s {name}"
        return f"{self.label} {self.done} {elapsed:.0f}s {name}"

    def update(self, name=""):
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            line = self._line(name)[:self.width]
            self.stream.write("\r" + line.ljust(self.width))
            self.stream.flush()
            self.drawn = True
            return
        decile = int(10 * self.done / self.total) if self.total else self.done // 100
        if decile != self.last_decile and (self.total is None or self.done == self.total or decile > 0):
            self.last_decile = decile
            print(self._line(name), file=self.stream)

    def clear(self):
        """Call before printing another line, so the bar does not garble it."""
        if self.drawn:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.drawn = False

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


class Reporter:
    """One-line messages on stderr (skips, warnings) that keep the progress bar readable."""

    def __init__(self):
        self.skipped = 0
        self.progress = None

    def _emit(self, text):
        if self.progress is not None:
            self.progress.clear()
        print(text, file=sys.stderr)

    def skip(self, what, reason):
        self.skipped += 1
        self._emit(f"skipped {what}: {reason}")

    def warn(self, what, reason):
        self._emit(f"warning: {what}: {reason}")

    def info(self, text):
        if self.progress is not None:
            self.progress.clear()
        print(text)


# ------------------------------------------------------------------------------------------------ outputs


def parse_save(text: str):
    items = [s.strip() for s in text.split(",") if s.strip()]
    if items == ["all"]:
        return list(SAVE_CHOICES)
    unknown = [s for s in items if s not in SAVE_CHOICES]
    if unknown or not items:
        raise UsageError(f"--save {text!r}: choose from {', '.join(SAVE_CHOICES)} (comma separated) or all")
    return list(dict.fromkeys(items))


OUTPUT_NAMES = {
    "png": ["{}.png"], "npy": ["{}.npy"], "png16": ["{}_depth16.png", "{}_depth16.json"],
    "panel": ["{}_panel.png"], "ply": ["{}.ply"],
}


class Outputs:
    """Output names that never collide (``a.png`` and ``a.jpg`` -> ``a`` and ``a_2``), atomic writes, and the
    output folder created on the first write (so a run that predicts nothing leaves no empty folder)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.used: set[str] = set()

    def allocate(self, stem: str, names) -> str:
        base, n = stem, 1
        while True:
            wanted = [name.format(stem) for name in names] + [stem]
            if not any(w in self.used for w in wanted):
                self.used.update(wanted)
                return stem
            n += 1
            stem = f"{base}_{n}"

    def ensure_dir(self, sub: str | None = None) -> Path:
        path = self.out_dir if sub is None else self.out_dir / sub
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"cannot create the output folder {path}: {err.strerror or err}") from None
        return path

    def write_all(self, folder: Path, files: dict):
        """Write ``{name: bytes}`` atomically; if one write fails, the ones already written are removed."""
        from tfdepth.io import atomic_write_bytes

        written = []
        try:
            for name, data in files.items():
                written.append(atomic_write_bytes(folder / name, data))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return [folder / name for name in files]


@dataclass
class Context:
    predictor: object
    save: list
    label: str
    camera: object  # callable (height, width) -> K [3,3], or None
    camera_note: str
    ply_max_points: int
    reporter: Reporter
    outputs: Outputs


def render_outputs(ctx: Context, stem: str, rgb, depth, vrange=None) -> dict:
    """``{file name: bytes}`` of everything ``--save`` asks for (encoded in memory first: see write_all)."""
    import io

    import numpy as np

    from tfdepth import viz

    files = {}
    lo, hi = vrange if vrange is not None else viz.depth_display_range(depth)
    if "png" in ctx.save:
        files[f"{stem}.png"] = viz.encode_png(viz.colorize_depth_with_colorbar(depth, ctx.label, lo, hi))
    if "npy" in ctx.save:
        buffer = io.BytesIO()
        np.save(buffer, depth.astype(np.float32, copy=False))
        files[f"{stem}.npy"] = buffer.getvalue()
    if "png16" in ctx.save:
        kind = ctx.predictor.depth_kind
        scale = viz.png16_scale(depth, kind)
        files[f"{stem}_depth16.png"] = viz.encode_png(viz.depth_to_png16(depth, scale))
        sidecar = {"file": f"{stem}_depth16.png", "scale": scale, "depth_kind": kind or "unknown",
                   "decode": "depth = value / scale; value 0 = no depth",
                   "note": ("metric depth in metres x 256 (KITTI convention)" if kind == "metric" else
                            f"{'relative depth (up to an unknown scale)' if kind else 'depth of unknown units'}, "
                            "normalised so that the farthest pixel is 65535")}
        files[f"{stem}_depth16.json"] = (json.dumps(sidecar, indent=2) + "\n").encode()
    if "panel" in ctx.save:
        files[f"{stem}_panel.png"] = viz.encode_png(viz.depth_panel(to_uint8(rgb), depth, ctx.label, lo, hi))
    if "ply" in ctx.save:
        from tfdepth.inference import depth_to_points

        K = ctx.camera(*depth.shape)
        points, colors, stride = depth_to_points(depth, K, to_uint8(rgb), ctx.ply_max_points)
        comments = [f"tfdepth predict.py; depth {ctx.predictor.depth_kind or 'unknown kind'} "
                    f"({'metres' if ctx.predictor.depth_kind == 'metric' else 'relative units, up to scale'})",
                    "OpenCV camera axes: x right, y down, z forward",
                    f"camera fx={K[0, 0]:.6g} fy={K[1, 1]:.6g} cx={K[0, 2]:.6g} cy={K[1, 2]:.6g} ({ctx.camera_note})",
                    f"every {stride} pixel(s) in each direction"]
        files[f"{stem}.ply"] = viz.ply_bytes(points, colors, comments)
    return files


def to_uint8(rgb):
    import numpy as np

    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return (rgb >> 8).astype(np.uint8)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def aspect_warning(ctx: Context, what, height, width):
    size = ctx.predictor.network_size
    if size is None:
        return
    nh, nw = size
    ratio = (width / height) / (nw / nh)
    off = max(ratio, 1.0 / ratio)
    if off > EXTREME_ASPECT:
        shape = "wider" if ratio > 1 else "taller"
        ctx.reporter.warn(what, f"aspect ratio {width}x{height} ({width / height:.3g}:1) is {off:.1f}x {shape} "
                          f"than the network's {nw}x{nh} ({nw / nh:.3g}:1); it is squashed to {nw}x{nh}, expect poor "
                          f"depth (crop it nearer {nw}:{nh})")


# ----------------------------------------------------------------------------------------------- images


def predict_image(ctx: Context, path: Path, args) -> None:
    header = read_header(path)
    pixels = header.width * header.height
    if pixels > args.max_pixels:
        raise Skip(f"{header.width}x{header.height} = {pixels / 1e6:.1f} MP is over the limit of "
                   f"{args.max_pixels / 1e6:.3g} MP (read from the header, nothing decoded; raise it with "
                   "--max-pixels)")
    problem = photo_problem(header)
    if problem and not args.include_non_photos:
        raise Skip(f"{problem}; pass --include-non-photos to predict it anyway")
    rgb = decode_image(path, header)
    aspect_warning(ctx, path, rgb.shape[0], rgb.shape[1])
    depth = ctx.predictor.predict(rgb)
    stem = ctx.outputs.allocate(path.stem, [n for key in ctx.save for n in OUTPUT_NAMES[key]])
    files = render_outputs(ctx, stem, rgb, depth)
    folder = ctx.outputs.ensure_dir()
    ctx.outputs.write_all(folder, files)
    ctx.reporter.info(f"{path} -> {folder / stem}.* ({', '.join(ctx.save)}; {depth.shape[1]}x{depth.shape[0]})")


# ----------------------------------------------------------------------------------------------- videos


def predict_video(ctx: Context, path: Path, args) -> None:
    import cv2
    import numpy as np

    from tfdepth import viz

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise Skip("OpenCV cannot open this video (damaged, or a codec its FFmpeg lacks)")
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > args.max_pixels:
            raise Skip(f"frames of {width}x{height} are over the --max-pixels limit of {args.max_pixels / 1e6:.3g} MP")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        want_video = args.video_out in ("video", "both")
        want_frames = args.video_out in ("frames", "both")
        names = ["{}_depth.mp4"] + (["{}"] if want_frames else [])
        stem = ctx.outputs.allocate(path.stem, names)
        total = math.ceil(count / args.every) if count > 0 else None
        progress = Progress(total, f"{path.name}:", enabled=True)
        ctx.reporter.progress = progress
        writer, tmp_video, final_video, vrange, index, predicted = None, None, None, None, 0, 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % args.every:
                    index += 1
                    continue
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if predicted == 0:
                    aspect_warning(ctx, path, rgb.shape[0], rgb.shape[1])
                depth = ctx.predictor.predict(rgb)
                if vrange is None:  # one colour range for the whole video, so colours mean the same in every frame
                    vrange = viz.depth_display_range(depth)
                if want_frames:
                    folder = ctx.outputs.ensure_dir(stem)
                    ctx.outputs.write_all(folder, render_outputs(ctx, f"{index:06d}", rgb, depth, vrange))
                if want_video:
                    lo, hi = vrange
                    if "panel" in ctx.save:
                        picture = viz.depth_panel(rgb, depth, ctx.label, lo, hi)
                    else:
                        picture = viz.colorize_depth_with_colorbar(depth, ctx.label, lo, hi)
                    if writer is None:
                        size = (picture.shape[1] + picture.shape[1] % 2, picture.shape[0] + picture.shape[0] % 2)
                        folder = ctx.outputs.ensure_dir()
                        final_video = folder / f"{stem}_depth.mp4"
                        tmp_video = folder / f".{stem}_depth.partial.mp4"
                        writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 fps / args.every, size)
                        if not writer.isOpened():
                            raise Skip("OpenCV could not open a video writer (mp4v) in the output folder")
                    canvas = np.full((size[1], size[0], 3), 255, np.uint8)
                    canvas[:picture.shape[0], :picture.shape[1]] = picture
                    writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                predicted += 1
                index += 1
                progress.update(f"frame {index - 1}")
            if predicted == 0:
                raise Skip("no frame could be decoded")
            if writer is not None:
                writer.release()
                writer = None
                os.replace(tmp_video, final_video)
        finally:
            if writer is not None:
                writer.release()
            if tmp_video is not None and tmp_video.exists():
                tmp_video.unlink()
            progress.close()
            ctx.reporter.progress = None
    finally:
        capture.release()
    outputs = ([f"{final_video}"] if want_video else []) + ([f"{ctx.outputs.out_dir / stem}/"] if want_frames else [])
    ctx.reporter.info(f"{path} -> {', '.join(outputs)} ({predicted} frames of {width}x{height}, every {args.every})")


# --------------------------------------------------------------------------------------------- set-up


def collect_inputs(inputs, reporter: Reporter):
    """``(path, kind)`` pairs: folders expand (sorted, not recursive) to their images and videos; a folder with
    none is reported. Explicit files are kept whatever their suffix (the header decides)."""
    items = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                reporter.skip(path, "no images or videos in this folder (not searched recursively; suffixes "
                              f"{' '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
            items.extend((p, "video" if p.suffix.lower() in VIDEO_SUFFIXES else "image") for p in found)
        elif path.is_file():
            items.append((path, "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"))
        else:
            reporter.skip(path, "no such file or folder")
    return items


def parse_intrinsics_arg(text: str):
    """``fx,fy,cx,cy`` (pixels of the input images) or a file: JSON ``{"fx", "fy", "cx", "cy"}`` or a 3x3 / 4x4
    matrix as text. Returns ``(callable (h, w) -> K, note)``."""
    import numpy as np

    from tfdepth.data.folders import parse_intrinsics

    path = Path(text)
    if path.is_file():
        try:
            if path.suffix.lower() == ".json":
                spec = json.loads(path.read_text())
                K = parse_intrinsics([[spec["fx"], 0, spec["cx"]], [0, spec["fy"], spec["cy"]], [0, 0, 1]], str(path))
            else:
                K = parse_intrinsics(np.loadtxt(path), str(path))
        except (KeyError, TypeError, ValueError, OSError) as err:
            raise UsageError(f"--intrinsics {path}: {err} (expected JSON with fx, fy, cx, cy or a 3x3 matrix)") \
                from None
        return (lambda h, w: K), f"--intrinsics {path.name}"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise UsageError(f"--intrinsics {text!r}: give fx,fy,cx,cy in pixels of the input images, or a file "
                         "(JSON with fx, fy, cx, cy, or a 3x3 matrix as text)")
    fx, fy, cx, cy = values
    K = parse_intrinsics([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "--intrinsics")
    return (lambda h, w: K), "--intrinsics"


def run_camera(config):
    """The run's camera as ``(callable (h, w) -> K, note)``: ``data.intrinsics`` (4 normalised numbers fit any size;
    9 are pixels, used as they are) or, for the synthetic dataset, its preset's camera at the image's size."""
    import numpy as np

    if config is None:
        return None, ""
    values = config.data.intrinsics
    if values is not None:
        if len(values) == 4:
            from tfdepth.geometry import intrinsics_from_normalized

            fx, fy, cx, cy = values
            return (lambda h, w: np.asarray(intrinsics_from_normalized(fx, fy, cx, cy, h, w), np.float64),
                    "the run's normalised data.intrinsics")
        from tfdepth.data.folders import parse_intrinsics

        K = parse_intrinsics(values, "data.intrinsics")
        return (lambda h, w: K), "the run's data.intrinsics (pixels)"
    if config.data.dataset == "synthetic":
        from tfdepth.data.synthetic import intrinsics_for

        preset = config.data.preset
        return (lambda h, w: np.asarray(intrinsics_for(preset, h, w), np.float64),
                f"the synthetic {preset} camera the run was trained with")
    return None, ""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--run-dir", help="directory written by train.py")
    model.add_argument("--model", help="a run directory, a SavedModel (NAME/ or NAME/VERSION/) or a .tflite file")
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, video files")
    parser.add_argument("--out", required=True, help="output folder (created if missing; must not be a file)")
    parser.add_argument("--save", default=DEFAULT_SAVE, type=str,
                        help=f"comma list of {', '.join(SAVE_CHOICES)} or all (default {DEFAULT_SAVE}); png16 value ="
                             " depth x 256 for metric depth, normalised to 65535 at the farthest pixel for relative "
                             "depth (scale in the .json beside it)")
    parser.add_argument("--intrinsics", help="camera for --save ply: fx,fy,cx,cy in pixels of the input images, or a "
                                             "file (JSON fx/fy/cx/cy or a 3x3 matrix); default: the run's camera")
    parser.add_argument("--ply-max-points", type=int, default=DEFAULT_PLY_MAX_POINTS,
                        help=f"sample every s-th row/column so a cloud has at most this many points "
                             f"(default {DEFAULT_PLY_MAX_POINTS})")
    parser.add_argument("--max-pixels", type=float, default=DEFAULT_MAX_PIXELS,
                        help=f"skip images with more pixels than this, read from the header before decoding "
                             f"(default {DEFAULT_MAX_PIXELS:.0f})")
    parser.add_argument("--include-non-photos", action="store_true",
                        help="also predict 16-bit / float single-channel images (depth maps are skipped by default)")
    parser.add_argument("--video-out", choices=("video", "frames", "both"), default="video",
                        help="for videos: a depth video <name>_depth.mp4, the --save files per frame, or both")
    parser.add_argument("--every", type=int, default=1, help="videos: predict every N-th frame (default 1)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one-line usage error
        return int(exit_.code or 0)
    reporter = Reporter()
    try:
        save = parse_save(args.save)
        if args.every < 1:
            raise UsageError(f"--every must be >= 1, got {args.every}")
        if args.max_pixels <= 0 or args.ply_max_points < 1:
            raise UsageError("--max-pixels and --ply-max-points must be positive")
        out_dir = Path(args.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} is an existing file; give a folder (it is created if missing)")
        camera, note = (parse_intrinsics_arg(args.intrinsics) if args.intrinsics else (None, ""))

        from tfdepth.inference import DepthPredictor
        from tfdepth.viz import depth_unit_label

        model_path = args.run_dir or args.model
        try:
            predictor = DepthPredictor.from_run_dir(model_path) if args.run_dir else DepthPredictor.load(model_path)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(str(err)) from None
        if "ply" in save and camera is None:
            camera, note = run_camera(predictor.config)
            if camera is None:
                raise UsageError("--save ply needs the camera: pass --intrinsics fx,fy,cx,cy (pixels of the input "
                                 f"images) or a file; {model_path} does not say which camera it was trained with")
        ctx = Context(predictor, save, depth_unit_label(predictor.depth_kind), camera, note, args.ply_max_points,
                      reporter, Outputs(out_dir))
        items = collect_inputs(args.inputs, reporter)
        images = [p for p, kind in items if kind == "image"]
        progress = Progress(len(images), "images", enabled=len(images) > 1)
        for path, kind in items:
            reporter.progress = progress if kind == "image" else None
            try:
                if kind == "video":
                    predict_video(ctx, path, args)
                else:
                    predict_image(ctx, path, args)
            except Skip as why:
                reporter.skip(path, str(why))
            except ValueError as err:  # what the predictor refuses (its message names the problem)
                reporter.skip(path, f"could not be predicted: {err}")
            except MemoryError:
                reporter.skip(path, "out of memory while predicting it (lower --max-pixels to skip such images)")
            except OSError as err:  # e.g. the disk filled up: this input's files were removed by write_all
                reporter.skip(path, f"could not write its outputs ({err.strerror or err})")
            if kind == "image":
                reporter.progress = progress
                progress.update(path.name)
        progress.close()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if reporter.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
