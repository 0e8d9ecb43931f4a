"""The ArcGIS Oriented Imagery table (``export --format oid``): the CSV that ArcGIS Pro's "Add Images To
Oriented Imagery Dataset" takes as a table input, one row per panorama that has an image and a position.

Field names and meanings follow Esri's "Oriented imagery table" page
(https://pro.arcgis.com/en/pro-app/latest/help/data/imagery/oriented-imagery-table.htm) and the camera angles
its ``orientedImageryProperties`` (https://developers.arcgis.com/web-map-specification/objects/orientedImageryProperties):

- ``CameraHeading``: degrees clockwise from north, as panopipe's heading (GPSImgDirection), in 0-360.
- ``CameraPitch``: 0 looking straight down, 90 at the horizon, 180 straight up; panopipe's pitch is degrees
  above the horizon, so ``CameraPitch = 90 + pitch``. A panorama without a pitch is level (GPano's default).
- ``CameraRoll``: degrees clockwise, as panopipe's roll, which Esri takes from -90 to 90: none is 0, and a
  panorama rolled further (upside down: no heading and pitch in Esri's ranges turn it so) has none, with a
  warning.
- ``HorizontalFieldOfView`` and ``VerticalFieldOfView``: 360 and 180, a partial panorama's less (its GPano).
- ``Z`` and ``SRS``: the altitude is EXIF GPSAltitude, above mean sea level, which GPS receivers give over
  the EGM96 geoid: ``SRS`` is ``4326;5773`` (WGS84 horizontal, EGM96 height vertical), never an ellipsoidal
  height (WKID 115700, about 47 m off in Munich).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.export.images import CLOCK_DOC
from panopipe.export.panoramas import Panorama
from panopipe.export.table import Column, Table, clock_reading
from panopipe.geo import signed_angle
from panopipe.pipeline.config import load_pipeline, resolved_settings

log = logging.getLogger(__name__)

HORIZONTAL_WKID = 4326
"""WGS84 longitude/latitude, the datum of EXIF GPS positions."""
VERTICAL_WKID = 5773
"""EGM96 height: metres above the EGM96 geoid, the mean sea level of EXIF GPSAltitude."""
SRS = f"{HORIZONTAL_WKID};{VERTICAL_WKID}"
NEAR_DISTANCE_M = 1.0
"""Closest distance at which the image shows the ground: about the bumper of a car-mounted rig."""
FAR_DISTANCE_M = 50.0
"""Farthest distance an image is offered for: a street-level 360° image shows little detail beyond it."""

OID_COLUMNS: tuple[Column, ...] = (
    Column("Name", "text", "the image file's name without its extension"),
    Column("ImagePath", "text", "the panorama's image_uri: local path, s3:// URI or https URL (--base-url)"),
    Column("X", "real", "longitude, WGS84 degrees"),
    Column("Y", "real", "latitude, WGS84 degrees"),
    Column("Z", "real", "metres above mean sea level (EGM96 geoid): EXIF GPSAltitude"),
    Column("SRS", "text", f"{SRS}: horizontal WKID (WGS84) and vertical WKID (EGM96 height)"),
    Column("AcquisitionDate", "datetime", f"capture time as YYYY-MM-DD HH:MM:SS.sss, UTC; {CLOCK_DOC}"),
    Column("CameraHeading", "real", "degrees clockwise from north, 0-360; empty when unknown"),
    Column("CameraPitch", "real", "90 + pitch above the horizon: 90 is level"),
    Column("CameraRoll", "real", "degrees clockwise, -90 to 90; 0 when unknown, empty beyond"),
    Column(
        "CameraHeight",
        "real",
        "metres above the ground: --camera-height, else (rig shots) the rig's mount_height_m",
    ),
    Column("HorizontalFieldOfView", "real", "360; a partial panorama's less"),
    Column("VerticalFieldOfView", "real", "180; a partial panorama's less (a cropped band)"),
    Column("NearDistance", "real", f"{NEAR_DISTANCE_M:g} m"),
    Column("FarDistance", "real", f"{FAR_DISTANCE_M:g} m"),
    Column("OrientedImageryType", "text", "360"),
    Column("Reel", "text", "the reel"),
    Column("Frame", "integer", "the frame number (lowest of a shot's frames)"),
    Column("PanopipeId", "text", "the panorama's id: shot id or image id"),
)
"""The columns of the Oriented Imagery table, with their types."""


def esri_heading(heading: float | None) -> float | None:
    """``CameraHeading`` of a heading in degrees clockwise from north: the same angle in 0-360."""
    return None if heading is None else heading % 360.0


def esri_pitch(pitch: float | None) -> float:
    """``CameraPitch`` (0 down, 90 horizon, 180 up) of a pitch in degrees above the horizon (None: level)."""
    return 90.0 + (pitch or 0.0)


def esri_roll(roll: float | None) -> float | None:
    """``CameraRoll`` (-90 to 90, clockwise) of a roll in degrees clockwise (None: level, 0); ``None`` for a
    roll further than 90° either way, which Esri's angles cannot hold."""
    roll = signed_angle(roll or 0.0)
    return roll if -90.0 <= roll <= 90.0 else None


