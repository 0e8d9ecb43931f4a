"""Syncing a capture folder: skips what is stored, reports per file, resumes interrupted multipart uploads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from panopipe.storage import Storage
from panopipe.storage.s3 import MiB, S3Storage
from panopipe.sync import SyncProgress, sync_folder

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
