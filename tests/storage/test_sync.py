"""Syncing a capture folder: skips what is stored, reports per file, resumes interrupted multipart uploads, and
keeps the catalog pointing at the copies, read there as they were catalogued."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from panopipe.catalog import Catalog
from panopipe.catalog.object_events import ObjectChange, padded_sequencer
from panopipe.config import Settings
from panopipe.demo import generate_survey
from panopipe.errors import ConfigError
from panopipe.ingest import HEADER_CHUNK, image_record, ingest
from panopipe.metadata import MetadataUpdate, apply_metadata_file
from panopipe.storage import Storage, open_storage
from panopipe.storage.s3 import MiB, S3Storage
from panopipe.sync import SyncProgress, file_sha256, sync_capture, sync_folder

from .conftest import BUCKET, PREFIX


class Interrupted(Exception):
    pass


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    folder = tmp_path / "capture"
    for name, size in [
        ("reel1/cam0/0001.jpg", 1000),
        ("reel1/cam1/0001.jpg", 2000),
        ("reel2/0001 b+c.jpg", 10),
    ]:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (folder / ".DS_Store").write_bytes(b"junk")
    return folder


def test_first_sync_uploads_everything_then_nothing(storage: Storage, capture: Path) -> None:
    first = sync_folder(capture, storage, workers=2)
    second = sync_folder(capture, storage)

    keys = ["reel1/cam0/0001.jpg", "reel1/cam1/0001.jpg", "reel2/0001 b+c.jpg"]
    assert first.uploaded == tuple(storage.uri(key) for key in keys)
    assert (first.skipped, first.failed, first.bytes_uploaded, first.bytes_total) == ((), {}, 3010, 3010)
    assert first.ok
    assert second.uploaded == () and second.skipped == first.uploaded and second.bytes_uploaded == 0
    for key in keys:
        assert storage.get(key) == (capture / key).read_bytes()
    assert [info.key for info in storage.list()] == keys


def test_changed_file_of_same_size_is_uploaded_again(storage: Storage, capture: Path) -> None:
    sync_folder(capture, storage)
    changed = capture / "reel1/cam0/0001.jpg"
    changed.write_bytes(os.urandom(1000))

    report = sync_folder(capture, storage)

    assert report.uploaded == (storage.uri("reel1/cam0/0001.jpg"),)
    assert storage.get("reel1/cam0/0001.jpg") == changed.read_bytes()


def test_dry_run_lists_without_uploading(storage: Storage, capture: Path) -> None:
    sync_folder(capture, storage)
    (capture / "reel3").mkdir()
    (capture / "reel3/0001.jpg").write_bytes(b"new")

    report = sync_folder(capture, storage, dry_run=True)

    assert report.dry_run and report.uploaded == (storage.uri("reel3/0001.jpg"),)
    assert len(report.skipped) == 3
    assert not storage.exists("reel3/0001.jpg")


def test_progress_reaches_totals(storage: Storage, capture: Path) -> None:
    seen: list[SyncProgress] = []

    sync_folder(capture, storage, workers=3, progress=seen.append)

    assert seen[-1] == SyncProgress(files_done=3, files_total=3, bytes_done=3010, bytes_total=3010)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


def test_a_bad_file_fails_alone_with_its_reason(storage: Storage, capture: Path) -> None:
    (capture / "bad\\name.jpg").write_bytes(b"x")

    report = sync_folder(capture, storage)

    assert not report.ok
    assert list(report.failed) == ["bad\\name.jpg"]
    assert "invalid storage key" in report.failed["bad\\name.jpg"]
    assert len(report.uploaded) == 3


def test_interrupted_sync_resumes_multipart_upload(s3, s3_storage: S3Storage, calls, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    folder.mkdir()
    big = folder / "pano.jpg"
    big.write_bytes(os.urandom(30 * MiB))  # six 5 MiB parts

    def interrupt_after_two_parts(progress: SyncProgress) -> None:
        if progress.bytes_done >= 10 * MiB:
            raise Interrupted

    with pytest.raises(Interrupted):
        sync_folder(folder, s3_storage, progress=interrupt_after_two_parts)
    uploaded_before = calls["UploadPart"]
    assert 2 <= uploaded_before < 6
    assert "CompleteMultipartUpload" not in calls
    assert len(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]) == 1
    calls.clear()

    resumed = sync_folder(folder, s3_storage)

    assert calls["UploadPart"] == 6 - uploaded_before
    assert "CreateMultipartUpload" not in calls
    assert resumed.uploaded == (f"s3://{BUCKET}/{PREFIX}/pano.jpg",)
    assert s3_storage.get("pano.jpg") == big.read_bytes()
    assert s3_storage.head("pano.jpg").sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
    calls.clear()

    again = sync_folder(folder, s3_storage)

    assert again.skipped == resumed.uploaded and again.uploaded == ()
    assert "UploadPart" not in calls and "PutObject" not in calls


def test_resumed_upload_of_changed_file_reuses_only_matching_parts(
    s3_storage: S3Storage, calls, tmp_path
) -> None:
    first_parts = os.urandom(10 * MiB)
    source = tmp_path / "pano.jpg"
    source.write_bytes(first_parts + os.urandom(5 * MiB))
    done: list[int] = []

    def interrupt_after_two_parts(nbytes: int) -> None:
        done.append(nbytes)
        if len(done) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        s3_storage.put_file("pano.jpg", source, progress=interrupt_after_two_parts)
    source.write_bytes(first_parts + os.urandom(7 * MiB))
    calls.clear()

    info = s3_storage.put_file("pano.jpg", source)

    assert calls["UploadPart"] == 2, "parts 1-2 are reused; part 3 changed and part 4 is new"
    assert calls["CopyObject"] == 1, "the SHA-256 metadata of the abandoned upload is rewritten"
    assert s3_storage.get("pano.jpg") == source.read_bytes()
    assert (
        info.sha256 == s3_storage.head("pano.jpg").sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    )


@pytest.fixture(scope="module")
def reel_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("survey")
    generate_survey(folder, shots=2, camera_size=(160, 120))
    return folder / "R001"


@pytest.fixture
def reel(reel_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reel_template, tmp_path / "survey/R001"))


def test_a_synced_reel_is_read_from_its_copy_as_it_was_catalogued(
    catalog: Catalog, storage: Storage, reel: Path
) -> None:
    settings = Settings()
    ingest(catalog, [reel], settings)
    before = {i.id: (i.reel, i.frame, i.camera_index, i.shot, i.content_hash) for i in catalog.images()}
    destination = open_storage(storage.uri("R001"), settings)  # the reel's folder keeps its name there

    report = sync_capture(catalog, reel, destination, settings)

    assert len(report.uploaded) == 12
    uris = {i.uri for i in catalog.images()}
    assert uris == {destination.uri(info.key) for info in destination.list()}
    # The catalog holds what tells the copies unchanged: an ingest of the destination reads none of them, and
    # the reel's images keep their ids, reels, frames, cameras and shots.
    again = ingest(catalog, [destination.root_uri], settings)
    assert (again.unchanged, again.files_read, again.updated, again.added) == (12, 0, 0, 0)
    after = {i.id: (i.reel, i.frame, i.camera_index, i.shot, i.content_hash) for i in catalog.images()}
    assert after == before
    # The capture folder is a copy of what the catalog holds on the destination, which the sync recorded (and
    # a sync again keeps): an ingest of it reads nothing and adds nothing.
    assert sync_capture(catalog, reel, destination, settings).skipped == report.uploaded
    local = ingest(catalog, [reel], settings)
    assert (local.added, local.unchanged_copies, local.files_read, catalog.count()) == (0, 12, 0, 12)


@pytest.mark.parametrize("camera_size", [(160, 120), (800, 600)], ids=["read-whole", "larger-than-a-header"])
def test_a_reel_uploaded_by_another_tool_is_known_for_the_catalogued_reel(
    s3, catalog: Catalog, tmp_path: Path, camera_size: tuple[int, int]
) -> None:
    """`aws s3 cp --recursive` stores no SHA-256 with the objects: an ingest of them added the reel again
    (24 images) and split its shots between the copies. An object read whole for its header, or the size of a
    catalogued file (then read whole), is known; the images follow their files to S3 as after `panopipe
    sync`, and a new image costs its header."""
    settings = Settings()
    reel = generate_survey(tmp_path / "survey", shots=2, camera_size=camera_size).folder / "R001"
    big = camera_size[0] > 160
    assert all((path.stat().st_size > HEADER_CHUNK) is big for path in reel.rglob("*.jpg"))
    ingest(catalog, [reel], settings)
    before = {i.id: (i.reel, i.frame, i.camera_index, i.shot, i.content_hash) for i in catalog.images()}
    for path in sorted(reel.rglob("*.jpg")):  # as aws s3 cp does: a plain PutObject, no x-amz-meta-sha256
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/R001/{path.relative_to(reel)}", Body=path.read_bytes())
    new = reel.parent / "new.jpg"
    shutil.copy(next(reel.rglob("*.jpg")), new)
    apply_metadata_file(new, update=MetadataUpdate(artist="another size"))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/R001/new.jpg", Body=new.read_bytes())

    report = ingest(catalog, [f"s3://{BUCKET}/{PREFIX}/R001/"], settings)

    assert (report.added, report.updated, report.duplicates) == (1, 12, [])
    after = {i.id: (i.reel, i.frame, i.camera_index, i.shot, i.content_hash) for i in catalog.images()}
    assert {key: after[key] for key in before} == before
    assert all(i.uri.startswith("s3://") for i in catalog.images())
    copies = sum(path.stat().st_size for path in reel.rglob("*.jpg"))
    headers = 12 * HEADER_CHUNK if big else 0  # the header read first, then the whole object
    assert copies + headers < report.bytes_read <= copies + headers + HEADER_CHUNK  # the new one: its header
    local = ingest(catalog, [reel], settings)  # the capture folder is now the copy, as after a sync
    assert (local.added, local.unchanged_copies, local.files_read) == (0, 12, 0)


def test_a_camera_folder_linked_into_the_reel_is_synced(
    catalog: Catalog, storage: Storage, reel: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    shutil.move(reel / "cam5", elsewhere / "cam5")
    (reel / "cam5").symlink_to(elsewhere / "cam5", target_is_directory=True)
    (reel / "cam4" / "back").symlink_to(reel, target_is_directory=True)  # a loop: walked once
    destination = open_storage(storage.uri("R001"), Settings())

    report = sync_capture(catalog, reel, destination, Settings())

    assert len(report.uploaded) == 12 and destination.exists("cam5/R001_cam5_000001.jpg")


@pytest.mark.parametrize(
    ("destination", "where"),
    [("reel1/copy", "is inside"), (".", "is"), ("..", "holds")],
)
def test_a_destination_folder_nested_with_the_capture_folder_is_refused(
    catalog: Catalog, capture: Path, destination: str, where: str
) -> None:
    storage = open_storage(capture / destination)
    before = sorted(capture.parent.rglob("*"))

    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=f"the destination {where} the capture folder; choose a folder"):
            sync_folder(capture, storage, dry_run=dry_run)
        with pytest.raises(ConfigError, match=f"the destination {where} the capture folder"):
            sync_capture(catalog, capture, storage, Settings(), dry_run=dry_run)

    assert sorted(capture.parent.rglob("*")) == before
    assert sync_folder(capture, open_storage(capture.parent / "copy")).ok  # beside it: fine


@pytest.mark.parametrize("destination", ["afile", "afile/R001"])
def test_a_destination_that_is_or_lies_under_a_file_is_refused(
    catalog: Catalog, capture: Path, tmp_path: Path, destination: str
) -> None:
    """Under a file, the dry run had said every file would be uploaded and the sync failed each one."""
    (tmp_path / "afile").write_text("x")
    storage = open_storage(tmp_path / destination)

    for dry_run in (True, False):
        with pytest.raises(
            ConfigError, match=f"cannot sync to {tmp_path / destination}: {tmp_path / 'afile'} "
        ):
            sync_folder(capture, storage, dry_run=dry_run)
        with pytest.raises(ConfigError, match="is a file, not a folder"):
            sync_capture(catalog, capture, storage, Settings(), dry_run=dry_run)
    assert (tmp_path / "afile").read_text() == "x"


def test_a_name_the_destination_cannot_hold_fails_alone_as_the_dry_run_says(
    catalog: Catalog, storage: Storage, reel: Path
) -> None:
    """A JPEG named with a backslash (unzipped from a Windows zip) stopped the whole sync (the layout check
    named it first), and a dry run stopped on a file of any kind so named, which the sync failed alone."""
    shutil.copy(reel / "cam0/R001_cam0_000002.jpg", reel / "cam0/a\\b_000002.jpg")
    (reel / "cam0/notes \t tab.txt").write_text("hi")
    # Latin-1 bytes, as unzip leaves a Windows zip's accented names: a traceback mid-upload, nothing reported
    shutil.copy(reel / "cam0/R001_cam0_000002.jpg", reel / os.fsdecode(b"cam0/caf\xe9_000002.jpg"))
    destination = open_storage(storage.uri("R001"), Settings())

    dry = sync_capture(catalog, reel, destination, Settings(), dry_run=True)
    assert list(storage.list()) == []
    report = sync_capture(catalog, reel, destination, Settings())

    for run in (dry, report):
        assert run.failed == {
            "cam0/a\\b_000002.jpg": "invalid storage key 'cam0/a\\\\b_000002.jpg': keys are relative, "
            "'/'-separated paths; rename the file",
            "cam0/notes \t tab.txt": "invalid storage key 'cam0/notes \\t tab.txt': control characters are "
            "not allowed; rename the file",
            "cam0/caf\\xe9_000002.jpg": "invalid storage key 'cam0/caf\\\\xe9_000002.jpg': the name is not valid "
            "UTF-8 (another encoding's, as unzip leaves from a Windows zip); rename the file",
        }
    assert dry.uploaded == report.uploaded and len(report.uploaded) == 12
    assert sorted(info.key for info in destination.list()) == sorted(
        path.relative_to(reel).as_posix() for path in reel.rglob("R001_*.jpg")
    )


def test_a_linked_folder_whose_target_is_missing_fails_and_hidden_names_stay_unread(
    catalog: Catalog, storage: Storage, reel: Path, tmp_path: Path
) -> None:
    """A camera's folder linked in from a disk not mounted had been left out without a word: the report looked
    complete. A hidden name is not synced, linked or not."""
    shutil.move(reel / "cam5", tmp_path / "disk")
    (reel / "cam5").symlink_to(tmp_path / "disk", target_is_directory=True)
    (reel / ".lock").symlink_to(tmp_path / "gone")
    (tmp_path / "disk").rename(tmp_path / "unmounted")
    destination = open_storage(storage.uri("R001"), Settings())

    dry = sync_capture(catalog, reel, destination, Settings(), dry_run=True)
    report = sync_capture(catalog, reel, destination, Settings())

    reason = f"a link to {tmp_path / 'disk'}, which does not exist (a disk not mounted?)"
    for run in (dry, report):
        assert run.failed == {"cam5": reason} and not run.ok
    assert dry.uploaded == report.uploaded and len(report.uploaded) == 10


def test_a_destination_that_would_change_reels_is_refused_before_uploading(
    catalog: Catalog, storage: Storage, reel: Path
) -> None:
    settings = Settings()
    ingest(catalog, [reel], settings)
    uris = {i.uri for i in catalog.images()}
    last_folder = storage.root_uri.rstrip("/").rsplit("/", 1)[-1]  # what the pattern takes for the reel
    message = (
        f"ingest would read {re.escape(storage.uri('cam0/R001_cam0_000001.jpg'))} as reel {last_folder}, "
        f"frame 1, camera 0, not reel R001, frame 1, camera 0 as here: "
        f"sync to {re.escape(storage.uri('R001'))} instead, to keep the folder's name$"
    )
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=message):
            sync_capture(catalog, reel, storage, settings, dry_run=dry_run)
    assert list(storage.list()) == [] and {i.uri for i in catalog.images()} == uris


def test_an_upload_catalogued_by_the_event_handler_first_takes_the_image_over(
    catalog: Catalog, s3, reel: Path
) -> None:
    settings = Settings()
    ingest(catalog, [reel], settings)
    ids = {i.uri: i.id for i in catalog.images()}
    destination = open_storage(f"s3://{BUCKET}/day1/R001", settings)
    # The stack's event handler catalogues an upload it is notified of before the sync repoints the catalog.
    key = "cam2/R001_cam2_000001.jpg"
    destination.put_file(key, reel / key)
    record = image_record(destination, key, settings.ingest)
    # The record has the SHA-256 that panopipe's upload stored with the object, read with the header.
    assert record.content_hash == file_sha256(reel / key)
    (applied,) = catalog.apply_object_events(
        [ObjectChange(record.uri, padded_sequencer("10"), record=record)]
    )
    assert applied is not None and applied.image_id == ids[str(reel / key)]

    report = sync_capture(catalog, reel, destination, settings)

    assert report.ok and report.not_repointed == () and len(report.skipped) == 1
    assert {i.uri: i.id for i in catalog.images()} == {
        destination.uri(Path(uri).relative_to(reel).as_posix()): image_id for uri, image_id in ids.items()
    }


def test_an_ingest_of_panopipes_uploads_knows_their_content(catalog: Catalog, s3, reel: Path) -> None:
    settings = Settings()
    uploads = open_storage(f"s3://{BUCKET}/day1/R001", settings)
    sync_folder(reel, uploads)
    key = "cam0/R001_cam0_000001.jpg"
    copy = "day1/R001/cam0/R001_cam0_000009.jpg"  # the same content under another frame's name
    s3.copy_object(Bucket=BUCKET, Key=copy, CopySource={"Bucket": BUCKET, "Key": f"day1/R001/{key}"})

    report = ingest(catalog, [f"s3://{BUCKET}/day1/"], settings)

    # The SHA-256 comes with the header's ranged GET (stored with each upload, kept by a copy): no more reads.
    assert (report.added, report.files_read) == (12, 13) and report.bytes_read <= 13 * HEADER_CHUNK
    assert [(d.uri, d.original_uri) for d in report.duplicates] == [
        (f"s3://{BUCKET}/{copy}", uploads.uri(key))
    ]
    hashes = {i.uri: i.content_hash for i in catalog.images()}
    assert hashes[uploads.uri(key)] == file_sha256(reel / key)
    assert all(
        hashes[uploads.uri(p.relative_to(reel).as_posix())] == file_sha256(p) for p in reel.rglob("*.jpg")
    )


def test_an_ingest_of_an_upload_of_catalogued_files_takes_their_images_over(
    catalog: Catalog, s3, reel: Path
) -> None:
    settings = Settings()
    ingest(catalog, [reel], settings)
    before = {i.id: (i.reel, i.frame, i.camera_index, i.shot) for i in catalog.images()}
    uploads = open_storage(f"s3://{BUCKET}/day1/R001", settings)
    sync_folder(reel, uploads)  # uploaded without the catalog, as another machine would

    report = ingest(catalog, [f"s3://{BUCKET}/day1/"], settings)

    assert (report.added, report.updated, report.duplicates) == (0, 12, [])
    after = {i.id: (i.reel, i.frame, i.camera_index, i.shot) for i in catalog.images()}
    assert after == before
    assert all(i.uri.startswith(uploads.root_uri) for i in catalog.images())
    # The files left behind are known as copies: an ingest of their folder reads none of them.
    local = ingest(catalog, [reel], settings)
    assert (local.unchanged_copies, local.files_read, local.added, catalog.count()) == (12, 0, 0, 12)
