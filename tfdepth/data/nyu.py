"""NYU Depth v2 from a local copy (nothing downloads): the labeled set as a TFDS builder, and raw Kinect frames.

**What to download and where to put it.** ``nyu_depth_v2_labeled.mat`` (2.8 GB, 1449 aligned RGB-D frames with
dense semantic labels) from the NYU Depth Dataset V2 page (Silberman et al., ECCV 2012; cs.nyu.edu, "Labeled
dataset"). Put it in a folder, the TFDS *manual dir* (default ``~/tensorflow_datasets/downloads/manual/``), then
build once::

    python -m tfdepth.data.nyu --manual-dir /path/to/folder_with_the_mat [--data-dir ~/tensorflow_datasets]

or from Python ``build_nyu(manual_dir=..., data_dir=...)``; afterwards ``nyu_frames("train")`` /
``nyu_frames("test")`` read it. The official split (795 train / 654 test frames, ``splits.mat``) and the class
mappings ship with tfdepth (:mod:`tfdepth.data.nyu_splits`): no other file is needed. The build reads the
``.mat`` (HDF5, MATLAB v7.3) with h5py and takes a few minutes (PNG-encoding 1449 frames).

**On-disk layout** (MATLAB v7.3 stores arrays column-major, so h5py sees the axes reversed): ``images``
``[N, 3, W, H]`` uint8, ``depths`` ``[N, W, H]`` float32 (metres, the in-painted dense depth of the labeled set:
every pixel valid), ``labels`` ``[N, W, H]`` uint16 (raw labels 0..894, 0 = unlabeled), N = 1449, H x W = 480 x
640. Each frame is transposed back to H x W (``[2, 1, 0]`` for images, ``[1, 0]`` for depth and labels), as the
RSN code does (spec rsn.md §1).

**Examples** (one per frame, split ``train`` or ``test``):
  ``image`` uint8 ``[480, 640, 3]`` RGB (PNG); ``depth`` float32 ``[480, 640]`` metres (zlib);
  ``semantic`` uint8 ``[480, 640]``: the standard 40-class labels (1..40, 0 = unlabeled; ``classMapping40``);
  ``semantic13`` uint8: the 13-class set (1..13, 0 = unlabeled); ``semantic_raw`` uint16: the raw labels (what
  the RSN code fed to Algorithm 1); ``index`` int32: the 1-based frame number in the ``.mat`` (the split files'
  numbering). :data:`NYU_RGB_INTRINSICS` is the colour camera's K from the NYU toolbox (``camera_params.m``,
  Bouguet calibration, whose pixel convention, upper-left pixel centre at (0, 0), is tfdepth's).

**Checks** (each a one-line error naming the file and, where it applies, the frame): the file exists and is an
HDF5 (v7.3) ``.mat``; it has ``images``, ``depths`` and ``labels``; every split index is inside the file; per
frame, labels have the depth's size and the depth has valid (> 0, finite) pixels.

Raw Kinect frames (:func:`read_nyu_raw_depth`, :func:`read_nyu_raw_color`): the raw dumps store the depth as
Kinect disparity in a 16-bit PGM whose bytes are little-endian (against the PGM spec, big-endian); metres =
351.3 / (1092.5 - raw), raw 2047 = no measurement (the NYU toolbox's ``depth_rel2depth_abs``). Raw frames are not
registered to the colour image (use them for decoding, not as aligned ground truth).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfdepth.data.nyu_splits import (CLASS_MAP_40_TO_13, CLASS_MAP_894_TO_40, CLASS_NAMES_13, CLASS_NAMES_40,
                                     TEST_INDICES, TRAIN_INDICES)
from tfdepth.data.tfds_prepare import prepare_once

__all__ = ["MAT_FILE_NAME", "NYU_RGB_INTRINSICS", "NyuDepthV2LabeledConfig", "NyuDepthV2Labeled", "build_nyu",
           "make_config", "nyu_frames", "read_labeled_frames", "map_labels_40", "map_labels_13",
           "read_nyu_raw_depth", "read_nyu_raw_color", "raw_to_metres", "main"]

MAT_FILE_NAME = "nyu_depth_v2_labeled.mat"
HEIGHT, WIDTH = 480, 640
REQUIRED_DATASETS = ("images", "depths", "labels")
# NYU toolbox camera_params.m: fx_rgb, fy_rgb, cx_rgb, cy_rgb (pixels of the 640x480 colour image).
NYU_RGB_INTRINSICS = np.array([[5.1885790117450188e02, 0.0, 3.2558244941119034e02],
                               [0.0, 5.1946961112127485e02, 2.5373616633400465e02],
                               [0.0, 0.0, 1.0]], dtype=np.float32)
# Kinect disparity -> metres (NYU toolbox depth_rel2depth_abs); 2047 = no return.
_RAW_NUMERATOR, _RAW_OFFSET, _RAW_INVALID = 351.3, 1092.5, 2047

_LUT_40 = np.array((0,) + tuple(CLASS_MAP_894_TO_40), dtype=np.uint8)  # raw label -> 40-class id, 0 -> 0
_LUT_13 = np.array((0,) + tuple(CLASS_MAP_40_TO_13), dtype=np.uint8)  # 40-class id -> 13-class id, 0 -> 0


# ----------------------------------------------------------------------------------------------- label maps
def map_labels_40(raw, where="labels"):
    """Raw NYU labels (0..894, 0 = unlabeled) -> the 40-class ids (0..40) of ``classMapping40``; uint8."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() >= _LUT_40.size):
        raise ValueError(f"{where}: raw NYU labels must lie in 0..{_LUT_40.size - 1}, got {raw.min()}..{raw.max()}.")
    return _LUT_40[raw.astype(np.int64)]


