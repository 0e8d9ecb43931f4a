"""The ``apply-metadata`` step: the catalog's effective metadata written into the output JPEG, losslessly.

For a rig shot the source is the stitched panorama (its ``nadir`` output when that step is on) and the
metadata comes from the shot's frames: time and camera make/model from the frame of the lowest camera index,
the position averaged over the frames that have a fix (:meth:`~panopipe.qc.QcSettings.has_fix`: not the 0, 0
of a receiver without one), and the orientation the rig's (:func:`panorama_orientation`): the stitched
panorama's centre looks along the rig's forward axis, so a frame's heading, pitch and roll are turned back
by its camera's orientation on the rig (``[steps.stitch.rig]``). For a single 360° image the source is the image
file itself (or its ``nadir`` output). Both get XMP GPano (equirectangular) and the panopipe namespace
(project, reel, frame, shot). The GPano is a full panorama of the image's size, except for a partial one: an
image whose own GPano places pixels of its size inside a larger panorama (a 360° camera's cropped image) keeps
its FullPano* and CroppedArea* values, read from the input's header when the job runs (a stitched panorama
carries no GPano: it is full). When the capture's UTC offset is
known, the capture time is also written as GPSDateStamp/GPSTimeStamp (UTC); a time whose offset is unknown
is not certain to be UTC, so it gets none. The horizontal accuracy, when the catalog has one, is written as
GPSHPositioningError (a shot's: the largest of its frames'). Pitch and roll, when the catalog has them, are
written as GPano PosePitchDegrees and PoseRollDegrees; the heading is written in 0-360 (GPSImgDirection and
PoseHeadingDegrees), the roll in -180-180. A value the catalog says the image does not have (an edit cleared
it; a position without a fix: :func:`absent_values`) is removed, with its Ref tag and XMP copies: a 360°
image's output keeps its own header, where the camera's value would stay.

Config (``[steps.apply-metadata]``): ``artist``, ``copyright`` and ``description`` (a template over
``{project}``, ``{reel}``, ``{frame}``, ``{shot}``), all optional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean
from typing import Any

from panopipe.catalog.records import Image, to_json_value
from panopipe.catalog.values import rounded
from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, MetadataError, StepError
from panopipe.geo import mean_longitude, signed_angle
from panopipe.metadata import ImageMetadata, parse_jpeg_header
from panopipe.metadata.writer import GPano, MetadataUpdate, apply_metadata
from panopipe.qc.settings import QcSettings
from panopipe.steps.base import (
    Log,
    Output,
    PipelineContext,
    Step,
    Subject,
    SubjectKind,
    Upstream,
    job_inputs,
    put_output,
    read_input,
)
from panopipe.steps.nadir import covered, pixel_source
from panopipe.steps.stitch import configured_rig

METADATA_FIELDS = (
    "captured_at",
    "utc_offset_minutes",
    "lat",
    "lon",
    "alt",
    "heading",
    "make",
    "model",
    "reel",
    "frame",
    "shot",
)
METADATA_FIELDS_IF_SET = ("gps_accuracy_m", "pitch", "roll")
"""Fields read only where set (:attr:`~panopipe.steps.base.Step.reads_if_set`): outputs made before they were
read stay current until an image has one."""

# The values of expected_metadata whose None says that the image has none, and what its file must then lack.
_ABSENT_IF_NONE = {
    "gps_latitude": ("gps_latitude", "gps_h_positioning_error"),
    "gps_longitude": ("gps_longitude", "gps_h_positioning_error"),
    "gps_altitude": ("gps_altitude",),
    "gps_img_direction": ("gps_img_direction", "pose_heading"),
    "pitch": ("pose_pitch",),
    "roll": ("pose_roll",),
}

Pose = tuple[float, float, float]
"""Yaw (heading), pitch and roll in degrees, as :mod:`panopipe.stitching.projection` turns them."""


@dataclass(frozen=True, slots=True)
class Placement:
    """What turns a subject's frames into its panorama's position and orientation: each rig camera's pose on
    the rig by camera index (``[steps.stitch.rig]``, which the stitch step orients the panorama by; none
    without a rig profile) and the ``[qc]`` settings that say which positions count."""

    cameras: Mapping[int, Pose]
    qc: QcSettings

    @classmethod
    def of(cls, context: PipelineContext) -> Placement:
        """The placement the pipeline ``context`` configures."""
        rig = configured_rig(context.tables)
        cameras = {c.index: (c.yaw_deg, c.pitch_deg, c.roll_deg) for c in rig.cameras} if rig else {}
        return cls(cameras, QcSettings.from_config(context.qc))

    @staticmethod
    def params(context: PipelineContext) -> dict[str, Any]:
        """The step parameters of the placement that the rig does not enter through the stitched pixels: a
        ``[qc] null_island_deg`` set (its default leaves outputs of before current)."""
        qc = QcSettings.from_config(context.qc)
        return {"null_island_deg": qc.null_island_deg} if "null_island_deg" in context.qc else {}


class ApplyMetadataStep(Step):
    """Write effective metadata into the panorama (shots) or a copy of the image (single 360° images)."""

    name = "apply-metadata"
    version = "2"
    outputs = ("image",)
    reads = METADATA_FIELDS
    reads_if_set = METADATA_FIELDS_IF_SET
    frame_fields = ("camera_index",)  # the camera whose orientation on the rig turns its frame's
    tagged = True
    parameters = (
        ConfigKey("artist", None, "Artist (EXIF) written into each output.", "none"),
        ConfigKey("copyright", None, "Copyright (EXIF) written into each output.", "none"),
        ConfigKey(
            "description",
            None,
            "Image description (EXIF), a template over {project}, {reel}, {frame} and {shot}.",
            "none",
        ),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        params = {key: table.get(key) for key in sorted(self.config_keys)}
        for key, value in params.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"[steps.apply-metadata]: {key} must be text, got {value!r}")
        if params["description"]:  # refused by plan as by run, not at the first job's payload
            example = {"project": self.context.project, "reel": "R001", "frame": 1, "shot": "R001-000001"}
            _description(params["description"], example)
        self.placement = Placement.of(self.context)
        return {
            **params,
            "project": self.context.project,
            **covered(self.context.tables),
            **Placement.params(self.context),
        }

    def upstream(self, kind: SubjectKind) -> str | None:
        return pixel_source(kind, self.context.tables)

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        metadata = expected_metadata(subject, self.params, self.placement)
        metadata = {k: to_json_value(v) for k, v in metadata.items()}
        return {**super().payload(subject, upstream, fingerprint), "metadata": metadata}

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        uri, sha256 = job_inputs(payload)[0]
        data = with_metadata(read_input(uri, sha256), payload["metadata"], uri)
        log(f"wrote metadata of {len(payload['metadata'])} fields into {len(data)} bytes")
        return [put_output("image", payload["outputs"]["image"], data)]


def expected_metadata(subject: Subject, params: Mapping[str, Any], placement: Placement) -> dict[str, Any]:
    """The metadata the output of ``subject`` carries, from its frames' effective metadata, ``params`` and
    ``placement``."""
    first = subject.frames[0]
    placed = [f for f in subject.frames if placement.qc.has_fix(f.lat, f.lon)]
    heading, pitch, roll = panorama_orientation(subject.frames, placement.cameras)
    altitudes = [f.alt for f in subject.frames if f.alt is not None]
    accuracies = [f.gps_accuracy_m for f in placed if f.gps_accuracy_m is not None]
    frames = [f.frame for f in subject.frames if f.frame is not None]
    tags = {
        "project": params["project"],
        "reel": first.reel,
        "frame": min(frames) if frames else None,
        "shot": subject.key if subject.kind == "shot" else first.shot,
    }
    description = params.get("description")
    if description:
        description = _description(description, tags)
    return {
        "captured_at": first.captured_at,
        "utc_offset_minutes": first.utc_offset_minutes if first.captured_at else None,
        "gps_latitude": fmean([f.lat for f in placed if f.lat is not None]) if placed else None,
        "gps_longitude": mean_longitude(f.lon for f in placed if f.lon is not None) if placed else None,
        "gps_altitude": fmean(altitudes) if altitudes else None,
        "gps_img_direction": heading,
        "pitch": pitch,  # GPano PosePitchDegrees and PoseRollDegrees
        "roll": roll,
        # the mean position of a shot is as good as its worst frame's, a safe figure for a whole rig's fix
        "gps_h_positioning_error": max(accuracies) if accuracies else None,
        "make": first.make,
        "model": first.model,
        "artist": params.get("artist"),
        "copyright": params.get("copyright"),
        "image_description": description or None,
        "panopipe": {k: v for k, v in tags.items() if v is not None},
    }


def panorama_orientation(
    frames: Sequence[Image], cameras: Mapping[int, Pose]
) -> tuple[float | None, float | None, float | None]:
    """Heading (0-360), pitch and roll (-180-180) of the panorama of ``frames``, each ``None`` when unknown.

    A 360° image's are its own. A rig shot's are the rig's, which every frame gives: its own turned back by
    the pose of its camera on the rig (``cameras``), taken from the first frame by camera index that has one,
    so that a frame missing (deleted, or without a heading) changes nothing. A frame without pitch and roll
    gives the heading only (its heading less its camera's yaw, as ``edit --track`` sets it); one with them
    gives the three angles, its camera's pitch and roll taken out (a camera looking up does not tilt the rig).
    Without a rig profile the stitcher leaves the orientation to the frames: the first frame's."""
    turned = [
        _rig_pose(frame, (0.0, 0.0, 0.0) if frame.camera_index is None else cameras[frame.camera_index])
        for frame in frames
        if frame.camera_index is None or frame.camera_index in cameras
    ] or [(frames[0].heading, frames[0].pitch, frames[0].roll)]
    heading = next((h for h, _, _ in turned if h is not None), None)
    pitch, roll = next(((p, r) for _, p, r in turned if p is not None or r is not None), (None, None))
    # brought into range, then rounded (no float noise: -159.89999999999998), then into range again (-180: 180)
    return (
        None if heading is None else _degrees(heading % 360.0) % 360.0,
        None if pitch is None else _degrees(pitch),
        None if roll is None else signed_angle(_degrees(signed_angle(roll))),
    )


def _rig_pose(frame: Image, camera: Pose) -> tuple[float | None, float | None, float | None]:
    """The rig's heading, pitch and roll as ``frame``, taken by a camera of pose ``camera`` on it, gives them."""
    heading, pitch, roll = frame.heading, frame.pitch, frame.roll
    if camera == (0.0, 0.0, 0.0):
        return heading, pitch, roll
    if pitch is None and roll is None:
        return None if heading is None else heading - camera[0], None, None
    seen, mount = _rotation((heading or 0.0, pitch or 0.0, roll or 0.0)), _rotation(camera)
    rig = [[sum(seen[i][k] * mount[j][k] for k in range(3)) for j in range(3)] for i in range(3)]
    rig_pitch = math.asin(max(-1.0, min(1.0, -rig[2][0])))
    if math.cos(rig_pitch) < 1e-9:  # straight up or down: yaw and roll turn about one axis, roll is 0
        yaw, rig_roll = math.atan2(-rig[0][1], rig[1][1]), 0.0
    else:
        yaw, rig_roll = math.atan2(rig[1][0], rig[0][0]), math.atan2(rig[2][1], rig[2][2])
    angles = (math.degrees(a) for a in (yaw, rig_pitch, rig_roll))
    rig_heading, rig_pitch, rig_roll = angles
    return None if heading is None else rig_heading, rig_pitch, rig_roll


def _rotation(pose: Pose) -> list[list[float]]:
    """The rotation ``Rz(yaw) Ry(pitch) Rx(roll)`` of ``pose`` (:mod:`panopipe.stitching.projection`'s), in
    plain floats: the event function plans this step without numpy."""
    cy, cp, cr = (math.cos(math.radians(a)) for a in pose)
    sy, sp, sr = (math.sin(math.radians(a)) for a in pose)
    return [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]


def _degrees(angle: float) -> float:
    """``angle`` to 0.0001°, as panopipe keeps derived headings (no float noise of a turn: 20.000000000000004)."""
    return rounded("heading", angle) + 0.0  # and no -0.0


def _description(template: str, tags: Mapping[str, Any]) -> str:
    """The image description ``template`` says for ``tags`` (none: empty)."""
    try:
        return template.format(**{k: "" if v is None else v for k, v in tags.items()})
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"[steps.apply-metadata]: invalid description template {template!r}: {exc}"
        ) from exc


