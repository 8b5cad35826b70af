"""tfdepth.export and ``python -m export``: inference graphs, SavedModel, TFLite, parity, on real images.

One untrained ResNet18 depth net at 64x192 (built, not trained: export parity does not need a good model, only the
same numbers) is exported once per format by module fixtures through the CLI, and the tests read what it wrote:

* SavedModel: TF Serving layout, metadata, parity on the two real images (the KITTI frame with its LiDAR ground
  truth), a fresh Python process that never imports tfdepth reproduces DepthPredictor, and every bad input at a
  signature (dtype, rank, channels, range, a decompression-bomb PNG, non-image and truncated bytes, mixed sizes)
  is refused with a message naming the signature and the fix;
* TFLite: all four variants converted in one CLI run, run with the ai_edge_litert interpreter by signature key, one
  XNNPACK partition each; a parity failure injected into one variant exits 1 with one line of numbers and leaves
  none of that variant's files, while the others are published.

The real images come from the project's shared folder beside the repository (``shared/realdata``).
"""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import export as export_cli  # noqa: E402
from tfdepth.config import load_config, save_config  # noqa: E402
from tfdepth.export import (  # noqa: E402
    THRESHOLDS,
    InferenceGraph,
    ParityError,
    ParityFrame,
    TFLiteModel,
    compare,
    graph_from_run,
    resize_matrix,
    to_export_size,
    version_dir,
)
from tfdepth.export.parity import check  # noqa: E402
from tfdepth.inference import DepthPredictor  # noqa: E402
from tfdepth.models import build_model  # noqa: E402

REAL = ROOT.parent / "shared" / "realdata"
TEST_IMAGE = REAL / "monodepth2_test_image" / "test_image.jpg"
KITTI_IMAGE = REAL / "kitti_object_000008_mmdet3d" / "000008_image_2.png"
KITTI_DEPTH = REAL / "kitti_object_000008_mmdet3d" / "000008_sparse_depth_DERIVED_uint16_x256.png"
H, W = 64, 192


def _require_real_data():
    for path in (TEST_IMAGE, KITTI_IMAGE, KITTI_DEPTH):
        if not path.is_file():
            raise FileNotFoundError(f"real sample {path} missing: these tests expect the project's shared/ folder "
                                    "beside the repository (shared/realdata, see its README.md)")


