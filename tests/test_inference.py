"""tfdepth.inference (DepthPredictor on a run, a SavedModel and a .tflite; point clouds), the raw networks' input
errors and ``import tfdepth`` being enough for ``keras.saving.load_model`` (issue 10 items 5-6).

References are computed independently: the run-directory predictor against the raw depth network with Monodepth2's
``disp_to_depth`` written out in numpy, the exports against the Keras path, the point cloud against the pinhole
formula. The exports are made here with the minimal public TF APIs following the export contract (signature
``serving_float`` / ``serving_default`` with key ``image``, ``depth`` out), and once with ``tfdepth.export``.
"""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import load_config, save_config
from tfdepth.inference import DepthPredictor, as_image_batch, depth_to_points
from tfdepth.models import build_model
from tfdepth.models.inference_heads import DisparityToDepth

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 192
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with an untrained ResNet18 depth net at 64x192 (built, not trained) and its nets."""
    run_dir = tmp_path_factory.mktemp("run")
    config = load_config(None, [f"data.height={H}", f"data.width={W}", f"model.min_depth={MIN_DEPTH}",
                                f"model.max_depth={MAX_DEPTH}", "model.initial_depth=2.0"])
    nets = build_model(config.model)
    nets["depth"].save(run_dir / "depth_net.keras")
    save_config(config, run_dir / "config.yaml")
    return run_dir, nets


def _photo(h, w, seed=0):
    """A smooth uint8 test image (gradients + a bright block), so resizes are not dominated by noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 7.0 + y / 11.0)], -1) * 200
    img[h // 4:h // 2, w // 3:w // 2] = 250
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def _reference_depth(depth_net, image_uint8):
    """Monodepth2's inference written out: antialiased resize -> net -> disp_to_depth (A.3) -> bilinear resize of the
    scaled disparity to the input size -> 1 / disparity (A.8)."""
    x = tf.image.resize(image_uint8[None].astype(np.float32) / 255.0, [H, W], method="bilinear", antialias=True)
    sigmoid = depth_net(x, training=False)["disp_0"].numpy().astype(np.float64)
    scaled = 1.0 / MAX_DEPTH + (1.0 / MIN_DEPTH - 1.0 / MAX_DEPTH) * sigmoid
    up = tf.image.resize(scaled.astype(np.float32), image_uint8.shape[:2], method="bilinear").numpy()
    return 1.0 / up[0, ..., 0]


def test_run_predictor_matches_monodepth2_inference_for_every_input_form(run):
    run_dir, nets = run
    predictor = DepthPredictor.from_run_dir(run_dir)
    assert (predictor.backend, predictor.network_size, predictor.depth_kind, predictor.family) == (
        "keras", (H, W), "relative", "monodepth")
    image = _photo(50, 77)
    depth = predictor.predict(image)
    assert depth.shape == (50, 77) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, _reference_depth(nets["depth"], image), rtol=2e-5)
    assert MIN_DEPTH <= depth.min() and depth.max() <= MAX_DEPTH
    # The same photo as float [0, 1], as uint16, grey replicated, with alpha, and in a batch: the same depth.
    np.testing.assert_allclose(predictor.predict(image.astype(np.float32) / 255.0), depth, rtol=2e-5)
    np.testing.assert_allclose(predictor.predict(image.astype(np.uint16) * 257), depth, rtol=2e-5)
    np.testing.assert_allclose(predictor.predict(np.dstack([image, np.full((50, 77), 9, np.uint8)])), depth,
                               rtol=2e-5)
    grey = image[..., 1]
    np.testing.assert_allclose(predictor.predict(grey), predictor.predict(np.dstack([grey] * 3)), rtol=2e-5)
    # (Batches and frames at the network size: test_saved_model_and_tflite_backends_give_the_keras_numbers.)


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros((4, 5, 3), np.float32) + 2.0, "must be in \\[0, 1\\]"),
    (np.full((4, 5, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 5, 3), np.int32), "not an image type"),
    (np.zeros((4, 5, 2), np.uint8), "channels"),
    (np.zeros((1, 2, 4, 5, 3), np.uint8), "shape"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
])
def test_bad_images_are_one_clear_error(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        as_image_batch(bad)


def test_raw_networks_reject_uint8_wrong_channels_rank_and_size_with_the_fix(run):
    _, nets = run
    depth_net, pose_net = nets["depth"], nets["pose"]
    cases = [
        (np.zeros((1, H, W, 3), np.uint8), "float images in \\[0, 1\\], got dtype uint8: divide by 255"),
        (np.zeros((1, 235, 638, 3), np.float32), "height 235 is not a multiple of 32.*DepthPredictor"),
        (np.zeros((1, H, W, 4), np.float32), "RGB images \\[B, H, W, 3\\].*got 4 channels"),
        (np.zeros((H, W, 3), np.float32), "add the batch axis"),
    ]
    for x, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            depth_net(x)
        with pytest.raises(ValueError, match=fragment.replace("add the batch axis", "shape")):
            depth_net.predict(x, verbose=0)  # Keras' own path (batches the first axis) gives the same message
    out = depth_net(np.zeros((1, H, W, 3), np.float32))
    assert out["disp_0"].shape == (1, H, W, 1)
    with pytest.raises(ValueError, match="got dtype uint8"):
        pose_net(np.zeros((1, H, W, 6), np.uint8))
    with pytest.raises(ValueError, match="two RGB frames stacked.*got 3 channels"):
        pose_net(np.zeros((1, H, W, 3), np.float32))
    assert pose_net(np.zeros((1, H, W, 6), np.float32))["translation"].shape == (1, 1, 3)


def test_import_tfdepth_is_enough_to_load_saved_networks(run):
    """A fresh process: ``import tfdepth`` then ``keras.saving.load_model`` (it failed with "Could not locate class
    'DepthNet'" before); and the spawned render workers of the synthetic dataset still import no TensorFlow."""
    run_dir, _ = run
    script = f"""
import concurrent.futures, multiprocessing, sys
def child():
    import tfdepth.data.synthetic  # what a render worker imports to unpickle its job
    return "tensorflow" in sys.modules
if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        print("child_tf", pool.submit(child).result())
    import tfdepth, keras, numpy as np
    net = keras.saving.load_model({str(run_dir / 'depth_net.keras')!r})
    print("class", type(net).__name__, net(np.zeros((1, {H}, {W}, 3), np.float32))["disp_0"].shape)
"""
    path = run_dir / "fresh.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180,
                            cwd=str(ROOT), env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
                                                "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "child_tf False" in result.stdout
    assert f"class DepthNet (1, {H}, {W}, 1)" in result.stdout


# ------------------------------------------------------------------------------------------------ exports


def _small_inference_network(seed=3):
    """A small network with the inference contract (image [B,h,w,3] in [0,1] -> depth, disparity), for exports
    that must be fast to write; the ResNet path is covered above."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="elu")(image)
    x = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(image, DisparityToDepth(MIN_DEPTH, MAX_DEPTH, name="disp_to_depth")(x))


class _ServingModule(tf.Module):
    """The SavedModel contract with plain tf.Module + tf.function: any size in, depth at that size out."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def _depth(self, image):
        out = self.network(tf.image.resize(image, [H, W], method="bilinear", antialias=True), training=False)
        return {"depth": 1.0 / tf.image.resize(out["disparity"], tf.shape(image)[1:3], method="bilinear")}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image")])
    def serving_float(self, image):
        return self._depth(image)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def serving_default(self, image):
        out = self._depth(tf.cast(image, tf.float32) / 255.0)
        return {"depth": out["depth"][..., 0]}  # [B, H, W] without the channel axis: the predictor takes both


def _tflite_at_network_size(network, path):
    """TFLite at the fixed network size, converted from a SavedModel written by keras.export.ExportArchive
    (a tf.Module around a Keras 3 model converts with uninitialised variables: stack_notes.md)."""
    export_dir = path.with_suffix(".savedmodel")
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serving_float", lambda image: {k: v for k, v in network(image, training=False).items()},
                         input_signature=[tf.TensorSpec([1, H, W, 3], tf.float32, name="image")])
    archive.write_out(str(export_dir), verbose=False)
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(export_dir)).convert())
    return path


