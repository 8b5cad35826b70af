"""Dependency direction of tfdepth (DESIGN.md, "Dependency direction"), checked on the source with ``ast``.

Every ``tfdepth/**/*.py`` except the lazy public surface ``tfdepth/__init__.py`` is parsed; each import of a
``tfdepth`` module (absolute, relative, at module level or inside a function: a lazy import is still a dependency)
is mapped to its layer, the first name under ``tfdepth``. The allowed edges live in ``ALLOWED_IMPORTS`` below.
Also: ``tensorflow_addons`` is imported nowhere (it does not import on TF 2.21 / Keras 3, stack_notes.md) and
``torch`` never at import time (a weight-conversion tool may import it inside a function).
"""

import ast
from pathlib import Path

import pytest

# Layer -> the other layers it may import. Mirrors DESIGN.md, plus the leaves ``viz`` and ``io`` (README, Architecture)
# (pictures; atomic writes) that other layers may use. A layer may always import its own
# modules (geometry.warp -> geometry.projection; a module later split into a package, e.g. metrics/, stays one layer).
ALLOWED_IMPORTS = {
    "config": {"io"},
    "geometry": set(),
    "layers": set(),  # keras only
    "metrics": {"ops"},  # numpy / tensorflow (+ the tf-only ops)
    "viz": {"io"},
    "ops": set(),  # tf only; used by losses, metrics, models, train, inference, export (DESIGN.md)
    "models": {"layers", "ops"},
    "losses": {"geometry", "ops"},
    "data": {"geometry", "config", "viz", "io"},
    "train": {"models", "losses", "geometry", "metrics", "config", "viz", "io", "ops"},  # never data
    # export -> layers: the fold's per-layer rules (export/folding.py) dispatch on the building blocks' classes;
    # layers is a keras-only leaf, so no cycle. Never train, never losses.
    "export": {"models", "layers", "geometry", "config", "viz", "io", "ops", "inference"},
    "inference": {"models", "geometry", "config", "viz", "io", "ops"},  # never train, never losses
    # NOT YET IN DESIGN.md: modules that appeared in the tree; rules taken from their own docstrings, to be
    # confirmed in DESIGN.md. io: atomic file writes, a leaf like viz (so also allowed above for data/train/export/
    # inference). evaluation: run evaluation on numpy arrays, "no tfdepth.data here" (nor train or losses).
    # experiment: the composition root beside the CLIs (config -> data -> trainer -> files); nothing imports it.
    "io": set(),
    "evaluation": {"geometry", "metrics", "models", "inference", "config", "viz", "io"},
    "experiment": {"config", "data", "train", "models", "losses", "geometry", "metrics", "viz", "io", "inference",
                   "export", "evaluation", "layers", "recipes", "ops"},
    # recipes: one module per family composing data + train + evaluation (DESIGN.md); only experiment, the CLIs
    # and users' scripts import them.
    "recipes": {"config", "data", "train", "models", "losses", "geometry", "metrics", "viz", "io", "inference",
                "export", "evaluation", "layers", "ops", "edge_metrics", "refine"},
    # edge_metrics: SDDR's evaluation metrics (D3R, ORD, aligned depth errors); numpy/scipy like metrics, whose
    # depth errors it reuses.
    "edge_metrics": {"metrics"},
    # refine: SDDR for users (a refiner from a run, base maps from a tfdepth model or from files); like inference,
    # plus the map-file readers of data.middlebury.
    "refine": {"models", "inference", "config", "data", "io"},
}
EXEMPT = {"tfdepth/__init__.py"}  # the lazy public surface imports models, config and inference by design
BANNED_ANYWHERE = {"tensorflow_addons"}
BANNED_AT_IMPORT_TIME = {"torch"}
ROOT_NAMES_ALLOWED = {"__version__"}  # `from tfdepth import __version__` pulls in nothing

REPO = Path(__file__).resolve().parents[1]


def _layer_of(path):
    """'tfdepth/models/resnet.py' -> 'models'; 'tfdepth/metrics.py' -> 'metrics'."""
    parts = Path(path).with_suffix("").parts
    return parts[1] if len(parts) > 1 else None


