"""TFDS builder ``synthetic_scenes``: the procedural scene engine (``tfdepth.data.synthetic``) written to disk.

One example per scene: ``frames_per_scene`` consecutive frames of one seeded scene, with every ground truth
(specs/synthetic.md). Everything is rendered locally, nothing is downloaded, and the bytes depend only on the
config (preset, size, frames, scene counts, supersampling): splits draw their scenes from disjoint seed ranges
(``split_seeds``), so train, validation and test never share a scene.

Features (F frames of H x W):
  ``image``      Sequence(Image(uint8, PNG), length F) -> uint8 [F, H, W, 3]
  ``depth``      float32 [F, H, W], z-depth in metres, 0 = no surface (sky); zlib
  ``semantic``   uint8 [F, H, W], index into ``info.metadata["class_names"]``; zlib (without an encoding TFDS
                 stores integers as int64 protos, 8x larger)
  ``instance``   int32 [F, H, W], 0 = none; zlib
  ``intrinsics`` float32 [3, 3] (pixels); ``poses`` float64 [F, 4, 4] (``T_world_from_cam``; zlib, as TFDS
                 would otherwise store float64 as float32); ``seed`` int64

Predefined configs (``synthetic_scenes/<name>``): ``street`` (192x640, the KITTI training size), ``street_96x320``
(the CPU default), ``room`` (240x320) and ``room_120x160``. ``room`` is not the NYU 480x640: a 480x640 frame costs
2.4x the pixels of a 192x640 one to render, encode and train on, while NYU-style models usually train at about
half resolution (e.g. 228x304 crops); 240x320 is exactly half of 480x640, keeps the 4:3 aspect and fx = 0.9 W.
Every predefined config has 600 / 40 / 40 scenes of 5 frames (3000 training frames, 1800 training triplets).
Custom sizes: ``make_config(preset, height, width, frames_per_scene=5, num_scenes=...)``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import dataclasses
import functools
import itertools
import multiprocessing
import os
import sys
import warnings
from collections.abc import Mapping

import cv2
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfdepth.data.tfds_prepare import prepare_once
from tfdepth.data.video import scene_element

SPLITS = ("train", "validation", "test")
_DEFAULT_NUM_SCENES = {"train": 600, "validation": 40, "test": 40}
_DEFAULT_SUPERSAMPLE = 2


@dataclasses.dataclass(eq=False)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """One dataset variant: preset, frame size, frames per scene, scenes per split and supersampling."""

    preset: str = "street"
    height: int = 192
    width: int = 640
    frames_per_scene: int = 5
    num_scenes: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_NUM_SCENES))
    supersample: int = _DEFAULT_SUPERSAMPLE

    def __post_init__(self):
        from tfdepth.data.synthetic import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}.")
        for name in ("height", "width", "frames_per_scene", "supersample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if self.frames_per_scene < 3:
            raise ValueError(
                f"frames_per_scene must be >= 3 (a video triplet needs frames t-1, t, t+1), got "
                f"{self.frames_per_scene}."
            )
        unknown = set(self.num_scenes) - set(SPLITS)
        if unknown:
            raise ValueError(f"num_scenes has unknown splits {sorted(unknown)}; allowed: {SPLITS}.")
        for split, n in self.num_scenes.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"num_scenes[{split!r}] must be an int >= 0, got {n!r}.")
        if not any(self.num_scenes.values()):
            raise ValueError("num_scenes must ask for at least one scene in some split.")
        # Own copy: a caller mutating its dict later must not change a config (and the dataset it names).
        self.num_scenes = dict(self.num_scenes)


def _named_config(name, preset, height, width, description):
    return SyntheticScenesConfig(
        name=name, preset=preset, height=height, width=width, description=description,
    )


_PREDEFINED = [
    _named_config("street", "street", 192, 640, "KITTI-like street scenes at 192x640 (Monodepth2's size)."),
    _named_config("street_96x320", "street", 96, 320, "Street scenes at 96x320 (CPU training default)."),
    _named_config("room", "room", 240, 320, "NYU-like rooms at 240x320 (half of 480x640; see module doc)."),
    _named_config("room_120x160", "room", 120, 160, "Rooms at 120x160 (CPU training size)."),
]


def make_config(preset, height, width, frames_per_scene=5, num_scenes=None, supersample=_DEFAULT_SUPERSAMPLE):
    """A custom ``SyntheticScenesConfig``; its name encodes every parameter, so distinct configs never collide.

    ``num_scenes``: an int (scenes in every split), a mapping ``{split: count}`` (missing splits get 0) or None
    for the default 600 / 40 / 40.
    """
    if num_scenes is None:
        counts = dict(_DEFAULT_NUM_SCENES)
    elif isinstance(num_scenes, Mapping):
        counts = {split: num_scenes.get(split, 0) for split in SPLITS}
        unknown = set(num_scenes) - set(SPLITS)
        if unknown:
            raise ValueError(f"num_scenes has unknown splits {sorted(unknown)}; allowed: {SPLITS}.")
    elif isinstance(num_scenes, int) and not isinstance(num_scenes, bool):
        counts = {split: num_scenes for split in SPLITS}
    else:
        raise TypeError(f"num_scenes must be an int, a {{split: count}} mapping or None, got {num_scenes!r}.")
    name = f"{preset}_{height}x{width}_f{frames_per_scene}_n{counts['train']}_{counts['validation']}_{counts['test']}"
    if supersample != _DEFAULT_SUPERSAMPLE:
        name += f"_ss{supersample}"
    return SyntheticScenesConfig(
        name=name, preset=preset, height=height, width=width, frames_per_scene=frames_per_scene,
        num_scenes=counts, supersample=supersample,
        description=f"Custom synthetic {preset} scenes at {height}x{width}.",
    )


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
    """Procedurally rendered video scenes with exact depth, pose, intrinsics, semantics and instances."""

    # Bump whenever the engine's output changes: a dataset built by an older engine is otherwise reused silently.
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Street roads get metre-scale asphalt wear (photometric signal at grazing angles).",
    }
    BUILDER_CONFIGS = _PREDEFINED

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 locates a builder's file through `importlib_resources` (a package it does not install) for
        # builders living in a regular package: download_and_prepare dies with ModuleNotFoundError. Our file is
        # the answer it looks for.
        return epath.Path(__file__)

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        """``num_workers``: processes that render scenes while the main process encodes and writes them
        (None: ``min(2, cpu_count)``; 1: render in the main process). The output does not depend on it. Worker
        processes are spawned: a calling script needs the usual ``if __name__ == "__main__":`` guard (without
        it the build falls back to one process with a warning)."""
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                        or num_workers < 1):
            raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}.")
        self._num_workers = num_workers
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        from tfdepth.data.synthetic import CLASS_NAMES, FOREGROUND_CLASS_IDS

        c = self.builder_config
        f, h, w = c.frames_per_scene, c.height, c.width
        zlib = tfds.features.Encoding.ZLIB
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Sequence(
                tfds.features.Image(shape=(h, w, 3), dtype=np.uint8, encoding_format="png"), length=f
            ),
            "depth": tfds.features.Tensor(shape=(f, h, w), dtype=np.float32, encoding=zlib),
            "semantic": tfds.features.Tensor(shape=(f, h, w), dtype=np.uint8, encoding=zlib),
            "instance": tfds.features.Tensor(shape=(f, h, w), dtype=np.int32, encoding=zlib),
            "intrinsics": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
            # Bytes-encoded: unencoded floats become a float32 proto list and float64 poses would lose precision.
            "poses": tfds.features.Tensor(shape=(f, 4, 4), dtype=np.float64, encoding=zlib),
            "seed": tfds.features.Scalar(dtype=np.int64),
        })
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=features,
            metadata=tfds.core.MetadataDict(
                class_names=list(CLASS_NAMES),
                foreground_class_ids=[int(i) for i in FOREGROUND_CLASS_IDS],
                preset=c.preset,
                supersample=c.supersample,
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is rendered locally
        return {
            split: self._generate_examples(split)
            for split in SPLITS
            if self.builder_config.num_scenes.get(split, 0) > 0
        }

    def _generate_examples(self, split):
        from tfdepth.data.synthetic import split_seeds

        seeds = split_seeds(split, self.builder_config.num_scenes[split])
        for seed, scene in _render_scenes(self.builder_config, seeds, self._num_workers):
            yield seed, _example(scene, seed)


def _encode_png(rgb: np.ndarray) -> bytes:
    # OpenCV's PNG writer at zlib level 3 is about 4x faster than TFDS's tf.io.encode_png path (9 vs 37 ms per
    # 192x640 frame, measured) for files about 12 % larger; TFDS stores the bytes as given. PNG is lossless.
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a frame as PNG")
    return buf.tobytes()


def _example(scene: dict, seed: int) -> dict:
    example = scene_element(scene, seed)
    example["image"] = [_encode_png(frame) for frame in example["image"]]
    return example


def _default_workers() -> int:
    # Measured (street 192x640, 40 scenes x 5 frames, machine shared with other jobs): 10.7 s with 1 process,
    # 6.6-7.1 s with 2 render workers while the main process encodes and writes.
    return max(1, min(2, os.cpu_count() or 1))


def _render_scenes(config: SyntheticScenesConfig, seeds, num_workers):
    """Yields ``(seed, render_sequence output)`` in seed order, rendering in worker processes when useful."""
    from tfdepth.data.synthetic import render_sequence

    render = functools.partial(
        render_sequence, config.preset, num_frames=config.frames_per_scene, height=config.height,
        width=config.width, supersample=config.supersample,
    )
    seeds = list(seeds)
    workers = min(num_workers or _default_workers(), len(seeds))
    if workers > 1 and _main_is_importable():
        try:
            yield from _render_parallel(render, seeds, workers)
            return
        except _BrokenPool as err:
            # Typically a script without an `if __name__ == "__main__":` guard (spawned workers re-run it) or a
            # main module read from stdin. The scenes not yielded yet are rendered here instead.
            warnings.warn(
                f"synthetic_scenes: render workers failed ({err}); rendering the remaining scenes in this process. "
                "Put the calling code under `if __name__ == \"__main__\":` or pass num_workers=1.",
                RuntimeWarning, stacklevel=2,
            )
            seeds = err.remaining_seeds
            _spawn_failed_for.add(_main_path())  # don't try again (and fail again) for the next split
    for seed in seeds:
        yield seed, render(seed)


_spawn_failed_for: set = set()


def _main_path():
    return getattr(sys.modules.get("__main__"), "__file__", None)


def _main_is_importable() -> bool:
    # Spawned workers re-import the caller's main file; a main module read from stdin has no file to import.
    path = _main_path()
    return path not in _spawn_failed_for and (path is None or os.path.exists(path))


class _BrokenPool(Exception):
    def __init__(self, err, remaining_seeds):
        super().__init__(f"{type(err).__name__}: {err}")
        self.remaining_seeds = remaining_seeds


def _render_parallel(render, seeds, workers):
    # "spawn": the parent runs TensorFlow's thread pools and forking it is unsafe; children import only the numpy
    # engine. Results are consumed in seed order (output independent of the worker count) and at most
    # 2 x workers scenes are in flight, so memory stays bounded however slow the writer is. A dead worker raises
    # BrokenProcessPool (multiprocessing.Pool would respawn it forever).
    window = 2 * workers
    index = 0
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = collections.deque(pool.submit(render, s) for s in seeds[:window])
            for index, seed in enumerate(seeds):
                scene = futures.popleft().result()
                if index + window < len(seeds):
                    futures.append(pool.submit(render, seeds[index + window]))
                yield seed, scene
    except concurrent.futures.process.BrokenProcessPool as err:
        raise _BrokenPool(err, seeds[index:]) from err


def build_synthetic(config_name_or_config="street_96x320", data_dir=None, *, num_workers=None):
    """Prepare ``synthetic_scenes/<config>`` in ``data_dir`` if it is not built yet and return the builder.

    ``config_name_or_config``: a predefined config name (``"street"``, ``"synthetic_scenes/room"``...) or a
    ``SyntheticScenesConfig`` (e.g. from ``make_config``). ``data_dir`` defaults to TFDS's
    (``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``). Building never touches the network.
    """
    config = config_name_or_config
    if isinstance(config, str):
        name = config.split("/", 1)[1] if config.startswith("synthetic_scenes/") else config
        known = [c.name for c in _PREDEFINED]
        if name not in known:
            raise ValueError(
                f"Unknown synthetic_scenes config {config!r}; predefined: {known}. For another size use "
                "build_synthetic(make_config(preset, height, width, ...))."
            )
        config = name
    elif not isinstance(config, SyntheticScenesConfig):
        raise TypeError(
            f"config_name_or_config must be a config name or a SyntheticScenesConfig, got {type(config).__name__}."
        )
    builder = SyntheticScenes(config=config, data_dir=data_dir, num_workers=num_workers)
    prepare_once(builder, tfds.download.DownloadConfig(try_download_gcs=False))
    return builder