def test_saved_model_and_tflite_backends_give_the_keras_numbers(tmp_path):
    network = _small_inference_network()
    keras_path = DepthPredictor(network, H, W, depth_kind="relative")
    module = _ServingModule(network)
    saved = tmp_path / "depth" / "3"
    tf.saved_model.save(module, str(saved), signatures={"serving_float": module.serving_float,
                                                        "serving_default": module.serving_default})
    (tmp_path / "depth" / "1").mkdir()  # an older, empty version: the highest complete version is served
    (saved / "assets.extra").mkdir(exist_ok=True)
    (saved / "assets.extra" / "metadata.json").write_text(json.dumps(
        {"family": "monodepth", "depth_kind": "relative", "network_size": [H, W]}))
    tflite = _tflite_at_network_size(network, tmp_path / "depth.tflite")
    (tmp_path / "depth.json").write_text(json.dumps({"depth_kind": "relative", "network_size": [H, W]}))

    from_base = DepthPredictor.load(tmp_path / "depth")
    assert from_base.backend == "saved_model" and from_base.path == saved
    assert (from_base.depth_kind, from_base.network_size) == ("relative", (H, W))
    lite = DepthPredictor.load(tflite)
    assert (lite.backend, lite.network_size, lite.depth_kind) == ("tflite", (H, W), "relative")
    for shape in ((50, 77), (H, W), (130, 300)):
        image = _photo(*shape, seed=shape[0])
        expected = keras_path.predict(image)
        assert expected.shape == shape
        for predictor in (from_base, lite):
            np.testing.assert_allclose(predictor.predict(image), expected, rtol=1e-5)  # uint8: serving_default
            np.testing.assert_allclose(predictor.predict(image.astype(np.float32) / 255.0), expected, rtol=1e-5)
    batch = np.stack([_photo(40, 60, 1), _photo(40, 60, 2)])
    for predictor in (from_base, lite):
        np.testing.assert_allclose(predictor.predict_batch(batch), keras_path.predict_batch(batch), rtol=1e-5)


