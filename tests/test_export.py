"""Exports say which vertical datum a height is in: the catalog's altitude (EXIF GPSAltitude) is above mean
sea level, so it is ``altitude_msl_m``, never a GeoJSON third coordinate (height above the ellipsoid)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from panopipe.catalog import Catalog, ImageRecord
from panopipe.export import images_table, write_csv, write_geojson


def images(catalog: Catalog, tmp_path: Path) -> list:
    # Munich, Marienplatz: 519.4 m above mean sea level is about 567 m above the WGS84 ellipsoid (N ≈ 47.6 m).
    catalog.upsert_images(
        [
            ImageRecord(
                uri=str(tmp_path / "a.jpg"), lat=48.137154, lon=11.576124, alt=519.4, reel="R1", frame=1
            ),
            ImageRecord(uri=str(tmp_path / "b.jpg"), lat=48.1372, lon=11.5762, reel="R1", frame=2),
        ]
    )
    return sorted(catalog.images(), key=lambda image: image.frame)


def test_csv_names_the_altitude_above_mean_sea_level(catalog: Catalog, tmp_path: Path):
    out = io.StringIO()

    assert write_csv(images_table(images(catalog, tmp_path)), out) == 2

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["altitude_msl_m"] for row in rows] == ["519.4", ""]
    assert "alt" not in rows[0]
    assert (float(rows[0]["lat"]), float(rows[0]["lon"])) == (48.137154, 11.576124)


def test_geojson_keeps_the_altitude_out_of_the_coordinates(catalog: Catalog, tmp_path: Path):
    out = io.StringIO()

    assert write_geojson(images_table(images(catalog, tmp_path)), out) == 2

    features = json.loads(out.getvalue())["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [[11.576124, 48.137154], [11.5762, 48.1372]]
    assert [f["properties"]["altitude_msl_m"] for f in features] == [519.4, None]
    assert "alt" not in features[0]["properties"]
