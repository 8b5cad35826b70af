"""predict.py on an SDDR run: refine a base predictor's depth for each image and write the refined map.

The base maps come from ``--base-model`` (a tfdepth run directory or export, run on the image at two
resolutions), ``--base-low FILE --base-high FILE`` (one image) or ``--base-dir DIR`` (``<stem>_low.*`` and
``<stem>_high.*`` per image; 16-bit PNG, ``.npy``, PFM, TIFF), holding ``--base-kind`` disparity (default: what
MiDaS-like predictors write) or depth (``tfdepth.refine``). Written per image (atomically, names never collide):

  <name>_refined.npy        float32 [H, W] refined inverse depth in [0, 1] (1 = nearest), at the image's size,
                            up to scale and shift (SDDR's output is affine-invariant)
  <name>_refined16.png      the same as 16-bit PNG, value = round(map x 65535) (the official demo's format)
  <name>_refined_panel.png  image | base (low-resolution map) | refined, one colour scale, near = bright
"""

from __future__ import annotations

import io
from pathlib import Path

from predict_io.errors import Skip, UsageError

REFINED_NAMES = ["{}_refined.npy", "{}_refined16.png", "{}_refined_panel.png"]


def is_sddr_run(path) -> bool:
    """Whether ``path`` is a run directory whose config names the SDDR family."""
    config = Path(path) / "config.yaml"
    if not config.is_file():
        return False
    from tfdepth.config import load_config  # noqa: PLC0415

    try:
        return load_config(config).model.name == "sddr"
    except Exception:  # noqa: BLE001 (a broken config is reported by the ordinary path)
        return False


def base_source(args):
    """``(stem, image) -> (low, high)`` from the --base-* options, or a UsageError saying what to give."""
    from tfdepth.data.middlebury import MAP_EXTENSIONS  # noqa: PLC0415
    from tfdepth.refine import TfdepthBase, read_base_map  # noqa: PLC0415

    given = [name for name, value in (("--base-model", args.base_model), ("--base-dir", args.base_dir),
                                      ("--base-low/--base-high", args.base_low or args.base_high)) if value]
    if len(given) != 1:
        raise UsageError("an SDDR run refines a base predictor's depth: give exactly one of --base-model "
                         "RUN_OR_EXPORT, --base-dir DIR (<stem>_low.* and <stem>_high.*) or --base-low FILE "
                         f"--base-high FILE (got {', '.join(given) or 'none'})")
    kind, scale = args.base_kind, args.base_png_scale
    if args.base_model:
        try:
            base = TfdepthBase(args.base_model, high_scale=args.base_high_scale)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(f"--base-model: {err}") from None
        return lambda stem, image: base(image), base.note
    if args.base_low or args.base_high:
        if not (args.base_low and args.base_high):
            raise UsageError("--base-low and --base-high go together (the predictor at a low and a high resolution)")
        for option, path in (("--base-low", args.base_low), ("--base-high", args.base_high)):
            if not Path(path).is_file():
                raise UsageError(f"{option} {path} does not exist")
        try:
            maps = [read_base_map(p, kind, scale) for p in (args.base_low, args.base_high)]
        except ValueError as err:
            raise UsageError(str(err)) from None
        return lambda stem, image: tuple(maps), f"base maps {args.base_low}, {args.base_high} ({kind})"
    folder = Path(args.base_dir)
    if not folder.is_dir():
        raise UsageError(f"--base-dir {folder} is not a directory")

    def from_dir(stem, image):
        found = []
        for which in ("low", "high"):
            paths = [folder / f"{stem}_{which}{ext}" for ext in MAP_EXTENSIONS]
            path = next((p for p in paths if p.is_file()), None)
            if path is None:
                raise Skip(f"no base map {folder / (stem + '_' + which)}.* ({', '.join(MAP_EXTENSIONS)})")
            found.append(read_base_map(path, kind, scale))
        return tuple(found)

    return from_dir, f"base maps from {folder} ({kind})"


def _colour(inverse_depth, lo, hi):
    import numpy as np  # noqa: PLC0415

    from tfdepth import viz  # noqa: PLC0415

    x = np.clip((np.asarray(inverse_depth, np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return viz.colorize_depth(1.0 / (0.05 + x), 1.0 / 1.05, 1.0 / 0.05)  # near (x = 1) bright, one fixed scale


def refined_files(stem, rgb, base_low, refined) -> dict:
    """``{file name: bytes}`` of the three outputs (module docstring), encoded in memory."""
    import numpy as np  # noqa: PLC0415

    from predict_io.outputs import to_uint8  # noqa: PLC0415
    from tfdepth import viz  # noqa: PLC0415
    from tfdepth.refine import resize_map  # noqa: PLC0415

    buffer = io.BytesIO()
    np.save(buffer, refined.astype(np.float32, copy=False))
    base = resize_map(base_low, refined.shape)
    lo, hi = float(base.min()), float(base.max())
    base = (base - lo) / (hi - lo) if hi > lo else np.zeros_like(base)
    panel = viz.make_panel([[to_uint8(rgb), _colour(base, 0.0, 1.0), _colour(refined, 0.0, 1.0)]], gap=4)
    return {f"{stem}_refined.npy": buffer.getvalue(),
            f"{stem}_refined16.png": viz.encode_png(np.round(refined * 65535.0).astype(np.uint16)),
            f"{stem}_refined_panel.png": viz.encode_png(panel)}


def refine_image(refiner, base, outputs, reporter, path: Path, args) -> None:
    """Refine one image file's base maps and write the outputs (Skip with the reason when it cannot)."""
    from predict_io.inputs import decode_image, photo_problem, read_header  # noqa: PLC0415

    header = read_header(path)
    if header.width * header.height > args.max_pixels:
        raise Skip(f"{header.width}x{header.height} is over the --max-pixels limit of {args.max_pixels / 1e6:.3g} MP")
    problem = photo_problem(header)
    if problem and not args.include_non_photos:
        raise Skip(f"{problem}; pass --include-non-photos to refine it anyway")
    rgb = decode_image(path, header)
    low, high = base(path.stem, rgb)
    refined = refiner.refine(low, high, mode=args.refine_mode, output_size=rgb.shape[:2])
    stem = outputs.allocate(path.stem, REFINED_NAMES)
    folder = outputs.ensure_dir()
    outputs.write_all(folder, refined_files(stem, rgb, low, refined))
    reporter.info(f"{path} -> {folder / stem}_refined.* ({args.refine_mode}; {rgb.shape[1]}x{rgb.shape[0]})")