def map_labels_13(labels40, where="labels"):
    """40-class ids (0..40) -> the 13-class ids (0..13); uint8."""
    labels40 = np.asarray(labels40)
    if labels40.size and (labels40.min() < 0 or labels40.max() > 40):
        raise ValueError(f"{where}: 40-class labels must lie in 0..40, got {labels40.min()}..{labels40.max()}.")
    return _LUT_13[labels40.astype(np.int64)]


# ----------------------------------------------------------------------------------------------- the .mat
def _open_mat(path):
    import h5py  # noqa: PLC0415 (only the NYU reader needs it)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NYU labeled file {path} does not exist: download {MAT_FILE_NAME} (NYU Depth V2, "
                                "'Labeled dataset') and put it in the manual dir (see tfdepth.data.nyu).")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not an HDF5 file (MATLAB v7.3 .mat) as {MAT_FILE_NAME} is; re-download it "
                         f"({err}).") from None
    missing = [name for name in REQUIRED_DATASETS if name not in handle]
    if missing:
        found = sorted(handle.keys())
        handle.close()
        raise ValueError(f"{path} has no dataset {', '.join(repr(m) for m in missing)} (found {found}); it is not "
                         f"the NYU Depth V2 labeled file {MAT_FILE_NAME}.")
    return handle


def _check_layout(handle, path):
    images, depths, labels = (handle[k] for k in REQUIRED_DATASETS)
    n = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{path}: `images` has shape {images.shape}; expected [N, 3, W, H] (MATLAB v7.3 layout).")
    if depths.ndim != 3 or labels.ndim != 3 or depths.shape[0] != n or labels.shape[0] != n:
        raise ValueError(f"{path}: `depths` {depths.shape} and `labels` {labels.shape} must be [N, W, H] with the "
                         f"N = {n} frames of `images` {images.shape}.")
    return n


