"""User-facing errors: the CLI prints their message on one line and exits non-zero, no traceback."""

from __future__ import annotations

from pathlib import Path


class IsoformerError(Exception):
    """Bad input or configuration a user can fix; the message names the file/record and problem."""


class InputFormatError(IsoformerError):
    """A malformed input file, located by path and (1-based) line number when known."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
