"""NYU Depth v2 (tfdepth.data.nyu): the shipped official split and class mappings, the TFDS builder offline on a
fixture .mat written here in the true MATLAB v7.3 layout (HDF5 with the 512-byte MATLAB header, axes reversed),
each bad-input error, and the real raw NYU Kinect frame in ../shared/realdata (depth decodes to the metres its
SOURCE.txt states)."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import nyu_fixture_frames as frames
from conftest import write_nyu_mat as write_mat
from tfdepth.data import nyu
from tfdepth.data.nyu_splits import (CLASS_MAP_40_TO_13, CLASS_MAP_894_TO_40, CLASS_NAMES_13, CLASS_NAMES_40,
                                     TEST_INDICES, TRAIN_INDICES)

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "open3d_rgbd_samples_nyu_sun_tum"
H, W = 6, 8  # fixture frame size (the real file is 480 x 640)


def test_official_split_and_class_tables():
    assert len(TEST_INDICES) == 654 and len(TRAIN_INDICES) == 795
    assert sorted(TEST_INDICES + TRAIN_INDICES) == list(range(1, 1450))  # a partition of the 1449 frames
    assert list(TEST_INDICES) == sorted(TEST_INDICES)
    assert TEST_INDICES[:10] == (1, 2, 9, 14, 15, 16, 17, 18, 21, 28) and TEST_INDICES[-3:] == (1447, 1448, 1449)
    assert len(CLASS_MAP_894_TO_40) == 894 and set(CLASS_MAP_894_TO_40) == set(range(1, 41))
    assert len(CLASS_NAMES_40) == 40 and len(CLASS_MAP_40_TO_13) == 40 and set(CLASS_MAP_40_TO_13) == set(range(1, 14))
    # the two tables agree on the classes both name: each 40-class maps to the 13-class of the same name
    for name40, id13 in zip(CLASS_NAMES_40, CLASS_MAP_40_TO_13):
        if name40 in CLASS_NAMES_13:
            assert CLASS_NAMES_13[id13 - 1] == name40
    # raw labels with the same name as a 40-class (NYU's names: 21 wall, 11 floor, 157 bed, 4 ceiling, 5 chair)
    raw = np.array([0, 21, 11, 157, 4, 5])
    assert nyu.map_labels_40(raw).tolist() == [0] + [CLASS_NAMES_40.index(n) + 1 for n in
                                                      ("wall", "floor", "bed", "ceiling", "chair")]
    assert nyu.map_labels_13(nyu.map_labels_40(raw)).tolist() == [0] + [CLASS_NAMES_13.index(n) + 1 for n in
                                                                        ("wall", "floor", "bed", "ceiling", "chair")]
    with pytest.raises(ValueError, match="0..894"):
        nyu.map_labels_40(np.array([895]))


# ------------------------------------------------------------------------------------------ fixture .mat
def config(name, train=(1, 3, 5), test=(2, 4)):
    return nyu.make_config(name, train, test, height=H, width=W)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    manual = root / "manual"
    manual.mkdir()
    images, depths, labels = frames()
    write_mat(manual / nyu.MAT_FILE_NAME, images, depths, labels)
    builder = nyu.build_nyu(manual_dir=manual, data_dir=root / "tfds", config=config("fixture"))
    return builder, (images, depths, labels)


def test_builder_offline_on_fixture(built):
    builder, (images, depths, labels) = built
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "test": 2}
    got = {int(e["index"]): e for e in nyu.nyu_frames("train", builder).as_numpy_iterator()}
    got.update({int(e["index"]): e for e in nyu.nyu_frames("test", builder).as_numpy_iterator()})
    assert sorted(got) == [1, 2, 3, 4, 5]
    for index, e in got.items():
        i = index - 1
        np.testing.assert_array_equal(np.round(e["image"] * 255).astype(np.uint8), images[i])  # RGB, H x W
        np.testing.assert_array_equal(e["depth"][..., 0], depths[i])  # metres, bit-exact
        np.testing.assert_array_equal(e["semantic_raw"][..., 0], labels[i])
        np.testing.assert_array_equal(e["semantic"][..., 0], nyu.map_labels_40(labels[i]))
        np.testing.assert_array_equal(e["semantic13"][..., 0], nyu.map_labels_13(nyu.map_labels_40(labels[i])))
        assert e["image"].shape == (H, W, 3) and e["depth"].shape == (H, W, 1)
        np.testing.assert_allclose(e["intrinsics"], nyu.NYU_RGB_INTRINSICS)
    assert builder.info.metadata["class_names_40"][0] == "wall"


def test_transpose_mistake_would_be_caught(tmp_path):
    # An image stored without the MATLAB axis reversal (H and W swapped) is refused, not read scrambled.
    images, depths, labels = frames(2)
    path = tmp_path / "bad.mat"
    with h5py.File(path, "w") as f:
        f["images"] = images.transpose(0, 3, 1, 2)  # [N, 3, H, W]: the transpose forgotten
        f["depths"] = depths.transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    with pytest.raises(ValueError, match=r"frame 1: the image has size \(8, 6\) but the depth has size \(6, 8\)"):
        list(nyu.read_labeled_frames(path, [1]))


def test_bad_inputs_name_the_file_and_frame(tmp_path):
    images, depths, labels = frames(3)
    manual = tmp_path / "manual"
    manual.mkdir()
    mat = manual / nyu.MAT_FILE_NAME
    # a file without `depths`
    write_mat(mat, images, depths, labels, skip=("depths",))
    with pytest.raises(ValueError, match=rf"{mat}.* no dataset 'depths'"):
        nyu.build_nyu(manual_dir=manual, data_dir=tmp_path / "t1", config=config("no_depths", (1,), (2,)))
    write_mat(mat, images, depths, labels, skip=("labels",))
    with pytest.raises(ValueError, match="no dataset 'labels'"):
        list(nyu.read_labeled_frames(mat, [1]))
    # labels of another size than the depth
    write_mat(mat, images, depths, labels, label_hw=(5, 8))
    with pytest.raises(ValueError, match=rf"{mat}, frame 2: labels have size \(5, 8\) but the depth has size \(6, 8\)"):
        list(nyu.read_labeled_frames(mat, [2]))
    # a frame whose depth is all invalid
    bad = depths.copy()
    bad[1] = 0.0
    write_mat(mat, images, bad, labels)
    with pytest.raises(ValueError, match=rf"{mat}, frame 2: the depth has no valid pixel"):
        nyu.build_nyu(manual_dir=manual, data_dir=tmp_path / "t2", config=config("bad_depth", (1, 2), (3,)))
    # a split index outside the file; the official split on a 3-frame file
    write_mat(mat, images, depths, labels)
    with pytest.raises(ValueError, match=rf"{mat}: test split index 7 \(1-based\) is outside the file, which holds 3"):
        nyu.build_nyu(manual_dir=manual, data_dir=tmp_path / "t3", config=config("outside", (1,), (2, 7)))
    two = write_mat(tmp_path / "two.mat", images[:2], depths[:2], labels[:2])
    with pytest.raises(ValueError, match=rf"{two}: split index 3 \(1-based\) is outside the file, which holds 2"):
        list(nyu.read_labeled_frames(two, [1, 3]))
    # a failed build leaves no prepared dataset behind
    assert not nyu.NyuDepthV2Labeled(config=config("bad_depth", (1, 2), (3,)), data_dir=tmp_path / "t2").is_prepared()
    # no file, not an HDF5 file
    with pytest.raises(FileNotFoundError, match="does not exist: download nyu_depth_v2_labeled.mat"):
        list(nyu.read_labeled_frames(tmp_path / "missing.mat", [1]))
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        list(nyu.read_labeled_frames(tmp_path / "v5.mat", [1]))


def test_real_nyu_raw_frame_decodes_to_the_stated_metres():
    depth = nyu.read_nyu_raw_depth(REALDATA / "NYU_depth.pgm")
    color = nyu.read_nyu_raw_color(REALDATA / "NYU_color.ppm")
    assert depth.shape == (480, 640) and color.shape == (480, 640, 3) and color.dtype == np.uint8
    valid = depth > 0
    # SOURCE.txt: valid fraction 0.928, depth 1.39..6.69 m, median 3.27 m
    assert valid.mean() == pytest.approx(0.928, abs=0.0005)
    assert depth[valid].min() == pytest.approx(1.39, abs=0.005)
    assert depth[valid].max() == pytest.approx(6.69, abs=0.005)
    assert np.median(depth[valid]) == pytest.approx(3.27, abs=0.005)
    # reading the bytes big-endian (as the PGM spec says) would give nonsense: the byte order matters
    raw_be = np.frombuffer((REALDATA / "NYU_depth.pgm").read_bytes()[-480 * 640 * 2:], ">u2")
    assert raw_be.max() > 2047
