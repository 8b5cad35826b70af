"""What predict.py writes and prints: the --save files of a prediction (rendered in memory, written atomically under
names that never collide), the progress bar and the one-line messages on stderr."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from predict_io.errors import UsageError

if TYPE_CHECKING:
    from predict import Context  # the top-level script's dataclass (model, --save choices, camera, reporter, outputs)

SAVE_CHOICES = ("png", "npy", "png16", "panel", "ply")
DEFAULT_SAVE = "png,npy"


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
