"""A small, realistic survey made from nothing: a camera rig driving along a GPS track.

Each shot's views are rendered from a textured synthetic equirectangular scene through the rig's geometry, so
stitching can be checked against the scene (kept as ``truth/<shot>.png``). The frames are real JPEGs with
EXIF (time, GPS, heading, camera) and XMP, laid out as ``<reel>/cam<index>/<reel>_cam<index>_<frame>.jpg``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.geo import destination
from panopipe.ingest import IngestReport, ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata
from panopipe.stitching import RigProfile, demo_rig, render_views, synthetic_panorama
from panopipe.storage import write_atomic

START = (48.137154, 11.576124)  # a street corridor in Munich
START_TIME = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
UTC_OFFSET_MINUTES = 120
STEP_M = 5.0
CAMERA_SKEW_S = 0.002  # cameras of one shot fire within a few milliseconds of each other


@dataclass(frozen=True, slots=True)
class DemoSurvey:
    """What :func:`generate_survey` wrote."""

    folder: Path
    rig: RigProfile
    reel: str
    frames: int
    files: tuple[Path, ...]
    truth: tuple[Path, ...]


def generate_survey(
    folder: Path,
    *,
    shots: int = 8,
    reel: str = "R001",
    camera_size: tuple[int, int] = (640, 480),
    seed: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSurvey:
    """Write a survey of ``shots`` rig shots into ``folder`` and return what was written."""
    rig = demo_rig(*camera_size)
    scene = synthetic_panorama(camera_size[0] * 3, camera_size[0] * 3 // 2, seed=seed)
    lat, lon = START
    bearing = 65.0
    files: list[Path] = []
    truth: list[Path] = []
    for shot in range(shots):
        frame = shot + 1
        # The vehicle turns gently; turning the scene with it keeps every shot's content different.
        panorama = np.roll(scene, -int(shot * scene.shape[1] / 17), axis=1)
        truth_path = folder / "truth" / f"{reel}-{frame:06d}.png"
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(truth_path), panorama[:, :, ::-1])
        truth.append(truth_path)
        moment = START_TIME + timedelta(seconds=shot)
        for camera, view in zip(rig.cameras, render_views(panorama, rig), strict=True):
            update = MetadataUpdate(
                captured_at=moment + timedelta(seconds=camera.index * CAMERA_SKEW_S),
                utc_offset_minutes=UTC_OFFSET_MINUTES,
                gps_latitude=round(lat, 7),
                gps_longitude=round(lon, 7),
                gps_altitude=519.0 + 0.1 * shot,
                gps_img_direction=round((bearing + camera.yaw_deg) % 360, 2),
                gps_datetime=moment,
                make="panopipe",
                model=f"{rig.name} rig",
                panopipe={"reel": reel, "frame": frame, "camera": camera.index},
            )
            ok, encoded = cv2.imencode(".jpg", view[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            path = folder / reel / f"cam{camera.index}" / f"{reel}_cam{camera.index}_{frame:06d}.jpg"
            write_atomic(path, apply_metadata(encoded.tobytes(), update))
            files.append(path)
        lat, lon = destination(lat, lon, bearing, STEP_M)
        bearing += 1.5
        if progress:
            progress(shot + 1, shots)
    return DemoSurvey(folder, rig, reel, shots, tuple(files), tuple(truth))


@dataclass(frozen=True, slots=True)
class DemoResult:
    """The generated survey and what ingesting it did."""

    survey: DemoSurvey
    ingest: IngestReport


def run_demo(
    folder: Path,
    catalog: Catalog,
    settings: Settings,
    *,
    shots: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Generate a survey in ``folder`` and ingest it into ``catalog``."""
    survey = generate_survey(folder, shots=shots, progress=progress)
    report = ingest(catalog, [folder / survey.reel], settings)
    return DemoResult(survey, report)
