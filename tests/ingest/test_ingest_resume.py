"""An ingest writes the catalog a chunk of files at a time: one stopped part-way (Ctrl-C, a killed process) keeps
what it wrote, and the next one reads only the rest and ends with the catalog one whole ingest makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import panopipe.ingest
from panopipe.catalog import Catalog, Selection
from panopipe.config import Settings
from panopipe.ingest import IngestReport, ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata_file

SETTINGS = Settings()
TOUCHED = 2_000_000_000.0
"""The modification time every file of the survey gets after its first ingest: all are read again."""
STOP_AT = 6
"""The file whose read stops an ingest, in chunks of 4: the first chunk is written, the second not."""


def change(survey: Path) -> None:
    """Change a catalogued survey in ways that need the whole listing, with a chunk of 4 files, in listing
    order: [cam0 1, cam0 2, cam0 old_1, cam1 1], [cam2 1, 2, cam3 1, 2], [cam4 1, 2, cam5 1, zz_2], [zz_copy].

    Every file is touched (read again, updated); cam1's frame 2 is gone (deleted, at the end); cam5's frame 2
    moved to the last chunk (its image goes with it); cam0's first frame copied to the last chunk (a duplicate
    of a file of the first chunk); a new file in the first chunk has the content of cam5's frame 1, which
    changes in the third (so it is a new image, no duplicate)."""
    for path in survey.rglob("*.jpg"):
        os.utime(path, (TOUCHED, TOUCHED))
    reel = survey / "R001"
    (reel / "cam1/R001_cam1_000002.jpg").unlink()
    (reel / "cam5/R001_cam5_000002.jpg").rename(reel / "cam5/zz_000002.jpg")
    shutil.copy(reel / "cam0/R001_cam0_000001.jpg", reel / "cam5/zz_copy_000001.jpg")
    shutil.copy(reel / "cam5/R001_cam5_000001.jpg", reel / "cam0/old_000001.jpg")
    apply_metadata_file(reel / "cam5/R001_cam5_000001.jpg", update=MetadataUpdate(gps_altitude=600.25))


def state(catalog: Catalog, first_ids: dict[str, str]) -> dict[str, Any]:
    """What the catalog holds, comparable across catalogs: each image by URI with the URI its id had after the
    first ingest (``first_ids``: URI by id), and the known copies."""
    images = {
        image.uri: {
            **{k: v for k, v in image.to_dict().items() if k not in ("id", "ingested_at", "updated_at")},
            "first_uri": first_ids.get(image.id),
        }
        for image in catalog.images(Selection(include_deleted=True))
    }
    copies = {uri: copy.image_uri for uri, copy in catalog.known_copies("").items()}
    return {"images": images, "copies": copies}


def first_ingest(catalog: Catalog, survey: Path) -> dict[str, str]:
    """Ingest ``survey`` whole; the URIs of its images by id."""
    assert ingest(catalog, [survey], SETTINGS).added == 12
    return {image.id: image.uri for image in catalog.images()}


def summary(report: IngestReport) -> dict[str, object]:
    return {k: v for k, v in report.to_dict().items() if k != "seconds"}


@pytest.fixture
def reference(survey: Path, tmp_path: Path) -> Iterator[tuple[Catalog, dict[str, str]]]:
    """A SQLite catalog of the survey before :func:`change`, and its first ingest's ids."""
    catalog = Catalog.open(tmp_path / "reference.db")
    first_ids = first_ingest(catalog, survey)
    yield catalog, first_ids
    catalog.close()


@pytest.mark.parametrize("chunks", [{"COMMIT_FILES": 4}, {"COMMIT_S": 0.0}], ids=["by_files", "by_time"])
def test_an_ingest_in_chunks_reports_and_catalogs_what_one_write_does(
    catalog: Catalog,
    survey: Path,
    reference: tuple[Catalog, dict[str, str]],
    chunks: dict[str, float],
    monkeypatch: pytest.MonkeyPatch,
):
    first_ids = first_ingest(catalog, survey)
    change(survey)
    whole = ingest(reference[0], [survey], SETTINGS)  # one chunk: COMMIT_FILES is more than the files
    assert (whole.added, whole.updated, whole.deleted, len(whole.duplicates)) == (1, 11, 1, 1)
    for name, value in chunks.items():
        monkeypatch.setattr(panopipe.ingest, name, value)

    done: list[int] = []
    report = ingest(catalog, [survey], SETTINGS, workers=2, progress=lambda n, total: done.append(n))

    assert summary(report) == summary(whole)
    assert done == list(range(1, 14))
    assert state(catalog, first_ids) == state(*reference)