def test_load_picks_the_backend_and_names_what_is_wrong(tmp_path):
    run_dir = tmp_path / "run"  # a run whose depth net is a small functional model with DepthNet's disp_0 output
    run_dir.mkdir()
    image = keras.Input((None, None, 3), name="image")
    disp = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(image)
    keras.Model(image, {"disp_0": disp}).save(run_dir / "depth_net.keras")
    save_config(load_config(None, [f"data.height={H}", f"data.width={W}"]), run_dir / "config.yaml")
    predictor = DepthPredictor.load(run_dir / "depth_net.keras")  # a .keras inside its run: the run
    assert (predictor.backend, predictor.network_size) == ("keras", (H, W))
    lone = tmp_path / "lone.keras"
    lone.write_bytes((run_dir / "depth_net.keras").read_bytes())
    with pytest.raises(ValueError, match="does not say its input size"):
        DepthPredictor.load(lone)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DepthPredictor.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        DepthPredictor.load(tmp_path / "empty")
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ValueError, match="bad.tflite: not a loadable TFLite model"):
        DepthPredictor.load(tmp_path / "bad.tflite")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a model"):
        DepthPredictor.load(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        DepthPredictor.from_run_dir(tmp_path / "empty")


def test_exports_of_tfdepth_export_match_the_predictor(tmp_path):
    """The other side of the contract: tfdepth.export's SavedModel (with its metadata) and TFLite, read back here."""
    from tfdepth.export import InferenceGraph, ParityFrame, export_saved_model, export_tflite
    from tfdepth.inference import RunInfo

    network = _small_inference_network(seed=5)
    graph = InferenceGraph(network, H, W, "relative")
    info = RunInfo("monodepth", H, W, "relative", 32, None)
    frames = [ParityFrame("a", _photo(50, 77, 7))]
    target, _ = export_saved_model(graph, info, tmp_path / "depth", frames=frames)
    lite_path = tmp_path / "depth.tflite"
    export_tflite(graph, info, {"none": lite_path}, frames=frames)
    reference = DepthPredictor(network, H, W)
    saved, lite = DepthPredictor.load(tmp_path / "depth"), DepthPredictor.load(lite_path)
    assert saved.path == target and (saved.network_size, saved.depth_kind, saved.family) == ((H, W), "relative",
                                                                                            "monodepth")
    assert (lite.network_size, lite.depth_kind) == ((H, W), "relative")
    image = _photo(90, 120, 8)
    for predictor in (saved, lite):
        np.testing.assert_allclose(predictor.predict(image), reference.predict(image), rtol=1e-5)


# ------------------------------------------------------------------------------------------- point clouds


def test_depth_to_points_is_the_pinhole_back_projection_and_catches_axis_mistakes():
    rng = np.random.default_rng(0)
    h, w = 30, 50  # not square, principal point off-centre: swapped axes or a transposed K give other points
    depth = rng.uniform(1.0, 9.0, (h, w)).astype(np.float32)
    depth[3, 4] = 0.0
    depth[5, 6] = np.nan
    fx, fy, cx, cy = 40.0, 55.0, 21.3, 12.7
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def pinhole(stride):
        v, u = np.mgrid[0:h:stride, 0:w:stride]
        z = depth[::stride, ::stride]
        keep = np.isfinite(z) & (z > 0)
        pts = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], -1)[keep]
        return pts, image[::stride, ::stride][keep]

    points, colors, stride = depth_to_points(depth, K, image)
    expected, expected_colors = pinhole(1)
    assert stride == 1 and points.shape == (h * w - 2, 3)
    np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(colors, expected_colors)
    # Sampling every s-th pixel must keep each kept pixel's own ray (not the ray of its index in the small grid).
    points, colors, stride = depth_to_points(depth, K, image, max_points=400)
    assert stride == 2 and len(points) <= 400
    expected, expected_colors = pinhole(2)
    np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(colors, expected_colors)
    # The classic mistakes differ from the truth by far more than the tolerance above.
    v, u = np.mgrid[0:h, 0:w]
    keep = np.isfinite(depth) & (depth > 0)
    swapped = np.stack([(v - cx) * depth / fx, (u - cy) * depth / fy, depth], -1)[keep]
    no_inverse = np.stack([(u * fx + cx) * depth, (v * fy + cy) * depth, depth], -1)[keep]
    full, _, _ = depth_to_points(depth, K)
    for wrong in (swapped, no_inverse):
        assert np.abs(full - wrong).max() > 1.0
    with pytest.raises(ValueError, match="fx, fy > 0"):
        depth_to_points(depth, np.zeros((3, 3)))
