"""Benchmark: geotagging images from a GNSS track by their capture times.

Compares, in images per second, two commands a user runs, each a fresh process:

1. ``panopipe edit --all --track track.gpx`` on a SQLite catalog of the images: reads the track, places every
   image, records the edit batch (undone after each run, outside the timed part);
2. ``exiftool -geotag track.gpx '-geotime<SubSecDateTimeOriginal' -overwrite_original`` on the same files:
   the tool survey teams geotag with, in one process for all files (its fastest mode).

The work differs as the tools do: exiftool writes the positions into every file; panopipe records them in
the catalog, and its ``run`` writes them into the outputs of the moved images later (the cost of that write
against exiftool's is ``bench_apply_metadata.py``). The files are small (640x480, about 40 KB): exiftool's
time grows with the size of the files, panopipe's does not, so real frames of several MB favour panopipe
more. After the comparison the script prints how far apart the two sides' positions are (they interpolate
alike; the test suite checks it too).

    python bench/bench_geotag.py [--quick] [--images 2000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np

import fair
from panopipe.catalog import Catalog
from panopipe.config import load_settings
from panopipe.demo import START_TIME, UTC_OFFSET_MINUTES
from panopipe.geo import haversine_m
from panopipe.geotag import write_gpx
from panopipe.ingest import ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata
from panopipe.storage import write_atomic

FRAME_INTERVAL_S = 0.5
TRACK_HZ = 10


def position(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vehicle at 10 m/s on a gentle curve: latitude, longitude and height at ``seconds`` after the start."""
    metres = 10.0 * seconds
    return 48.1 + metres / 111_000, 11.5 + 2e-7 * metres + 1e-10 * metres**2, 500 + 0.01 * metres


def write_images(folder: Path, count: int) -> None:
    """``count`` frames, one every :data:`FRAME_INTERVAL_S`, with EXIF capture times (sub-seconds, offset)."""
    ok, encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))
    assert ok
    for i in range(count):
        update = MetadataUpdate(
            captured_at=START_TIME + timedelta(seconds=i * FRAME_INTERVAL_S + 0.013),
            utc_offset_minutes=UTC_OFFSET_MINUTES,
            make="BenchCam",
        )
        write_atomic(folder / "R001" / f"frame_{i:06d}.jpg", apply_metadata(encoded.tobytes(), update))


def write_track(path: Path, seconds: float) -> None:
    """A GPX track at :data:`TRACK_HZ` from a second before the first frame to a second after the last."""
    times = np.arange(-1.0, seconds + 1.0, 1 / TRACK_HZ)
    lat, lon, ele = position(times)
    moments = (START_TIME + timedelta(seconds=float(t)) for t in times)
    write_gpx(path, zip(moments, lat.tolist(), lon.tolist(), ele.tolist(), strict=True), creator="bench")


def main() -> None:
    args = fair.parse_args(__doc__, {"images": (2_000, 200)})
    with fair.report(args, "geotag") as report, tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_images(folder, args.images)
        track = folder / "track.gpx"
        write_track(track, args.images * FRAME_INTERVAL_S)
        database = folder / "catalog.db"
        with Catalog.open(database) as catalog:
            ingest(catalog, [folder / "R001"], load_settings(None, catalog=str(database)))
        command = shutil.which("panopipe") or sys.exit(
            "the panopipe command is not installed: pip install -e ."
        )
        panopipe = [command, "-q", "edit", "--all", "--catalog", str(database)]
        exiftool = [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-geotag",
            str(track),
            "-geotime<SubSecDateTimeOriginal",
        ]

        def ours() -> float:
            started = time.perf_counter()
            edit = [*panopipe, "--track", str(track), "--reason", "bench", "--json"]
            batch = json.loads(subprocess.run(edit, check=True, capture_output=True).stdout)["batch"]
            elapsed = time.perf_counter() - started
            undo = [command, "undo", batch, "--catalog", str(database)]
            subprocess.run(undo, check=True, capture_output=True)
            return elapsed

        def theirs() -> None:
            subprocess.run([*exiftool, str(folder / "R001")], check=True)

        report.compare(
            {
                "panopipe edit --track (catalog edit)": ours,
                "exiftool -geotag (writes every file)": theirs,
            },
            title=f"geotag {args.images:,} images from a {TRACK_HZ} Hz GPX track",
            unit="images",
            count=args.images,
        )
        subprocess.run(
            [*panopipe, "--track", str(track), "--reason", "bench"], check=True, capture_output=True
        )
        tags = ["exiftool", "-n", "-j", "-GPSLatitude", "-GPSLongitude", str(folder / "R001")]
        written = {
            Path(row["SourceFile"]).name: row
            for row in json.loads(subprocess.run(tags, check=True, capture_output=True).stdout)
        }
        with Catalog.open(database) as catalog:
            apart = [
                haversine_m(
                    image.lat,
                    image.lon,
                    written[Path(image.uri).name]["GPSLatitude"],
                    written[Path(image.uri).name]["GPSLongitude"],
                )
                for image in catalog.images()
            ]
        report.note(
            f"positions of the two sides: at most {max(apart) * 1000:.3f} mm apart over {len(apart):,} images"
        )


if __name__ == "__main__":
    main()
