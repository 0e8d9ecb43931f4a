"""Image flags: what ``panopipe qc`` found per image (the ``image_flags`` table's one owner).

A run of qc replaces the flags it owns of the images it checked, in one transaction, so that running it again
gives the same flags and a failure leaves the previous ones.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.bulk import insert_columns
from panopipe.catalog.records import to_json_value
from panopipe.catalog.schema import image_flags, images
from panopipe.catalog.types import utcnow, uuid_hex
from panopipe.iterutil import batched

CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding of one image: the flag's name, what was measured, and a sentence for people."""

    image_id: str
    flag: str
    value: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StoredFlag:
    """A flag as the catalog holds it, with the qc run and version that found it."""

    image_id: str
    flag: str
    value: float | None
    detail: str | None
    qc_version: str
    run: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}

    def describe(self) -> str:
        """The flag, its value and its sentence for people: ``gps-outlier = 12.3 (12.30 m off the track)``."""
        value = "" if self.value is None else f" = {self.value:.6g}"
        detail = "" if self.detail is None else f" ({self.detail})"
        return f"{self.flag}{value}{detail}"


def replace(
    conn: sa.Connection,
    image_ids: Collection[str],
    names: Collection[str],
    found: Sequence[Flag],
    *,
    run: str,
    qc_version: str,
) -> None:
    """Remove the flags ``names`` of ``image_ids`` (canonical text or 32 hex digits), then store ``found``
    (flags of those images)."""
    # Flags are few next to images: find the ones to remove, rather than naming every image in a DELETE.
    checked = {image_id.replace("-", "") for image_id in image_ids}
    image = uuid_hex(image_flags.c.image_id, conn.dialect.name)
    existing = sa.select(image_flags.c.id, image).where(image_flags.c.flag.in_(list(names)))
    doomed = [flag_id for flag_id, image_id in conn.execute(existing) if image_id in checked]
    for chunk in batched(doomed, CHUNK):
        conn.execute(image_flags.delete().where(image_flags.c.id.in_(chunk)))
    count = len(found)
    insert_columns(
        conn,
        image_flags,
        {
            "image_id": [f.image_id for f in found],
            "flag": [f.flag for f in found],
            "value": [f.value for f in found],
            "detail": [f.detail for f in found],
            "qc_version": [qc_version] * count,
            "run": [run] * count,
            "created_at": [utcnow()] * count,
        },
    )


def of_images(conn: sa.Connection, image_ids: Iterable[str]) -> dict[str, list[StoredFlag]]:
    """The flags of ``image_ids`` by image id, by flag name (images without flags are left out)."""
    found: dict[str, list[StoredFlag]] = {}
    columns = [image_flags.c[f.name] for f in fields(StoredFlag)]
    for chunk in batched(image_ids, CHUNK):
        query = sa.select(*columns).where(image_flags.c.image_id.in_(chunk)).order_by(image_flags.c.flag)
        for row in conn.execute(query):
            found.setdefault(row.image_id, []).append(StoredFlag(*row))
    return found


def any_flags(conn: sa.Connection) -> bool:
    """Whether any image has a flag (so that listing images can skip looking them up)."""
    return conn.execute(sa.select(image_flags.c.id).limit(1)).first() is not None


def flagged(names: Sequence[str]) -> sa.ColumnElement[bool]:
    """A condition on ``images.id``: the image has any of the flags ``names``."""
    return images.c.id.in_(sa.select(image_flags.c.image_id).where(image_flags.c.flag.in_(names)))


__all__ = ["CHUNK", "Flag", "StoredFlag", "any_flags", "flagged", "of_images", "replace"]
