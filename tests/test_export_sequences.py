"""``export --of sequences``: a line per run of capture, cut at time gaps, on SQLite and PostgreSQL, read back
by GDAL's ogrinfo; lengths checked against pyproj's geodesic."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest
from pyproj import Geod
from tests.pipeline.captures import T0, record
from tests.test_export_panoramas import GDAL_TYPES, declared, ogrinfo, run

from panopipe.catalog import Catalog, Selection
from panopipe.export import SEQUENCE_COLUMNS

GEOD = Geod(ellps="WGS84")
TRACK = [(round(11.5 + i * 2e-4, 7), round(48.1 + i * 1e-4, 7)) for i in range(8)]
"""(lon, lat) of R001's panoramas: two runs of 4, 60 s apart."""


@pytest.fixture
def catalog_with_two_reels(tmp_path: Path, catalog_url: str) -> str:
    """R001: 8 rig shots of 2 frames each (the frames' positions 2 m apart either side of the shot's), a stop
    of 60 s after the 4th; P001: 3 360° images 10 s apart, one without a position; one image without a time."""
    records = []
    for n, (lon, lat) in enumerate(TRACK):
        seconds = n + (60 if n >= 4 else 0)
        for camera, offset in ((0, -2e-5), (1, 2e-5)):
            records.append(
                record(
                    tmp_path / "R001" / f"cam{camera}" / f"{n}.jpg",
                    f"frame {n} {camera}".encode(),
                    n,
                    lon=lon + offset,
                    lat=lat,
                    camera_index=camera,
                    captured_at=T0 + timedelta(seconds=seconds, milliseconds=10 * camera),
                )
            )
    for n in range(3):
        placed = {} if n == 2 else {"lon": 2.35 + n * 1e-4, "lat": 48.85}
        records.append(
            record(
                tmp_path / "P001" / f"{n}.jpg",
                f"pano {n}".encode(),
                n,
                reel="P001",
                projection="equirectangular",
                captured_at=T0 + timedelta(seconds=10 * n),
                **({"lon": None, "lat": None} | placed),
            )
        )
    records.append(record(tmp_path / "P001" / "undated.jpg", b"undated", 9, reel="P001", captured_at=None))
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images(records)
        catalog.assign_shots(["R001", "P001"], 0.05)
    return catalog_url


def test_a_stop_longer_than_the_break_gap_starts_a_new_sequence(capsys, catalog_with_two_reels: str):
    code, out, err = run(capsys, "export", "--of", "sequences", "--catalog", catalog_with_two_reels)

    assert code == 0 and err == "exported 3 sequence(s)\n"
    rows = list(csv.DictReader(out.splitlines()))
    assert [(r["id"], r["panoramas"], r["first_frame"], r["last_frame"]) for r in rows] == [
        ("P001/1", "2", "0", "1"),  # the image without a position is not on the line
        ("R001/1", "4", "0", "3"),
        ("R001/2", "4", "4", "7"),
    ]
    first = rows[1]
    assert (first["start"], first["end"], first["duration_s"]) == (
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:03Z",
        "3.0",
    )
    # a shot's point is the mean of its frames'
    assert first["line"] == "LINESTRING (" + ", ".join(f"{lon!r} {lat!r}" for lon, lat in TRACK[:4]) + ")"
    lons, lats = zip(*TRACK[:4], strict=True)
    assert float(first["length_m"]) == pytest.approx(
        GEOD.line_length(lons, lats), rel=5e-3
    )  # sphere, ellipsoid


def test_the_break_gap_is_the_qc_setting(capsys, tmp_path: Path, catalog_with_two_reels: str):
    config = tmp_path / "panopipe.toml"
    config.write_text("[qc]\nbreak_gap_s = 90\n", encoding="utf-8")
    args = ("export", "--of", "sequences", "--reel", "R001", "--catalog", catalog_with_two_reels)

    out = run(capsys, *args, "--config", str(config))[1]

    (row,) = csv.DictReader(out.splitlines())
    assert (row["id"], row["panoramas"], row["duration_s"]) == ("R001/1", "8", "67.0")


def test_sequences_open_as_lines_in_gdal_with_their_declared_types(
    capsys, tmp_path: Path, catalog_with_two_reels: str
):
    fields = {column.name: column for column in SEQUENCE_COLUMNS if column.type != "line"}
    for name, fmt in (("s.csv", "csv"), ("s.gpkg", "gpkg"), ("s.geojson", "geojson")):
        target = tmp_path / name
        args = ("export", "--of", "sequences", "--format", fmt, "-o", str(target))
        code, _, err = run(capsys, *args, "--catalog", catalog_with_two_reels)
        assert code == 0, err
        summary, types = ogrinfo(target)
        assert "Geometry: Line String" in summary or fmt == "csv", summary
        assert 'ID["EPSG",4326]' in summary and "Feature Count: 3" in summary
        if fmt == "csv":  # the geometry is read from the WKT column: its type is known per feature
            assert "Geometry: Unknown (any)" in summary and "Geometry Column = geom_line" in summary
            del types["Geometry"]
            assert types == {**declared(tuple(fields.values())), "line": "String"}
        elif fmt == "gpkg":
            assert types == declared(tuple(fields.values()))
        else:  # no schema: GDAL types a property by its values
            assert types == declared(tuple(fields.values())) | {
                "sequence": "Integer",
                "panoramas": "Integer",
                "first_frame": "Integer",
                "last_frame": "Integer",
            }
    features = json.loads((tmp_path / "s.geojson").read_text(encoding="utf-8"))["features"]
    assert features[1]["geometry"] == {"type": "LineString", "coordinates": [list(p) for p in TRACK[:4]]}
    assert "line" not in features[1]["properties"]


