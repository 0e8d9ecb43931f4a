"""A small, realistic survey made from nothing: a camera rig driving along a GPS track.

Each shot's views are rendered from a textured synthetic equirectangular scene through the rig's geometry, so
stitching can be checked against the scene (kept as ``truth/<shot>.png``). The frames are real JPEGs with
EXIF (time, GPS, heading, camera) and XMP, laid out as ``<reel>/cam<index>/<reel>_cam<index>_<frame>.jpg``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from panopipe.catalog import Catalog, Selection
from panopipe.config import IngestRules, load_settings
from panopipe.errors import ConfigError
from panopipe.geo import destination
from panopipe.geotag.tracks import write_gpx
from panopipe.ingest import IngestReport, ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata
from panopipe.pipeline import Plan, RunReport, plan, run, write_html_report
from panopipe.steps.publish import DEFAULT_TEMPLATE
from panopipe.stitching import RigProfile, render_views, synthetic_panorama
from panopipe.storage import write_atomic

START = (48.137154, 11.576124)  # a street corridor in Munich
START_TIME = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
UTC_OFFSET_MINUTES = 120
STEP_M = 5.0
CAMERA_SKEW_S = 0.002  # cameras of one shot fire within a few milliseconds of each other


DEMO_RIG = "panopipe-demo-6"
RTK_ALTITUDE_M = 519.4
"""The street's altitude (m above mean sea level) from the survey team's RTK; the rig's GNSS read it high."""
GNSS_ALTITUDE_BIAS_M = 1.7
GNSS_ACCURACY_M = 1.5
"""The horizontal accuracy the rig's GNSS reports for each fix (EXIF GPSHPositioningError), in metres."""
_RIG_TOML = """\
[steps.stitch.rig]
# The demo's rig: 4 rectilinear cameras 110° wide around the horizon (20° overlap), 180° fisheyes up and down.
name = "{name}"
version = 1
mount_height_m = 2.5  # height of the cameras above the ground
defaults = {{ lens = "rectilinear", hfov_deg = 110, width = {width}, height = {height} }}
cameras = [  # by camera index: [yaw_deg, pitch_deg, roll_deg], or a table overriding the defaults
  [0, 0, 0],  # 0: forward
  [90, 0, 0],  # 1: right
  [180, 0, 0],  # 2: back
  [270, 0, 0],  # 3: left
  {{ pitch_deg = 90, lens = "fisheye", hfov_deg = 180 }},  # 4: up
  {{ pitch_deg = -90, lens = "fisheye", hfov_deg = 180 }},  # 5: down
]
"""


_CONFIG_TOML = """\
# panopipe's project configuration, written by `panopipe demo` for its survey: every section panopipe reads.
# Commands run in this folder use it (or pass --config FILE, or set $PANOPIPE_CONFIG).

[panopipe]
catalog = {catalog}  # a SQLite file or postgresql://USER@HOST[:PORT]/DATABASE
project = "demo"  # names the published files and is written into their tags
# executor = "local"  # where `panopipe run` runs jobs: local (a process per core) or inline

[ingest]
# Matched against each file's path below the ingested folder: named groups reel, frame and camera fill those
# fields (the demo's layout is <reel>/cam<camera>/<reel>_cam<camera>_<frame>.jpg).
path_pattern = '{path_pattern}'
shot_tolerance_s = {shot_tolerance_s}  # frames of one reel captured within this many seconds form one shot

[steps.pipeline]
output = {output}  # where outputs go: a folder or s3://bucket/prefix
retries = 2  # retries of a job after a transient storage error
backoff_s = 0.5  # the first wait between retries, in seconds (doubled each time)

# Each step has its table; `enabled = false` in it turns the step off.
[steps.stitch]
stitcher = "calibrated"  # the rig profile below; or "opencv", or "external" (params.command)
quality = 92  # JPEG quality of the panoramas
params = {{ interpolation = "auto" }}  # the stitcher's own: width, height (default: the rig's resolution), interpolation (auto, linear or cubic)

{rig}
[steps.nadir]  # a disc over the bottom of each panorama, where the rig sees its vehicle; off unless enabled
enabled = false
angle_deg = 20  # its radius, in degrees from straight down
fill = "blur"  # the panorama's own colours there, blurred; or a colour "#RRGGBB"
# logo = "logo.png"  # drawn on the disc, upright to a viewer facing forward (a PNG with transparency, or a JPEG)

[steps.apply-metadata]  # tags written into each panorama, besides the catalog's effective metadata
artist = "panopipe demo"
copyright = "CC0 1.0"
description = "{{project}} reel {{reel}} frame {{frame}}"  # a template: project, reel, frame, shot

[steps.derive]  # scaled-down copies of each panorama, in pixels along their longer side
thumbnail = 512
preview = 2048  # 0: no previews
quality = 85

[steps.publish]  # the finished images in a publish layout
template = "{template}"
# also {{route}} and {{mp:08.3f}}: where `panopipe route locate` put the image
# root = "s3://bucket/published"  # default: publish/ under the output

[qc]  # thresholds of `panopipe qc` (GPS outliers, duplicates, gaps); every key and its default: docs/qc.md
outlier_deviation_m = 4.0  # metres from where its neighbours put a frame that make it a GPS outlier
"""


