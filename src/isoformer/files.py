"""Output files appear whole or not at all: written under a temporary name beside them, renamed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in `path`'s directory; rename it onto `path` when the block succeeds.

    When the block raises, the temporary file is removed and `path` keeps its previous content
    (or stays absent). The rename is atomic on one filesystem, hence the same directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); an output gets the usual mode under the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; rename it to `path` when the block succeeds.

    `path` must be absent or an empty directory (callers refuse anything else with their own
    message). When the block raises, the temporary directory and everything in it are removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
        if path.is_dir():
            path.rmdir()  # empty: a rename cannot replace a directory portably
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(data: Any, path: str | Path) -> None:
    """Indented JSON with a trailing newline; NaN or infinity is a ValueError, not invalid JSON."""
    write_text_atomic(json.dumps(data, indent=2, allow_nan=False) + "\n", path)


def remove_files(directory: Path, names: Sequence[str]) -> None:
    """Delete the files and folders `names` in `directory` (a previous run's outputs), leaving
    anything else there."""
    for name in names:
        target = directory / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