def test_a_sequence_keeps_its_number_in_the_reel_whatever_is_selected(capsys, catalog_with_two_reels: str):
    """R001/2 is the run after the stop in every export: numbered over the whole reel, then selected."""
    args = ("export", "--of", "sequences", "--catalog", catalog_with_two_reels, "--reel", "R001")
    whole = list(csv.DictReader(run(capsys, *args)[1].splitlines()))

    later = list(csv.DictReader(run(capsys, *args, "--since", "2024-05-01T10:00:02Z")[1].splitlines()))
    second = list(csv.DictReader(run(capsys, *args, "--since", "2024-05-01T10:01:00Z")[1].splitlines()))

    assert [(r["id"], r["sequence"], r["first_frame"]) for r in whole] == [
        ("R001/1", "1", "0"),
        ("R001/2", "2", "4"),
    ]
    assert [(r["id"], r["panoramas"], r["first_frame"]) for r in later] == [
        ("R001/1", "2", "2"),
        ("R001/2", "4", "4"),
    ]
    assert second == [whole[1]]


def test_a_sequence_across_the_antimeridian_is_cut_there_in_geojson(capsys, tmp_path: Path, catalog_url: str):
    """RFC 7946 3.1.9: a line that crosses the antimeridian is cut in two; here, westward and back eastward,
    each crossing halfway between two panoramas 1° apart in longitude and 2° in latitude."""
    track = [(179.0, 10.0), (179.5, 11.0), (-179.5, 13.0), (179.5, 15.0)]
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images(
            [
                record(
                    tmp_path / "F001" / f"{n}.jpg",
                    b"%d" % n,
                    n,
                    reel="F001",
                    projection="equirectangular",
                    lon=lon,
                    lat=lat,
                    captured_at=T0 + timedelta(seconds=n),
                )
                for n, (lon, lat) in enumerate(track)
            ]
        )
    args = ("export", "--of", "sequences", "--format", "geojson", "--catalog", catalog_url)

    (feature,) = json.loads(run(capsys, *args)[1])["features"]

    assert feature["geometry"] == {
        "type": "MultiLineString",
        "coordinates": [
            [[179.0, 10.0], [179.5, 11.0], [180.0, 12.0]],
            [[-180.0, 12.0], [-179.5, 13.0], [-180.0, 14.0]],
            [[180.0, 14.0], [179.5, 15.0]],
        ],
    }


def test_one_panorama_is_a_line_of_no_length(capsys, catalog_with_two_reels: str):
    args = ("export", "--of", "sequences", "--format", "geojson", "--catalog", catalog_with_two_reels)
    out = run(capsys, *args, "--since", "2024-05-01T10:00:05Z", "--reel", "P001")[1]

    (feature,) = json.loads(out)["features"]
    (point,) = {tuple(p) for p in feature["geometry"]["coordinates"]}
    assert point == (2.3501, 48.85) and feature["properties"]["length_m"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "oid"], "--format oid lists panoramas (360° images)"),
        (["--base-url", "https://cdn.example.com"], "--base-url names published files"),
    ],
)
def test_options_that_do_not_go_with_sequences(capsys, catalog_with_two_reels: str, args, message):
    code, out, err = run(capsys, "export", "--of", "sequences", *args, "--catalog", catalog_with_two_reels)
    assert (code, out) == (2, "") and err.startswith(f"error: {message}")


def test_docs_list_every_column_with_its_type():
    text = (Path(__file__).parents[1] / "docs" / "exports.md").read_text(encoding="utf-8")
    assert [c.name for c in SEQUENCE_COLUMNS if f"| `{c.name}` | {c.type} |" not in text] == []
    assert set(GDAL_TYPES) | {"line"} >= {c.type for c in SEQUENCE_COLUMNS}


def test_images_without_a_reel_form_sequences_of_their_own(capsys, tmp_path: Path, catalog_url: str):
    # 360° images straight from their camera: no reel, and shots of their own
    images = [
        record(
            tmp_path / f"{n}.jpg",
            f"pano {n}".encode(),
            n,
            reel=None,
            frame=None,
            projection="equirectangular",
        )
        for n in (0, 1, 100)
    ]
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images(images)

    out = run(capsys, "export", "--of", "sequences", "--catalog", catalog_url)[1]

    assert [(r["id"], r["reel"], r["panoramas"]) for r in csv.DictReader(out.splitlines())] == [
        ("1", "", "2"),
        ("2", "", "1"),
    ]


def test_excluded_panoramas_and_null_island_positions_are_not_on_the_line(
    capsys, catalog_with_two_reels: str
):
    with Catalog.open(catalog_with_two_reels) as catalog:
        shots = sorted({image.shot for image in catalog.images(Selection(reels=("R001",)))})
        for shot, assign in ((shots[1], {"excluded": True}), (shots[2], {"lat": 0.001, "lon": 0.002})):
            changes = catalog.plan_edit(Selection(shots=(shot,)), assign=assign)  # thinned; a 0,0 fix
            catalog.apply_edit(changes, reason="test", author="test")

    code, out, _ = run(
        capsys, "export", "--of", "sequences", "--reel", "R001", "--catalog", catalog_with_two_reels
    )

    first = next(csv.DictReader(out.splitlines()))
    assert code == 0 and (first["id"], first["panoramas"], first["first_frame"]) == ("R001/1", "2", "0")
    assert first["line"] == f"LINESTRING ({TRACK[0][0]!r} {TRACK[0][1]!r}, {TRACK[3][0]!r} {TRACK[3][1]!r})"
