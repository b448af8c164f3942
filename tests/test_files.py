"""Atomic outputs: the target appears whole on success and is untouched on failure."""

from __future__ import annotations

import math
import os
import stat

import pytest

from isoformer.files import (
    atomic_directory,
    atomic_output,
    write_json_atomic,
    write_text_atomic,
)


def test_content_lands_and_no_temporary_file_remains(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic("one\n", target)
    assert target.read_text() == "one\n"
    write_json_atomic({"a": [1, 2.5], "b": None}, target)
    assert target.read_text() == '{\n  "a": [\n    1,\n    2.5\n  ],\n  "b": null\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_a_failing_block_keeps_the_previous_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("before")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_nan_is_refused_and_nothing_is_written(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(ValueError):
        write_json_atomic({"r2": math.nan}, target)
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_umask_mode_not_the_private_temporary_one(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text_atomic("x", tmp_path / "out.txt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644


def test_a_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty directory is replaced
    previous = os.umask(0o022)
    try:
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("whole")
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "a.txt").read_text() == "whole"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
