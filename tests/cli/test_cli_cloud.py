"""`panopipe sync` against moto's threaded server, and `panopipe events parse` on a saved event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from panopipe.cli import main
from panopipe.metadata import MetadataUpdate, apply_metadata_file

EVENTS = Path(__file__).parents[1] / "data" / "events"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "PANOPIPE_S3_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="captures")
    yield endpoint
    server.stop()


def test_sync_uploads_once_and_points_the_catalog_at_s3(capsys, tmp_path: Path, s3_endpoint: str):
    db = str(tmp_path / "c.db")
    assert main(["demo", "--folder", str(tmp_path / "d"), "--shots", "1", "--catalog", db]) == 0
    capsys.readouterr()
    capture = str(tmp_path / "d" / "R001")
    # The reel's files straight into the day's prefix would be read there as reel day1: refused, saying where.
    assert main(["sync", capture, "s3://captures/day1", "--catalog", db, "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "error: ingest would read s3://captures/day1/cam0/R001_cam0_000001.jpg as reel day1, frame 1, camera 0, "
        "not reel R001, frame 1, camera 0 as here: sync to s3://captures/day1/R001 instead, to keep the "
        "folder's name\n"
    )
    destination = "s3://captures/day1/R001"
    assert main(["sync", capture, destination, "--catalog", db, "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == 6
    assert main(["sync", capture, destination, "--catalog", db, "--dry-run"]) == 0
    megabytes = sum(path.stat().st_size for path in Path(capture).rglob("*.jpg")) / 1e6
    assert capsys.readouterr().out == f"would upload 6, skipped 0, failed 0 ({megabytes:.1f} MB)\n"  # no rate
    assert main(["ls", "--catalog", db, "--json"]) == 0
    assert all(row["uri"].startswith(capture) for row in json.loads(capsys.readouterr().out))

    assert main(["sync", capture, destination, "--catalog", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == 6
    assert main(["sync", capture, destination, "--catalog", db, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["uploaded"], second["skipped"], second["not_repointed"]) == (0, 6, [])
    assert main(["ls", "--catalog", db, "--json"]) == 0
    rows = sorted(json.loads(capsys.readouterr().out), key=lambda row: row["uri"])
    assert rows[0]["uri"] == "s3://captures/day1/R001/cam0/R001_cam0_000001.jpg" and len(rows) == 6
    assert {row["reel"] for row in rows} == {"R001"}

    # The catalog knows the copies as they are stored: an ingest of the prefix reads none of them again.
    assert main(["ingest", "s3://captures/day1/", "--catalog", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["updated"], report["unchanged"], report["files_read"]) == (0, 0, 6, 0)


def test_sync_says_which_images_it_could_not_repoint(capsys, tmp_path: Path, s3_endpoint: str):
    db = str(tmp_path / "c.db")
    assert main(["demo", "--folder", str(tmp_path / "d"), "--shots", "1", "--catalog", db]) == 0
    capture = tmp_path / "d" / "R001"
    # Another file uploaded by another tool where the sync puts this one, and catalogued before the sync: an
    # image of its own has that URI now (a copy of the same file would be known as one, see test_sync.py).
    key = "cam1/R001_cam1_000001.jpg"  # under day2: moto's servers in one process share their buckets
    other = tmp_path / "other.jpg"
    apply_metadata_file(capture / key, other, update=MetadataUpdate(artist="another file"))
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.upload_file(str(other), "captures", f"day2/R001/{key}")
    assert main(["ingest", "s3://captures/day2/R001/", "--catalog", db]) == 0
    capsys.readouterr()

    assert main(["sync", str(capture), "s3://captures/day2/R001", "--catalog", db]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("uploaded 6, skipped 0, failed 0")
    assert err == (
        f"warning: not repointed: 1 catalogued image(s), such as {capture / key}: other images have their new "
        "URIs already (copies uploaded there by another tool and catalogued)\n"
    )
    assert main(["ls", "--catalog", db, "--json"]) == 0
    uris = {row["uri"] for row in json.loads(capsys.readouterr().out)}
    assert len(uris) == 7 and str(capture / key) in uris and f"s3://captures/day2/R001/{key}" in uris


def test_ingest_from_s3_reads_headers_only(capsys, tmp_path: Path, s3_endpoint: str):
    db = str(tmp_path / "c.db")
    assert main(["demo", "--folder", str(tmp_path / "d"), "--shots", "1", "--catalog", db]) == 0
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    sizes = []
    for path in sorted((tmp_path / "d" / "R001").rglob("*.jpg")):
        client.upload_file(str(path), "captures", f"raw/R001/{path.parent.name}/{path.name}")
        sizes.append(path.stat().st_size)
    capsys.readouterr()
    other = str(tmp_path / "s3.db")
    assert main(["ingest", "s3://captures/raw", "--catalog", other, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 6 and report["files_read"] == 6
    # One ranged GET of at most 64 KiB per image, however large the object.
    assert report["bytes_read_per_image"] <= 65536 < max(sizes)
    assert main(["ls", "--catalog", other, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["reel"], r["frame"], r["shot"]) for r in rows} == {("R001", 1, "R001-000001")}

    # One object's URI ingests that object; a prefix that holds nothing (mistyped) is said to hold nothing.
    one = str(tmp_path / "one.db")
    assert (
        main(["ingest", "s3://captures/raw/R001/cam2/R001_cam2_000001.jpg", "--catalog", one, "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["added"] == 1
    assert main(["ingest", "s3://captures/raw/R01", "--catalog", one]) == 0
    assert capsys.readouterr().err == (
        "warning: nothing to ingest in s3://captures/raw/R01: it holds no file (check the path or prefix)\n"
    )


def test_events_parse_prints_normalized_events(capsys):
    assert main(["events", "parse", str(EVENTS / "aws-lambda-dotnet" / "s3-event.json")]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [(e["bucket"], e["key"], e["kind"]) for e in events] == [
        ("sourcebucket", "HappyFace.jpg", "created"),
        ("sourcebucket", "New File.jpg", "created"),
    ]
    for required in ("size", "etag", "version_id", "sequencer", "time"):
        assert required in events[0]