def read_labeled_frames(path, indices):
    """Yield one dict per 1-based frame index of ``indices`` from the labeled ``.mat`` at ``path``.

    Keys: ``index`` (int), ``image`` uint8 [H, W, 3], ``depth`` float32 [H, W] metres, ``semantic_raw`` uint16,
    ``semantic`` uint8 (40 classes), ``semantic13`` uint8. Errors (module docstring) name the file and the frame.
    """
    handle = _open_mat(path)
    try:
        n = _check_layout(handle, path)
        indices = [int(i) for i in indices]
        outside = [i for i in indices if not 1 <= i <= n]
        if outside:
            raise ValueError(f"{path}: split index {outside[0]} (1-based) is outside the file, which holds {n} "
                             f"frames ({len(outside)} indices outside); the official split needs all "
                             f"{len(TRAIN_INDICES) + len(TEST_INDICES)} frames of {MAT_FILE_NAME}.")
        images, depths, labels = (handle[k] for k in REQUIRED_DATASETS)
        for index in indices:
            where = f"{path}, frame {index}"
            i = index - 1
            image = np.ascontiguousarray(np.asarray(images[i]).transpose(2, 1, 0))
            depth = np.ascontiguousarray(np.asarray(depths[i], dtype=np.float32).T)
            raw = np.ascontiguousarray(np.asarray(labels[i]).T)
            if image.dtype != np.uint8:
                raise ValueError(f"{where}: `images` must be uint8 RGB, got {image.dtype}.")
            if raw.shape != depth.shape:
                raise ValueError(f"{where}: labels have size {raw.shape} but the depth has size {depth.shape}.")
            if image.shape[:2] != depth.shape:
                raise ValueError(f"{where}: the image has size {image.shape[:2]} but the depth has size "
                                 f"{depth.shape}.")
            valid = np.isfinite(depth) & (depth > 0)
            if not valid.any():
                raise ValueError(f"{where}: the depth has no valid pixel (all <= 0 or not finite); the labeled set's "
                                 "depth is dense, so the file is damaged: re-download it.")
            labels40 = map_labels_40(raw, where)
            yield {"index": index, "image": image, "depth": depth, "semantic_raw": raw.astype(np.uint16),
                   "semantic": labels40, "semantic13": map_labels_13(labels40, where)}
    finally:
        handle.close()


# ----------------------------------------------------------------------------------------------- TFDS builder
@dataclasses.dataclass(eq=False)
class NyuDepthV2LabeledConfig(tfds.core.BuilderConfig):
    """Which ``.mat`` in the manual dir, its frame size and the 1-based frames of each split (default official)."""

    file_name: str = MAT_FILE_NAME
    height: int = HEIGHT
    width: int = WIDTH
    train_indices: tuple = TRAIN_INDICES
    test_indices: tuple = TEST_INDICES

    def __post_init__(self):
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        self.train_indices = tuple(int(i) for i in self.train_indices)
        self.test_indices = tuple(int(i) for i in self.test_indices)
        overlap = set(self.train_indices) & set(self.test_indices)
        if overlap:
            raise ValueError(f"train and test share frames {sorted(overlap)[:5]}; the splits must be disjoint.")
        if min(self.train_indices + self.test_indices, default=1) < 1:
            raise ValueError("split indices are 1-based frame numbers (>= 1), as splits.mat's trainNdxs/testNdxs.")


def make_config(name, train_indices, test_indices, file_name=MAT_FILE_NAME, height=HEIGHT, width=WIDTH):
    """A custom config (other frames, another file or size, e.g. a small test file); ``name`` must be unique."""
    return NyuDepthV2LabeledConfig(name=name, file_name=file_name, height=height, width=width,
                                   train_indices=tuple(train_indices), test_indices=tuple(test_indices),
                                   description=f"NYU Depth V2 labeled frames from {file_name}, custom split.")


