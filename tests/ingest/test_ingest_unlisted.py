"""What an ingest cannot look into (a camera's folder linked in from a disk not mounted) keeps its images: it is
reported, and the ingest fails, instead of every image under it being marked deleted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, Selection
from panopipe.cli import main
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.ingest import IngestFailure, IngestUnlisted, ingest

SETTINGS = Settings()
NOT_MOUNTED = "which does not exist (a disk not mounted?)"


def images(catalog: Catalog) -> dict[str, tuple[str, str | None, str, bool]]:
    """Every image, deleted ones too, by URI: its id, shot, status and whether it is deleted."""
    return {
        i.uri: (i.id, i.shot, i.status, i.deleted) for i in catalog.images(Selection(include_deleted=True))
    }


def link_camera_in(survey: Path, tmp_path: Path, camera: str = "cam5") -> tuple[Path, Path]:
    """The camera's folder moved to another disk and linked into the reel: the link and the disk."""
    disk = tmp_path / "other-disk"
    disk.mkdir()
    shutil.move(survey / "R001" / camera, disk / camera)
    link = survey / "R001" / camera
    link.symlink_to(disk / camera, target_is_directory=True)
    return link, disk


def test_a_camera_folder_on_a_disk_not_mounted_keeps_its_images(
    catalog: Catalog, survey: Path, tmp_path: Path
) -> None:
    """The disk not mounted, its frames were marked deleted (no warning, exit 0): their shots lost a camera."""
    link, disk = link_camera_in(survey, tmp_path)
    assert ingest(catalog, [survey], SETTINGS).added == 12
    before = images(catalog)
    disk.rename(tmp_path / "unmounted")

    report = ingest(catalog, [survey], SETTINGS)

    assert (report.added, report.unchanged, report.deleted, report.failed) == (0, 10, 0, [])
    why = f"a link to {disk}/cam5, {NOT_MOUNTED}"
    assert report.unlisted == [IngestUnlisted(str(link), why, kept=2)] and not report.ok
    assert report.to_dict()["unlisted"] == [{"uri": str(link), "reason": why, "kept": 2}]
    assert images(catalog) == before
    # The disk mounted again: nothing new, nothing changed, the same ids.
    (tmp_path / "unmounted").rename(disk)
    again = ingest(catalog, [survey], SETTINGS)
    assert (again.added, again.updated, again.unchanged, again.deleted, again.unlisted) == (0, 0, 12, 0, [])
    assert again.ok and images(catalog) == before


def test_a_link_to_a_missing_jpeg_is_a_failed_file(catalog: Catalog, survey: Path, tmp_path: Path) -> None:
    """A catalogued frame and a new one, each a link to a file that is not there: they were left out without a
    word, and the catalogued one marked deleted."""
    disk = tmp_path / "other-disk"
    disk.mkdir()
    frame = survey / "R001/cam1/R001_cam1_000002.jpg"
    shutil.move(frame, disk / frame.name)
    frame.symlink_to(disk / frame.name)
    new = survey / "R001/cam1/R001_cam1_000003.jpg"
    new.symlink_to(disk / new.name)
    ingest(catalog, [survey], SETTINGS)
    before = images(catalog)
    (disk / frame.name).rename(tmp_path / "away.jpg")

    report = ingest(catalog, [survey], SETTINGS)

    assert (report.added, report.unchanged, report.deleted, report.unlisted) == (0, 11, 0, [])
    assert report.failed == [
        IngestFailure(str(frame), f"a link to {disk / frame.name}, {NOT_MOUNTED}"),
        IngestFailure(str(new), f"a link to {disk / new.name}, {NOT_MOUNTED}"),
    ]
    assert images(catalog) == before  # the catalogued frame kept as it was, the new one not recorded
    (tmp_path / "away.jpg").rename(disk / frame.name)
    again = ingest(catalog, [survey], SETTINGS)
    assert (again.unchanged, again.deleted, [f.uri for f in again.failed]) == (12, 0, [str(new)])
    assert images(catalog) == before


def test_a_link_loop_is_reported_not_a_traceback(catalog: Catalog, survey: Path) -> None:
    loop = survey / "R001/cam0/R001_cam0_000009.jpg"
    loop.symlink_to(loop)

    report = ingest(catalog, [survey], SETTINGS)

    assert report.added == 12
    assert report.failed == [IngestFailure(str(loop), "cannot read: Too many levels of symbolic links")]


def test_a_hidden_name_that_cannot_be_looked_into_is_no_failure_unless_it_keeps_images(
    catalog: Catalog, survey: Path, tmp_path: Path
) -> None:
    """As a hidden file is not counted among those not read (.DS_Store): a link left by another program."""
    (survey / ".lock").symlink_to(tmp_path / "gone")

    report = ingest(catalog, [survey], SETTINGS)

    assert (report.added, report.unlisted, report.ok) == (12, [], True)


def test_a_source_that_is_a_link_to_a_disk_not_mounted_says_so(
    catalog: Catalog, survey: Path, tmp_path: Path
) -> None:
    reel = tmp_path / "R002"
    reel.symlink_to(tmp_path / "unmounted/R002", target_is_directory=True)

    why = f"{reel} is a link to {tmp_path}/unmounted/R002, {NOT_MOUNTED}"
    with pytest.raises(ConfigError, match=f"^{re.escape(why)}$"):
        ingest(catalog, [survey, reel], SETTINGS)
    assert catalog.count() == 0


def test_the_cli_warns_once_per_link_and_exits_1(
    capsys: pytest.CaptureFixture[str], catalog: Catalog, survey: Path, tmp_path: Path
) -> None:
    link, disk = link_camera_in(survey, tmp_path)
    (disk / "cam6").mkdir()
    empty = survey / "R001/cam6"
    empty.symlink_to(disk / "cam6", target_is_directory=True)  # nothing catalogued under it
    assert main(["ingest", str(survey), "--catalog", catalog.url]) == 0
    disk.rename(tmp_path / "unmounted")
    capsys.readouterr()

    assert main(["ingest", str(survey), "--catalog", catalog.url]) == 1

    out, err = capsys.readouterr()
    assert out.startswith("added 0, updated 0, unchanged 10, deleted 0, failed 0 in ")
    assert err == (
        f"warning: not read: {link}: a link to {disk}/cam5, {NOT_MOUNTED}; kept the 2 image(s) catalogued under "
        "it (not marked deleted)\n"
        f"warning: not read: {empty}: a link to {disk}/cam6, {NOT_MOUNTED}; no image under it is catalogued\n"
    )
    assert main(["ingest", str(survey), "--catalog", catalog.url, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["unlisted"] == [
        {"uri": str(link), "reason": f"a link to {disk}/cam5, {NOT_MOUNTED}", "kept": 2},
        {"uri": str(empty), "reason": f"a link to {disk}/cam6, {NOT_MOUNTED}", "kept": 0},
    ]
