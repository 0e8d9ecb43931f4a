"""Bad files never stop an ingest, and reading a file costs memory for its header, not for its size."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, Selection
from panopipe.cli import main

DATA = Path(__file__).parents[1] / "data" / "exif"
JPEG = DATA / "pillow" / "hopper.jpg"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_name_with_a_control_character_is_one_failure(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(JPEG.read_bytes())
    (folder / "new\nline.jpg").write_bytes(JPEG.read_bytes())
    (folder / "z.jpg").write_bytes(JPEG.read_bytes()[:-10] + b"\xff\xd9")
    db = str(tmp_path / "c.db")
    reason = "invalid storage key 'new\\nline.jpg': control characters are not allowed"

    code, out, err = run(capsys, "ingest", str(folder), "--catalog", db)
    assert code == 1
    assert out.startswith("added 2, updated 0, unchanged 0, deleted 0, failed 1 in ")  # each file once
    assert err == f"error: {folder}/new\\nline.jpg: {reason}\n"  # one line, the name escaped
    with Catalog.open(db) as catalog:
        images = {image.uri: image for image in catalog.images()}
        assert {uri: image.status for uri, image in images.items()} == {
            str(folder / "a.jpg"): "ok",
            str(folder / "new\nline.jpg"): "failed",
            str(folder / "z.jpg"): "ok",
        }
        assert images[str(folder / "new\nline.jpg")].error == reason
        assert images[str(folder / "a.jpg")].content_hash == sha256(JPEG)
        assert images[str(folder / "z.jpg")].width == 128

    # Run again: the failed file is still reported as failed (from the catalog), not as unchanged.
    code, out, err = run(capsys, "ingest", str(folder), "--catalog", db, "--json")
    summary = json.loads(out)
    assert code == 1
    assert (summary["added"], summary["updated"], summary["unchanged"], summary["files_read"]) == (0, 0, 2, 0)
    assert summary["failed"] == [{"uri": str(folder / "new\nline.jpg"), "reason": reason}]
    code, out, err = run(capsys, "ingest", str(folder), "--catalog", db)
    assert code == 1 and "unchanged 2" in out and "failed 1" in out and reason in err


def test_a_file_named_with_a_control_character_as_the_only_argument_is_one_failure(
    capsys, tmp_path: Path
) -> None:
    bad = tmp_path / "dir" / "new\nline.jpg"
    bad.parent.mkdir()
    bad.write_bytes(JPEG.read_bytes())
    db = str(tmp_path / "c.db")
    reason = "invalid storage key 'new\\nline.jpg': control characters are not allowed"

    code, out, err = run(capsys, "ingest", str(bad), "--catalog", db)
    assert code == 1
    assert out.startswith("added 0, updated 0, unchanged 0, deleted 0, failed 1 in ")
    assert err == f"error: {bad.parent}/new\\nline.jpg: {reason}\n"
    with Catalog.open(db) as catalog:
        (image,) = catalog.images()
        assert (image.uri, image.status, image.error) == (str(bad), "failed", reason)
    code, out, err = run(capsys, "ingest", str(bad), "--catalog", db)
    assert code == 1 and "unchanged 0" in out and "failed 1" in out and reason in err


def test_a_failure_fixed_since_is_read_again(catalog: Catalog, tmp_path: Path) -> None:
    from panopipe.config import Settings
    from panopipe.ingest import ingest

    (tmp_path / "late.jpg").write_bytes(b"not yet a JPEG")
    report = ingest(catalog, [tmp_path], Settings())
    assert [failure.reason for failure in report.failed] == ["not a JPEG (starts with 6E 6F 74 20)"]
    assert (report.added, report.updated, report.unchanged) == (0, 0, 0)  # failed: counted there alone
    (tmp_path / "late.jpg").write_bytes(b"still not a JPEG")
    report = ingest(catalog, [tmp_path], Settings())
    assert (report.added, report.updated, report.unchanged, len(report.failed)) == (0, 0, 0, 1)
    (tmp_path / "late.jpg").write_bytes(JPEG.read_bytes())
    report = ingest(catalog, [tmp_path], Settings())
    assert (report.updated, report.failed) == (1, [])
    assert catalog.count(Selection(status="failed")) == 0


def test_what_the_catalog_cannot_hold_fails_that_file_alone(catalog: Catalog, tmp_path: Path) -> None:
    """On both backends alike (PostgreSQL refused the whole ingest with a traceback): the digits of a name too
    large for a frame counter are no frame, and a file whose path is longer than the catalog's URIs fails
    with its reason while the others are added."""
    from PIL import Image

    from panopipe.config import Settings
    from panopipe.ingest import ingest

    deep = tmp_path.joinpath(*(f"{n}" * 200 for n in range(1, 6)))
    deep.mkdir(parents=True)
    files = [tmp_path / "R009_cam0_3000000000.jpg", tmp_path / "R009_cam0_000001.jpg", deep / "far.jpg"]
    for shade, path in enumerate(files):
        Image.new("RGB", (16, 16), (shade * 60, 0, 0)).save(path)

    report = ingest(catalog, [tmp_path], Settings())

    assert [(failure.uri, failure.reason) for failure in report.failed] == [
        (
            str(deep / "far.jpg"),
            "its path is longer than 1024 characters, the most the catalog holds: shorten it",
        )
    ]
    assert report.added == 2
    assert sorted((Path(i.uri).name, i.frame) for i in catalog.images()) == [
        ("R009_cam0_000001.jpg", 1),
        ("R009_cam0_3000000000.jpg", None),
    ]


PEAK = textwrap.dedent(
    """
    import json, resource, sys
    from panopipe.catalog import Catalog
    from panopipe.config import Settings
    from panopipe.ingest import ingest

    with Catalog.open(sys.argv[2]) as catalog:
        catalog.count()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = ingest(catalog, [sys.argv[1]], Settings(), workers=1)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"grown_kib": grown, "report": report.to_dict()}))
    """
)


def test_memory_does_not_grow_with_the_file_size(tmp_path: Path) -> None:
    size = 300 << 20
    folder = tmp_path / "big"
    folder.mkdir()
    with (folder / "zeros.jpg").open("wb") as handle:  # sparse: no disk space used
        handle.truncate(size)
    with (folder / "long.jpg").open("wb") as handle:  # a real JPEG followed by 300 MB of (sparse) zeros
        handle.write(JPEG.read_bytes())
        handle.truncate(size)
    db = tmp_path / "c.db"
    result = subprocess.run(
        [sys.executable, "-c", PEAK, str(folder), str(db)], capture_output=True, text=True, check=True
    )
    measured = json.loads(result.stdout)
    report = measured["report"]
    assert report["failed"] == [
        {"uri": str(folder / "zeros.jpg"), "reason": "not a JPEG (starts with 00 00 00 00)"}
    ]
    assert (report["added"], report["updated"], report["unchanged"]) == (1, 0, 0)
    assert measured["grown_kib"] < 48 * 1024, measured  # the files are 300 MB each
    with Catalog.open(db) as catalog:
        (image,) = catalog.images(Selection(status="ok"))
        assert (image.uri, image.width, image.size) == (str(folder / "long.jpg"), 128, size)
        assert image.content_hash == sha256(folder / "long.jpg")


def test_a_reel_folder_name_too_long_for_the_catalog_is_one_failure(capsys, tmp_path: Path) -> None:
    """Its file is not taken for an image of no reel: it is recorded failed, saying why, and the rest go on."""
    long_reel = tmp_path / "photos" / ("R" * 129)
    good = tmp_path / "photos" / "R001"
    for n, folder in enumerate((long_reel, good)):
        folder.mkdir(parents=True)
        (folder / "0001.jpg").write_bytes(JPEG.read_bytes() + bytes(n))  # not copies of each other
    (good / "0002.jpg").write_bytes(JPEG.read_bytes()[:-10] + b"\xff\xd9")
    db = str(tmp_path / "c.db")
    bad = str(long_reel / "0001.jpg")

    code, out, _ = run(capsys, "ingest", str(tmp_path / "photos"), "--catalog", db, "--json")

    (failure,) = json.loads(out)["failed"]
    assert code == 1 and failure["uri"] == bad
    assert "reel folder name is too long" in failure["reason"] and "at most 128" in failure["reason"]
    with Catalog.open(db) as catalog:
        images = {image.uri: image for image in catalog.images()}
    assert (images[bad].status, images[bad].error, images[bad].reel) == ("failed", failure["reason"], None)
    assert {(image.reel, image.frame, image.status) for uri, image in images.items() if uri != bad} == {
        ("R001", 1, "ok"),
        ("R001", 2, "ok"),
    }