def _rgb(path):
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory: an untrained ResNet18 depth net at 64x192 and its config."""
    _require_real_data()
    run_dir = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    config = load_config(None, ["name=tiny", f"data.height={H}", f"data.width={W}", "model.initial_depth=2.0"])
    nets = build_model(config.model)
    nets["depth"].save(run_dir / "depth_net.keras")
    save_config(config, run_dir / "config.yaml")
    return run_dir


@pytest.fixture(scope="module")
def graph(run):
    return graph_from_run(run)[0]


@pytest.fixture(scope="module")
def predictor(run):
    return DepthPredictor.from_run_dir(run)


def _parity_args():
    return ["--parity-image", str(TEST_IMAGE), "--parity-image", str(KITTI_IMAGE), str(KITTI_DEPTH)]


@pytest.fixture(scope="module")
def saved_model(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sm")
    code = export_cli.main(["--run-dir", str(run), "--format", "saved_model", "--output", str(out)] + _parity_args())
    assert code == 0
    return out / "tiny" / "1"


@pytest.fixture(scope="module")
def loaded(saved_model):
    return tf.saved_model.load(str(saved_model))


@pytest.fixture(scope="module")
def tflite_run(run, tmp_path_factory):
    """All four variants in one CLI run; a parity failure is injected into 'dynamic' (its limit made impossible)."""
    out = tmp_path_factory.mktemp("tfl")
    reps = out / "representative"
    reps.mkdir()
    for i, path in enumerate((TEST_IMAGE, KITTI_IMAGE)):
        cv2.imwrite(str(reps / f"{i}.png"), cv2.imread(str(path)))
    argv = ["--run-dir", str(run), "--format", "tflite", "--quantize", "none", "float16", "dynamic", "int8",
            "--output", str(out / "models"), "--representative", str(reps)] + _parity_args()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(THRESHOLDS, "dynamic", ("delta_a1", -1.0))  # |delta_a1| <= -1 can never hold
        errors = []
        mp.setattr(sys, "stderr", _Capture(errors))
        code = export_cli.main(argv)
    return out / "models", code, "".join(errors)


class _Capture:
    def __init__(self, sink):
        self.sink = sink

    def write(self, text):
        self.sink.append(text)

    def flush(self):
        pass


# ----------------------------------------------------------------------------------------- the graph itself


def test_resize_matrix_is_tf_antialiased_resize(rng):
    x = rng.uniform(size=(1, 75, 124, 3)).astype(np.float32)
    for out_h, out_w in ((32, 96), (150, 200)):  # shrinking (antialias widens the kernel) and growing
        ref = tf.image.resize(x, [out_h, out_w], method="bilinear", antialias=True).numpy()
        rows = np.einsum("oh,bhwc->bowc", resize_matrix(75, out_h), x)
        got = np.einsum("pw,bowc->bopc", resize_matrix(124, out_w), rows)
        np.testing.assert_allclose(got, ref, atol=2e-6)
    m = resize_matrix(9, 3)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)  # an average: rows sum to one
    assert np.count_nonzero(m[0]) > 2  # antialiased: each output reads more than its 2 bilinear neighbours


def test_graph_equals_depth_predictor_on_a_real_image(predictor, graph):
    image = _rgb(KITTI_IMAGE)
    ours = graph.predict_uint8(image[None])["depth"].numpy()[0, ..., 0]
    ref = predictor.predict_batch(image[None])[0]
    assert ours.shape == image.shape[:2]
    np.testing.assert_allclose(ours, ref, rtol=2e-5)
    floats = graph.predict_float(image[None].astype(np.float32) / 255.0)["depth"].numpy()[0, ..., 0]
    np.testing.assert_array_equal(floats, ours)


def test_fixed_size_graph_matches_dynamic_graph_at_another_export_size(graph):
    """The TFLite graph at 80x240 (resize by constant matrices) gives the dynamic graph's numbers."""
    image = to_export_size(_rgb(KITTI_IMAGE), (80, 240))
    fn, specs = graph.fixed_functions(80, 240)["serving_default"]
    assert specs["image"].shape.as_list() == [1, 80, 240, 3]
    got = fn({"image": tf.constant(image[None])})
    ref = graph.predict_uint8(image[None])
    for key in ("depth", "disparity"):
        assert got[key].shape == (1, 80, 240, 1)
        np.testing.assert_allclose(got[key].numpy(), ref[key].numpy(), rtol=1e-5)
    same = graph.fixed_functions(H, W)["serving_float"][0]({"image": tf.zeros([1, H, W, 3])})["depth"]
    np.testing.assert_allclose(same.numpy(), graph.predict_float(tf.zeros([1, H, W, 3]))["depth"].numpy(), rtol=1e-6)


