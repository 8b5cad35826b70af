"""Every backend ``benchmarks/speed.py`` times for ``selfsup_depth_infer`` gives Keras' depth within its parity
threshold (``tfdepth.export.parity.THRESHOLDS``), so a fast path can never be a wrong path.

The backends are built by the benchmark's own code (``benchmarks/speed_rows.py``: ``backend_runner`` and
``tflite_content``, the same calls its rows time) on a ResNet18 depth net at 64x96, random trained-like
weights (``speed_rows.trained_like``), three synthetic street frames. Depth is Monodepth2's
``disp_to_depth(disp_0, 0.1, 100)``. The last test feeds the channels in BGR order to show that the float32
threshold catches a wrong input path.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import speed_rows  # noqa: E402  (benchmarks/speed_rows.py)

from tfdepth.export.parity import THRESHOLDS, ParityFrame, compare  # noqa: E402
from tfdepth.models.depth_decoder import DepthNet, disp_to_depth  # noqa: E402

H, W = 64, 96
VARIANT = {"function": "none", "xla": "none", "tflite_fp32": "none", "tflite_fp16": "float16",
           "tflite_int8": "int8", "bf16": "int8", "folded": "none", "folded_bf16": "int8"}
# bf16 (8-bit mantissa, Keras mixed or folded) is held to the reduced-precision rule; the folded bf16 graph runs
# (emulated, slowly but correctly) on CPUs without bf16 units too, so it is checked everywhere.


def _depth(outputs):
    disp = np.asarray(outputs["disp_0"], np.float32)[0, :, :, 0]
    return disp_to_depth(disp, 0.1, 100.0)[1].numpy()


@pytest.fixture(scope="module")
def net_and_frames():
    import keras

    from tfdepth.data.synthetic import render_sequence

    keras.utils.set_random_seed(3)
    net = speed_rows.trained_like(DepthNet(encoder_depth=18, scales=(0, 1, 2, 3)))  # as the speed rows build it
    frames = render_sequence("street", 7, 3, H, W)["image"]
    reference = [_depth(net(f[None].astype(np.float32) / 255.0, training=False)) for f in frames]
    return net, frames, reference


def _candidates(net, frames, backend, bgr=False):
    float_frames = [f[None].astype(np.float32) / 255.0 for f in frames]
    if bgr:
        float_frames = [f[..., ::-1].copy() for f in float_frames]
    content = None
    if backend.startswith("tflite_"):
        calibration = [{"image": f} for f in float_frames] if backend == "tflite_int8" else None
        content = speed_rows.tflite_content(net, {"image": float_frames[0]}, speed_rows.TFLITE_BACKENDS[backend],
                                            calibration)
    if backend == "bf16":
        from tfdepth.recipes.base import precision_policy

        with precision_policy("mixed_bfloat16"):
            low = DepthNet(encoder_depth=18, scales=(0, 1, 2, 3))
        low.set_weights(net.get_weights())
        net = low
    out = []
    for f in float_frames:
        out.append(_depth(speed_rows.backend_runner(net, {"image": f}, backend, content=content)()))
    return out


# fp16 and int8 change only the `quantize` argument of the converter test_export.py checks on the export graph with
# the same thresholds; they are marked slow here to keep the default suite under its 10 minutes (~12 s each).
_SLOW = {"tflite_fp16", "tflite_int8"}


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b in _SLOW else b for b in VARIANT])
def test_backend_depth_matches_keras(net_and_frames, backend):
    if backend == "bf16":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        import speed

        if speed.bf16_support():
            pytest.skip(speed.bf16_support())
    net, frames, reference = net_and_frames
    parity_frames = [ParityFrame(f"street7_{i}", f) for i, f in enumerate(frames)]
    report = compare(reference, {backend: _candidates(net, frames, backend)}, parity_frames, variant=VARIANT[backend])
    rule, limit = THRESHOLDS[VARIANT[backend]]
    assert report["passed"], f"{backend}: {report['summary']} ({rule} limit {limit})"


def test_float32_threshold_catches_a_wrong_input_path(net_and_frames):
    net, frames, reference = net_and_frames
    parity_frames = [ParityFrame(f"street7_{i}", f) for i, f in enumerate(frames)]
    report = compare(reference, {"function_bgr": _candidates(net, frames, "function", bgr=True)}, parity_frames,
                     variant="none")
    assert not report["passed"], report["summary"]
