"""Short ids: what people read and type instead of a 36-character UUID.

The one rule: the short id of an image (or edit batch) is the start of the last group of its UUID, at least
:data:`SHOWN` characters and as many more as no other image (batch) of the catalog shares: git's shortest
unique prefix, taken from the UUID's random end, since the time-ordered UUIDs of one ingest share their first
15 characters. Wherever an id is asked for, the full UUID or a start of its last group of at least
:data:`GIVEN` characters is accepted; one that several share is an error listing them. So is, when no last
group starts so, a start of the full UUID of at least :data:`SHOWN` characters that one id alone has (what
people copy from a full id); several ids sharing it is an error saying to give the short id.

Both directions use an index on the last group (``uuid_tail``): a short id is a range of it, and the shortest
unique start of a tail follows from its two neighbours in tail order, two index seeks per id.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import sqlalchemy as sa

from panopipe.catalog.schema import uuid_tail
from panopipe.errors import NotFoundError

SHOWN = 8
GIVEN = 4
TAIL = 12
SCAN_RATIO = 64
CANDIDATES = 10
"""At most this many candidates are listed for an ambiguous short id."""

_FULL = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
_HEX = re.compile(r"[0-9a-f]+")


def tail(uuid: str) -> str:
    """The last group of ``uuid`` (dashed or not), lower case."""
    return uuid.replace("-", "").lower()[-TAIL:]


def short_ids(conn: sa.Connection, column: sa.ColumnElement[str], ids: Sequence[str]) -> dict[str, str]:
    """The short id of each of ``ids`` (values of ``column``) among all values of ``column``.

    The neighbours of a few ids are found by two index seeks each; those of many (more than one in
    :data:`SCAN_RATIO` of all), in one pass over the index in tail order.
    """
    key = uuid_tail(column)
    wanted = {tail(uuid): uuid for uuid in ids}
    if not wanted:
        return {}
    total = conn.execute(sa.select(sa.func.count(sa.distinct(column)))).scalar_one()
    neighbours: dict[str, tuple[str | None, str | None]] = {}
    if len(wanted) * SCAN_RATIO >= total:
        ordered = conn.execute(sa.select(key).distinct().order_by(key)).scalars()
        previous: list[str | None] = [None, None]  # the two tails read last
        for current in itertools.chain(ordered, [None]):
            middle = previous[1]
            if middle in wanted:
                neighbours[middle] = (previous[0], current)
            previous = [middle, current]
    else:
        value = sa.bindparam("tail", type_=sa.String)
        before = sa.select(key).where(key < value).order_by(key.desc()).limit(1).scalar_subquery()
        after = sa.select(key).where(key > value).order_by(key).limit(1).scalar_subquery()
        pair = sa.select(before, after)
        for own in wanted:
            neighbours[own] = tuple(conn.execute(pair, {"tail": own}).one())
    shown: dict[str, str] = {}
    for own, uuid in wanted.items():
        others = [other for other in neighbours.get(own, ()) if other]
        shown[uuid] = own[: max([SHOWN, *(_common(own, other) + 1 for other in others)])]
    return shown


def resolve(conn: sa.Connection, column: sa.ColumnElement[str], given: str, what: str) -> str:
    """The one value of ``column`` that ``given`` (a full UUID or a short id) names (as text).

    Raises :class:`~panopipe.errors.NotFoundError` when none does, when several do (listing them), or when
    ``given`` is neither form; ``what`` names the thing in messages (``image``, ``edit batch``).
    """
    text = given.strip().lower()
    digits = text.replace("-", "")
    listed_by = "`panopipe " + ("ls`" if what == "image" else "history`")
    if _FULL.fullmatch(text):
        found = conn.execute(sa.select(column).where(column == text).limit(1)).scalars().all()
    elif _HEX.fullmatch(text) and GIVEN <= len(text) <= TAIL:
        key = uuid_tail(column)
        in_range = (key >= sa.literal(text, sa.String), key < sa.literal(text + "g", sa.String))
        query = sa.select(column).where(*in_range).distinct().limit(CANDIDATES + 1)
        found = sorted(conn.execute(query).scalars().all())
        if not found and len(text) >= SHOWN:
            found = _starting(conn, column, digits, given, what, listed_by)
    elif _HEX.fullmatch(digits) and SHOWN <= len(digits) < 32:
        found = _starting(conn, column, digits, given, what, listed_by)
    else:
        raise NotFoundError(
            f"{given!r} is not an {what} id: give the full id, or its short id "
            f"(the start of its last group, at least {GIVEN} hex digits, as `ls` and `history` show it)"
        )
    if not found:
        raise NotFoundError(f"no {what} with id {given!r}: full ids and short ids are listed by {listed_by}")
    if len(found) > 1:
        candidates = ", ".join(str(value) for value in found[:CANDIDATES])
        more = " and more" if len(found) > CANDIDATES else ""
        raise NotFoundError(
            f"{what} id {given!r} is ambiguous: it starts {candidates}{more}; give more characters"
        )
    return str(found[0])


def _starting(
    conn: sa.Connection, column: sa.ColumnElement[str], digits: str, given: str, what: str, listed_by: str
) -> list[str]:
    """The value of ``column`` whose full UUID starts with the hex ``digits`` (what people copy from a full
    id), if one alone does. Not indexed: asked only when no short id matches."""
    whole = sa.func.replace(sa.cast(column, sa.String), sa.literal_column("'-'"), sa.literal_column("''"))
    query = sa.select(column).where(whole.like(digits + "%")).distinct().limit(2)
    found = list(conn.execute(query).scalars())
    if len(found) > 1:
        raise NotFoundError(
            f"{what} id {given!r} starts several full ids (ids made together share their first characters): "
            f"give its short id, the start of the last group, as {listed_by} shows it"
        )
    return found


def _common(a: str, b: str) -> int:
    """The length of the common start of ``a`` and ``b``."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


__all__ = ["CANDIDATES", "GIVEN", "SCAN_RATIO", "SHOWN", "TAIL", "resolve", "short_ids", "tail"]
