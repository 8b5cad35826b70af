"""train.deterministic and preemption: two runs give identical weights, and a run SIGKILLed during a checkpoint
write and again mid-epoch resumes at the right step and ends with the weights of the uninterrupted run.

Each training runs in its own process (a real SIGKILL; op determinism is process-wide). Tiny: 64x64 network input,
batch 2, 2 epochs x 3 steps, a checkpoint every 2 steps, no validation. Both are marked slow (4-5 train.py
processes, about 3 minutes: run them with ``pytest -m slow tests/test_resume_kill.py``); the default suite keeps
their in-process counterparts in tests/test_trainer_core.py (a mid-epoch resume equals the uninterrupted run;
partial checkpoint files are removed; the non-finite guard keeps the last good checkpoint). The kill test ends
with weights bit-equal to one uninterrupted run, which already needs deterministic training; the plain two-run
determinism test is its diagnostic when it fails.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tfdepth.models  # noqa: F401  (registers the network classes for loading)

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["train.deterministic=true", "train.checkpoint_every_steps=2", "train.epochs=2", "train.steps_per_epoch=3",
         "train.validation_steps=0", "train.log_images=false", "data.height=64", "data.width=64"]


def launch(run_dir, data_dir, tiny_run):
    args = tiny_run.args(run_dir, data_dir, *STEPS) + ["--no-eval"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=600):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def depth_weights(run_dir):
    return keras.saving.load_model(Path(run_dir) / "depth_net.keras", compile=False).get_weights()


def wait_for(predicate, process, timeout=300):
    start = time.time()
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training ended before the kill point: {process.stdout.read()[-2000:]}")
        if time.time() - start > timeout:
            process.kill()
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.002)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data_dir, tiny_run):
    """One uninterrupted run. It runs alone, so it can build the tiny synthetic set the later runs read."""
    run_dir = tmp_path_factory.mktemp("determinism") / "a"
    finish(launch(run_dir, tiny_data_dir, tiny_run))
    return run_dir


@pytest.mark.slow
def test_deterministic_runs_give_identical_weights(tmp_path, tiny_data_dir, tiny_run, reference_run):
    finish(launch(tmp_path / "b", tiny_data_dir, tiny_run))
    for wa, wb in zip(depth_weights(reference_run), depth_weights(tmp_path / "b")):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_and_mid_epoch_then_resume(tmp_path, tiny_data_dir, tiny_run,
                                                                      reference_run):
    data_dir = tiny_data_dir
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints"

    # 1. Killed while the first checkpoint (step 2) is being written, or just after if the write was too quick.
    first = launch(run_dir, data_dir, tiny_run)
    wait_for(lambda: ckpt.is_dir() and any(p.name.startswith("ckpt-2") for p in ckpt.iterdir()), first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = launch(run_dir, data_dir, tiny_run)
    # 2. The second process is killed mid-epoch 2, after its checkpoint at step 4 is complete.
    wait_for(lambda: (ckpt / "checkpoint").is_file() and "ckpt-4" in (ckpt / "checkpoint").read_text(), second)
    second.send_signal(signal.SIGKILL)
    out2 = second.communicate()[0]
    assert "resuming from" in out2 or "training starts at step 0" in out2 or "removed a partial" in out2, out2[-2000:]
    # 3. The third process resumes at step 4 (epoch 2, batch 2 of 3) and finishes.
    out3 = finish(launch(run_dir, data_dir, tiny_run))
    assert "ckpt-4" in out3 and "4 training steps done" in out3, out3[-2000:]
    assert not [p for p in ckpt.iterdir() if "_temp" in p.name]
    for got, expected in zip(depth_weights(run_dir), depth_weights(reference_run)):
        np.testing.assert_array_equal(got, expected)