def with_metadata(
    jpeg: bytes, metadata: Mapping[str, Any], name: str, *, scaled_from: ImageMetadata | None = None
) -> bytes:
    """``jpeg`` (called ``name`` in errors) with ``metadata`` written in; its GPano is the JPEG's own size, or
    the area of a larger panorama that its own GPano says it is (:func:`partial_panorama`), or for a copy
    scaled from an image (a thumbnail: ``scaled_from``, that image's header), that image's area, scaled."""
    try:
        header = parse_jpeg_header(jpeg)
        if scaled_from is None:
            area = partial_panorama(header)
        else:
            area = _scaled(partial_panorama(scaled_from), scaled_from, header)
        update = metadata_update(metadata, header.width, header.height, area=area)
        return apply_metadata(jpeg, update)
    except MetadataError as exc:
        raise StepError(f"cannot write metadata into {name}: {exc}") from exc


PanoramaArea = tuple[int, int, int, int]
"""Where an image lies in its full panorama: (full width, full height, left, top) in pixels."""


def partial_panorama(header: ImageMetadata) -> PanoramaArea | None:
    """The area of a larger panorama that an image is, as its GPano says: FullPanoWidthPixels/HeightPixels and
    CroppedAreaLeftPixels/TopPixels, when its CroppedAreaImageWidthPixels/HeightPixels are the image's own
    size and the area lies inside the panorama (columns may wrap around); None for a full panorama, or a GPano
    that does not describe these pixels (a scaled copy that kept its source's values)."""
    width, height = header.width, header.height
    full_width, full_height = header.full_pano_width, header.full_pano_height
    left, top = header.cropped_left or 0, header.cropped_top or 0
    if not (width and height and full_width and full_height):
        return None
    if (header.cropped_width, header.cropped_height) != (width, height):
        return None
    inside = width <= full_width and 0 <= left < full_width and 0 <= top <= full_height - height
    if (full_width, full_height) == (width, height) or not inside:
        return None
    return full_width, full_height, left, top