def _package_of(path):
    """Dotted package a module's relative imports start from ('tfdepth/models/resnet.py' -> 'tfdepth.models')."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1])  # for a package __init__ this is the package itself, as Python resolves it


class _ImportCollector(ast.NodeVisitor):
    """(line, imported dotted name or None, names for ``from`` imports, source text, inside a function?)."""

    def __init__(self, path, source):
        self.path, self.source, self.depth, self.found = path, source, 0, []

    def _visit_function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def _record(self, node, module, names):
        text = ast.get_source_segment(self.source, node) or ast.dump(node)
        self.found.append((node.lineno, module, names, " ".join(text.split()), self.depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._record(node, alias.name, ())

    def visit_ImportFrom(self, node):
        module = node.module or ""
        if node.level:
            package = _package_of(self.path).split(".")
            if node.level - 1 >= len(package):
                module = None  # beyond the top-level package: reported below
            else:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
        self._record(node, module, tuple(alias.name for alias in node.names))

    def visit_Call(self, node):
        # importlib.import_module("...") / __import__("...") with a literal name is an import too.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in {"import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant):
            if isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
                self._record(node, node.args[0].value, ())
        self.generic_visit(node)


def check_source(source, path):
    """Layering violations of one module, as strings 'path:line: import ... -> reason'."""
    path = Path(path).as_posix()
    layer = _layer_of(path)
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno}: cannot parse ({exc.msg})"]
    if layer not in ALLOWED_IMPORTS:
        return [f"{path}:1: module is in no layer of ALLOWED_IMPORTS ({sorted(ALLOWED_IMPORTS)}): add it to "
                "DESIGN.md's dependency table and to this test, or move it into an existing layer"]
    collector = _ImportCollector(path, source)
    collector.visit(tree)
    allowed = ALLOWED_IMPORTS[layer] | {layer}
    problems = []
    for line, module, names, text, in_function in collector.found:
        where = f"{path}:{line}: {text}"
        if module is None:
            problems.append(f"{where} -> relative import goes above the tfdepth package")
            continue
        top = module.split(".")[0]
        if top in BANNED_ANYWHERE:
            problems.append(f"{where} -> {top} is banned (it does not import on TF 2.21 / Keras 3)")
        if top in BANNED_AT_IMPORT_TIME and not in_function:
            problems.append(f"{where} -> {top} imported at module level; import it inside the function needing it")
        if top != "tfdepth":
            continue
        parts = module.split(".")
        if len(parts) > 1:  # tfdepth.<layer>[.module]
            targets = [parts[1]]
        elif names:  # from tfdepth import <layer or public name>, ...
            targets = [name for name in names if name not in ROOT_NAMES_ALLOWED]
        else:  # import tfdepth
            targets = ["tfdepth"]
        for target in targets:
            if target not in ALLOWED_IMPORTS:
                problems.append(f"{where} -> '{target}' is the package root's public surface or an unknown layer; "
                                "import the defining module (e.g. tfdepth.config) instead")
            elif target not in allowed:
                problems.append(f"{where} -> layer '{layer}' may not import '{target}' "
                                f"(allowed: {sorted(ALLOWED_IMPORTS[layer]) or 'nothing from tfdepth'})")
    return problems


def check_tree(root):
    """Violations over every tfdepth/**/*.py under ``root`` (the repository), the public __init__ exempt."""
    problems = []
    for file in sorted((Path(root) / "tfdepth").rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if rel not in EXEMPT:
            problems += check_source(file.read_text(encoding="utf-8"), rel)
    return problems


# --------------------------------------------------------------------------------------------- the check


def test_tfdepth_respects_the_dependency_table():
    files = [p for p in (REPO / "tfdepth").rglob("*.py") if p.relative_to(REPO).as_posix() not in EXEMPT]
    assert files, f"no tfdepth modules found under {REPO / 'tfdepth'}"
    problems = check_tree(REPO)
    for problem in problems:
        print(problem)
    assert not problems, "layering violations (DESIGN.md dependency table):\n" + "\n".join(problems)


# ------------------------------------------------------------------------- self-tests: the checker can fail


@pytest.mark.parametrize(
    "path, source, fragment",
    [
        ("tfdepth/train/loop.py", "import numpy\nfrom tfdepth.data import kitti\n",
         "tfdepth/train/loop.py:2: from tfdepth.data import kitti -> layer 'train' may not import 'data'"),
        ("tfdepth/train/self_supervised.py", "from ..data.kitti import load\n", "may not import 'data'"),
        ("tfdepth/models/__init__.py", "from .. import losses\n", "layer 'models' may not import 'losses'"),
        ("tfdepth/export.py", "def f():\n    import tfdepth.train.callbacks as cb\n",
         "tfdepth/export.py:2: import tfdepth.train.callbacks as cb -> layer 'export' may not import 'train'"),
        ("tfdepth/inference.py", "from tfdepth import losses\n", "may not import 'losses'"),
        ("tfdepth/metrics.py", "import importlib\nm = importlib.import_module('tfdepth.models')\n",
         "metrics.py:2"),
        ("tfdepth/geometry/warp.py", "from tfdepth import load_config\n", "public surface"),
        ("tfdepth/losses/region.py", "import tfdepth\n", "public surface"),
        ("tfdepth/data/x.py", "from .... import y\n", "above the tfdepth package"),
        ("tfdepth/utils.py", "import numpy\n", "in no layer"),
        ("tfdepth/models/resnet.py", "import torch\n", "torch imported at module level"),
        ("tfdepth/models/resnet.py", "class A:\n    import torch\n", "torch imported at module level"),
        ("tfdepth/models/resnet.py", "try:\n    import torch.nn as nn\nexcept ImportError:\n    nn = None\n",
         "tfdepth/models/resnet.py:2"),
        ("tfdepth/layers.py", "def f():\n    import tensorflow_addons as tfa\n", "tensorflow_addons is banned"),
        ("tfdepth/viz.py", "from tfdepth.metrics import depth_errors\n", "allowed: ['io']"),
        ("tfdepth/broken.py", "def f(:\n", "cannot parse"),
        ("tfdepth/evaluation.py", "from tfdepth.data.factory import eval_sequences\n", "may not import 'data'"),
        ("tfdepth/train/runner.py", "from tfdepth.experiment import run_training\n", "may not import 'experiment'"),
        ("tfdepth/io.py", "def f():\n    from tfdepth.config import load_config\n", "nothing from tfdepth"),
    ],
)
def test_checker_reports_forbidden_imports(path, source, fragment):
    problems = check_source(source, path)
    assert len(problems) == 1 and fragment in problems[0], problems


@pytest.mark.parametrize(
    "path, source",
    [
        ("tfdepth/models/resnet.py", "from tfdepth.layers import ConvBlock\nfrom . import presets\n"),
        ("tfdepth/models/__init__.py", "from .resnet import ResNetEncoder\nfrom tfdepth.models import rsn\n"),
        ("tfdepth/losses/photometric.py", "from ..geometry.warp import inverse_warp\nimport tensorflow as tf\n"),
        ("tfdepth/data/synthetic/scene.py", "from ...geometry import camera\nfrom ..augment import flip\n"),
        ("tfdepth/train/refinement.py", "from tfdepth import metrics, viz\nfrom tfdepth.config import TrainConfig\n"),
        ("tfdepth/export.py", "from tfdepth import __version__\nfrom tfdepth.geometry.camera import pixel_grid\n"),
        ("tfdepth/models/convert.py", "def load_torch(path):\n    import torch\n    return torch.load(path)\n"),
        ("tfdepth/metrics/__init__.py", "from .depth import depth_errors\nfrom tfdepth.metrics.crops import crop\n"),
    ],
)
def test_checker_accepts_allowed_imports(path, source):
    assert check_source(source, path) == []


def test_check_tree_walks_files_and_exempts_public_init(tmp_path):
    (tmp_path / "tfdepth" / "train").mkdir(parents=True)
    (tmp_path / "tfdepth" / "__init__.py").write_text("from tfdepth.inference import DepthPredictor\nimport torch\n")
    (tmp_path / "tfdepth" / "train" / "__init__.py").write_text("")
    (tmp_path / "tfdepth" / "train" / "steps.py").write_text("import os\n\nfrom tfdepth.data.kitti import load\n")
    problems = check_tree(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("tfdepth/train/steps.py:3: from tfdepth.data.kitti")
