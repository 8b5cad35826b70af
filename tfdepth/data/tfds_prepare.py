"""Prepare a TFDS builder once, even when several processes ask for it at the same time.

TFDS writes a dataset into ``<data_dir>/<name>/<config>/incomplete.<random>_<version>/`` and renames it at the end;
it does not coordinate processes. Two training runs started together on a fresh machine (or a benchmark and a
training run) both start writing, and the first to finish deletes the other's temporary directory, which then
fails with ``NotFoundError: Failed to finalize writing of split ...``. :func:`prepare_once` serialises preparation
with an exclusive lock file next to the dataset (``<data_dir>/<name>/<config>.lock``, POSIX ``flock``; released
by the OS if the process dies): the first process builds, the others wait, then read what it wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["prepare_once", "lock_path"]

try:  # POSIX; where flock is missing (Windows) preparation runs unlocked, as TFDS does
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def lock_path(builder) -> Path:
    """``<data_dir_root>/<name>/<config>.lock`` (or ``<name>.lock`` for a builder without configs)."""
    root = Path(os.fspath(builder.data_dir_root)) / builder.name
    config = builder.builder_config.name if builder.builder_config is not None else builder.name
    return root / f"{config}.lock"


def prepare_once(builder, download_config) -> bool:
    """``builder.download_and_prepare(download_config=...)`` under the builder's lock unless it is prepared.

    Returns True if this call built the dataset, False if it was already there (built before, or by another
    process while this one waited for the lock; the builder's ``info`` is then re-read from disk so its splits are
    known).
    """
    if builder.is_prepared():
        return False
    path = lock_path(builder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            if builder.is_prepared():  # another process built it while this one waited
                builder.info.read_from_directory(builder.data_dir)
                return False
            builder.download_and_prepare(download_config=download_config)
            return True
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
