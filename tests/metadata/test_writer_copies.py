"""Copies of the values the writer sets kept elsewhere in a file (a capture time in IFD0, as some cameras write
it): ExifTool, the reference reader, must read the new value from every copy after a write."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.metadata.test_reader_camera_quirks import exif_tiff, gps_entries, text
from tests.metadata.test_reader_malformed import with_exif

from panopipe.metadata import MetadataUpdate, apply_metadata, parse_jpeg_header

CAPTURED = datetime(2024, 5, 1, 7, 58, 31, 250000, tzinfo=UTC)


def exiftool_all(path: Path, data: bytes) -> dict[str, Any]:
    """Every tag ExifTool reads in ``data`` (``-a -G1 -n``: duplicates too, by group)."""
    path.write_bytes(data)
    result = subprocess.run(["exiftool", "-j", "-a", "-G1", "-n", str(path)], check=True, capture_output=True)
    tags: dict[str, Any] = json.loads(result.stdout)[0]
    return tags


def ifd0_time_jpeg(order: str, *, subsec: bool, offset: bool) -> bytes:
    """A JPEG whose DateTimeOriginal (and SubSecTimeOriginal, OffsetTimeOriginal) are in IFD0, with no ExifIFD."""
    ifd0 = [(0x010F, *text("Cam")), (0x9003, *text("2024:05:01 10:00:01"))]
    ifd0 += [(0x9011, *text("+02:00"))] if offset else []
    ifd0 += [(0x9291, *text("000"))] if subsec else []
    return with_exif(exif_tiff(order, ifd0, gps_entries(order, 48.1, 11.5)))


@pytest.mark.exiftool
@pytest.mark.parametrize("order", "<>")
@pytest.mark.parametrize("subsec", [True, False])
def test_a_capture_time_in_ifd0_is_rewritten_there_too(tmp_path: Path, order: str, subsec: bool) -> None:
    original = ifd0_time_jpeg(order, subsec=subsec, offset=True)
    before = exiftool_all(tmp_path / "before.jpg", original)
    assert before["IFD0:DateTimeOriginal"] == "2024:05:01 10:00:01"
    assert "ExifIFD:DateTimeOriginal" not in before

    written = apply_metadata(original, MetadataUpdate(captured_at=CAPTURED, utc_offset_minutes=120))
    after = exiftool_all(tmp_path / "after.jpg", written)
    for group in ("IFD0", "ExifIFD"):
        assert after[f"{group}:DateTimeOriginal"] == "2024:05:01 09:58:31", group
        assert after[f"{group}:OffsetTimeOriginal"] == "+02:00", group
    assert after["ExifIFD:SubSecTimeOriginal"] == 250
    assert after.get("IFD0:SubSecTimeOriginal") == (250 if subsec else None)  # no copy is added
    assert after["Composite:SubSecDateTimeOriginal"] == "2024:05:01 09:58:31.250+02:00"
    assert after["IFD0:Make"] == "Cam" and after["Composite:GPSLatitude"] == 48.1
    assert parse_jpeg_header(written).captured_at == CAPTURED


@pytest.mark.exiftool
def test_an_ifd0_offset_goes_when_the_zone_is_unknown(tmp_path: Path) -> None:
    """A time whose zone is unknown is written without OffsetTimeOriginal: IFD0's would claim one."""
    original = ifd0_time_jpeg("<", subsec=False, offset=True)
    update = MetadataUpdate(captured_at=CAPTURED, zone_unknown=True)
    after = exiftool_all(tmp_path / "after.jpg", apply_metadata(original, update))
    assert after["IFD0:DateTimeOriginal"] == after["ExifIFD:DateTimeOriginal"] == "2024:05:01 07:58:31"
    assert not [tag for tag in after if tag.endswith("OffsetTimeOriginal")]