def demo_rig(width: int = 640, height: int = 480) -> RigProfile:
    """The demo's rig, ``panopipe-demo-6``, with cameras of ``width x height`` pixels: the profile that the
    demo's panopipe.toml holds (there is no built-in rig anywhere else)."""
    text = _RIG_TOML.format(name=DEMO_RIG, width=width, height=height)
    return RigProfile.from_compact(tomllib.loads(text)["steps"]["stitch"]["rig"])


@dataclass(frozen=True, slots=True)
class DemoSurvey:
    """What :func:`generate_survey` wrote."""

    folder: Path
    rig: RigProfile
    reel: str
    frames: int
    files: tuple[Path, ...]
    truth: tuple[Path, ...]
    positions: tuple[tuple[float, float], ...]
    """``(lat, lon)`` of each shot as its frames record it."""


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
    positions: list[tuple[float, float]] = []
    for shot in range(shots):
        frame = shot + 1
        # The vehicle turns gently; turning the scene with it keeps every shot's content different.
        panorama = np.roll(scene, -int(shot * scene.shape[1] / 17), axis=1)
        truth_path = folder / "truth" / f"{reel}-{frame:06d}.png"
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(truth_path), panorama[:, :, ::-1])
        truth.append(truth_path)
        moment = START_TIME + timedelta(seconds=shot)
        positions.append((round(lat, 7), round(lon, 7)))
        for camera, view in zip(rig.cameras, render_views(panorama, rig), strict=True):
            update = MetadataUpdate(
                captured_at=moment + timedelta(seconds=camera.index * CAMERA_SKEW_S),
                utc_offset_minutes=UTC_OFFSET_MINUTES,
                gps_latitude=positions[-1][0],
                gps_longitude=positions[-1][1],
                gps_altitude=round(RTK_ALTITUDE_M + GNSS_ALTITUDE_BIAS_M + 0.2 * math.sin(shot), 2),
                gps_img_direction=round((bearing + camera.yaw_deg) % 360, 2),
                gps_h_positioning_error=GNSS_ACCURACY_M,
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
    return DemoSurvey(folder, rig, reel, shots, tuple(files), tuple(truth), tuple(positions))


PPK_SHIFT_M = (0.12, 0.08)
"""How far north and east post-processing (PPK) moves the demo's recorded positions, in metres."""


def ppk_positions(survey: DemoSurvey) -> list[tuple[float, float]]:
    """Each shot's post-processed position: the recorded one moved by :data:`PPK_SHIFT_M`."""
    north, east = PPK_SHIFT_M
    return [destination(*destination(lat, lon, 0.0, north), 90.0, east) for lat, lon in survey.positions]


def write_fixed_positions(survey: DemoSurvey) -> Path:
    """``fixed.csv`` beside the survey: every frame's post-processed position (a few centimetres from the
    recorded one), a row per exposure as a GNSS solution lists them, in the columns ``panopipe edit
    --positions`` reads: reel, frame, lat, lon (it sets every camera of the frame)."""
    rows = ["reel,frame,lat,lon"]
    rows += [
        f"{survey.reel},{frame},{lat:.8f},{lon:.8f}"
        for frame, (lat, lon) in enumerate(ppk_positions(survey), 1)
    ]
    path = survey.folder / "fixed.csv"
    write_atomic(path, ("\n".join(rows) + "\n").encode())
    return path


def write_ppk_track(survey: DemoSurvey) -> Path:
    """``track.gpx`` beside the survey: the post-processed GNSS track (``panopipe edit --track`` reads it), a
    point at each shot's time and one a second after the last, where the vehicle drove on to."""
    positions = ppk_positions(survey)
    (lat0, lon0), (lat1, lon1) = positions[-2:] if len(positions) > 1 else positions * 2
    positions.append((2 * lat1 - lat0, 2 * lon1 - lon0))
    points = [
        (START_TIME + timedelta(seconds=second), lat, lon, None)
        for second, (lat, lon) in enumerate(positions)
    ]
    return write_gpx(survey.folder / "track.gpx", points, creator="panopipe demo")


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did: the survey, ingest (and the shots as ingested), the first run, and an edit
    reprocessing only what it touched."""

    survey: DemoSurvey
    config_file: Path
    ingest: IngestReport
    ingested_shots: list[dict[str, Any]]
    first_run: RunReport
    edit_batch: str
    edit_reason: str
    edited_images: int
    plan_after_edit: Plan
    second_run: RunReport
    plan_at_end: Plan
    report: Path


SAMPLE_EVENT_PREFIX = "s3://survey-bucket/2024-05-01"
"""Where the demo's sample event says its first frame was uploaded: where the README's ``panopipe sync`` puts
the reel."""


def write_sample_event(survey: DemoSurvey) -> Path:
    """``event.json`` beside the survey: the S3 event, as Lambda receives it, of the upload of the survey's first
    frame to :data:`SAMPLE_EVENT_PREFIX` (``panopipe events parse`` and ``events handle`` read it)."""
    first = survey.files[0]
    bucket, _, prefix = SAMPLE_EVENT_PREFIX.removeprefix("s3://").partition("/")
    data = first.read_bytes()
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": START_TIME.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": f"{prefix}/{first.relative_to(survey.folder).as_posix()}",
                "size": len(data),
                "eTag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                "sequencer": "0065F1A2B3C4D5E6F7",
            },
        },
    }
    path = survey.folder / "event.json"
    write_atomic(path, [json.dumps({"Records": [record]}, indent=2).encode() + b"\n"])
    return path


def write_project_config(folder: Path, catalog_location: str, camera_size: tuple[int, int]) -> Path:
    """A complete ``panopipe.toml`` in ``folder``: every section panopipe reads, with comments, naming the
    catalog and the survey's rig, so that later commands run there agree with the demo."""
    width, height = camera_size
    text = _CONFIG_TOML.format(
        catalog=json.dumps(catalog_location),
        output=json.dumps(str(folder.resolve() / "panopipe-out")),
        path_pattern=IngestRules().path_pattern,
        shot_tolerance_s=IngestRules().shot_tolerance_s,
        template=DEFAULT_TEMPLATE,
        rig=_RIG_TOML.format(name=DEMO_RIG, width=width, height=height),
    )
    path = folder / "panopipe.toml"
    write_atomic(path, text.encode())
    return path


def shot_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """One row per shot as the catalog has it: its frame count and its first frame's time, position, altitude
    and heading."""
    rows: dict[str, dict[str, Any]] = {}
    for image in catalog.images(Selection()):
        row = rows.setdefault(
            image.shot or "-",
            {"shot": image.shot, "frames": 0}
            | {name: getattr(image, name) for name in ("captured_at", "lat", "lon", "alt", "heading")},
        )
        row["frames"] += 1
    return list(rows.values())


def run_demo(
    folder: Path,
    catalog_location: str,
    *,
    shots: int = 8,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    """Generate a survey in ``folder``, ingest it, run the whole pipeline, then correct the reel's altitude from
    RTK (its GNSS read high) and show that only what the edit touched runs again: not the stitching. The
    catalog must hold no image yet (a :class:`~panopipe.errors.ConfigError` before anything is written)."""
    tick = progress or (lambda stage, done, total: None)
    with Catalog.open(catalog_location) as catalog:  # the config file written below names it too
        if catalog.count(Selection(include_deleted=True)):
            raise ConfigError(
                f"{catalog.location} already holds images (an earlier demo?): the demo needs an empty "
                f"catalog: give another --folder, or delete {folder} first"
            )
        survey = generate_survey(
            folder, shots=shots, progress=lambda done, total: tick("render", done, total)
        )
        camera = survey.rig.cameras[0]
        write_fixed_positions(survey)
        write_ppk_track(survey)
        write_sample_event(survey)
        config_file = write_project_config(folder, catalog_location, (camera.width, camera.height))
        settings = load_settings(config_file)
        ingested = ingest(
            catalog, [folder / survey.reel], settings, progress=lambda d, t: tick("ingest", d, t)
        )
        ingested_shots = shot_rows(catalog)
        first_run = run(catalog, settings=settings, progress=tick)
        changes = catalog.plan_edit(Selection(reels=(survey.reel,)), assign={"alt": RTK_ALTITUDE_M})
        reason = f"RTK altitude {RTK_ALTITUDE_M} m: the rig's GNSS read {GNSS_ALTITUDE_BIAS_M} m high"
        batch = catalog.apply_edit(changes, reason=reason, author="panopipe demo")
        plan_after_edit = plan(catalog, settings=settings)
        second_run = run(catalog, settings=settings, progress=tick)
        plan_at_end = plan(catalog, settings=settings)
        report = write_html_report(catalog, folder / "report.html")
    return DemoResult(
        survey,
        config_file,
        ingested,
        ingested_shots,
        first_run,
        batch,
        reason,
        len({c.image_id for c in changes}),
        plan_after_edit,
        second_run,
        plan_at_end,
        report,
    )


__all__ = [
    "CAMERA_SKEW_S",
    "DEMO_RIG",
    "GNSS_ACCURACY_M",
    "GNSS_ALTITUDE_BIAS_M",
    "PPK_SHIFT_M",
    "RTK_ALTITUDE_M",
    "SAMPLE_EVENT_PREFIX",
    "START",
    "START_TIME",
    "STEP_M",
    "UTC_OFFSET_MINUTES",
    "DemoResult",
    "DemoSurvey",
    "demo_rig",
    "generate_survey",
    "ppk_positions",
    "run_demo",
    "shot_rows",
    "write_fixed_positions",
    "write_ppk_track",
    "write_project_config",
    "write_sample_event",
]
