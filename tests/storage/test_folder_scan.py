"""A folder's scan names what it could not look into (a link to a disk not mounted, a folder it may not read)
instead of leaving it out: whoever takes a file missing from a listing for gone needs to know."""

from __future__ import annotations

import json
import os
import pwd
import tempfile
from pathlib import Path

from panopipe.storage import FolderStorage, ObjectInfo
from panopipe.storage.base import Unlisted

NOBODY, NOBODY_GID = pwd.getpwnam("nobody")[2:4]

NOT_MOUNTED = "which does not exist (a disk not mounted?)"


def test_a_link_whose_target_is_missing_is_unlisted_with_where_it_points(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    (root / "R001/cam0").mkdir(parents=True)
    (root / "R001/cam0/a.jpg").write_bytes(b"a")
    disk = tmp_path / "disk"
    (root / "R001/cam3").symlink_to(disk / "cam3", target_is_directory=True)
    (root / "R001/cam0/b.jpg").symlink_to(disk / "b.jpg")
    (root / "R001/cam0/relative.jpg").symlink_to("../../../disk/c.jpg")
    (root / "R001/loop").symlink_to(root / "R001/loop")  # stat: too many levels of symbolic links
    storage = FolderStorage(root)

    entries = list(storage.scan())

    first = entries[0]
    assert isinstance(first, ObjectInfo) and (first.uri, first.key, first.size) == (
        str(root / "R001/cam0/a.jpg"),
        "R001/cam0/a.jpg",
        1,
    )
    assert entries[1:] == [
        Unlisted(str(root / "R001/cam0/b.jpg"), "R001/cam0/b.jpg", f"a link to {disk}/b.jpg, {NOT_MOUNTED}"),
        Unlisted(
            str(root / "R001/cam0/relative.jpg"),
            "R001/cam0/relative.jpg",
            f"a link to {disk}/c.jpg, {NOT_MOUNTED}",
        ),
        Unlisted(str(root / "R001/cam3"), "R001/cam3", f"a link to {disk}/cam3, {NOT_MOUNTED}"),
        Unlisted(str(root / "R001/loop"), "R001/loop", "cannot read: Too many levels of symbolic links"),
    ]
    assert [info.key for info in storage.list()] == ["R001/cam0/a.jpg"]  # a listing of objects only
    assert [e.key for e in storage.scan("R001/cam0/")] == [
        "R001/cam0/a.jpg",
        "R001/cam0/b.jpg",
        "R001/cam0/relative.jpg",
    ]
    assert list(storage.scan("R002/")) == []
    # The disk mounted again: its files are listed as any others.
    (disk / "cam3").mkdir(parents=True)
    (disk / "cam3/d.jpg").write_bytes(b"dd")
    (disk / "b.jpg").write_bytes(b"bbb")
    assert [(e.key, type(e)) for e in storage.scan("R001/c")] == [
        ("R001/cam0/a.jpg", ObjectInfo),
        ("R001/cam0/b.jpg", ObjectInfo),
        ("R001/cam0/relative.jpg", Unlisted),
        ("R001/cam3/d.jpg", ObjectInfo),
    ]


def test_a_file_removed_while_the_folder_is_walked_is_gone_not_unlisted(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (root / name).write_bytes(b"x")
    scan = FolderStorage(root).scan()

    first = next(scan)
    (root / "b.jpg").unlink()

    assert first.key == "a.jpg" and list(scan) == []


def test_a_folder_that_cannot_be_read_is_unlisted() -> None:
    """Scanned by a user who may not read the folder: as root (CI's), by ``nobody`` in a forked process,
    since root reads every folder whatever its mode."""
    with tempfile.TemporaryDirectory() as folder:  # not under pytest's own, which only its user may enter
        Path(folder).chmod(0o755)
        root = Path(folder) / "survey"
        (root / "R001/cam2").mkdir(parents=True)
        (root / "R001/cam2/a.jpg").write_bytes(b"a")
        (root / "R001/cam2").chmod(0)
        try:
            entries = scanned_by_a_user(root)
        finally:
            (root / "R001/cam2").chmod(0o755)

    assert entries == [["R001/cam2", "cannot read: Permission denied"]]


def scanned_by_a_user(root: Path) -> list[list[str | None]]:
    """``[key, reason]`` of each entry of ``root``'s scan, made by a user who is not root (``nobody`` in a
    forked process when this one is root)."""
    if os.geteuid() != 0:
        return [[e.key, getattr(e, "reason", None)] for e in FolderStorage(root).scan()]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's
        try:
            os.close(read)
            os.setgid(NOBODY_GID)
            os.setuid(NOBODY)
            found = [[e.key, getattr(e, "reason", None)] for e in FolderStorage(root).scan()]
            os.write(write, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as result:
        text = result.read()
    os.waitpid(child, 0)
    return json.loads(text)
