"""File copies: files found to hold an image's content where the image is not (the ``file_copies`` table's one
owner).

A capture folder that ``panopipe sync`` uploaded, or a copy of one, holds files whose images the catalog has
elsewhere. Ingest finds them duplicates by their SHA-256, which means reading them whole; recording them with
their size and modification time (ETag on S3) lets the next ingest pass them by unread, as it passes the
images' own unchanged files. A copy counts only while its image is not deleted and has the content recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.schema import file_copies, images
from panopipe.iterutil import batched

CHUNK = 1000
_COLUMNS = ("uri", "image_id", "content_hash", "size", "etag", "modified_at")
"""The columns a copy is inserted with, in the order of the selects that give them."""
_HOLDS_ITS_CONTENT = sa.and_(
    images.c.id == file_copies.c.image_id, images.c.content_hash == file_copies.c.content_hash
)
"""The join of a copy and its image, which counts only while the image has the copy's content."""


@dataclass(frozen=True, slots=True)
class FileCopy:
    """A file that holds the content of the image at ``original_uri``, and what tells whether it changes."""

    uri: str
    original_uri: str
    content_hash: str
    size: int | None = None
    etag: str | None = None
    modified_at: datetime | None = None


def known(conn: sa.Connection, uri_prefix: str) -> list[Any]:
    """The copies whose URI starts with ``uri_prefix`` and whose image still has their content, not deleted:
    rows of ``uri``, ``image_id``, ``size``, ``modified_at``, ``etag`` and the image's URI, ``image_uri``."""
    c = file_copies.c
    query = (
        sa.select(c.uri, c.image_id, c.size, c.modified_at, c.etag, images.c.uri.label("image_uri"))
        .join(images, _HOLDS_ITS_CONTENT)
        .where(images.c.deleted == sa.false(), c.uri.startswith(uri_prefix, autoescape=True))
    )
    return list(conn.execute(query))


def of_images_at(conn: sa.Connection, image_uris: Sequence[str]) -> dict[str, list[str]]:
    """The URIs of the copies of the images at ``image_uris`` (not deleted, the copies holding their content),
    by image URI, sorted."""
    c = file_copies.c
    found: dict[str, list[str]] = {}
    for chunk in batched(image_uris, CHUNK):
        query = (
            sa.select(images.c.uri, c.uri.label("copy_uri"))
            .join(images, _HOLDS_ITS_CONTENT)
            .where(images.c.uri.in_(chunk), images.c.deleted == sa.false())
            .order_by(c.uri)
        )
        for row in conn.execute(query):
            found.setdefault(row.uri, []).append(row.copy_uri)
    return found


def held_by(conn: sa.Connection, uris: Sequence[str]) -> dict[str, str]:
    """The ids of the images whose copies are at ``uris``, by copy URI: copies that hold their image's content
    where no image is (not even a deleted one)."""
    c = file_copies.c
    there = images.alias("there")
    taken = sa.select(there.c.id).where(there.c.uri == c.uri).exists()
    found: dict[str, str] = {}
    for chunk in batched(uris, CHUNK):
        query = sa.select(c.uri, c.image_id).join(images, _HOLDS_ITS_CONTENT).where(c.uri.in_(chunk), ~taken)
        found.update((row.uri, row.image_id) for row in conn.execute(query))
    return found


def forget(conn: sa.Connection, uris: Iterable[str]) -> None:
    """Remove the copies at ``uris`` (files gone, or read again)."""
    for chunk in batched(uris, CHUNK):
        conn.execute(file_copies.delete().where(file_copies.c.uri.in_(chunk)))


def record(conn: sa.Connection, copies: Sequence[FileCopy]) -> None:
    """Record ``copies`` (replacing what the catalog held at their URIs), each of the image at its original URI;
    a copy whose original has no image is left out."""
    forget(conn, (copy.uri for copy in copies))
    c = images.c
    params = [
        {
            "_uri": x.uri,
            "_original": x.original_uri,
            "_hash": x.content_hash,
            "_size": x.size,
            "_etag": x.etag,
            "_modified": x.modified_at,
        }
        for x in copies
    ]
    if not params:
        return
    values = sa.select(
        sa.bindparam("_uri", type_=file_copies.c.uri.type),
        c.id,
        sa.bindparam("_hash", type_=file_copies.c.content_hash.type),
        sa.bindparam("_size", type_=file_copies.c.size.type),
        sa.bindparam("_etag", type_=file_copies.c.etag.type),
        sa.bindparam("_modified", type_=file_copies.c.modified_at.type),
    ).where(c.uri == sa.bindparam("_original", type_=c.uri.type))
    conn.execute(file_copies.insert().from_select(_COLUMNS, values), params)


def record_images_files(conn: sa.Connection, uris: Sequence[str]) -> None:
    """Record the files the images at ``uris`` have now as copies of them (before the images move elsewhere);
    a URI without an image (its image moved already) keeps what the catalog knows of it."""
    c = images.c
    for chunk in batched(uris, CHUNK):
        held = c.uri.in_(chunk) & c.content_hash.is_not(None)
        conn.execute(file_copies.delete().where(file_copies.c.uri.in_(sa.select(c.uri).where(held))))
        files = sa.select(c.uri, c.id, c.content_hash, c.size, c.etag, c.modified_at).where(held)
        conn.execute(file_copies.insert().from_select(_COLUMNS, files))


__all__ = [
    "CHUNK",
    "FileCopy",
    "forget",
    "held_by",
    "known",
    "of_images_at",
    "record",
    "record_images_files",
]
