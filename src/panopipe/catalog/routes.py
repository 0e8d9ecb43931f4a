"""Routes: measured centerlines for linear referencing (the ``routes`` table's one owner), and where images lie
along them (``images.route``, ``measure``, ``route_offset_m``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import flags as flag_ops
from panopipe.catalog.schema import images, routes
from panopipe.catalog.types import new_id, utcnow
from panopipe.errors import CatalogError, NotFoundError
from panopipe.iterutil import batched

UNITS = {"mi": 1609.344, "km": 1000.0}
"""Metres per unit of measure."""


@dataclass(frozen=True)
class Route:
    """A centerline: ``[lon, lat]`` vertices, their measures (``None``: measured from ``start_measure`` along
    the line), the unit of measure (:data:`UNITS`) and the file it came from."""

    name: str
    coordinates: tuple[tuple[float, float], ...]
    measures: tuple[float, ...] | None
    start_measure: float | None
    unit: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Location:
    """Where one image lies along a route; ``measure`` is ``None`` for an image too far from it."""

    image_id: str
    route: str
    measure: float | None
    offset_m: float


def add(conn: sa.Connection, route: Route, *, replace: bool) -> int:
    """Store ``route``; with ``replace``, over the route of that name, whose located images are cleared (they
    must be located again). How many images were cleared."""
    now = utcnow()
    values: dict[str, Any] = {
        "coordinates": [list(point) for point in route.coordinates],
        "measures": list(route.measures) if route.measures is not None else None,
        "start_measure": route.start_measure,
        "unit": route.unit,
        "source": route.source,
        "updated_at": now,
    }
    exists = conn.execute(sa.select(routes.c.id).where(routes.c.name == route.name)).first()
    if exists is None:
        conn.execute(routes.insert().values(id=new_id(), name=route.name, created_at=now, **values))
        return 0
    if not replace:
        raise CatalogError(f"route {route.name!r} exists: pass --replace to change its centerline")
    conn.execute(routes.update().where(routes.c.name == route.name).values(**values))
    cleared = conn.execute(
        images.update()
        .where(images.c.route == route.name)
        .values(route=None, measure=None, route_offset_m=None, updated_at=now)
    )
    return cleared.rowcount


def get(conn: sa.Connection, name: str | None) -> Route:
    """The route ``name``; with ``None``, the only route (an error when there are none or several)."""
    query = sa.select(routes).order_by(routes.c.name)
    rows = conn.execute(query if name is None else query.where(routes.c.name == name)).all()
    if not rows:
        what = "no routes" if name is None else f"no route {name!r}"
        raise NotFoundError(f"{what}: add one with `panopipe route add NAME FILE`")
    if len(rows) > 1:
        names = ", ".join(row.name for row in rows)
        raise CatalogError(f"{len(rows)} routes ({names}): name the one to use with --route")
    row = rows[0]
    return Route(
        row.name,
        tuple((lon, lat) for lon, lat in row.coordinates),
        tuple(row.measures) if row.measures is not None else None,
        row.start_measure,
        row.unit,
        row.source,
    )


def names(conn: sa.Connection) -> list[str]:
    """Every route's name, sorted."""
    return list(conn.execute(sa.select(routes.c.name).order_by(routes.c.name)).scalars())


def store_locations(
    conn: sa.Connection,
    image_ids: Collection[str],
    located: Sequence[Location],
    off_route: Sequence[flag_ops.Flag],
) -> None:
    """Set the located values of ``image_ids`` (cleared for those not in ``located`` or without a measure) and
    replace their ``off-route`` flags with ``off_route``."""
    wanted: dict[str, tuple[Any, ...]] = dict.fromkeys(image_ids, (None, None, None))
    wanted.update({i.image_id: (i.route, i.measure, i.offset_m) for i in located if i.measure is not None})
    columns = (images.c.id, images.c.route, images.c.measure, images.c.route_offset_m)
    changed: list[dict[str, Any]] = []
    for chunk in batched(wanted, flag_ops.CHUNK):
        for row in conn.execute(sa.select(*columns).where(images.c.id.in_(chunk))):
            if tuple(row)[1:] != wanted[row.id]:
                route, measure, offset = wanted[row.id]
                changed.append({"_id": row.id, "route": route, "measure": measure, "offset": offset})
    if changed:
        conn.execute(
            images.update()
            .where(images.c.id == sa.bindparam("_id"))
            .values(
                route=sa.bindparam("route"),
                measure=sa.bindparam("measure"),
                route_offset_m=sa.bindparam("offset"),
                updated_at=utcnow(),
            ),
            changed,
        )
    flag_ops.replace(conn, image_ids, ["off-route"], off_route, run=new_id(), qc_version="route")


__all__ = ["UNITS", "Location", "Route", "add", "get", "names", "store_locations"]
