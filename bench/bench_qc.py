"""Benchmark: panopipe qc's track checks on a synthetic 100,000-frame track with known faults.

Reports precision and recall per flag against the generator's truth (goal: >= 0.95 both for outliers of more
than 5 m) and frames per second (goal: 100,000 frames in under 5 s), beside a reference measured in the same
run: the per-frame check people write first, a Python loop with pyproj's geodesic distance to both neighbours
flagging frames reached and left faster than ``max_speed_mps`` (it finds only far outliers).

Then the whole command's work on the distance-mode track in a SQLite catalog (10 reels): ``run_qc`` reading
the images, checking and storing the flags in one transaction, beside reading the same rows alone (the floor).

    python bench/bench_qc.py [--quick] [--frames 100000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from pyproj import Geod

import fair
from panopipe.catalog import Catalog, ImageRecord
from panopipe.demo import START_TIME
from panopipe.qc import QcSettings, check_track, run_qc
from panopipe.qc.run import FIELDS, ORDER
from panopipe.qc.synthetic import SyntheticTrack, precision_recall, synthetic_track


def speed_loop(t: np.ndarray, lat: np.ndarray, lon: np.ndarray, max_speed: float) -> list[int]:
    """The reference: a frame whose legs in and out are both faster than ``max_speed``."""
    geod = Geod(ellps="WGS84")
    flagged = []
    for i in range(1, len(t) - 1):
        _, _, d_in = geod.inv(lon[i - 1], lat[i - 1], lon[i], lat[i])
        _, _, d_out = geod.inv(lon[i], lat[i], lon[i + 1], lat[i + 1])
        dt_in, dt_out = t[i] - t[i - 1], t[i + 1] - t[i]
        if dt_in > 0 and dt_out > 0 and d_in / dt_in > max_speed and d_out / dt_out > max_speed:
            flagged.append(i)
    return flagged


def main() -> None:
    args = fair.parse_args(__doc__, {"frames": (100_000, 10_000)})
    settings = QcSettings()
    with fair.report(args, "qc") as report:
        for time_mode in (False, True):
            track = synthetic_track(args.frames, time_mode=time_mode)
            mode = "time-mode" if time_mode else "distance-mode"
            check = check_track(track.t, track.lat, track.lon, track.heading, settings, track.accuracy)
            for name, truth in track.truth.items():
                precision, recall = precision_recall(np.flatnonzero(check.masks[name]), truth)
                report.note(
                    f"{mode} {name:<15} {len(truth):>6,} injected: precision {precision:.3f}, recall {recall:.3f}"
                )
            reference = np.array(speed_loop(track.t, track.lat, track.lon, settings.max_speed_mps))
            precision, recall = precision_recall(reference, track.truth["gps-outlier"])
            report.note(
                f"{mode} reference speed loop gps-outlier: precision {precision:.3f}, recall {recall:.3f}"
            )

            def ours(t: SyntheticTrack = track) -> None:
                check_track(t.t, t.lat, t.lon, t.heading, settings, t.accuracy)

            def loop(t: SyntheticTrack = track) -> None:
                speed_loop(t.t, t.lat, t.lon, settings.max_speed_mps)

            report.compare(
                {"panopipe check_track": ours, "Python loop, pyproj Geod speed check": loop},
                title=f"qc of one {mode} track",
                unit="frames",
                count=len(track),
                goal="100,000 frames in under 5 s (20,000 frames/s)",
            )
        end_to_end(report, args.frames)


def catalog_of(track: SyntheticTrack, folder: Path) -> Catalog:
    """A SQLite catalog of ``track`` as 10 reels."""
    catalog = Catalog.open(folder / "qc.db")
    reel_size = -(-len(track) // 10)
    catalog.upsert_images(
        ImageRecord(
            uri=f"/captures/R{i // reel_size:02d}/{i:06d}.jpg",
            captured_at=START_TIME + timedelta(seconds=float(track.t[i])),
            lat=float(track.lat[i]),
            lon=float(track.lon[i]),
            heading=float(track.heading[i]),
            gps_accuracy_m=float(track.accuracy[i]),
            reel=f"R{i // reel_size:02d}",
            frame=i,
        )
        for i in range(len(track))
    )
    return catalog


def end_to_end(report: fair.Report, frames: int) -> None:
    track = synthetic_track(frames)
    with tempfile.TemporaryDirectory() as folder, catalog_of(track, Path(folder)) as catalog:

        def ours() -> None:
            run_qc(catalog)

        def read() -> None:
            catalog.columns(None, FIELDS, sort=ORDER)

        report.compare(
            {"panopipe run_qc (read, check, store flags)": ours, "reading the same rows only": read},
            title="panopipe qc over a SQLite catalog",
            unit="frames",
            count=len(track),
            goal="100,000 frames in under 5 s (20,000 frames/s)",
        )


if __name__ == "__main__":
    main()
