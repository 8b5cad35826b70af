"""Writing an :class:`~tfdepth.export.graph.InferenceGraph` as a SavedModel, and the TF Serving directory layout.

TF Serving loads ``BASE/NAME/VERSION/`` (``VERSION`` an integer; the highest is served) and ignores entries of
``BASE/NAME/`` that are not integers, so an export is built in a hidden temporary directory beside the versions and
renamed to its number only when complete and checked: a server polling ``NAME/`` never sees half a model.
Existing versions are never overwritten: without an explicit version the next free number is taken; an explicit
version that exists is refused. Extra files (``metadata.json``, ``parity.json``) go to ``VERSION/assets.extra/``,
the SavedModel's place for files that travel with it but are not used by the graph.

The graph is written with ``keras.export.ExportArchive`` (it saves the Keras 3 variables the endpoints use;
stack_notes.md), one endpoint per signature; signature input keys are the TensorSpec names (``image``,
``image_bytes``, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_saved_model", "version_dir", "existing_versions", "EXTRA_DIR"]

EXTRA_DIR = "assets.extra"


def _positional(fn, names):
    """``fn(dict)`` as a function of positional tensors in ``names`` order (ExportArchive's input_signature form)."""

    def endpoint(*args):
        return fn(dict(zip(names, args, strict=True)))

    return endpoint


def write_saved_model(functions, network, path) -> Path:
    """Write a SavedModel with one signature per entry of ``functions`` (name -> (fn(dict), {name: TensorSpec})).

    ``network`` is the Keras model whose variables the functions use (saved through the functions, see below).
    ``path`` must not exist or be empty.
    """
    import keras

    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty; a SavedModel is written into a new directory")
    archive = keras.export.ExportArchive()
    # No archive.track(network): add_endpoint already saves every variable the endpoints use, and tracking the
    # model as well stores each weight a second time (Keras 3.15 keeps both its Variable wrappers and the
    # tf.Variables: a 57 MB network became a 112 MB SavedModel).
    del network
    for name, (fn, specs) in functions.items():
        names = list(specs)
        archive.add_endpoint(name, _positional(fn, names), input_signature=[specs[n] for n in names])
    archive.write_out(str(path), verbose=False)
    return path


def existing_versions(base) -> list[int]:
    """The integer version directories of ``base`` (``NAME/``), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))


def version_dir(base, version: int | None = None) -> Path:
    """``base/VERSION`` for a new export: the next free integer (1 for a new base), or ``version`` if it is free."""
    base = Path(base)
    if base.exists() and not base.is_dir():
        raise FileExistsError(f"--output {base} is a file; it must be the model's directory (NAME/ holding "
                              "VERSION/ directories)")
    versions = existing_versions(base)
    if version is None:
        return base / str(versions[-1] + 1 if versions else 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"--version must be a positive integer, got {version!r}")
    if (base / str(version)).exists():
        raise FileExistsError(f"version {version} already exists in {base}; exports never overwrite a version: "
                              f"leave out --version to take the next one ({versions[-1] + 1 if versions else 1})")
    return base / str(version)
