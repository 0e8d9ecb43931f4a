"""Linear referencing: route files, measures to the centimetre, and route add / locate through the CLI."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import require

from panopipe.catalog import Catalog, ImageRecord
from panopipe.catalog.routes import Route
from panopipe.cli import main
from panopipe.errors import CatalogError, ConfigError
from panopipe.qc.flag_names import ROUTE_FLAGS
from panopipe.qc.synthetic import synthetic_route
from panopipe.routes import measure_points, read_route


def test_measures_and_offsets_are_true_to_a_decimetre_along_50_km():
    synthetic = synthetic_route(500)
    measure, offset = measure_points(synthetic.route, synthetic.lat, synthetic.lon)
    assert np.max(np.abs(measure - synthetic.measure)) * 1000 < 0.1
    assert np.max(np.abs(offset - synthetic.offset_m)) < 0.1


@pytest.mark.parametrize(
    "vertices",
    [((7.0, 46.0), (7.01, 46.0), (7.02, 46.001)), ((179.99, -17.0), (-179.995, -17.0), (-179.98, -17.001))],
    ids=["alps", "antimeridian"],
)
def test_an_offset_is_the_geodesic_distance_to_the_line_however_far(vertices):
    """Off-route images are flagged with their distance: checked against pyproj's geodesic distance to the
    line drawn densely, from 50 m to the far side of the earth (beyond any transverse Mercator's reach)."""
    import pyproj

    geod = pyproj.Geod(ellps="WGS84")
    route = read_route_of(vertices)
    dense = np.concatenate(
        [geod.npts(*a, *b, 2000, initial_idx=0, terminus_idx=0) for a, b in itertools.pairwise(vertices)]
    )
    (lon0, lat0), distances = vertices[1], [50.0, 5e3, 5e5, 2e6, 9e6, 1.5e7]
    points = [geod.fwd(lon0, lat0, bearing, d)[:2] for d in distances for bearing in (10.0, 200.0)]
    lon, lat = np.array(points).T
    measure, offset = measure_points(route, lat, lon)
    for i, (x, y) in enumerate(points):
        expected = np.min(geod.inv(np.full(len(dense), x), np.full(len(dense), y), *dense.T)[2])
        assert abs(offset[i]) == pytest.approx(expected, rel=1e-3, abs=0.05), (x, y)
    assert np.isfinite(measure[:2]).all()  # the ones 50 m away are on the route's stretch


def read_route_of(vertices: tuple[tuple[float, float], ...]) -> Route:
    return Route("R", vertices, None, 0.0, "km", "test")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, geometry: dict[str, object]) -> Path:
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geometry}]})
    )
    return path


