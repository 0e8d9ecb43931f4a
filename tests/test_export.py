"""Exports say which vertical datum a height is in: the catalog's altitude (EXIF GPSAltitude) is above mean
sea level, so it is ``altitude_msl_m``, never a GeoJSON third coordinate (height above the ellipsoid)."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.flags import Flag
from panopipe.catalog.types import new_id
from panopipe.cli import main
from panopipe.export import EXPORT_NAMES, LISTED_FIELDS, images_table, write_csv, write_geojson, write_gpkg
from panopipe.export.table import Table, capture_time

JPEG = Path(__file__).parent / "data" / "exif" / "pillow" / "hopper.jpg"


def images(catalog: Catalog, tmp_path: Path) -> Table:
    # Munich, Marienplatz: 519.4 m above mean sea level is about 567 m above the WGS84 ellipsoid (N ≈ 47.6 m).
    catalog.upsert_images(
        [
            ImageRecord(
                uri=str(tmp_path / "a.jpg"), lat=48.137154, lon=11.576124, alt=519.4, reel="R1", frame=1
            ),
            ImageRecord(uri=str(tmp_path / "b.jpg"), lat=48.1372, lon=11.5762, reel="R1", frame=2),
        ]
    )
    return images_table(catalog)


def test_csv_names_the_altitude_above_mean_sea_level(catalog: Catalog, tmp_path: Path):
    out = io.StringIO()

    assert write_csv(images(catalog, tmp_path), out) == 2

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["altitude_msl_m"] for row in rows] == ["519.4", ""]
    assert [row["excluded"] for row in rows] == ["false", "false"]  # as GDAL reads Integer(Boolean)
    assert "alt" not in rows[0]
    assert (float(rows[0]["lat"]), float(rows[0]["lon"])) == (48.137154, 11.576124)


def test_geojson_keeps_the_altitude_out_of_the_coordinates(catalog: Catalog, tmp_path: Path):
    out = io.StringIO()

    assert write_geojson(images(catalog, tmp_path), out) == 2

    features = json.loads(out.getvalue())["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [[11.576124, 48.137154], [11.5762, 48.1372]]
    assert [f["properties"]["altitude_msl_m"] for f in features] == [519.4, None]
    assert "alt" not in features[0]["properties"]


def test_rows_read_column_by_column_are_the_images_as_the_catalog_gives_them(
    catalog: Catalog, tmp_path: Path
):
    """The export reads columns, not :class:`Image` objects: the same values (times to the microsecond, those of
    unknown UTC offset as their clock, edited values, exclusions, qc flags), the same order, deleted images left
    out."""
    rng = random.Random(3)
    start = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    records = [
        ImageRecord(
            uri=str(tmp_path / f"R{n % 3}" / f"{n}.jpg"),
            captured_at=None if n == 7 else start + timedelta(seconds=rng.random() * 1e5, microseconds=n),
            utc_offset_minutes=None if n % 2 else 120,
            lat=48 + rng.random(),
            lon=11 + rng.random(),
            alt=None if n % 4 else 500 + rng.random(),
            heading=rng.random() * 360,
            make="Acme",
            camera_index=n % 6,
            reel=f"R{n % 3}",
            frame=n,
            projection="equirectangular" if n % 5 == 0 else None,
        )
        for n in range(40)
    ]
    catalog.upsert_images(records)
    ids = [image.id for image in catalog.images()]
    catalog.apply_edit(
        catalog.plan_edit(Selection(reels=("R1",)), assign={"alt": 519.4}), reason="RTK", author="t"
    )
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(ids[4],)), assign={"excluded": True}), reason="thinned", author="t"
    )
    found = [Flag(ids[0], "duplicate"), Flag(ids[0], "gps-outlier", 12.5), Flag(ids[5], "stationary")]
    catalog.record_qc(ids, ["duplicate", "gps-outlier", "stationary"], found, run=new_id(), qc_version="1")
    catalog.mark_deleted([records[1].uri])

    expected = [
        {
            **{
                EXPORT_NAMES.get(name, name): getattr(image, name)
                for name in LISTED_FIELDS
                if name != "flags"
            },
            "captured_at": capture_time(image.captured_at, image.utc_offset_minutes),
            "flags": ";".join(image.flags) or None,
        }
        for image in catalog.images()
    ]

    rows = list(images_table(catalog).rows())
    assert rows == expected
    assert len(rows) == 39 and {row["altitude_msl_m"] for row in rows if row["reel"] == "R1"} == {519.4}
    assert next(row for row in rows if row["id"] == ids[0])["flags"] == "duplicate;gps-outlier"
    assert [row["id"] for row in rows if row["excluded"]] == [ids[4]]
    assert list(images_table(catalog, Selection(reels=("R2",))).rows()) == [
        r for r in expected if r["reel"] == "R2"
    ]


def test_an_unreadable_file_is_failed_with_its_reason(capsys, tmp_path: Path):
    """A GIS filters on ``status`` = failed and reads ``error``: the reason ingest recorded."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(JPEG.read_bytes())
    (folder / "b.jpg").write_bytes(b"\xff\xd8 not a JPEG at all")
    db = str(tmp_path / "c.db")
    assert main(["ingest", str(folder), "--catalog", db]) == 1
    with Catalog.open(db) as catalog:
        (failed,) = catalog.images(Selection(status="failed"))
    capsys.readouterr()

    assert main(["export", "--catalog", db, "-o", str(tmp_path / "i.csv")]) == 0

    rows = {row["uri"]: row for row in csv.DictReader((tmp_path / "i.csv").open(encoding="utf-8"))}
    assert (
        failed.error and rows[failed.uri]["error"] == failed.error and rows[failed.uri]["status"] == "failed"
    )
    assert (rows[str(folder / "a.jpg")]["status"], rows[str(folder / "a.jpg")]["error"]) == ("ok", "")


