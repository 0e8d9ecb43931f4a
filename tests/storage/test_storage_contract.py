"""The behaviour every storage backend shares, run against a folder and an S3 bucket."""

from __future__ import annotations

import hashlib

import pytest

from panopipe.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from panopipe.storage import Storage

DATA = bytes(range(256)) * 40


def test_put_then_get_head_and_uri(storage: Storage) -> None:
    info = storage.put("reel1/cam0/0001.jpg", DATA)

    assert info.size == len(DATA)
    assert info.uri == storage.uri("reel1/cam0/0001.jpg")
    assert storage.key(info.uri) == "reel1/cam0/0001.jpg"
    assert storage.get("reel1/cam0/0001.jpg") == DATA
    assert storage.head("reel1/cam0/0001.jpg").size == len(DATA)
    assert storage.exists("reel1/cam0/0001.jpg")


def test_put_replaces_existing_object(storage: Storage) -> None:
    storage.put("a.jpg", b"old content")
    storage.put("a.jpg", b"new")

    assert storage.get("a.jpg") == b"new"
    assert storage.head("a.jpg").size == 3


@pytest.mark.parametrize("size", [10, 6 * 1024 * 1024])  # S3: one PutObject, and a multipart upload
def test_put_new_creates_once_and_never_replaces(storage: Storage, size: int) -> None:
    first, second = b"1" * size, b"2" * size
    info = storage.put_new("once/a.jpg", first)

    with pytest.raises(ObjectExistsError, match="already exists"):
        storage.put_new("once/a.jpg", second)

    assert info.size == size
    assert storage.get("once/a.jpg") == first
    assert [i.key for i in storage.list("once/")] == ["once/a.jpg"]  # no temporary file or upload left


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [(0, 10, DATA[:10]), (100, 50, DATA[100:150]), (len(DATA) - 5, 100, DATA[-5:]), (len(DATA), 10, b"")],
    ids=["head", "middle", "past-end", "at-end"],
)
def test_read_range(storage: Storage, start: int, length: int, expected: bytes) -> None:
    storage.put("img.jpg", DATA)

    assert storage.read_range("img.jpg", start, length) == expected


@pytest.mark.parametrize("length", [10, len(DATA), len(DATA) + 100, 0])
def test_read_start_gives_the_first_bytes_and_what_head_tells(storage: Storage, length: int) -> None:
    storage.put("img.jpg", DATA)

    data, info = storage.read_start("img.jpg", length)

    assert data == DATA[:length]
    head = storage.head("img.jpg")
    assert (info.size, info.etag, info.key, info.uri) == (len(DATA), head.etag, "img.jpg", head.uri)


def test_read_start_of_an_empty_or_missing_object(storage: Storage) -> None:
    storage.put("empty.jpg", b"")
    data, info = storage.read_start("empty.jpg", 64)
    assert (data, info.size) == (b"", 0)
    with pytest.raises(ObjectNotFoundError):
        storage.read_start("missing.jpg", 64)


def test_read_range_zero_length_and_negative(storage: Storage) -> None:
    storage.put("img.jpg", DATA)

    assert storage.read_range("img.jpg", 3, 0) == b""
    with pytest.raises(StorageError):
        storage.read_range("img.jpg", -1, 3)


@pytest.mark.parametrize("read", ["head", "get", "read_range", "sha256"])
def test_missing_object(storage: Storage, read: str) -> None:
    args = ("nope/missing.jpg", 0, 10) if read == "read_range" else ("nope/missing.jpg",)

    with pytest.raises(ObjectNotFoundError, match=r"missing\.jpg"):
        getattr(storage, read)(*args)
    assert not storage.exists("nope/missing.jpg")


def test_delete(storage: Storage) -> None:
    storage.put("a.jpg", b"x")

    storage.delete("a.jpg")
    storage.delete("a.jpg")

    assert not storage.exists("a.jpg")


def test_list_by_prefix_in_key_order(storage: Storage) -> None:
    for key in ("r2/b.jpg", "r1/b.jpg", "r1/a.jpg", "r10/a.jpg"):
        storage.put(key, key.encode())

    assert [info.key for info in storage.list()] == ["r1/a.jpg", "r1/b.jpg", "r10/a.jpg", "r2/b.jpg"]
    assert [info.key for info in storage.list("r1/")] == ["r1/a.jpg", "r1/b.jpg"]
    assert [(info.size, info.uri) for info in storage.list("r2")] == [(8, storage.uri("r2/b.jpg"))]
    assert list(storage.list("none/")) == []
    # a scan gives the same, with nothing it could not look into (an S3 prefix has no links to follow)
    assert list(storage.scan("r1/")) == list(storage.list("r1/"))


@pytest.mark.parametrize(
    "key", ["with space/a b.jpg", "plus+sign/1+1.jpg", "ünïcødé/東京 001.jpg", "a%20b/c?d.jpg"]
)
def test_unusual_keys_round_trip(storage: Storage, key: str) -> None:
    storage.put(key, DATA)

    assert storage.get(key) == DATA
    assert storage.read_range(key, 1, 2) == DATA[1:3]
    assert [info.key for info in storage.list()] == [key]


@pytest.mark.parametrize(
    "key", ["../escape.jpg", "a/../../b.jpg", "/abs.jpg", "a//b.jpg", "./a.jpg", "a\\b.jpg", ""]
)
def test_keys_that_could_escape_are_refused(storage: Storage, key: str) -> None:
    for attempt in (lambda: storage.put(key, b"x"), lambda: storage.get(key), lambda: storage.delete(key)):
        with pytest.raises(StorageError, match="invalid storage key"):
            attempt()
    assert list(storage.list()) == []


def test_put_file_reports_progress(storage: Storage, tmp_path) -> None:
    source = tmp_path / "src.jpg"
    source.write_bytes(DATA)
    seen: list[int] = []

    info = storage.put_file("f/src.jpg", source, progress=seen.append)

    assert sum(seen) == info.size == len(DATA)
    assert storage.get("f/src.jpg") == DATA


def test_sha256(storage: Storage) -> None:
    storage.put("a.jpg", DATA)

    assert storage.sha256("a.jpg") == hashlib.sha256(DATA).hexdigest()


def test_stats_count_reads_per_key(storage: Storage) -> None:
    storage.put("a.jpg", DATA)
    storage.put("b.jpg", DATA)

    storage.head("a.jpg")
    storage.read_range("a.jpg", 0, 100)
    storage.read_range("a.jpg", len(DATA) - 10, 100)
    storage.get("b.jpg")

    a = storage.stats.get("a.jpg")
    assert (a.requests, a.bytes_read) == (3, 110)
    assert storage.stats.pop("b.jpg").bytes_read == len(DATA)
    assert storage.stats.get("b.jpg").requests == 0
    assert (storage.stats.total.requests, storage.stats.total.bytes_read) == (4, 110 + len(DATA))