def test_route_add_locate_ls_show(capsys, catalog_url: str, tmp_path: Path):
    points = synthetic_route(1, vertices=40, spacing_m=100.0).route.coordinates
    measured = [[lon, lat, 0.0, 2.0 + 0.1 * k] for k, (lon, lat) in enumerate(points)]  # km posts every 100 m
    line = write(tmp_path / "r1.geojson", {"type": "LineString", "coordinates": measured})
    Catalog.open(catalog_url).close()
    code, _, err = cli(capsys, "route", "add", "R-1", str(line), "--unit", "km", "--catalog", catalog_url)
    assert code == 0, err
    with Catalog.open(catalog_url) as catalog:
        lon, lat = points[10]
        far_lon, far_lat = lon, lat + 0.1  # 11 km north: far from the whole 4 km line
        catalog.upsert_images(
            [
                ImageRecord(uri="/a/1.jpg", reel="A", frame=1, lat=lat, lon=lon),
                ImageRecord(uri="/a/2.jpg", reel="A", frame=2),
                ImageRecord(uri="/b/1.jpg", reel="B", frame=1, lat=far_lat, lon=far_lon),
            ]
        )
    code, out, _ = cli(capsys, "route", "locate", "--catalog", catalog_url, "--json", "--dry-run")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] is True
    with Catalog.open(catalog_url) as catalog:
        assert {i.measure for i in catalog.images()} == {None}  # a dry run stores nothing
    code, out, err = cli(capsys, "route", "locate", "--catalog", catalog_url, "--json")
    assert code == 0, err
    assert json.loads(out) == dry | {"dry_run": False}  # the dry run showed what is stored, image by image
    with Catalog.open(catalog_url) as catalog:
        stored = [
            {"id": i.id, "route": i.route, "measure": i.measure, "route_offset_m": i.route_offset_m}
            for i in catalog.images(sort=("reel", "frame"))
        ]
    assert [{k: v for k, v in row.items() if k != "off_route_m"} for row in dry["images"]] == stored
    assert [row["off_route_m"] is not None for row in dry["images"]] == [False, False, True]
    reels = {r["reel"]: r for r in json.loads(out)["reels"]}
    assert reels["A"]["located"] == 1 and reels["A"]["first_measure"] == pytest.approx(3.0, abs=1e-4)
    assert reels["A"]["messages"] == ["1 image(s) without a position: not located"]
    assert reels["B"]["off_route"] == 1 and "is it on another route?" in reels["B"]["messages"][0]
    code, out, _ = cli(capsys, "ls", "--flag", "off-route", "--json", "--catalog", catalog_url)
    (row,) = json.loads(out)
    assert row["reel"] == "B" and row["flags"] == ["off-route"]
    code, out, _ = cli(capsys, "ls", "--reel", "A", "--json", "--catalog", catalog_url, "--limit", "1")
    shown = json.loads(cli(capsys, "show", json.loads(out)[0]["id"], "--json", "--catalog", catalog_url)[1])
    assert shown["route"] == "R-1" and shown["measure"] == pytest.approx(3.0, abs=1e-4)
    # Replacing the centerline clears what was located on it: those images must be located again.
    code, _, err = cli(capsys, "route", "add", "R-1", str(line), "--unit", "km", "--catalog", catalog_url)
    exists = "route 'R-1' exists: pass --replace to change its centerline"
    assert (code, err) == (CatalogError.exit_code, f"error: {exists}\n")
    # docs/routes.md says so, with the same exit code
    doc = " ".join((Path(__file__).parents[2] / "docs" / "routes.md").read_text().split())
    assert f"exit code {CatalogError.exit_code}, as for every catalog error" in doc
    assert f"`{exists.replace('R-1', 'SR-9')}`" in doc
    code, _, err = cli(
        capsys, "route", "add", "R-1", str(line), "--unit", "km", "--replace", "--catalog", catalog_url
    )
    assert code == 0 and "1 image(s) to locate again" in err


