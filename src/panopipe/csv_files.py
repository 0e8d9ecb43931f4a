"""Reading the CSV files people give panopipe (positions to set, GNSS solutions), as spreadsheets save them."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from panopipe.errors import ConfigError


def read_csv(path: Path, *, names: Callable[[str], str] = str) -> tuple[list[str], list[dict[str, str]]]:
    """The column names of the CSV file at ``path`` (its header line, each name through ``names``) and its
    rows keyed by them. UTF-8, with or without the byte order mark spreadsheets write; any other encoding (a
    spreadsheet's UTF-16 "Unicode text") is a :class:`~panopipe.errors.ConfigError` saying how to save it."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [names(name) for name in reader.fieldnames or ()]
            return list(reader.fieldnames), list(reader)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read it as UTF-8 CSV ({exc.reason}): save it as 'CSV UTF-8' (comma delimited)"
        ) from None


__all__ = ["read_csv"]