def esri_time(moment: datetime) -> str:
    """``AcquisitionDate`` as ``YYYY-MM-DD HH:MM:SS.sss``, a form ArcGIS reads from CSV, which has no zone: UTC,
    or a camera's clock whose zone is unknown (:func:`~panopipe.export.table.capture_time`) as it read."""
    return clock_reading(moment).isoformat(sep=" ", timespec="milliseconds")


def rig_mount_height(catalog: Catalog, settings: Settings | None) -> float | None:
    """The ``mount_height_m`` of the rig profile in ``[steps.stitch] rig`` of the project configuration that
    applies to ``catalog``, as the stitch step reads it; ``None`` when no rig is configured (no height is
    assumed) or the stitcher uses none."""
    from panopipe.steps.stitch import StitchStep

    settings = resolved_settings(catalog, settings)
    if not isinstance(settings.steps.get("stitch"), dict) or "rig" not in settings.steps["stitch"]:
        return None
    (step,) = load_pipeline(catalog, settings, ["stitch"]).steps
    rig = step.job_params["rig"] if isinstance(step, StitchStep) else None
    return float(rig["mount_height_m"]) if rig else None


def oid_row(panorama: Panorama, camera_height_m: float | None) -> dict[str, Any]:
    """The Oriented Imagery fields of ``panorama`` (which has an image and a position)."""
    path = panorama.image_uri or ""
    name = PurePosixPath(path.replace("\\", "/")).stem
    return {
        # the name as published: a --base-url's path is percent-encoded, the name is not (demo_Straße_000009)
        "Name": unquote(name) if path.startswith(("http://", "https://")) else name,
        "ImagePath": path,
        "X": panorama.lon,
        "Y": panorama.lat,
        "Z": panorama.altitude_msl_m,
        "SRS": SRS,
        "AcquisitionDate": panorama.captured_at,
        "CameraHeading": esri_heading(panorama.heading),
        "CameraPitch": esri_pitch(panorama.pitch),
        "CameraRoll": esri_roll(panorama.roll),
        "CameraHeight": camera_height_m,
        "HorizontalFieldOfView": panorama.view_deg[0],
        "VerticalFieldOfView": panorama.view_deg[1],
        "NearDistance": NEAR_DISTANCE_M,
        "FarDistance": FAR_DISTANCE_M,
        "OrientedImageryType": "360",
        "Reel": panorama.reel,
        "Frame": panorama.frame,
        "PanopipeId": panorama.id,
    }


def oid_table(
    found: Iterable[Panorama], *, rig_height_m: float | None = None, camera_height_m: float | None = None
) -> Table:
    """The Oriented Imagery table of the panoramas of ``found`` that have an image and a position.
    ``CameraHeight`` is ``camera_height_m`` if given, else ``rig_height_m`` for rig shots (single 360°
    images come from another camera: none)."""
    rows = [
        oid_row(
            p, camera_height_m if camera_height_m is not None else rig_height_m if p.kind == "shot" else None
        )
        for p in found
        if p.image_uri and p.lat is not None and p.lon is not None
    ]
    if upside_down := sum(row["CameraRoll"] is None for row in rows):
        log.warning(
            "%d panorama(s) roll more than 90°, beyond Esri's CameraRoll (-90 to 90): left empty", upside_down
        )
    return Table.of_rows("oriented_imagery", OID_COLUMNS, rows, x="X", y="Y")


__all__ = [
    "FAR_DISTANCE_M",
    "HORIZONTAL_WKID",
    "NEAR_DISTANCE_M",
    "OID_COLUMNS",
    "SRS",
    "VERTICAL_WKID",
    "esri_heading",
    "esri_pitch",
    "esri_roll",
    "esri_time",
    "oid_row",
    "oid_table",
    "rig_mount_height",
]
