"""The README's "own Keras training script" example runs as written (in a temporary directory)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_training_script_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("**Your own Keras training script.**"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md example", "exec"), namespace)  # noqa: S102 (our own README)
    depth = namespace["depth"]
    assert depth.shape == (120, 160) and np.all(np.isfinite(depth)) and np.all(depth > 0)
    assert int(namespace["trainer"].optimizer.iterations.numpy()) == 4
    for name in ("depth_net.keras", "pose_net.keras", "config.yaml"):
        assert (tmp_path / "my_run" / name).is_file(), name
