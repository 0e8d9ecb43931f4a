"""The ``apply-metadata`` step: the catalog's effective metadata written into the output JPEG, losslessly.

For a rig shot the source is the stitched panorama (its ``nadir`` output when that step is on) and the
metadata comes from the shot's frames: time, camera make/model and heading from the frame of the lowest camera
index, the position averaged over the frames that have one. For a single 360° image the source is the image
file itself (or its ``nadir`` output). Both get XMP GPano (equirectangular) and the panopipe namespace
(project, reel, frame, shot). The GPano is a full panorama of the image's size, except for a partial one: an
image whose own GPano places pixels of its size inside a larger panorama (a 360° camera's cropped image) keeps
its FullPano* and CroppedArea* values, read from the input's header when the job runs (a stitched panorama
carries no GPano: it is full). When the capture's UTC offset is
known, the capture time is also written as GPSDateStamp/GPSTimeStamp (UTC); a time whose offset is unknown
is not certain to be UTC, so it gets none. The horizontal accuracy, when the catalog has one, is written as
GPSHPositioningError (a shot's: the largest of its frames'). Pitch and roll, when the catalog has them, are
written as GPano PosePitchDegrees and PoseRollDegrees (a shot's: those of the frame its heading comes from).

Config (``[steps.apply-metadata]``): ``artist``, ``copyright`` and ``description`` (a template over
``{project}``, ``{reel}``, ``{frame}``, ``{shot}``), all optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from statistics import fmean
from typing import Any

from panopipe.catalog.records import to_json_value
from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, MetadataError, StepError
from panopipe.geo import mean_longitude
from panopipe.metadata import ImageMetadata, parse_jpeg_header
from panopipe.metadata.writer import GPano, MetadataUpdate, apply_metadata
from panopipe.steps.base import Log, Output, Step, Subject, SubjectKind, Upstream, put_output, read_input
from panopipe.steps.nadir import covered, pixel_source

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


class ApplyMetadataStep(Step):
    """Write effective metadata into the panorama (shots) or a copy of the image (single 360° images)."""

    name = "apply-metadata"
    version = "2"
    outputs = ("image",)
    reads = METADATA_FIELDS
    reads_if_set = METADATA_FIELDS_IF_SET
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
        return {**params, "project": self.context.project, **covered(self.context.tables)}

    def upstream(self, kind: SubjectKind) -> str | None:
        return pixel_source(kind, self.context.tables)

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        metadata = {k: to_json_value(v) for k, v in expected_metadata(subject, self.params).items()}
        return {**super().payload(subject, upstream, fingerprint), "metadata": metadata}

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        data = with_metadata(read_input(payload["inputs"][0]), payload["metadata"], payload["inputs"][0])
        log(f"wrote metadata of {len(payload['metadata'])} fields into {len(data)} bytes")
        return [put_output("image", payload["outputs"]["image"], data)]


def expected_metadata(subject: Subject, params: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata the output of ``subject`` carries, from its frames' effective metadata and ``params``."""
    first = subject.frames[0]
    placed = [f for f in subject.frames if f.lat is not None and f.lon is not None]
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
        "gps_img_direction": first.heading,
        "pitch": first.pitch,  # GPano PosePitchDegrees and PoseRollDegrees, as the heading's frame has them
        "roll": first.roll,
        # the mean position of a shot is as good as its worst frame's, a safe figure for a whole rig's fix
        "gps_h_positioning_error": max(accuracies) if accuracies else None,
        "make": first.make,
        "model": first.model,
        "artist": params.get("artist"),
        "copyright": params.get("copyright"),
        "image_description": description or None,
        "panopipe": {k: v for k, v in tags.items() if v is not None},
    }


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
    return MetadataUpdate(**values, gpano=gpano, zone_unknown=zone_unknown)


__all__ = [
    "METADATA_FIELDS",
    "METADATA_FIELDS_IF_SET",
    "ApplyMetadataStep",
    "PanoramaArea",
    "expected_metadata",
    "metadata_update",
    "partial_panorama",
    "with_metadata",
]