def test_extra_inputs_reach_the_network_at_the_network_size():
    """A family declaring extra_inputs (SDDR's base depth maps) gets them resized beside (or instead of) the image."""
    maps = keras.Input((None, None, 1), name="depth_low")
    image = keras.Input((None, None, 3), name="image")
    depth = keras.layers.Lambda(lambda t: t[0] + 0.0 * t[1][..., :1])([maps, image])
    net = keras.Model({"image": image, "depth_low": maps}, {"depth": depth})
    graph = InferenceGraph(net, 32, 64, "metric", extra_inputs=("depth_low",))
    assert graph.extra_inputs == {"depth_low": 1} and not graph.has_disparity
    base = np.full((1, 48, 100, 1), 7.0, np.float32)
    out = graph.predict_uint8(np.zeros((1, 48, 100, 3), np.uint8), depth_low=base)["depth"].numpy()
    np.testing.assert_allclose(out, base, rtol=1e-6)  # constant map survives both resizes
    fn, specs = graph.serving_functions()["serving_default"]
    assert set(specs) == {"image", "depth_low"}
    with pytest.raises(tf.errors.InvalidArgumentError, match="`depth_low` must be float32 .* width of `image`"):
        tf.function(fn)({"image": tf.zeros([1, 48, 100, 3], tf.uint8), "depth_low": tf.zeros([1, 40, 100, 1])})
    only_maps = keras.Model(maps, {"depth": maps * 2.0})  # a network without the image (SDDR's N_r)
    graph = InferenceGraph(only_maps, 32, 64, "metric", extra_inputs=("depth_low",))
    assert graph.network_inputs == "depth_low"
    out = graph.predict_uint8(np.zeros((1, 48, 100, 3), np.uint8), depth_low=base)["depth"].numpy()
    np.testing.assert_allclose(out, 2 * base, rtol=1e-6)
    other = keras.Input((None, None, 1), name="other")
    with pytest.raises(ValueError, match="neither 'image' nor declared extra_inputs"):
        InferenceGraph(keras.Model({"other": other, "depth_low": maps}, {"depth": maps}), 32, 64, "metric",
                       extra_inputs=("depth_low",))


# ----------------------------------------------------------------------------------------- parity definitions


def test_parity_definitions_on_worked_numbers():
    ref = [np.array([[1.0, 3.0], [5.0, 9.0]])]  # depth range 9 - 1 = 8
    cand = {"a": [ref[0] + np.array([[0.0, 0.0], [0.0, 0.0004]])],  # max diff 4e-4 = 5e-5 of the range
            "b": [ref[0] * np.array([[1.0, 1.0], [1.0, 1.3]])]}  # one pixel off by 1.3x: delta1 3/4
    frames = [ParityFrame("f", np.zeros((2, 2, 3), np.uint8))]
    report = compare(ref, cand, frames, variant="none")
    assert report["depth_range"] == 8.0
    a, b = report["signatures"]["a"], report["signatures"]["b"]
    assert a["max_abs_diff_rel"] == pytest.approx(5e-5) and a["mean_abs_diff"] == pytest.approx(1e-4)
    assert a["check"]["passed"] and not b["check"]["passed"] and not report["passed"]
    assert b["delta1_vs_reference"] == 0.75
    with pytest.raises(ParityError, match=r"^x failed its parity check, nothing was written: none: .*b: max "
                                          r"\|diff\| / depth range 0\.338 \(> limit 0\.0001"):
        check(report, "x")
    # int8 without ground truth: delta1 against the Keras depth >= 0.99; 'b' (0.75) fails.
    assert not compare(ref, {"b": cand["b"]}, frames, variant="int8")["passed"]
    assert compare(ref, {"a": cand["a"]}, frames, variant="int8")["passed"]


def test_parity_ground_truth_rule_uses_the_callers_protocol():
    gt = np.array([[2.0, 0.0], [4.0, 8.0]])  # 0 = no ground truth
    ref = [np.array([[2.0, 1.0], [4.0, 8.0]])]
    cand = {"s": [np.array([[2.0, 1.0], [4.0, 11.0]])]}  # the 8 m pixel predicted at 11: outside 1.25x
    frames = [ParityFrame("f", np.zeros((2, 2, 3), np.uint8), gt)]

    def errors_fn(gts, preds):  # an independent, hand-written delta1 / abs_rel over gt > 0
        g, p = gts[0][gts[0] > 0], preds[0][gts[0] > 0]
        return {"a1": float(np.mean(np.maximum(g / p, p / g) < 1.25)), "abs_rel": float(np.mean(np.abs(g - p) / g))}

    report = compare(ref, cand, frames, variant="int8", errors_fn=errors_fn)
    entry = report["signatures"]["s"]["ground_truth"]
    assert entry["reference"]["a1"] == 1.0 and entry["candidate"]["a1"] == pytest.approx(2 / 3)
    assert entry["delta_a1"] == pytest.approx(-1 / 3) and not report["passed"]
    assert entry["delta_abs_rel"] == pytest.approx((3 / 8) / 3)
    with pytest.raises(ValueError, match="errors_fn"):
        compare(ref, cand, frames, variant="int8")


