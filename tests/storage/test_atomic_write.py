"""A file is replaced whole or not at all: what a reader sees, and what a failed write leaves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from panopipe.storage import open_atomic


def test_a_write_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "survey.csv"
    path.write_bytes(b"the previous export\n")

    with pytest.raises(RuntimeError, match="catalog connection lost"), open_atomic(path) as handle:
        handle.write(b"half of a new")
        assert path.read_bytes() == b"the previous export\n"  # not visible before the block ends
        raise RuntimeError("catalog connection lost")

    assert path.read_bytes() == b"the previous export\n"
    assert os.listdir(tmp_path) == ["survey.csv"]  # the temporary file is gone


def test_a_write_that_ends_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "survey.csv"
    path.write_bytes(b"the previous export\n")

    with open_atomic(path) as handle:
        handle.write(b"the new export\n")

    assert path.read_bytes() == b"the new export\n"
    assert os.listdir(tmp_path) == ["survey.csv"]