def _scaled(area: PanoramaArea | None, source: ImageMetadata, copy: ImageMetadata) -> PanoramaArea | None:
    """``area`` of the image ``source`` for its scaled ``copy``."""
    if area is None or not (source.width and source.height and copy.width and copy.height):
        return None
    full_width, full_height, left, top = area
    x, y = copy.width / source.width, copy.height / source.height
    return round(full_width * x), round(full_height * y), round(left * x), round(top * y)


def metadata_update(
    metadata: Mapping[str, Any], width: int | None, height: int | None, *, area: PanoramaArea | None = None
) -> MetadataUpdate:
    """The writer's update for ``metadata`` (as :func:`expected_metadata` returns it, JSON or not), with a
    GPano of an image of ``width`` x ``height``: a full panorama, or the ``area`` of a larger one."""
    values = dict(metadata)
    if isinstance(values["captured_at"], str):
        values["captured_at"] = datetime.fromisoformat(values["captured_at"])
    if values["utc_offset_minutes"] is not None:
        values["gps_datetime"] = values["captured_at"]
    pitch, roll = values.pop("pitch", None), values.pop("roll", None)  # absent from jobs recorded before
    gpano = None
    if width and height:
        full_width, full_height, left, top = area or (width, height, 0, 0)
        gpano = GPano(
            full_width,
            full_height,
            width,
            height,
            left,
            top,
            pose_heading_degrees=values["gps_img_direction"],
            pose_pitch_degrees=pitch,
            pose_roll_degrees=roll,
        )
    # a capture time without a UTC offset is the camera clock's reading, of a zone nobody knows
    zone_unknown = values["captured_at"] is not None and values["utc_offset_minutes"] is None
    return MetadataUpdate(**values, gpano=gpano, zone_unknown=zone_unknown, remove=absent_values(metadata))


def absent_values(metadata: Mapping[str, Any]) -> frozenset[str]:
    """What the output of ``metadata`` (as :func:`expected_metadata` returns it, JSON or not) must not have,
    named as :data:`~panopipe.metadata.writer.REMOVABLE` names it: the values whose None says that the image
    has none, not that it is unknown. A position (with its accuracy) that an edit cleared or that no frame
    with a fix gives, an altitude, a heading (GPSImgDirection and PoseHeadingDegrees), a pitch or a roll. An
    accuracy alone is None also for an image ingested before panopipe read it, so its file's is kept; so are
    pitch and roll for a job recorded before they were read. ``verify`` finds one of them in a file drift."""
    return frozenset(
        name
        for field, names in _ABSENT_IF_NONE.items()
        if field in metadata and metadata[field] is None
        for name in names
    )


__all__ = [
    "METADATA_FIELDS",
    "METADATA_FIELDS_IF_SET",
    "ApplyMetadataStep",
    "PanoramaArea",
    "Placement",
    "Pose",
    "absent_values",
    "expected_metadata",
    "metadata_update",
    "panorama_orientation",
    "partial_panorama",
    "with_metadata",
]