@pytest.mark.parametrize(
    "geometry, options, message",
    [
        ({"type": "Point", "coordinates": [11.5, 48.1]}, (), "the geometry is a Point, not a line"),
        ({"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]}, (), "no measures (M values)"),
        ({"type": "LineString", "coordinates": [[11.5, 48.1]]}, ("--start-measure", "0"), "at least 2"),
        (
            {
                "type": "LineString",
                "coordinates": [[11.5, 48.1, 0, 1.0], [11.6, 48.2, 0, 0.5], [11.7, 48.2, 0, 2]],
            },
            (),
            "neither rise nor fall",
        ),
        (
            {
                "type": "LineString",
                "coordinates": [[11.5, 48.1, 0, 5], [11.6, 48.2, 0, 5], [11.7, 48.2, 0, 5]],
            },
            (),
            "neither rise nor fall",
        ),
        (
            {"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]},
            ("--start-measure", "0", "--unit", "ft"),
            "invalid --unit 'ft'",
        ),
        (
            {"type": "LineString", "coordinates": [[11.5, 48.1], ["x", 48.2]]},
            ("--start-measure", "0"),
            'position 2 of the line is ["x", 48.2]: expected [lon, lat] in degrees',
        ),
        (
            {"type": "LineString", "coordinates": [[11.5], [11.6, 48.2]]},
            ("--start-measure", "0"),
            "position 1 ",
        ),
        (
            {"type": "LineString", "coordinates": [None, [11.6, 48.2]]},
            ("--start-measure", "0"),
            "is null: expected",
        ),
        (
            {"type": "LineString", "coordinates": "11.5 48.1"},
            ("--start-measure", "0"),
            "not a list of positions",
        ),
        (
            {
                "type": "MultiLineString",
                "coordinates": [[[11.5, 48.1], [11.6, True]], [[11.6, 48.2], [11.7, 48.2]]],
            },
            ("--start-measure", "0"),
            "position 2 of the line is [11.6, true]",
        ),
        (
            {"type": "LineString", "coordinates": [[11.5, 48.1], [11.5, 48.1]]},
            ("--start-measure", "0"),
            "the line has no length: its 2 positions are one point",
        ),
        *(  # NaN had been stored as no start measure, without a word
            (
                {"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]},
                ("--start-measure", value),
                f"invalid --start-measure {value}: expected a finite number",
            )
            for value in ("nan", "inf")
        ),
    ],
)
def test_a_bad_route_file_is_one_error_line_and_stores_nothing(
    capsys, tmp_path: Path, geometry: dict[str, object], options: tuple[str, ...], message: str
):
    db = str(tmp_path / "c.db")
    Catalog.open(db).close()
    path = write(tmp_path / "bad.geojson", geometry)
    code, _, err = cli(capsys, "route", "add", "X", str(path), *options, "--catalog", db)
    assert code == 2 and err.startswith("error:") and message in err, err
    code, _, err = cli(capsys, "route", "locate", "--catalog", db)
    assert code == 3 and "no routes" in err


def test_a_route_needs_a_name(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    Catalog.open(db).close()
    path = write(
        tmp_path / "line.geojson", {"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]}
    )
    bad = ("", " ", "US-101 ", "US\t101", "x y", "a/b", "{mp}", "../../../escape", ".hidden", "r" * 101)
    for name in bad:
        code, _, err = cli(capsys, "route", "add", name, str(path), "--start-measure", "0", "--catalog", db)
        assert (code, len(err.splitlines())) == (2, 1)
        assert err.startswith(f"error: invalid route name {name!r}: give a name such as US-101: letters"), err
    assert (
        cli(capsys, "route", "locate", "--catalog", db)[2]
        == "error: no routes: add one with `panopipe route add NAME FILE`\n"
    )


def test_route_names_are_words(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    Catalog.open(db).close()
    path = write(
        tmp_path / "line.geojson", {"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]}
    )
    names = ("US-101", "I_5", "A9", "Bundesstraße.27", "r" * 100)
    for name in names:
        assert cli(capsys, "route", "add", name, str(path), "--start-measure", "0", "--catalog", db)[0] == 0
    with Catalog.open(db) as catalog:
        assert {catalog.route(name).name for name in names} == set(names)


def test_several_routes_need_route_named(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    Catalog.open(db).close()
    path = write(tmp_path / "r.geojson", {"type": "LineString", "coordinates": [[11.5, 48.1], [11.6, 48.2]]})
    for name in ("A", "B"):
        assert cli(capsys, "route", "add", name, str(path), "--start-measure", "0", "--catalog", db)[0] == 0
    code, _, err = cli(capsys, "route", "locate", "--catalog", db)
    assert code == 3 and "2 routes (A, B): name the one to use with --route" in err
    assert cli(capsys, "route", "locate", "--route", "B", "--catalog", db)[0] == 0


def test_docs_define_the_route_flags():
    text = (Path(__file__).parents[2] / "docs" / "routes.md").read_text(encoding="utf-8")
    assert all(f"**`{name}`**" in text for name in ROUTE_FLAGS)


def write_geopackage(target: Path, wkt: str, *options: str, srs: str = "EPSG:4326") -> Path:
    """A GeoPackage at ``target`` of the one line ``wkt`` (WGS 84) in ``srs``, written by ogr2ogr with
    ``options``."""
    require(shutil.which("ogr2ogr") is not None, "ogr2ogr (apt-get install gdal-bin) to write a GeoPackage")
    source = target.parent / "line.csv"
    source.write_text(f'id,WKT\n1,"{wkt}"\n')
    command = [
        "ogr2ogr",
        "-f",
        "GPKG",
        str(target),
        str(source),
        "-s_srs",
        "EPSG:4326",
        "-t_srs",
        srs,
        *options,
    ]
    subprocess.run(command, check=True, capture_output=True)
    return target


LAMBERT_WITHOUT_CODE = "+proj=lcc +lat_0=46.5 +lon_0=3 +lat_1=49 +lat_2=44 +x_0=700000 +y_0=6600000 +ellps=GRS80 +units=m +no_defs"
"""A CRS of no EPSG code: ogr2ogr stores it as organization NONE, with its WKT definition."""


@pytest.mark.parametrize(
    "srs", ["EPSG:4326", "EPSG:32632", LAMBERT_WITHOUT_CODE], ids=["4326", "32632", "custom"]
)
@pytest.mark.parametrize(
    "wkt, kind",
    [
        ("LINESTRING M (11.5 48.1 1, 11.51 48.11 2.5, 11.52 48.11 3)", "LINESTRINGM"),
        # ArcGIS, Shapefile and ogr2ogr -nlt PROMOTE_TO_MULTI write a polyline as a MultiLineString of one part
        ("LINESTRING M (11.5 48.1 1, 11.51 48.11 2.5, 11.52 48.11 3)", "MULTILINESTRINGM"),
        (
            "MULTILINESTRING ZM ((11.5 48.1 400 1, 11.51 48.11 410 2.5), (11.52 48.11 420 3, 11.51 48.11 410 2.5))",
            "MULTILINESTRINGZM",
        ),
    ],
    ids=["line", "one-part-multi", "two-parts-second-reversed"],
)
def test_a_geopackage_line_with_m_values_in_any_crs(tmp_path: Path, srs: str, wkt: str, kind: str):
    target = write_geopackage(tmp_path / "line.gpkg", wkt, "-nlt", kind, srs=srs)
    route = read_route(target, "G", unit="km")
    assert route.measures == (1.0, 2.5, 3.0)
    assert np.allclose(route.coordinates, [(11.5, 48.1), (11.51, 48.11), (11.52, 48.11)], atol=1e-8)


def test_a_geopackage_crs_that_cannot_be_read_is_one_error_line(capsys, tmp_path: Path):
    target = write_geopackage(
        tmp_path / "line.gpkg", "LINESTRING (11.5 48.1, 11.51 48.11)", srs=LAMBERT_WITHOUT_CODE
    )
    with contextlib.closing(sqlite3.connect(target)) as db, db:
        db.execute(
            "UPDATE gpkg_spatial_ref_sys SET definition = 'PROJCS[\"broken\"' WHERE organization = 'NONE'"
        )
    db_path = str(tmp_path / "c.db")
    Catalog.open(db_path).close()
    code, _, err = cli(capsys, "route", "add", "X", str(target), "--start-measure", "0", "--catalog", db_path)
    assert (code, len(err.splitlines())) == (2, 1), err
    assert err.startswith(f"error: {target}: cannot read its CRS NONE:100000 (Invalid projection"), err


MEASURED = [
    [11.5, 48.1, 0.0, 1.0],
    [11.51, 48.11, 0.0, 2.5],
    [11.52, 48.11, 0.0, 3.0],
    [11.53, 48.12, 0.0, 4.0],
]


@pytest.mark.parametrize(
    "parts, drawn",
    [
        ([MEASURED], MEASURED),
        ([MEASURED[:2], MEASURED[1:3], MEASURED[2:]], MEASURED),
        ([MEASURED[2:], MEASURED[:2], MEASURED[1:3]], MEASURED),  # parts out of order
        ([MEASURED[:2], MEASURED[3:1:-1], MEASURED[1:3]], MEASURED),  # the second drawn the other way
        ([MEASURED[1::-1], MEASURED[1:3], MEASURED[2:]], MEASURED[::-1]),  # the first drawn the other way
    ],
    ids=["one-part", "in-order", "out-of-order", "one-reversed", "first-reversed"],
)
def test_a_multilinestring_is_merged_with_its_m_values_in_the_direction_of_its_first_part(
    capsys, tmp_path: Path, parts: list[list[list[float]]], drawn: list[list[float]]
):
    path = write(tmp_path / "m.geojson", {"type": "MultiLineString", "coordinates": parts})
    route = read_route(path, "M", unit="km")
    assert route.coordinates == tuple((p[0], p[1]) for p in drawn)
    assert route.measures == tuple(p[3] for p in drawn)
    # M values and --start-measure: the file's M values are the measures, the option a mistake
    db = str(tmp_path / "c.db")
    Catalog.open(db).close()
    code, _, err = cli(capsys, "route", "add", "M", str(path), "--start-measure", "0", "--catalog", db)
    assert (code, err) == (
        2,
        f"error: {path}: the line has measures (M values): leave out --start-measure "
        "(the file's M values are the measures)\n",
    )


@pytest.mark.parametrize(
    "parts, message",
    [
        (
            [MEASURED[:2], [[11.51, 48.11, 0.0, 2.6], *MEASURED[2:]]],
            "parts of the MultiLineString meet at 11.51, 48.11 with different M values (2.6 and 2.5)",
        ),
        ([MEASURED[:2], MEASURED[2:]], "a MultiLineString of 2 parts that do not join into one line"),
        (
            [MEASURED[:2], [[11.51, 48.11], [11.52, 48.11]]],
            "some positions have an M value (the 4th value) and others not",
        ),
        (
            [MEASURED[:2], MEASURED[1:2]],
            "part 2 of the MultiLineString has 1 position(s); a line needs at least 2",
        ),
    ],
    ids=["m-values-differ-where-parts-meet", "parts-apart", "some-without-m", "one-position"],
)
def test_a_multilinestring_whose_m_values_cannot_be_kept_is_refused(
    tmp_path: Path, parts: list[list[list[float]]], message: str
):
    path = write(tmp_path / "m.geojson", {"type": "MultiLineString", "coordinates": parts})
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_route(path, "M", unit="km", start_measure=0)


@pytest.mark.parametrize("name", ["route2#new.gpkg", "r?x.gpkg", "r%41.gpkg", "route #2.gpkg"])
def test_a_geopackage_is_read_by_its_name_whatever_the_characters_in_it(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
):
    """SQLite reads a raw file: URI's '#' as a fragment, '?' as a query and '%41' as 'A': the line of another
    file was read, or an empty file made under the shortened name. Names and columns with '"' are read too."""
    monkeypatch.chdir(tmp_path)
    write_geopackage(tmp_path / "route2", "LINESTRING (10 50, 10.1 50.1)")  # what "route2#new.gpkg" had read
    (tmp_path / "rAx.gpkg").write_text("not the file named")
    quoted = ["-nln", 'my "route"', "-lco", 'GEOMETRY_NAME=the "line"']
    write_geopackage(tmp_path / name, "LINESTRING (11.5 48.1, 11.51 48.11)", *quoted)
    before = sorted(tmp_path.iterdir())
    route = read_route(tmp_path / name, "G", start_measure=0)
    assert np.allclose(route.coordinates, [(11.5, 48.1), (11.51, 48.11)], atol=1e-8)
    assert sorted(tmp_path.iterdir()) == before


def test_a_file_that_is_no_geopackage(tmp_path: Path):
    path = tmp_path / "route.gpkg"
    path.write_text("not a database")
    with pytest.raises(ConfigError, match="not a GeoPackage"):
        read_route(path, "G", start_measure=0)
