"""Which images a command works on: the filters shared by ``ls``, ``export``, ``edit``, ``plan``, ``run``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from panopipe.catalog.flags import flagged
from panopipe.catalog.records import IMAGE_COLUMNS
from panopipe.catalog.schema import images
from panopipe.catalog.spatial import PostGIS
from panopipe.catalog.values import composed, name_spellings
from panopipe.config import did_you_mean
from panopipe.errors import ConfigError
from panopipe.geo import bbox_around, haversine_m
from panopipe.qc.flag_names import ALL_FLAGS

IMAGE_STATUSES = ("ok", "failed")
"""An image's status: ``failed`` when its metadata could not be read."""


def _check_point(lat: float, lon: float) -> None:
    if abs(lat) <= 90 and abs(lon) <= 180:
        return
    swapped = " (it looks like LON,LAT: swap the values)" if abs(lon) <= 90 and abs(lat) <= 180 else ""
    raise ConfigError(
        f"invalid --near {lat},{lon}: expected LAT,LON with -90 <= LAT <= 90, -180 <= LON <= 180{swapped}"
    )


def _check_bbox(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> None:
    given = f"invalid --bbox {min_lon},{min_lat},{max_lon},{max_lat}: expected MINLON,MINLAT,MAXLON,MAXLAT"
    lats, lons = (min_lat, max_lat), (min_lon, max_lon)
    if not all(map(math.isfinite, (*lats, *lons))):
        raise ConfigError(f"{given}, each a finite number")
    if any(abs(lat) > 90 for lat in lats) or any(abs(lon) > 180 for lon in lons):
        looks_swapped = all(abs(lat) <= 180 for lat in lats) and all(abs(lon) <= 90 for lon in lons)
        hint = "it looks like latitude first: put longitudes first" if looks_swapped else "out of range"
        raise ConfigError(f"{given}; {hint} (-180 <= LON <= 180, -90 <= LAT <= 90)")
    if min_lat > max_lat:  # a minimum longitude above the maximum is a box across the antimeridian
        raise ConfigError(f"{given}; MINLAT is above MAXLAT: are two values swapped?")


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters on effective metadata; all given filters must hold. An empty selection means every image."""

    ids: tuple[str, ...] = ()
    reels: tuple[str, ...] = ()
    shots: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    """``(min_lon, min_lat, max_lon, max_lat)``; across the antimeridian ``min_lon > max_lon``, as in GeoJSON."""
    near: tuple[float, float] | None = None
    radius_m: float | None = None
    status: str | None = None
    flags: tuple[str, ...] = ()
    """Images with any of these ``panopipe qc`` flags."""
    include_deleted: bool = False

    def __post_init__(self) -> None:
        if self.bbox is not None:
            _check_bbox(*self.bbox)
        if self.near is not None:
            _check_point(*self.near)
        if (self.near is None) != (self.radius_m is None):
            raise ConfigError("--near and --radius go together")
        if self.radius_m is not None and not (0 < self.radius_m < math.inf):
            raise ConfigError(f"invalid --radius {self.radius_m}: expected metres > 0, a finite number")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError(
                f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}: "
                "nothing is captured in between; are the two swapped?"
            )
        for name in self.flags:
            if name not in ALL_FLAGS:
                raise ConfigError(f"unknown --flag {name!r}; {did_you_mean(name, ALL_FLAGS)}")
        if self.status is not None and self.status not in IMAGE_STATUSES:
            raise ConfigError(f"invalid status {self.status!r}: expected {' or '.join(IMAGE_STATUSES)}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"--{name} needs a time zone (e.g. 2024-05-01T10:00:00Z)")

    def swapped(self) -> Selection | None:
        """The selection with the coordinates of ``bbox`` and ``near`` given the other way round (latitude
        first, a common slip), when it has some and that is a valid selection; else ``None``."""
        if self.bbox is None and self.near is None:
            return None
        bbox = (self.bbox[1], self.bbox[0], self.bbox[3], self.bbox[2]) if self.bbox else None
        near = (self.near[1], self.near[0]) if self.near else None
        try:
            return replace(self, bbox=bbox, near=near)
        except ConfigError:
            return None

    @property
    def selects_all(self) -> bool:
        """Whether no filter is set, so that the selection is every (not deleted) image."""
        return self == Selection(include_deleted=self.include_deleted)

    def where(self, postgis: PostGIS | None = None) -> list[sa.ColumnElement[bool]]:
        """SQL conditions for the indexed part of the selection (``near`` is refined by :meth:`matches`).

        With ``postgis`` (a catalog with ``images.geom``), the GiST index finds the candidates of ``bbox`` and
        ``near``; the exact lat/lon ranges and :meth:`matches` still decide, so every backend selects the same
        images.
        """
        c = images.c
        conditions: list[sa.ColumnElement[bool]] = []
        if not self.include_deleted:
            conditions.append(c.deleted == sa.false())
        if self.ids:
            conditions.append(c.id.in_(self.ids))
        if self.reels:
            conditions.append(c.reel.in_(name_spellings(self.reels)))
        if self.shots:
            conditions.append(c.shot.in_(name_spellings(self.shots)))
        if self.since is not None:
            conditions.append(c.captured_at >= self.since)
        if self.until is not None:
            conditions.append(c.captured_at < self.until)
        if self.status is not None:
            conditions.append(c.status == self.status)
        if self.flags:
            conditions.append(flagged(self.flags))
        for west, south, east, north in self._boxes():
            # A box whose west edge is east of its east edge crosses the antimeridian: two boxes either side.
            spans = [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]
            conditions += [c.lat.between(south, north), sa.or_(*(c.lon.between(w, e) for w, e in spans))]
            if postgis is not None:
                conditions.append(sa.or_(*(postgis.in_box((w, south, e, north)) for w, e in spans)))
        if postgis is not None and self.near is not None and self.radius_m is not None:
            conditions.append(postgis.within_m(*self.near, self.radius_m))
        return conditions

    def _boxes(self) -> list[tuple[float, float, float, float]]:
        boxes = [self.bbox] if self.bbox else []
        if self.near is not None and self.radius_m is not None:
            boxes.append(bbox_around(*self.near, self.radius_m))
        return boxes

    def matches(self, row: Any) -> bool:
        """The exact test for what SQL cannot express: distance from ``near``."""
        if self.near is None or self.radius_m is None:
            return True
        if row.lat is None or row.lon is None:
            return False
        return haversine_m(self.near[0], self.near[1], row.lat, row.lon) <= self.radius_m


def sort_order(keys: Sequence[str] = ()) -> list[sa.ColumnElement[Any]]:
    """``ORDER BY`` for image fields ``keys`` (``-field`` descending; missing values last on every backend),
    then reel, capture time and URI."""
    order: list[sa.ColumnElement[Any]] = []
    for key in keys:
        name = key.removeprefix("-")
        if name not in IMAGE_COLUMNS:
            raise ConfigError(f"cannot sort by {name!r}; {did_you_mean(name, IMAGE_COLUMNS)}")
        column = images.c[name]
        order.append((column.desc() if key.startswith("-") else column.asc()).nulls_last())
    return [*order, images.c.reel, images.c.captured_at, images.c.uri]


class UnknownName(NamedTuple):
    """A reel or shot a selection names that no image has, and the known reel closest to it, if any."""

    field: str
    name: str
    closest: str | None

    def describe(self) -> str:
        hint = f" (did you mean {self.closest!r}?)" if self.closest else ""
        return f"no {self.field} {self.name!r} in the catalog{hint}"


def unknown_names(conn: sa.Connection, selection: Selection) -> list[UnknownName]:
    """The reels and shots ``selection`` names that no image has (a typo, most often), each unknown reel with
    the known reel closest to it."""
    unknown = []
    if selection.reels:
        reels = {composed(r) for r in conn.execute(sa.select(images.c.reel).distinct()).scalars() if r}
        for name in selection.reels:
            if composed(name) not in reels:
                close = difflib.get_close_matches(composed(name), sorted(reels), n=1)
                unknown.append(UnknownName("reel", name, close[0] if close else None))
    if selection.shots:
        query = sa.select(images.c.shot).where(images.c.shot.in_(name_spellings(selection.shots))).distinct()
        shots = {composed(shot) for shot in conn.execute(query).scalars()}
        unknown += [
            UnknownName("shot", name, None) for name in selection.shots if composed(name) not in shots
        ]
    return unknown


def no_match(conn: sa.Connection, selection: Selection, what: str = "the selection") -> str:
    """What to say when ``selection`` (``what``) holds no image: the reels and shots it names that no image
    has, and how to look."""
    named = "; ".join(name.describe() for name in unknown_names(conn, selection))
    return (
        f"no image matches {what}{': ' + named if named else ''}: `panopipe ls` with the same filters shows "
        "what they select"
    )


__all__ = ["IMAGE_STATUSES", "Selection", "UnknownName", "no_match", "sort_order", "unknown_names"]
