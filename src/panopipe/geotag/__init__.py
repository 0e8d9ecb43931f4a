"""Geotagging from a trajectory: images placed on a GNSS track (GPX, or a post-processed solution as CSV) by
their capture times, as a non-destructive edit (``panopipe edit --track``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.lazy import lazy_attributes

_MODULES = {
    "DEFAULT_MAX_GAP_S": "place",
    "MAX_SHIFT_S": "clock",
    "NotPlaced": "place",
    "Track": "tracks",
    "TrackEdit": "place",
    "camera_yaws": "place",
    "parse_time_shift": "clock",
    "read_track": "tracks",
    "write_gpx": "tracks",
    "track_edit": "place",
    "values_at": "place",
}

if TYPE_CHECKING:
    from panopipe.geotag.clock import MAX_SHIFT_S, parse_time_shift
    from panopipe.geotag.place import (
        DEFAULT_MAX_GAP_S,
        NotPlaced,
        TrackEdit,
        camera_yaws,
        track_edit,
        values_at,
    )
    from panopipe.geotag.tracks import Track, read_track, write_gpx

__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "MAX_SHIFT_S",
    "NotPlaced",
    "Track",
    "TrackEdit",
    "camera_yaws",
    "parse_time_shift",
    "read_track",
    "track_edit",
    "values_at",
    "write_gpx",
]
