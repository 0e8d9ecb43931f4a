"""Locating images along a route: shapely's ``line_locate_point`` in a transverse Mercator projection
centred on the route (pyproj), with geodesic lengths between the vertices, so that measures are true to the
centimetre along routes of any length."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from panopipe.catalog import Catalog, Image, Selection
from panopipe.catalog.flags import Flag
from panopipe.catalog.routes import UNITS, Location, Route
from panopipe.geo import mean_longitude
from panopipe.qc.geometry import local_projection, shapely_module, to_degrees

DEFAULT_MAX_OFFSET_M = 50.0
PIECE = 16
"""Segments per piece of the line searched for a point's nearest position."""


def measure_points(route: Route, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measure of each point along ``route`` (in its unit) and its signed offset from the line: the
    geodesic distance in metres to its nearest point on the line, positive to the right of the line as drawn
    (first position to last). A point too far for the route's projection (a quarter of the earth away) has
    no measure (NaN), and as offset its geodesic distance to the nearest vertex."""
    import pyproj

    geod = pyproj.Geod(ellps="WGS84")
    vertices = np.asarray(route.coordinates, dtype=float)
    transformer = local_projection(float(np.median(vertices[:, 1])), mean_longitude(vertices[:, 0]))
    vx, vy = (np.asarray(v) for v in transformer.transform(vertices[:, 0], vertices[:, 1]))
    px, py = (np.asarray(v, dtype=float) for v in transformer.transform(lon, lat))
    measure, offset = np.full(len(px), np.nan), np.full(len(px), np.nan)
    far = ~(np.isfinite(px) & np.isfinite(py))
    for i in np.flatnonzero(far):
        offset[i] = np.min(
            geod.inv(np.full(len(vertices), lon[i]), np.full(len(vertices), lat[i]), *vertices.T)[2]
        )
    if far.all():
        return measure, offset
    near = ~far
    px, py = px[near], py[near]
    cumulative = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(vx), np.diff(vy)))])
    shapely = shapely_module()
    along = _along(shapely, vx, vy, cumulative, shapely.points(px, py))
    segment = np.clip(np.searchsorted(cumulative, along, side="right") - 1, 0, len(vx) - 2)
    length = cumulative[segment + 1] - cumulative[segment]
    fraction = np.divide(along - cumulative[segment], length, out=np.zeros_like(along), where=length > 0)
    if route.measures is not None:
        m = np.asarray(route.measures, dtype=float)
        measure[near] = m[segment] + fraction * (m[segment + 1] - m[segment])
    else:
        _, _, geodesic = geod.inv(vertices[:-1, 0], vertices[:-1, 1], vertices[1:, 0], vertices[1:, 1])
        geodesic = np.asarray(geodesic, dtype=float)
        metres = np.concatenate([[0.0], np.cumsum(geodesic)])[segment] + fraction * geodesic[segment]
        measure[near] = float(route.start_measure or 0.0) + metres / UNITS[route.unit]
    tx, ty = vx[segment + 1] - vx[segment], vy[segment + 1] - vy[segment]
    nx, ny = vx[segment] + fraction * tx, vy[segment] + fraction * ty  # the nearest point on the line
    left = tx * (py - ny) - ty * (px - nx) > 0
    nearest_lat, nearest_lon = to_degrees(transformer, nx, ny)
    distance = np.asarray(geod.inv(lon[near], lat[near], nearest_lon, nearest_lat)[2], dtype=float)
    offset[near] = distance * np.where(left, -1.0, 1.0)
    return measure, offset


def _along(shapely: Any, vx: np.ndarray, vy: np.ndarray, cumulative: np.ndarray, points: Any) -> np.ndarray:
    """The distance along the line ``vx``/``vy`` of the point nearest to each of ``points``: the line is cut
    into pieces of :data:`PIECE` segments, an STR tree finds each point's nearest piece, and shapely's
    ``line_locate_point`` locates it on that piece (a search over the whole line per point is far slower)."""
    starts = np.arange(0, len(vx) - 1, PIECE)
    pieces = np.array(
        [shapely.LineString(np.column_stack([vx[a : a + PIECE + 1], vy[a : a + PIECE + 1]])) for a in starts]
    )
    (which_point, which_piece) = shapely.STRtree(pieces).query_nearest(points, all_matches=False)
    piece = np.empty(len(points), dtype=np.intp)
    piece[which_point] = which_piece
    return cumulative[starts[piece]] + shapely.line_locate_point(pieces[piece], points)


@dataclass
class ReelLocation:
    """What locating did on one reel."""

    reel: str | None
    images: int = 0
    located: int = 0
    off_route: int = 0
    no_position: int = 0
    first_measure: float | None = None
    last_measure: float | None = None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class LocateReport:
    """The route, and per reel what was located."""

    route: str
    unit: str
    reels: tuple[ReelLocation, ...]
    images: tuple[dict[str, Any], ...] = ()
    """Per selected image what is stored (in a dry run, what would be): ``id``, ``route``, ``measure`` and
    ``route_offset_m`` (``None`` when not located), and ``off_route_m``, its distance when flagged off-route."""


def locate_images(
    catalog: Catalog,
    selection: Selection | None = None,
    route_name: str | None = None,
    *,
    max_offset_m: float = DEFAULT_MAX_OFFSET_M,
    dry_run: bool = False,
) -> LocateReport:
    """Locate the selected images along the route ``route_name`` (the only route when ``None``): store each
    image's route, measure and offset, and flag ``off-route`` those farther than ``max_offset_m`` (not
    located), in one transaction. Images without a position are left unlocated."""
    route = catalog.route(route_name)
    images = list(catalog.images(selection, sort=("reel", "frame")))
    located: list[Location] = []
    flags: list[Flag] = []
    reels: list[ReelLocation] = []
    for reel, group in itertools.groupby(images, key=lambda i: i.reel):
        frames = list(group)
        reels.append(_locate_reel(route, reel, frames, max_offset_m, located, flags))
    if not dry_run:
        catalog.record_locations([i.id for i in images], located, flags)
    stored = {place.image_id: place for place in located if place.measure is not None}
    off_route = {flag.image_id: flag.value for flag in flags}
    rows = tuple(
        {
            "id": image.id,
            "route": route.name if image.id in stored else None,
            "measure": stored[image.id].measure if image.id in stored else None,
            "route_offset_m": stored[image.id].offset_m if image.id in stored else None,
            "off_route_m": off_route.get(image.id),
        }
        for image in images
    )
    return LocateReport(route.name, route.unit, tuple(reels), rows)


def _locate_reel(
    route: Route,
    reel: str | None,
    frames: Sequence[Image],
    max_offset_m: float,
    located: list[Location],
    flags: list[Flag],
) -> ReelLocation:
    summary = ReelLocation(reel, images=len(frames))
    placed = [f for f in frames if f.lat is not None and f.lon is not None]
    summary.no_position = len(frames) - len(placed)
    if summary.no_position:
        summary.messages.append(f"{summary.no_position} image(s) without a position: not located")
    if not placed:
        return summary
    lat = np.array([f.lat for f in placed], dtype=float)
    lon = np.array([f.lon for f in placed], dtype=float)
    measure, offset = measure_points(route, lat, lon)
    near = (np.abs(offset) <= max_offset_m) & np.isfinite(measure)
    for frame, m, o, ok in zip(placed, measure, offset, near, strict=True):
        located.append(Location(frame.id, route.name, float(m) if ok else None, float(o)))
        if not ok:
            flags.append(
                Flag(frame.id, "off-route", abs(float(o)), f"{abs(o):.1f} m from route {route.name}")
            )
    summary.located = int(near.sum())
    summary.off_route = len(placed) - summary.located
    if summary.located:
        summary.first_measure = round(float(measure[near][0]), 4)
        summary.last_measure = round(float(measure[near][-1]), 4)
    if summary.off_route == len(placed):
        summary.messages.append(
            f"none of its {len(placed)} positioned image(s) is within {max_offset_m:g} m of route {route.name}: "
            "is it on another route? (select it with --reel and give --route)"
        )
    elif summary.off_route:
        summary.messages.append(
            f"{summary.off_route} image(s) farther than {max_offset_m:g} m from route {route.name}: "
            "flagged off-route, not located"
        )
    return summary


__all__ = ["DEFAULT_MAX_OFFSET_M", "PIECE", "LocateReport", "ReelLocation", "locate_images", "measure_points"]
