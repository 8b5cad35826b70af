"""Predict depth for images, folders of images and videos with a trained run or an export.

    python predict.py --run-dir runs/default photo.jpg more_photos/ clip.mp4 --out predictions/
    python predict.py --model export/depth/1 photo.jpg --out predictions/ --save png,npy,png16,panel,ply
    python predict.py --model depth.tflite photo.jpg --out predictions/ --save ply --intrinsics 720,720,319.5,239.5
    python predict.py --run-dir runs/sddr photo.jpg --base-model runs/default --out refined/   # SDDR refinement

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
SDDR runs refine a base predictor's depth instead (``--base-model RUN_OR_EXPORT``, ``--base-dir DIR`` or
``--base-low FILE --base-high FILE``; ``--refine-mode one_stage|two_stage``) and write <name>_refined.npy (inverse
depth in [0, 1], near = 1, up to scale and shift), <name>_refined16.png and <name>_refined_panel.png
(image | base | refined); predict_io/refine.py says more.
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
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages: each skipped video gets our one line

from predict_io.errors import Skip, UsageError  # noqa: E402  (after the environment above)
from predict_io.inputs import (  # noqa: E402, F401  (Header, IMAGE_SUFFIXES, ...: still importable from here)
    DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, VIDEO_SUFFIXES, Header, collect_inputs, decode_image, photo_problem,
    read_header)
from predict_io.outputs import (  # noqa: E402, F401  (to_uint8, SAVE_CHOICES, ...: still importable from here)
    DEFAULT_SAVE, OUTPUT_NAMES, SAVE_CHOICES, Outputs, Progress, Reporter, parse_save, render_outputs, to_uint8)

# Aspect-ratio mismatch (image vs network) above which a warning is printed. A 4:3 photo on the default 64x192
# (3:1) network is 2.25x off and is the ordinary use; beyond 4x (a portrait photo: 4.4x, 50x2000: 13x) objects
# are squashed to a quarter of their width or less, far from anything the network was trained on.
EXTREME_ASPECT = 4.0
DEFAULT_PLY_MAX_POINTS = 1_000_000  # ~15 MB per cloud; a 12 MP photo is sampled every 4th row and column


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
    sddr = parser.add_argument_group("SDDR runs (refine a base predictor's depth; predict_io/refine.py)")
    sddr.add_argument("--base-model", help="the base predictor: a tfdepth run directory or export")
    sddr.add_argument("--base-high-scale", type=float, default=2.0,
                      help="--base-model run directories: the high-resolution pass at this x the network size (2)")
    sddr.add_argument("--base-dir", help="precomputed base maps <image stem>_low.* and <image stem>_high.*")
    sddr.add_argument("--base-low", help="one image's low-resolution base map (.png 16-bit, .npy, .pfm, .tif)")
    sddr.add_argument("--base-high", help="one image's high-resolution base map")
    sddr.add_argument("--base-kind", choices=("disparity", "depth"), default="disparity",
                      help="what base map files hold (default disparity, as MiDaS-like predictors write)")
    sddr.add_argument("--base-png-scale", type=float, default=1.0, help="16-bit PNG base maps hold value x this")
    sddr.add_argument("--refine-mode", default="one_stage", choices=("one_stage", "two_stage"),
                      help="one_stage (whole image, default) or two_stage (then 2x2 and 3x3 windows)")
    sddr.add_argument("--refine-size", type=int, default=None,
                      help="N_r network size, a multiple of 128 (default: the size it was trained at)")
    return parser


def _depth_handler(args, save, camera, note, reporter, out_dir):
    """``(path, kind) -> None`` predicting depth with a depth model (run directory or export)."""
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
    return lambda path, kind: predict_video(ctx, path, args) if kind == "video" else predict_image(ctx, path, args)


def _sddr_handler(args, reporter, out_dir):
    """``(path, kind) -> None`` refining a base predictor's depth with an SDDR run (predict_io/refine.py)."""
    from predict_io.refine import base_source, refine_image
    from tfdepth.refine import DepthRefiner

    try:
        refiner = DepthRefiner.from_run_dir(args.run_dir, size=args.refine_size)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    base, what = base_source(args)
    reporter.info(f"SDDR {args.refine_mode} refinement at {refiner.size}x{refiner.size}; {what}")
    outputs = Outputs(out_dir)

    def handle(path, kind):
        if kind == "video":
            raise Skip("SDDR refines images (a video's frames would each need their base maps); extract frames")
        refine_image(refiner, base, outputs, reporter, path, args)

    return handle


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

        from predict_io.refine import is_sddr_run

        model_path = args.run_dir or args.model
        sddr = args.run_dir is not None and is_sddr_run(args.run_dir)
        if not sddr and (args.base_model or args.base_dir or args.base_low or args.base_high):
            raise UsageError(f"--base-model, --base-dir, --base-low and --base-high give the depth an SDDR run "
                             f"refines; {model_path} is not an SDDR run directory")
        handle = _sddr_handler(args, reporter, out_dir) if sddr else _depth_handler(args, save, camera, note,
                                                                                    reporter, out_dir)
        items = collect_inputs(args.inputs, reporter)
        images = [p for p, kind in items if kind == "image"]
        progress = Progress(len(images), "images", enabled=len(images) > 1)
        for path, kind in items:
            reporter.progress = progress if kind == "image" else None
            try:
                handle(path, kind)
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