def test_version_directories_are_never_reused(tmp_path):
    assert version_dir(tmp_path / "m") == tmp_path / "m" / "1"
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "7").mkdir()
    (tmp_path / "m" / ".7.export-abc").mkdir()  # an export in progress is not a version
    assert version_dir(tmp_path / "m") == tmp_path / "m" / "8"
    assert version_dir(tmp_path / "m", 3) == tmp_path / "m" / "3"
    with pytest.raises(FileExistsError, match="version 7 already exists .* next one \\(8\\)"):
        version_dir(tmp_path / "m", 7)


# ----------------------------------------------------------------------------------------- SavedModel


def test_saved_model_layout_metadata_and_parity(saved_model):
    assert (saved_model / "saved_model.pb").is_file() and (saved_model / "variables").is_dir()
    assert not [p for p in saved_model.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    meta = json.loads((saved_model / "assets.extra" / "metadata.json").read_text())
    assert meta["family"] == "monodepth" and meta["depth_kind"] == "relative" and meta["network_size"] == [H, W]
    assert all(word in meta["depth_scaling"] for word in ("median scaling", "5.4", "1.65"))
    assert set(meta["signatures"]) == {"serving_default", "serving_float", "serving_bytes"}
    assert meta["signatures"]["serving_default"]["inputs"]["image"]["dtype"] == "uint8"
    assert "relative" in meta["signatures"]["serving_default"]["outputs"]["depth"]
    report = json.loads((saved_model / "assets.extra" / "parity.json").read_text())
    assert report["passed"] and [f["ground_truth"] for f in report["frames"]] == [False, True]
    for name, entry in report["signatures"].items():
        assert entry["max_abs_diff_rel"] <= 1e-4, name
        assert entry["ground_truth"]["delta_a1"] == 0.0, name
    print("SavedModel parity:", report["summary"])


def test_saved_model_in_a_fresh_process_without_tfdepth(saved_model, predictor, tmp_path):
    image = _rgb(KITTI_IMAGE)
    np.save(tmp_path / "image.npy", image)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "image = np.load(sys.argv[2])\n"
        "a = m.signatures['serving_default'](image=tf.constant(image[None]))['depth'].numpy()\n"
        "b = m.signatures['serving_bytes'](image_bytes=tf.constant(open(sys.argv[3], 'rb').read()))['depth'].numpy()\n"
        "assert 'tfdepth' not in sys.modules, 'loading the export imported tfdepth'\n"
        "np.savez(sys.argv[4], a=a, b=b)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script, str(saved_model), str(tmp_path / "image.npy"),
                             str(KITTI_IMAGE), str(tmp_path / "out.npz")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    ref = predictor.predict_batch(image[None])[0]
    for key in ("a", "b"):  # the uint8 tensor and the PNG file's bytes give the same depth
        got = out[key][0, ..., 0]
        diff = np.abs(got - ref).max()
        print(f"fresh-process SavedModel ({key}) vs DepthPredictor: max abs diff {diff:.3g} (depth range "
              f"{ref.max() - ref.min():.3g})")
        assert diff <= 1e-4 * (ref.max() - ref.min())


def _bomb_png(width, height):
    """A valid-looking PNG header claiming width x height, with a tiny body: a decompression bomb's front."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("signature, inputs, pattern", [
    ("serving_default", {"image": tf.zeros([1, 20, 30, 3], tf.float32)}, "expected to be a uint8 tensor"),
    ("serving_default", {"image": tf.zeros([20, 30, 3], tf.uint8)}, "serving_default: input `image` must be uint8 "
     r"\[batch, height, width, 3\]; it has a different rank .*image\[None\]"),
    ("serving_default", {"image": tf.zeros([1, 20, 30, 4], tf.uint8)}, "wrong number of channels .*drop alpha"),
    ("serving_default", {"image": tf.zeros([1, 0, 30, 3], tf.uint8)}, "it is empty"),
    ("serving_float", {"image": tf.fill([1, 20, 30, 3], 255.0)}, r"must hold values in \[0, 1\].*serving_default"),
    ("serving_bytes", {"image_bytes": tf.constant([_bomb_png(100_000, 100_000)])},
     "more than the limit of 16777216 pixels .*before decoding.*--max-pixels"),
    ("serving_bytes", {"image_bytes": tf.constant([_bomb_png(2**31 - 1, 2**31 - 1)] * 3)},  # 1.4e19 > int64 max
     "more than the limit of 16777216 pixels"),
    ("serving_bytes", {"image_bytes": tf.constant(b"GIF89a not a png or jpeg")}, "not a PNG or JPEG file"),
    ("serving_bytes", {"image_bytes": tf.constant([b""])}, "not a PNG or JPEG file"),
    ("serving_bytes", {"image_bytes": tf.constant([[b"x"]])}, "must be a string or a 1-D batch"),
    ("serving_bytes", {"image_bytes": tf.constant([_bomb_png(40, 30)[:20]])}, "damaged: no IHDR"),
], ids=["dtype", "rank", "rgba", "empty", "float-range", "bomb", "int64-overflow", "gif", "empty-bytes",
        "rank2-bytes", "cut-ihdr"])
def test_bad_input_at_a_signature_is_refused_by_name(loaded, signature, inputs, pattern):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        loaded.signatures[signature](**inputs)


def test_bytes_signature_decodes_png_and_jpeg_and_refuses_damaged_files(loaded, graph):
    image = _rgb(TEST_IMAGE)[:96, :160]
    png = tf.io.encode_png(image)
    out = loaded.signatures["serving_bytes"](image_bytes=tf.stack([png, png]))["depth"]  # a batch of two
    ref = graph.predict_uint8(np.stack([image, image]))["depth"].numpy()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5)
    jpeg = cv2.imencode(".jpg", image[..., ::-1])[1].tobytes()
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # as a Python client decodes
    got = loaded.signatures["serving_bytes"](image_bytes=tf.constant(jpeg))["depth"]  # a scalar string
    np.testing.assert_allclose(got.numpy(), graph.predict_uint8(decoded[None])["depth"].numpy(), rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant(jpeg[: len(jpeg) * 9 // 10]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant(png.numpy()[:-40]))
    other = tf.io.encode_png(image[:64])
    with pytest.raises(tf.errors.InvalidArgumentError, match="must all have the same height and width"):
        loaded.signatures["serving_bytes"](image_bytes=tf.stack([png, other]))


def test_cli_refuses_an_existing_version_and_bad_arguments(saved_model, run, capsys):
    base = ["--run-dir", str(run), "--output", str(saved_model.parent.parent)]
    assert export_cli.main(base + ["--format", "saved_model", "--version", "1"] + _parity_args()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "version 1 already exists" in err and "../shared" not in err
    assert export_cli.main(base + ["--format", "saved_model", "--quantize", "int8"]) == 2
    assert "--quantize applies to --format tflite" in capsys.readouterr().err
    assert export_cli.main(["--run-dir", str(run / "nope"), "--format", "tflite", "--output", "x.tflite"]) == 2
    assert "config.yaml not found" in capsys.readouterr().err


def test_folded_bf16_saved_model_holds_one_copy_of_the_weights_and_passes_parity(run, predictor, tmp_path, capsys):
    """``--fold bfloat16``: the three signatures share one folded graph (bf16 constants, no variables), held to
    the reduced-precision parity rule, and agree with the Keras predictor."""
    argv = ["--run-dir", str(run), "--format", "saved_model", "--output", str(tmp_path), "--fold", "bfloat16"]
    assert export_cli.main(argv + _parity_args()) == 0
    assert "folded bfloat16" in capsys.readouterr().out
    path = tmp_path / "tiny" / "1"
    meta = json.loads((path / "assets.extra" / "metadata.json").read_text())
    report = json.loads((path / "assets.extra" / "parity.json").read_text())
    assert meta["folded"] == "bfloat16" and report["variant"] == "saved_model_bf16"
    weights_bytes = 2 * build_model(load_config(run / "config.yaml").model)["depth"].count_params()
    assert (path / "saved_model.pb").stat().st_size < 1.3 * weights_bytes  # once, not once per signature
    assert sum(p.stat().st_size for p in (path / "variables").glob("*.data*")) < 1024
    image = _rgb(TEST_IMAGE)
    depth = tf.saved_model.load(str(path)).signatures["serving_default"](image=tf.constant(image[None]))["depth"]
    reference = predictor.predict(image)
    ratio = np.maximum(depth.numpy()[0, ..., 0] / reference, reference / depth.numpy()[0, ..., 0])
    assert (ratio < 1.25).mean() > 0.99 and np.median(np.abs(ratio - 1)) < 0.02
    assert export_cli.main(["--run-dir", str(run), "--format", "tflite", "--fold", "bfloat16",
                            "--output", str(tmp_path / "x.tflite")]) == 2
    assert "--fold apply to --format saved_model" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- TFLite


def test_tflite_variants_parity_files_and_one_xnnpack_partition(tflite_run):
    models, code, err = tflite_run
    sizes = {}
    for tag, variant in (("float32", "none"), ("float16", "float16"), ("int8", "int8")):
        path = models / f"tiny_{tag}.tflite"
        meta = json.loads((models / f"tiny_{tag}.json").read_text())
        report = json.loads((models / f"tiny_{tag}.parity.json").read_text())
        assert report["passed"] and report["quantization"] == variant and meta["depth_kind"] == "relative"
        rule, limit = THRESHOLDS[variant]
        for name in ("serving_default", "serving_float"):
            entry = report["signatures"][name]
            value = entry["max_abs_diff_rel"] if rule == "max_abs_diff_rel" else abs(entry["ground_truth"]["delta_a1"])
            assert value <= limit, (variant, name, value)
        x = report["xnnpack"]
        assert x["compute_partitions"] == 1 and set(x["not_delegated"]) <= {"CAST"}, (variant, x)
        sizes[variant] = path.stat().st_size
        print(f"TFLite {tag}: {sizes[variant] / 1e6:.1f} MB, {report['summary']}")
    assert sizes["float16"] < 0.55 * sizes["none"] and sizes["int8"] < 0.3 * sizes["none"]


def test_tflite_injected_parity_failure_leaves_no_file(tflite_run):
    models, code, err = tflite_run
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "TFLite export (dynamic)" in lines[0] and "nothing was written" in lines[0], err
    assert not list(models.glob("tiny_dynamic_int8*")) and not list(models.glob(".*"))
    measured = float(lines[0].split("delta1 change on ground truth ")[1].split()[0])
    assert abs(measured) <= 0.01  # the real threshold holds; only the injected one failed


def test_tflite_runs_by_signature_key_at_the_export_size(tflite_run, graph):
    models, _, _ = tflite_run
    model = TFLiteModel(models / "tiny_float32.tflite")
    assert model.input_details("serving_default")["image"] == {"shape": (1, H, W, 3), "dtype": np.dtype(np.uint8)}
    frame = to_export_size(_rgb(KITTI_IMAGE), (H, W))
    out = model("serving_default", image=frame[None])
    assert set(out) == {"depth", "disparity"}
    np.testing.assert_allclose(out["depth"], 1.0 / out["disparity"], rtol=1e-6)
    ref = graph.predict_uint8(frame[None])["depth"].numpy()
    np.testing.assert_allclose(out["depth"], ref, rtol=1e-4)
    with pytest.raises(ValueError, match="resize to the export size first"):
        model.predict(_rgb(KITTI_IMAGE))
