"""Reading a trajectory: the GNSS track (or post-processed GNSS/INS solution) that images are placed on by
their capture times. GPX is read with the standard library's XML parser (its track points' position, ``ele``
and ``time``), CSV with the csv module; neither needs GDAL for these few fields.

Positions and heights are read, and a CSV solution's ``gps_accuracy_m`` (horizontal accuracy, metres) and
``heading``: the vehicle's (an INS's), which
:func:`~panopipe.geotag.place.track_edit` turns by each camera's yaw in the rig. GPX has no heading (its
``course`` is the direction of travel, not of the vehicle); pitch and roll are left unread (a sideways camera
would need them combined with its mounting, not copied)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from panopipe.catalog.records import to_json_value
from panopipe.catalog.values import parse_time, parse_value, validate_value
from panopipe.csv_files import read_csv
from panopipe.errors import ConfigError
from panopipe.storage import write_atomic

GPX_NAMESPACE = "http://www.topografix.com/GPX/1/1"
POSITION = ("lat", "lon")
OPTIONAL = ("alt", "gps_accuracy_m", "heading")
"""Fields a track may carry beside its position; each is set on the images where the track has it."""


@dataclass(frozen=True, eq=False)
class Track:
    """Track points in time order: ``times`` in POSIX seconds (strictly increasing), and per field
    (``lat``, ``lon``, and those of :data:`OPTIONAL` the file has) a value per point, NaN where it lacks one."""

    source: str
    times: np.ndarray
    values: dict[str, np.ndarray]
    skipped: int = 0
    """Points left out: without a time or a position, or at the time of an earlier point."""


def read_track(path: Path) -> Track:
    """The track in ``path``: GPX (``.gpx``) or CSV with a header line (``time``, ``lat``, ``lon`` and
    optionally ``alt``, ``gps_accuracy_m`` and ``heading``, in any order; other columns are left unread; times
    in ISO 8601 with a zone; heights as the catalog's, above mean sea level; horizontal accuracies in metres;
    headings in degrees clockwise from north). A
    :class:`ConfigError` names what is wrong and where."""
    if not path.is_file():
        raise ConfigError(f"no track file at {path}" if not path.exists() else f"{path} is not a file")
    points = _gpx_points(path) if path.suffix.lower() == ".gpx" else _csv_points(path)
    return _track(str(path), points)


def write_gpx(
    path: Path, points: Iterable[tuple[datetime, float, float, float | None]], creator: str
) -> Path:
    """Write a GPX 1.1 track of ``points`` (time, latitude, longitude, height or ``None``) to ``path``
    atomically, as :func:`read_track` reads it; ``path``."""
    gpx = ElementTree.Element("gpx", version="1.1", creator=creator, xmlns=GPX_NAMESPACE)
    segment = ElementTree.SubElement(ElementTree.SubElement(gpx, "trk"), "trkseg")
    for moment, lat, lon, height in points:
        point = ElementTree.SubElement(segment, "trkpt", lat=f"{lat:.9f}", lon=f"{lon:.9f}")
        if height is not None:
            ElementTree.SubElement(point, "ele").text = f"{height:.3f}"
        ElementTree.SubElement(point, "time").text = str(to_json_value(moment))
    write_atomic(path, ElementTree.tostring(gpx, encoding="utf-8", xml_declaration=True))
    return path


def _gpx_points(path: Path) -> list[dict[str, float]]:
    points: list[dict[str, float]] = []
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if _local(element.tag) != "trkpt":
                continue
            children = {_local(child.tag): (child.text or "").strip() for child in element}
            texts = {"lat": element.get("lat"), "lon": element.get("lon"), "alt": children.get("ele")}
            try:
                point = _values(texts)
            except ConfigError as exc:
                raise ConfigError(f"{path}: track point {len(points) + 1}: {exc}") from None
            point["time"] = _gpx_time(children.get("time", ""))
            points.append(point)
            element.clear()
    except ElementTree.ParseError as exc:
        raise ConfigError(f"{path}: cannot read it as GPX ({exc})") from None
    if not points:
        raise ConfigError(f"{path}: no track points (trkpt) in it")
    return points


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _gpx_time(text: str) -> float:
    """POSIX seconds of a GPX time, which is UTC by the standard (a time written without a zone too); NaN for
    one that is not a time (or not one of the years 1 to 9999 in UTC)."""
    try:
        return parse_time(text, zone=UTC).timestamp()
    except ConfigError:
        return math.nan


def _csv_points(path: Path) -> list[dict[str, float]]:
    columns, rows = read_csv(path, names=lambda name: name.strip().lower())
    missing = [name for name in ("time", *POSITION) if name not in columns]
    if missing:
        found = ", ".join(repr(name) for name in columns)
        raise ConfigError(
            f"{path}: CSV line 1: no {missing[0]!r} column (found {found}); a track has the columns "
            "time, lat and lon, and optionally alt, gps_accuracy_m and heading (a GPX file's name ends in .gpx)"
        )
    return [_csv_point(path, number, row) for number, row in enumerate(rows, start=2)]


def _csv_point(path: Path, number: int, row: dict[str, str]) -> dict[str, float]:
    try:
        return {"time": parse_time(row["time"] or "").timestamp(), **_values(row)}
    except ConfigError as exc:
        raise ConfigError(f"{path}: CSV line {number}: {exc}") from None


def _values(texts: Mapping[str, str | None]) -> dict[str, float]:
    """A point's :data:`POSITION` and :data:`OPTIONAL` from their texts (NaN where it has none), each checked
    as the catalog checks the field (a latitude of 95, an infinite longitude: a :class:`ConfigError`)."""
    point = {}
    for name in (*POSITION, *OPTIONAL):
        text = (texts.get(name) or "").strip()
        value = _heading(text) if name == "heading" else parse_value(name, text)
        point[name] = math.nan if value is None else float(value)
    return point


def _heading(text: str) -> float | None:
    """A heading in degrees from north, 0 to 360: a solution's yaw of -180 to 180 is turned into that range."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"invalid value {text!r} for heading: expected a number") from None
    return float(validate_value("heading", value % 360.0 if math.isfinite(value) else value))


def _track(source: str, points: list[dict[str, float]]) -> Track:
    usable = [p for p in points if not any(math.isnan(p[name]) for name in ("time", *POSITION))]
    if not usable:
        raise ConfigError(f"{source}: no track point has a time and a position")
    usable.sort(key=lambda p: p["time"])
    times = np.array([p["time"] for p in usable])
    first = np.concatenate([[True], np.diff(times) > 0])  # of points at one time, the first is kept
    carried = [name for name in OPTIONAL if any(not math.isnan(p.get(name, math.nan)) for p in usable)]
    values = {
        name: np.array([p.get(name, math.nan) for p in usable])[first] for name in (*POSITION, *carried)
    }
    return Track(source, times[first], values, skipped=len(points) - int(first.sum()))


__all__ = ["GPX_NAMESPACE", "OPTIONAL", "POSITION", "Track", "read_track", "write_gpx"]
