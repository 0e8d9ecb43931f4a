"""Reading the CSV files people give panopipe (positions to set, GNSS solutions), as spreadsheets save them."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panopipe.errors import ConfigError


def read_csv(path: Path, *, names: Callable[[str], str] = str) -> tuple[list[str], list[dict[str, str]]]:
    """The column names of the CSV file at ``path`` (its header line, each name through ``names``) and its
    rows keyed by them. UTF-8, with or without the byte order mark spreadsheets write; any other encoding (a
    spreadsheet's UTF-16 "Unicode text") is a :class:`~panopipe.errors.ConfigError` saying how to save it,
    and so is a row with more or fewer fields than the header line names."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [names(name) for name in reader.fieldnames or ()]
            rows = []
            for row in reader:  # DictReader keys extra fields None and gives missing ones None
                if None in row or None in row.values():
                    raise ConfigError(
                        f"{path}: CSV line {reader.line_num}: {_count(row)} field(s), but the header line "
                        f"names {len(reader.fieldnames)}: is a value missing, or has one a comma in it?"
                    )
                rows.append(row)
            return list(reader.fieldnames), rows
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read it as UTF-8 CSV ({exc.reason}): save it as 'CSV UTF-8' (comma delimited)"
        ) from None


def _count(row: dict[str | None, Any]) -> int:
    """How many fields a row :class:`csv.DictReader` read has."""
    extra = row.get(None) or []
    return len(extra) + sum(1 for name, value in row.items() if name is not None and value is not None)


__all__ = ["read_csv"]