def test_an_image_without_flags_has_none_as_other_absent_values(catalog: Catalog, tmp_path: Path):
    import pyogrio.raw

    table = images(catalog, tmp_path)
    ids = table.values["id"]
    catalog.record_qc(ids, ["duplicate"], [Flag(ids[0], "duplicate")], run=new_id(), qc_version="1")
    out = io.StringIO()

    write_geojson(images_table(catalog), out)
    write_gpkg(images_table(catalog), tmp_path / "i.gpkg")

    features = json.loads(out.getvalue())["features"]
    assert [(f["properties"]["flags"], f["properties"]["gps_accuracy_m"]) for f in features] == [
        ("duplicate", None),
        (None, None),
    ]
    meta, _, _, fields = pyogrio.raw.read(tmp_path / "i.gpkg")
    assert list(fields[list(meta["fields"]).index("flags")]) == ["duplicate", None]


@pytest.mark.exiftool
def test_a_capture_time_of_unknown_zone_is_never_labelled_utc(tmp_path: Path, capsys):
    """Two 360° images taken at 14:00 on a New York camera's clock: one says its offset (-04:00), the other
    neither an offset nor a GPS time to infer it from (exiftool writes both). In every export that carries a
    capture time the first is 18:00 UTC, marked so; the second is the clock as read, with no zone: ISO 8601
    without ``Z``, and GDAL's "unknown" time zone in the GeoPackage, not its UTC flag."""
    import subprocess

    import pyogrio.raw
    from PIL import Image as PILImage

    for reel, offset in (("K1", ["-OffsetTimeOriginal=-04:00"]), ("U1", [])):
        path = tmp_path / "cap" / reel / "pano_000001.jpg"
        path.parent.mkdir(parents=True)
        PILImage.new("RGB", (64, 32), (90, 120, 200)).save(path)
        gps = ["-GPSLatitude=40.7", "-GPSLatitudeRef=N", "-GPSLongitude=74", "-GPSLongitudeRef=W"]
        tags = [
            "-DateTimeOriginal=2024:06:01 14:00:00",
            *offset,
            *gps,
            "-XMP-GPano:ProjectionType=equirectangular",
        ]
        subprocess.run(["exiftool", "-q", "-overwrite_original", *tags, str(path)], check=True)
    db = str(tmp_path / "c.db")
    assert main(["ingest", str(tmp_path / "cap"), "--catalog", db]) == 0
    utc, clock = "2024-06-01T18:00:00Z", "2024-06-01T14:00:00"
    for of, column in (("images", "captured_at"), ("panoramas", "captured_at"), ("sequences", "start")):
        for fmt in ("csv", "geojson", "gpkg"):
            target = tmp_path / f"{of}.{fmt}"
            capsys.readouterr()
            assert main(["export", "--catalog", db, "--of", of, "-o", str(target)]) == 0, capsys.readouterr()
            if fmt == "csv":
                rows = list(csv.DictReader(target.open(encoding="utf-8")))
            elif fmt == "geojson":
                rows = [f["properties"] for f in json.loads(target.read_text(encoding="utf-8"))["features"]]
            else:  # as GDAL reads the GeoPackage: a time of its UTC flag ends in Z
                meta, _, _, fields = pyogrio.raw.read(target, datetime_as_string=True)
                names = list(meta["fields"])
                rows = [dict(zip(names, values, strict=True)) for values in zip(*fields, strict=True)]
            times = {row["reel"]: row[column] for row in rows}
            assert times == {"K1": utc, "U1": clock}, (of, fmt)
            if of == "sequences":
                assert {row["reel"]: row["end"] for row in rows} == times, (of, fmt)
            if of == "images" and fmt != "gpkg":
                assert {row["reel"]: row["utc_offset_minutes"] for row in rows} in (
                    {"K1": "-240", "U1": ""},
                    {"K1": -240, "U1": None},
                )
    assert main(["export", "--catalog", db, "--format", "oid", "-o", str(tmp_path / "oid.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "oid.csv").open(encoding="utf-8")))
    assert {row["Reel"]: row["AcquisitionDate"] for row in rows} == {
        "K1": "2024-06-01 18:00:00.000",
        "U1": "2024-06-01 14:00:00.000",
    }