_KILLED_AT = """
import os, signal, sys
import panopipe.ingest
from panopipe.catalog import Catalog
from panopipe.config import Settings

def kill(done, total):
    if done == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)

panopipe.ingest.COMMIT_FILES = 4
panopipe.ingest.ingest(Catalog.open(sys.argv[1]), [sys.argv[2]], Settings(), workers=2, progress=kill)
"""


@pytest.mark.parametrize("stop", ["ctrl_c", "sigkill"])
def test_an_ingest_stopped_part_way_keeps_its_chunks_and_the_next_finishes_it(
    catalog: Catalog,
    catalog_url: str,
    survey: Path,
    reference: tuple[Catalog, dict[str, str]],
    stop: str,
    monkeypatch: pytest.MonkeyPatch,
):
    first_ids = first_ingest(catalog, survey)
    change(survey)
    ingest(reference[0], [survey], SETTINGS)

    if stop == "ctrl_c":

        def interrupt(done: int, total: int) -> None:
            if done == STOP_AT:
                raise KeyboardInterrupt

        monkeypatch.setattr(panopipe.ingest, "COMMIT_FILES", 4)
        with pytest.raises(KeyboardInterrupt):
            ingest(catalog, [survey], SETTINGS, workers=2, progress=interrupt)
        monkeypatch.undo()
    else:
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_AT, catalog_url, str(survey), str(STOP_AT)], capture_output=True
        )
        assert killed.returncode == -9, killed.stderr

    # The first chunk is written, and nothing else: no image is deleted (one's file is gone, another's moved)
    stopped = {image.uri: image for image in catalog.images(Selection(include_deleted=True))}
    assert set(stopped) == set(first_ids.values()) and not any(i.deleted for i in stopped.values())
    touched = {uri for uri, image in stopped.items() if image.modified_at.timestamp() == TOUCHED}
    written = [
        "R001/cam0/R001_cam0_000001.jpg",
        "R001/cam0/R001_cam0_000002.jpg",
        "R001/cam1/R001_cam1_000001.jpg",
    ]
    assert touched == {str(survey / name) for name in written}
    assert {image.id for image in stopped.values()} == set(first_ids)

    again = ingest(catalog, [survey], SETTINGS)

    assert (again.unchanged, again.files_read, again.added, again.deleted) == (3, 10, 1, 1)
    assert state(catalog, first_ids) == state(*reference)


def test_a_frame_a_stopped_ingest_moved_in_time_is_in_the_shot_a_whole_ingest_gives(
    catalog: Catalog, survey: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A frame moved in time in a reel all of whose files the stopped ingest wrote: the next ingest reads none
    of that reel's files, yet the reel's shots are those a whole ingest makes (the chunk regrouped them)."""
    for path in sorted((survey / "R001").rglob("*.jpg")):  # reel R002: the same frames, other bytes
        target = survey / "R002" / path.relative_to(survey / "R001")
        target.parent.mkdir(parents=True, exist_ok=True)
        apply_metadata_file(path, target, update=MetadataUpdate(artist="R002"))
    ingest(catalog, [survey], SETTINGS)
    frame_2 = next(catalog.images(Selection(reels=("R001",), shots=("R001-000002",))))
    assert frame_2.captured_at is not None
    moved_at = frame_2.captured_at + timedelta(milliseconds=10)
    update = MetadataUpdate(captured_at=moved_at, utc_offset_minutes=frame_2.utc_offset_minutes)
    apply_metadata_file(survey / "R001/cam5/R001_cam5_000001.jpg", update=update)  # now in frame 2's shot
    for path in survey.rglob("*.jpg"):
        os.utime(path, (TOUCHED, TOUCHED))
    with Catalog.open(tmp_path / "reference.db") as reference:
        ingest(reference, [survey], SETTINGS)
        shots = {image.uri: image.shot for image in reference.images()}

    def interrupt(done: int, total: int) -> None:
        if done == 14:  # after R001's 12 files, written
            raise KeyboardInterrupt

    monkeypatch.setattr(panopipe.ingest, "COMMIT_FILES", 12)
    with pytest.raises(KeyboardInterrupt):
        ingest(catalog, [survey], SETTINGS, workers=1, progress=interrupt)
    monkeypatch.undo()
    assert ingest(catalog, [survey], SETTINGS).files_read == 12

    assert {image.uri: image.shot for image in catalog.images()} == shots
