"""Typed catalog field values: parsing user input, validation, and the JSON form kept in edits."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any, overload

from panopipe.errors import ConfigError
from panopipe.utc_offsets import UTC_OFFSETS_IN_USE

FLOAT_FIELDS = frozenset({"lat", "lon", "alt", "gps_accuracy_m", "heading", "pitch", "roll"})
INT_FIELDS = frozenset({"utc_offset_minutes", "camera_index", "width", "height", "frame"})
TIME_FIELDS = frozenset({"captured_at", "modified_at"})
BOOL_FIELDS = frozenset({"excluded"})
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
INT32_MAX = 2**31 - 1
"""The largest whole number an integer column holds (PostgreSQL's ``integer``; SQLite's are wider)."""
RANGES: dict[str, tuple[float, float]] = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "alt": (-12_000.0, 100_000.0),  # the deepest ocean trench to the edge of space
    "gps_accuracy_m": (0.0, 100_000.0),
    "heading": (0.0, 360.0),
    "pitch": (-90.0, 90.0),
    "roll": (-180.0, 180.0),
    "camera_index": (0, INT32_MAX),
    "width": (1, INT32_MAX),
    "height": (1, INT32_MAX),
    "frame": (0, INT32_MAX),
}


def parse_time(text: str, *, zone: tzinfo | None = None) -> datetime:
    """An ISO 8601 time with a zone (``Z`` or ``+02:00``), as aware UTC; one without is in ``zone`` if given
    (an error otherwise), and so is a date alone (its midnight)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"invalid time {text!r}: expected ISO 8601 like 2024-05-01T10:00:00Z") from None
    if value.tzinfo is None:  # a date alone too: midnight where?
        if zone is None:
            written = value.isoformat(timespec="seconds")
            raise ConfigError(
                f"time {text!r} has no zone: write {written}Z for UTC, or an offset: {written}+02:00"
            )
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is in the year 10000 in UTC
        raise ConfigError(f"invalid time {text!r}: in UTC it falls outside the years 1 to 9999") from None


def parse_value(field: str, text: str) -> Any:
    """The typed value of ``field`` written as ``text`` (an empty text clears the field)."""
    if text == "":
        return None
    try:
        if field in FLOAT_FIELDS:
            value: Any = float(text)
        elif field in INT_FIELDS:
            value = int(text)
        elif field in TIME_FIELDS:
            value = parse_time(text)
        elif field in BOOL_FIELDS:
            value = _BOOLEANS[text.strip().lower()]
        else:
            value = text
    except KeyError:
        raise ConfigError(f"invalid value {text!r} for {field}: expected true or false") from None
    except ValueError:
        kind = "a number" if field in FLOAT_FIELDS else "a whole number"
        raise ConfigError(f"invalid value {text!r} for {field}: expected {kind}") from None
    return validate_value(field, value)


def validate_value(field: str, value: Any) -> Any:
    """``value`` if it is valid for ``field`` and the catalog can hold it (on SQLite and PostgreSQL alike);
    :class:`ConfigError` saying what is allowed otherwise."""
    if value is None:
        return value
    if field in NAME_FIELDS:
        value = composed(value)
    if field in FLOAT_FIELDS and not math.isfinite(value):
        raise ConfigError(f"invalid {field} {value}: expected a finite number")
    if field == "heading" and -180.0 <= value < 0.0:  # -90 (as tracks and many INS write it) is 270
        value += 360.0
    if field == "utc_offset_minutes" and value not in UTC_OFFSETS_IN_USE:
        raise ConfigError(
            f"invalid utc_offset_minutes {value}: no time zone is {value} minutes from UTC "
            "(e.g. 120 for +02:00, -300 for -05:00, 345 for +05:45)"
        )
    if field in RANGES:
        low, high = RANGES[field]
        if not low <= value <= high:
            raise ConfigError(f"invalid {field} {value}: expected {low} to {high}")
    if isinstance(value, str) and (limit := text_limit(field)) is not None and len(value) > limit:
        raise ConfigError(f"invalid {field}: {len(value)} characters, the catalog holds at most {limit}")
    return value


NAME_FIELDS = frozenset({"reel", "shot"})
"""Names kept in Unicode's composed form (NFC): a folder copied on a Mac is named in the decomposed one (NFD), which
looks the same and compares different."""


def composed(name: str) -> str:
    """``name`` in Unicode's composed form (NFC), as the catalog keeps :data:`NAME_FIELDS`."""
    return unicodedata.normalize("NFC", name)


def name_spellings(names: Iterable[str]) -> list[str]:
    """``names`` (of :data:`NAME_FIELDS`) in both the forms a catalog may hold them in: composed, and decomposed as
    catalogs ingested before names were composed may have them."""
    return sorted({unicodedata.normalize(form, name) for name in names for form in ("NFC", "NFD")})


def text_limit(field: str) -> int | None:
    """The most characters the catalog's ``images`` column of ``field`` holds (``None``: no limit)."""
    from panopipe.catalog.schema import images  # SQLAlchemy's: not loaded by `ls --help` and the like

    column = images.c.get(field)
    return None if column is None else getattr(column.type, "length", None)


DERIVED_DECIMALS = {"lat": 9, "lon": 9, "alt": 4, "heading": 4, "gps_accuracy_m": 4}
"""Decimals kept of a value panopipe derives (a mean of a shot's frames, a point interpolated on a track):
about 0.1 mm for positions, heights and accuracies, 0.0001° for headings, and no float noise (11.576185099999998)."""


@overload
def rounded(field: str, value: float) -> float: ...
@overload
def rounded(field: str, value: None) -> None: ...
def rounded(field: str, value: float | None) -> float | None:
    """A derived value of ``field`` to the decimals of :data:`DERIVED_DECIMALS`."""
    return None if value is None else round(value, DERIVED_DECIMALS[field])


def to_json(field: str, value: Any) -> Any:
    """The JSON form of a field value (times as ISO 8601 UTC)."""
    if field in TIME_FIELDS and value is not None:
        return value.astimezone(UTC).isoformat()
    return value


def from_json(field: str, value: Any) -> Any:
    """The typed value of a field from its JSON form."""
    if field in TIME_FIELDS and value is not None:
        return datetime.fromisoformat(value).astimezone(UTC)
    return value


__all__ = [
    "BOOL_FIELDS",
    "DERIVED_DECIMALS",
    "FLOAT_FIELDS",
    "INT32_MAX",
    "INT_FIELDS",
    "NAME_FIELDS",
    "RANGES",
    "TIME_FIELDS",
    "composed",
    "from_json",
    "name_spellings",
    "parse_time",
    "parse_value",
    "rounded",
    "text_limit",
    "to_json",
    "validate_value",
]