class NyuDepthV2Labeled(tfds.core.GeneratorBasedBuilder):
    """NYU Depth V2 labeled set (1449 frames): RGB, dense depth in metres, 40/13-class and raw labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: official 795/654 split, classMapping40 and the 13-class set."}
    BUILDER_CONFIGS = [NyuDepthV2LabeledConfig(name="official", description="The official 795 / 654 split.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {MAT_FILE_NAME} (NYU Depth Dataset V2, 'Labeled dataset', 2.8 GB) and place it in the manual "
        "dir (default ~/tensorflow_datasets/downloads/manual/). Nothing else is needed: the split and the class "
        "mappings ship with tfdepth."
    )

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 looks for a builder's file through importlib_resources (not installed) for builders living in
        # a package; this file is the answer (same fix as tfdepth.data.synthetic_scenes).
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        h, w = c.height, c.width
        zlib = tfds.features.Encoding.ZLIB
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8, encoding_format="png"),
                "depth": tfds.features.Tensor(shape=(h, w), dtype=np.float32, encoding=zlib),
                "semantic": tfds.features.Tensor(shape=(h, w), dtype=np.uint8, encoding=zlib),
                "semantic13": tfds.features.Tensor(shape=(h, w), dtype=np.uint8, encoding=zlib),
                "semantic_raw": tfds.features.Tensor(shape=(h, w), dtype=np.uint16, encoding=zlib),
                "index": tfds.features.Scalar(dtype=np.int32),
            }),
            metadata=tfds.core.MetadataDict(class_names_40=list(CLASS_NAMES_40), class_names_13=list(CLASS_NAMES_13),
                                            intrinsics=NYU_RGB_INTRINSICS.tolist()),
        )

    def _split_generators(self, dl_manager):
        try:
            manual = dl_manager.manual_dir
        except AssertionError:  # TFDS: manual dir not given, missing or empty
            given = getattr(dl_manager, "_manual_dir", None)
            raise FileNotFoundError(f"NYU manual dir {given} does not exist or is empty: put "
                                    f"{self.builder_config.file_name} (NYU Depth V2, 'Labeled dataset') in it and pass "
                                    "it as manual_dir (build_nyu(manual_dir=...)).") from None
        path = Path(os.fspath(manual)) / self.builder_config.file_name
        handle = _open_mat(path)  # fail here, before TFDS starts writing, on a missing file or dataset
        try:
            n = _check_layout(handle, path)
        finally:
            handle.close()
        splits = {"train": self.builder_config.train_indices, "test": self.builder_config.test_indices}
        for split, indices in splits.items():
            outside = [i for i in indices if i > n]
            if outside:
                raise ValueError(f"{path}: {split} split index {outside[0]} (1-based) is outside the file, which holds "
                                 f"{n} frames; the official split needs all 1449 frames of {MAT_FILE_NAME} (or use "
                                 "make_config with indices of this file).")
        return {split: self._generate_examples(path, indices) for split, indices in splits.items() if indices}

    def _generate_examples(self, path, indices):
        c = self.builder_config
        for frame in read_labeled_frames(path, indices):
            if frame["depth"].shape != (c.height, c.width):
                raise ValueError(f"{path}, frame {frame['index']}: size {frame['depth'].shape} differs from the "
                                 f"config's {c.height}x{c.width}.")
            yield int(frame["index"]), frame


def build_nyu(manual_dir=None, data_dir=None, config="official"):
    """Prepare ``nyu_depth_v2_labeled/<config>`` from ``manual_dir``/``nyu_depth_v2_labeled.mat`` if not built yet.

    ``manual_dir``: the folder holding the ``.mat`` (default TFDS's ``<data_dir>/downloads/manual``); ``data_dir``:
    where TFDS writes (default ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``). ``config``: ``"official"`` or a
    :func:`make_config` result. Never touches the network. Returns the prepared builder.
    """
    if not isinstance(config, (str, NyuDepthV2LabeledConfig)):
        raise TypeError(f"config must be 'official' or a NyuDepthV2LabeledConfig, got {type(config).__name__}.")
    builder = NyuDepthV2Labeled(config=config, data_dir=data_dir)
    if not builder.is_prepared():
        if manual_dir is None:
            manual_dir = Path(os.fspath(builder.data_dir_root)) / "downloads" / "manual"
        prepare_once(builder, tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir), try_download_gcs=False))
    return builder


def nyu_frames(split, builder=None, *, data_dir=None, shuffle=False, seed=0):
    """``tf.data`` of NYU frames as tfdepth dicts (unbatched; prepared dataset required, see :func:`build_nyu`).

    Elements: ``image`` float32 ``[480, 640, 3]`` in [0, 1]; ``depth`` float32 ``[480, 640, 1]`` metres;
    ``semantic``, ``semantic13`` int32 ``[480, 640, 1]``; ``semantic_raw`` int32 ``[480, 640, 1]``; ``intrinsics``
    float32 ``[3, 3]``; ``index`` int32 (1-based frame). Feed ``add_region_support(labels_key=...)``
    (``tfdepth.data.region_support``) for the RSN targets.
    """
    import tensorflow as tf  # noqa: PLC0415

    if split not in ("train", "test"):
        raise ValueError(f"NYU split must be 'train' or 'test' (the official split has no validation set), got "
                         f"{split!r}.")
    if builder is None:
        builder = NyuDepthV2Labeled(data_dir=data_dir)
        if not builder.is_prepared():
            raise FileNotFoundError(f"NYU is not built in {builder.data_dir_root}: run build_nyu(manual_dir=...) (or "
                                    "python -m tfdepth.data.nyu --manual-dir DIR) first.")
    ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=tfds.ReadConfig(shuffle_seed=seed))
    intrinsics = tf.constant(NYU_RGB_INTRINSICS)

    def convert(ex):
        return {
            "image": tf.cast(ex["image"], tf.float32) / 255.0,
            "depth": ex["depth"][..., None],
            "semantic": tf.cast(ex["semantic"], tf.int32)[..., None],
            "semantic13": tf.cast(ex["semantic13"], tf.int32)[..., None],
            "semantic_raw": tf.cast(ex["semantic_raw"], tf.int32)[..., None],
            "intrinsics": intrinsics,
            "index": ex["index"],
        }

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------- raw frames
def raw_to_metres(raw):
    """Kinect disparity (uint16) -> depth in metres, 0 where there is no measurement (raw >= 2047 or >= 1092.5)."""
    raw = np.asarray(raw).astype(np.float64)
    valid = (raw < _RAW_INVALID) & (raw < _RAW_OFFSET)
    depth = np.zeros(raw.shape, dtype=np.float64)
    depth[valid] = _RAW_NUMERATOR / (_RAW_OFFSET - raw[valid])
    return depth.astype(np.float32)


def _read_pnm(path, magic):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    data = path.read_bytes()
    tokens, pos = [], 0
    while len(tokens) < 4:  # magic, width, height, maxval; '#' comments allowed between tokens
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        if end == pos:
            raise ValueError(f"{path}: truncated PNM header.")
        tokens.append(data[pos:end])
        pos = end
    if tokens[0] != magic:
        raise ValueError(f"{path}: expected a {magic.decode()} file, found magic {tokens[0]!r}.")
    width, height, maxval = (int(t) for t in tokens[1:])
    return data[pos + 1:], width, height, maxval, path


def read_nyu_raw_depth(path):
    """A raw NYU Kinect depth frame (16-bit P5 PGM, little-endian bytes) -> float32 ``[H, W]`` metres, 0 = invalid."""
    payload, width, height, maxval, path = _read_pnm(path, b"P5")
    if maxval < 256:
        raise ValueError(f"{path}: an 8-bit PGM (maxval {maxval}); NYU raw depth is 16-bit (maxval 65535).")
    if len(payload) < 2 * width * height:
        raise ValueError(f"{path}: {len(payload)} bytes of pixels, expected {2 * width * height} for {width}x{height}.")
    raw = np.frombuffer(payload[:2 * width * height], dtype="<u2").reshape(height, width)
    return raw_to_metres(raw)


def read_nyu_raw_color(path):
    """A raw NYU colour frame (P6 PPM, 8-bit) -> uint8 ``[H, W, 3]`` RGB."""
    payload, width, height, maxval, path = _read_pnm(path, b"P6")
    if maxval != 255:
        raise ValueError(f"{path}: maxval {maxval}; expected an 8-bit PPM (255).")
    if len(payload) < 3 * width * height:
        raise ValueError(f"{path}: {len(payload)} bytes of pixels, expected {3 * width * height}.")
    return np.frombuffer(payload[:3 * width * height], dtype=np.uint8).reshape(height, width, 3).copy()


def main(argv=None):
    """CLI: ``python -m tfdepth.data.nyu --manual-dir DIR [--data-dir DIR]`` builds the official split."""
    parser = argparse.ArgumentParser(prog="python -m tfdepth.data.nyu", description=__doc__.split("\n")[0])
    parser.add_argument("--manual-dir", required=True, help=f"folder holding {MAT_FILE_NAME}")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    try:
        builder = build_nyu(manual_dir=args.manual_dir, data_dir=args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    print(f"built {builder.info.full_name} in {builder.data_dir}: {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
