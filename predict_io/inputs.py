"""Reading predict.py's inputs: the folders and files to predict, each image's header (size, channels, sample type,
read without decoding), whether it is a photo, and its decoded pixels."""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from predict_io.errors import Skip

if TYPE_CHECKING:
    from predict_io.outputs import Reporter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
DEFAULT_MAX_PIXELS = 50_000_000  # ~50 MP: far above phone photos (12-48 MP), far below a decompression bomb


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


# ------------------------------------------------------------------------------------------------- inputs


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
