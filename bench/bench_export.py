"""Benchmark: exporting a SQLite catalog's images for a GIS, in images per second, each side a fresh process.

Compares, on the same catalog (100,000 images of 6-camera rig shots) and the same rows and columns:

1. GeoPackage: ``panopipe export --format gpkg -o images.gpkg`` against GDAL's ``ogr2ogr -f GPKG`` reading the
   catalog's ``images`` table with SQL that makes each row's point (``MakePoint(lon, lat, 4326)``, GDAL's
   SQLite dialect with SpatiaLite): what a user with GDAL and no panopipe writes;
2. CSV: ``panopipe export -o images.csv`` (with its ``.csvt`` and ``.prj`` sidecars) against the ``sqlite3``
   command line's ``-csv -header`` of the same columns.

The work differs as the tools do, and the notes say how: panopipe writes times as ISO 8601 UTC, ids in their
canonical form, each image's ``qc`` flags (none here) and typed empty columns; the references write what the
table stores. Both sides write every selected image (those not deleted) and every column of the images
export, in the same order (``ls``'s: reel, capture time, path).

    python bench/bench_export.py [--quick] [--images 100000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fair
from bench_catalog import records
from panopipe.catalog import Catalog
from panopipe.export import IMAGE_COLUMNS

STORED = {"altitude_msl_m": "alt"}
"""Export columns the catalog's table stores under another name."""
LEFT_OUT = ("flags",)
"""Export columns that are not in the ``images`` table (``qc`` flags live in their own table)."""


def reference_sql() -> str:
    """The SELECT of the images export's columns (as the table stores them) over the images not deleted, sorted
    as panopipe sorts them."""
    columns = [
        f"{STORED[c.name]} AS {c.name}" if c.name in STORED else c.name
        for c in IMAGE_COLUMNS
        if c.name not in LEFT_OUT
    ]
    # in ls's order, as panopipe writes them (the same sort on both sides)
    return f"SELECT {', '.join(columns)} FROM images WHERE deleted = 0 ORDER BY reel, captured_at, uri"


def make_catalog(folder: Path, count: int) -> Path:
    path = folder / "catalog.db"
    with Catalog.open(path) as catalog:
        catalog.upsert_images(records(count))
    return path


def main() -> None:
    args = fair.parse_args(__doc__, {"images": (100_000, 10_000)})
    folder = Path(tempfile.mkdtemp(prefix="panopipe-bench-export-"))
    panopipe = [
        shutil.which("panopipe") or sys.exit("the panopipe command is not installed: pip install -e ."),
        "-q",
    ]
    try:
        catalog = make_catalog(folder, args.images)
        with fair.report(args, "export") as report:
            report.note(
                f"{args.images:,} images in a SQLite catalog of {catalog.stat().st_size / 1e6:.0f} MB"
            )
            missing = [tool for tool in ("ogr2ogr", "sqlite3") if not shutil.which(tool)]
            if missing:
                report.unavailable(", ".join(missing), "not installed: apt-get install -y gdal-bin sqlite3")
            gpkg: dict[str, Callable[[Path], list[str]]] = {
                "panopipe export --format gpkg": lambda o: [
                    *panopipe,
                    "export",
                    "--catalog",
                    str(catalog),
                    "--format",
                    "gpkg",
                    "-o",
                    str(o / "i.gpkg"),
                ],
            }
            csv: dict[str, Callable[[Path], list[str]]] = {
                "panopipe export (CSV, with .csvt and .prj)": lambda o: [
                    *panopipe,
                    "export",
                    "--catalog",
                    str(catalog),
                    "-o",
                    str(o / "i.csv"),
                ],
            }
            if "ogr2ogr" not in missing:
                gpkg["ogr2ogr -f GPKG (SQLite dialect, MakePoint)"] = lambda o: [
                    "ogr2ogr", "-f", "GPKG", str(o / "i.gpkg"), str(catalog), "-dialect", "SQLite",
                    "-sql", reference_sql().replace(" FROM", ", MakePoint(lon, lat, 4326) AS geom FROM"),
                    "-nln", "images", "-nlt", "POINT",
                ]  # fmt: skip
            if "sqlite3" not in missing:
                csv["sqlite3 -csv -header"] = lambda o: [
                    "sh", "-c", f'sqlite3 -csv -header "$0" "$1" > "{o}/i.csv"', str(catalog), reference_sql()
                ]  # fmt: skip
            for title, sides in (("GeoPackage", gpkg), ("CSV", csv)):
                report.compare(
                    {name: lambda command=command: _timed(command) for name, command in sides.items()},
                    title=f"{title} of {args.images:,} images from a SQLite catalog, fresh processes",
                    unit="images",
                    count=args.images,
                )
            report.note(
                "panopipe writes ISO 8601 UTC times, canonical ids, typed empty columns and each image's qc "
                "flags (a join; none here); the references write the stored values and no flags"
            )
    finally:
        shutil.rmtree(folder)


def _timed(command: Callable[[Path], list[str]]) -> float:
    out = Path(tempfile.mkdtemp(prefix="panopipe-bench-export-out-"))
    try:
        argv = command(out)
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        assert any(out.iterdir()), argv
        return seconds
    finally:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
