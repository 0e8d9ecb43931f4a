"""A small, realistic survey made from nothing: a camera rig driving along a GPS track.

Each shot's views are rendered from a textured synthetic equirectangular scene through the rig's geometry, so
stitching can be checked against the scene (kept as ``truth/<shot>.png``). The frames are real JPEGs with
EXIF (time, GPS, heading, camera) and XMP, laid out as ``<reel>/cam<index>/<reel>_cam<index>_<frame>.jpg``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from panopipe.catalog import Catalog, Selection
from panopipe.config import load_settings
from panopipe.geo import destination
from panopipe.ingest import IngestReport, ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata
from panopipe.pipeline import Plan, RunReport, plan, run, write_html_report
from panopipe.stitching import RigProfile, render_views, synthetic_panorama
from panopipe.storage import write_atomic

START = (48.137154, 11.576124)  # a street corridor in Munich
START_TIME = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
UTC_OFFSET_MINUTES = 120
STEP_M = 5.0
CAMERA_SKEW_S = 0.002  # cameras of one shot fire within a few milliseconds of each other


DEMO_RIG = "panopipe-demo-6"


def demo_rig(width: int = 640, height: int = 480) -> RigProfile:
    """The demo's rig, ``panopipe-demo-6``: 4 rectilinear cameras around the horizon, fisheyes up and down.

    The horizontal cameras (110° wide, 4:3) overlap their neighbours by 20°; the 180° fisheyes reach 22° below
    and above the horizon, well into the horizontal ring. It exists only in the demo and its panopipe.toml.
    """
    return RigProfile.from_compact(
        {
            "name": DEMO_RIG,
            "version": 1,
            "mount_height_m": 2.5,
            "defaults": {"lens": "rectilinear", "hfov_deg": 110.0, "width": width, "height": height},
            "cameras": [
                [0.0, 0.0, 0.0],
                [90.0, 0.0, 0.0],
                [180.0, 0.0, 0.0],
                [270.0, 0.0, 0.0],
                {"pitch_deg": 90.0, "lens": "fisheye", "hfov_deg": 180.0},
                {"pitch_deg": -90.0, "lens": "fisheye", "hfov_deg": 180.0},
            ],
        }
    )


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
    """What the demo did: the survey, ingest, the first run, and an edit reprocessing only what it touched."""

    survey: DemoSurvey
    config_file: Path
    ingest: IngestReport
    first_run: RunReport
    edit_batch: str
    edited_images: int
    plan_after_edit: Plan
    second_run: RunReport
    plan_at_end: Plan
    report: Path


def write_project_config(folder: Path, catalog_location: str, rig: RigProfile) -> Path:
    """A ``panopipe.toml`` in ``folder`` naming the catalog and the survey's rig, so later commands agree."""
    lines = ["[panopipe]", f"catalog = {json.dumps(catalog_location)}", 'project = "demo"', ""]
    lines += ["[steps.pipeline]", f"output = {json.dumps(str(folder.resolve() / 'panopipe-out'))}", ""]
    rig_fields = rig.to_dict()
    cameras = rig_fields.pop("cameras")
    lines += ["[steps.stitch.rig]", *(f"{key} = {json.dumps(value)}" for key, value in rig_fields.items())]
    for camera in cameras:
        lines += [
            "",
            "[[steps.stitch.rig.cameras]]",
            *(f"{key} = {json.dumps(value)}" for key, value in camera.items()),
        ]
    path = folder / "panopipe.toml"
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def run_demo(
    folder: Path,
    catalog_location: str,
    *,
    shots: int = 8,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    """Generate a survey in ``folder``, ingest it, run the whole pipeline, then edit the GPS of one shot and
    show that only what the edit touched runs again."""
    tick = progress or (lambda stage, done, total: None)
    survey = generate_survey(folder, shots=shots, progress=lambda done, total: tick("render", done, total))
    config_file = write_project_config(folder, catalog_location, survey.rig)
    settings = load_settings(config_file)
    with Catalog.open(settings.catalog) as catalog:
        ingested = ingest(
            catalog, [folder / survey.reel], settings, progress=lambda d, t: tick("ingest", d, t)
        )
        first_run = run(catalog, settings=settings, progress=tick)
        shot = f"{survey.reel}-{min(2, shots):06d}"
        changes = catalog.plan_edit(Selection(shots=(shot,)), assign={"lat": START[0] + 0.001, "alt": 530.0})
        batch = catalog.apply_edit(changes, reason="demo: corrected GPS of one shot", author="panopipe demo")
        plan_after_edit = plan(catalog, settings=settings)
        second_run = run(catalog, settings=settings, progress=tick)
        plan_at_end = plan(catalog, settings=settings)
        report = write_html_report(catalog, folder / "report.html")
    return DemoResult(
        survey,
        config_file,
        ingested,
        first_run,
        batch,
        len({c.image_id for c in changes}),
        plan_after_edit,
        second_run,
        plan_at_end,
        report,
    )


__all__ = [
    "CAMERA_SKEW_S",
    "DEMO_RIG",
    "START",
    "START_TIME",
    "STEP_M",
    "UTC_OFFSET_MINUTES",
    "DemoResult",
    "DemoSurvey",
    "demo_rig",
    "generate_survey",
    "run_demo",
    "write_project_config",
]
