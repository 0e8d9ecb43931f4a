"""The sequences export (``export --of sequences``): where a survey captured, one line per sequence.

A sequence is the run of a reel's panoramas (its rig shots and single 360° images) in capture order between
two stops: a new one starts where more than ``[qc] break_gap_s`` (30 s) passes from one panorama to the next,
as ``panopipe qc`` starts a sequence at a time gap (and as Mapillary and Panoramax cut uploads into
sequences). Its line runs through the panoramas' positions (a shot's is the mean of its frames', as
``export --of panoramas`` gives it); panoramas without a position are left out of the line and of the count.
QGIS and ArcGIS draw the lines as a coverage map; each carries its times, frames and length. Sequences are
cut and numbered over the whole reel, whatever is selected, so an id names the same run in every export.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby, pairwise
from statistics import fmean
from typing import Any

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.values import rounded
from panopipe.export.images import CLOCK_DOC
from panopipe.export.table import Column, Table, capture_time
from panopipe.geo import haversine_m, mean_longitude
from panopipe.qc.settings import QcSettings

SEQUENCE_COLUMNS: tuple[Column, ...] = (
    Column("id", "text", "the reel and the sequence's number in it: R001/2 (images without a reel: 2)"),
    Column("reel", "text", "the reel (survey run)"),
    Column("sequence", "integer", "1, 2, ... in capture order within the reel"),
    Column("start", "datetime", f"capture time of its first panorama, UTC; {CLOCK_DOC}"),
    Column("end", "datetime", f"capture time of its last panorama, UTC; {CLOCK_DOC}"),
    Column("duration_s", "real", "seconds from the first panorama to the last"),
    Column("panoramas", "integer", "rig shots and 360° images on the line"),
    Column("first_frame", "integer", "the lowest frame number of its first panorama"),
    Column("last_frame", "integer", "the lowest frame number of its last panorama"),
    Column("length_m", "real", "metres along the line (great-circle distance between panoramas)"),
    Column("line", "line", "the line through the panoramas' positions, WGS84 (CSV: WKT)"),
)
"""The columns of the sequences export, with their types."""


@dataclass(frozen=True, slots=True)
class _Panorama:
    reel: str | None
    at: float  # POSIX seconds
    utc_offset_minutes: int | None  # of the frame whose time ``at`` is
    frame: int | None
    lon: float
    lat: float
    selected: bool  # one of its images is


def load_sequences(catalog: Catalog, selection: Selection | None, qc: QcSettings) -> list[dict[str, Any]]:
    """The sequences of the selected images' panoramas, each cut where more than ``qc.break_gap_s`` passes, as
    rows of :data:`SEQUENCE_COLUMNS`. Images an edit excluded are left out, as from processing, and so are
    positions within ``qc.null_island_deg`` of 0, 0, which ``panopipe qc`` flags and leaves off the track.
    Sequences are cut and numbered over the whole reel, then only the selected panoramas kept: a sequence's
    id names the same run in every export (``--reel R001`` and ``--reel R001 --since ...``)."""
    selected: set[str] | None = None
    reels: Selection | None = None
    if selection is not None and not selection.selects_all:
        found = catalog.columns(selection, ("id", "reel"))
        selected = set(found["id"])
        if None not in found["reel"]:  # else every image: those without a reel are one "reel"
            reels = Selection(reels=tuple(sorted(set(found["reel"]))))
    panoramas = _panoramas(catalog, reels, selected, qc) if selected != set() else []
    return list(_rows(panoramas, qc.break_gap_s))


def sequences_table(found: list[dict[str, Any]]) -> Table:
    """The sequences export of ``found`` (:func:`load_sequences`)."""
    return Table.of_rows("sequences", SEQUENCE_COLUMNS, found)


def _panoramas(
    catalog: Catalog, selection: Selection | None, selected: set[str] | None, qc: QcSettings
) -> list[_Panorama]:
    """Each placed, dated shot (or image without one) of ``selection``, its excluded frames left out: its reel,
    earliest capture time (with that frame's UTC offset), lowest frame, mean position (of its frames with a fix,
    :meth:`QcSettings.has_fix`) and whether one of its images is in ``selected`` (none: all are); by reel, then
    time."""
    fields = ("id", "reel", "shot", "frame", "captured_at", "utc_offset_minutes", "lat", "lon", "excluded")
    columns = catalog.columns(selection, fields)
    groups: dict[tuple[str | None, str], list[int]] = {}
    for i, (image_id, reel, shot) in enumerate(
        zip(columns["id"], columns["reel"], columns["shot"], strict=True)
    ):
        if not columns["excluded"][i]:
            groups.setdefault((reel, shot or image_id), []).append(i)
    ids, lats, lons, times = columns["id"], columns["lat"], columns["lon"], columns["captured_at"]
    found = []
    for (reel, _), members in groups.items():
        placed = [i for i in members if qc.has_fix(lats[i], lons[i])]
        dated = [i for i in members if times[i] is not None]
        if not placed or not dated:
            continue
        first = min(dated, key=times.__getitem__)
        frames = [columns["frame"][i] for i in members if columns["frame"][i] is not None]
        lon = rounded("lon", mean_longitude(lons[i] for i in placed))
        lat = rounded("lat", fmean(lats[i] for i in placed))
        chosen = selected is None or any(ids[i] in selected for i in members)
        offset = columns["utc_offset_minutes"][first]
        found.append(_Panorama(reel, times[first], offset, min(frames) if frames else None, lon, lat, chosen))
    return sorted(found, key=lambda p: (p.reel or "", p.at))


def _rows(panoramas: list[_Panorama], break_gap_s: float) -> Iterator[dict[str, Any]]:
    for reel, of_reel in groupby(panoramas, key=lambda p: p.reel):
        for number, run in enumerate(_runs(list(of_reel), break_gap_s), 1):
            kept = [p for p in run if p.selected]
            if kept:
                yield _row(reel, number, kept)


def _runs(panoramas: list[_Panorama], break_gap_s: float) -> Iterator[list[_Panorama]]:
    """``panoramas`` (of one reel, in time order) cut where more than ``break_gap_s`` passes."""
    run = [panoramas[0]]
    for before, after in pairwise(panoramas):
        if after.at - before.at > break_gap_s:
            yield run
            run = []
        run.append(after)
    yield run


def _row(reel: str | None, number: int, run: list[_Panorama]) -> dict[str, Any]:
    first, last = run[0], run[-1]
    length = sum(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in pairwise(run))
    line = [(p.lon, p.lat) for p in run]
    if len(line) == 1:
        line *= 2  # a line needs two points: one panorama is a line of no length
    return {
        "id": f"{reel}/{number}" if reel is not None else str(number),
        "reel": reel,
        "sequence": number,
        "start": capture_time(datetime.fromtimestamp(first.at, UTC), first.utc_offset_minutes),
        "end": capture_time(datetime.fromtimestamp(last.at, UTC), last.utc_offset_minutes),
        "duration_s": round(last.at - first.at, 3),
        "panoramas": len(run),
        "first_frame": first.frame,
        "last_frame": last.frame,
        "length_m": round(length, 2),
        "line": line,
    }


__all__ = ["SEQUENCE_COLUMNS", "load_sequences", "sequences_table"]
