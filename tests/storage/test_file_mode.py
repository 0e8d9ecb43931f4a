"""Files written to a folder get the mode the umask gives, so that others can read what is published."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from panopipe.storage import FolderStorage, write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folder_storage_writes_with_the_umask_mode(tmp_path: Path, umask: int) -> None:
    storage = FolderStorage(tmp_path)

    storage.put("new/a.jpg", b"data")

    assert mode(tmp_path / "new/a.jpg") == umask
    assert umask in (0o644, 0o640)  # 0o022 and 0o027 give what a reader of published files expects


def test_replacing_a_private_file_gives_the_umask_mode(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"old")
    path.chmod(0o600)

    write_atomic(path, [b"new ", memoryview(b"pieces")])

    assert (path.read_bytes(), mode(path)) == (b"new pieces", umask)
    assert os.listdir(tmp_path) == ["a.jpg"]  # no temporary file left


def test_an_explicit_mode_wins_over_the_umask(tmp_path: Path, umask: int) -> None:
    write_atomic(tmp_path / "a.jpg", b"data", mode=0o604)

    assert mode(tmp_path / "a.jpg") == 0o604
