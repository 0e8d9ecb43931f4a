"""Copies of the values the writer sets kept elsewhere in a file (a capture time in IFD0, as some cameras write
it; XMP exif: properties, as stitching and photo software write them): after a write ExifTool, the reference
reader, must find the new value in every copy it reads, or no copy."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.metadata.test_reader_camera_quirks import exif_tiff, gps_entries, text
from tests.metadata.test_reader_malformed import with_exif

from panopipe.metadata import GPano, MetadataUpdate, apply_metadata, parse_jpeg_header

DATA = Path(__file__).parents[1] / "data" / "exif"
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


XMP_GPS = (
    "GPSLatitude",
    "GPSLongitude",
    "GPSAltitude",
    "GPSAltitudeRef",
    "GPSImgDirection",
    "GPSImgDirectionRef",
)


@pytest.mark.exiftool
def test_xmp_copies_of_the_gps_tags_written_go(tmp_path: Path) -> None:
    """A Samsung Gear 360 frame whose position is in XMP exif: only: once EXIF holds the corrected position, the
    XMP copies (which some readers prefer) go; the XMP properties no EXIF tag written replaces stay."""
    original = (DATA / "mapillary_tools" / "adobe_coords.jpg").read_bytes()
    before = exiftool_all(tmp_path / "before.jpg", original)
    assert {f"XMP-exif:{name}" for name in (*XMP_GPS, "GPSMapDatum")} <= before.keys()
    assert "Composite:GPSLatitude" not in before

    update = MetadataUpdate(
        gps_latitude=-0.5, gps_longitude=34.5, gps_altitude=-2.5, gps_img_direction=12.5, gpano=GPano(32, 28)
    )
    after = exiftool_all(tmp_path / "after.jpg", apply_metadata(original, update))
    assert not [name for name in XMP_GPS if f"XMP-exif:{name}" in after]
    assert after["Composite:GPSLatitude"] == -0.5
    assert (after["Composite:GPSLongitude"], after["Composite:GPSAltitude"]) == (34.5, -2.5)
    assert after["GPS:GPSImgDirection"] == 12.5
    assert after["XMP-exif:GPSMapDatum"] == before["XMP-exif:GPSMapDatum"] == "WGS84"
    assert after["XMP-crs:CameraProfile"] == before["XMP-crs:CameraProfile"]
    assert after["XMP-photoshop:DateCreated"] == before["XMP-photoshop:DateCreated"]


@pytest.mark.exiftool
def test_xmp_copies_of_the_values_removed_go(tmp_path: Path) -> None:
    """The Gear 360 frame's position and heading, which an edit cleared: its XMP exif: copies go too (the
    reader, as ExifTool, falls back to them); its altitude, not removed, stays."""
    original = (DATA / "mapillary_tools" / "adobe_coords.jpg").read_bytes()
    removed = frozenset({"gps_latitude", "gps_longitude", "gps_img_direction"})
    written = apply_metadata(original, MetadataUpdate(remove=removed))
    after = exiftool_all(tmp_path / "after.jpg", written)
    assert [name for name in XMP_GPS if f"XMP-exif:{name}" in after] == ["GPSAltitude", "GPSAltitudeRef"]
    assert after["XMP-exif:GPSMapDatum"] == "WGS84"
    metadata = parse_jpeg_header(written)
    assert (metadata.gps_latitude, metadata.gps_longitude, metadata.gps_img_direction) == (None, None, None)
    assert metadata.gps_altitude == 1361.69


def exiftool_xmp_jpeg(path: Path) -> bytes:
    """A JPEG whose capture time and position ExifTool wrote into XMP exif: only, as some stitchers do."""
    path.write_bytes(with_exif(exif_tiff("<", [(0x010F, *text("Cam"))], [])))
    assignments = [
        "-XMP-exif:DateTimeOriginal=2024:05:01 10:00:00+02:00",
        "-XMP-exif:GPSDateTime=2024:05:01 08:00:00Z",
        "-XMP-exif:GPSLatitude=33.8688 S",
        "-XMP-exif:GPSLongitude=70.5 W",
        "-XMP-exif:GPSHPositioningError=5",
        "-XMP-GPano:ProjectionType=equirectangular",
    ]
    subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(path)], check=True)
    return path.read_bytes()


@pytest.mark.exiftool
def test_xmp_copies_of_the_capture_time_go_and_the_others_stay(tmp_path: Path) -> None:
    original = exiftool_xmp_jpeg(tmp_path / "xmp.jpg")
    update = MetadataUpdate(captured_at=CAPTURED, utc_offset_minutes=120, gps_datetime=CAPTURED)
    after = exiftool_all(tmp_path / "after.jpg", apply_metadata(original, update))
    assert "XMP-exif:DateTimeOriginal" not in after and "XMP-exif:GPSDateTime" not in after
    assert after["ExifIFD:DateTimeOriginal"] == "2024:05:01 09:58:31"
    assert after["Composite:GPSDateTime"] == "2024:05:01 07:58:31.25Z"
    # not written: the XMP position stays (the reader falls back to it, as ExifTool does)
    assert (after["XMP-exif:GPSLatitude"], after["XMP-exif:GPSLongitude"]) == (-33.8688, -70.5)
    assert after["XMP-exif:GPSHPositioningError"] == 5
    assert after["XMP-GPano:ProjectionType"] == "equirectangular"
    metadata = parse_jpeg_header(apply_metadata(original, update))
    assert (metadata.captured_at, metadata.gps_latitude) == (CAPTURED, -33.8688)


@pytest.mark.exiftool
def test_xmp_copies_of_make_and_model_go_when_they_are_written(tmp_path: Path) -> None:
    """tiff:Make and tiff:Model, as photo software copies IFD0's into XMP: a make/model edit replaces both."""
    path = tmp_path / "tiff.jpg"
    path.write_bytes(with_exif(exif_tiff("<", [(0x010F, *text("Old"))], [])))
    assignments = ["-XMP-tiff:Make=Old", "-XMP-tiff:Model=Old 1", "-XMP-GPano:ProjectionType=equirectangular"]
    subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(path)], check=True)
    after = exiftool_all(
        tmp_path / "after.jpg", apply_metadata(path.read_bytes(), MetadataUpdate(make="New"))
    )
    assert "XMP-tiff:Make" not in after and after["IFD0:Make"] == "New"
    assert after["XMP-tiff:Model"] == "Old 1"  # not written: it stays
    assert after["XMP-GPano:ProjectionType"] == "equirectangular"
    both = apply_metadata(path.read_bytes(), MetadataUpdate(make="New", model="New 2"))
    assert parse_jpeg_header(both).model == "New 2"
    assert "XMP-tiff:Model" not in exiftool_all(tmp_path / "both.jpg", both)


def test_the_xmp_packet_is_left_as_it_is_when_no_copy_is_written(tmp_path: Path) -> None:
    original = (DATA / "mapillary_tools" / "adobe_coords.jpg").read_bytes()
    start = original.index(b"http://ns.adobe.com/xap/1.0/\x00")
    packet = original[start : start + int.from_bytes(original[start - 2 : start], "big") - 2]
    for update in (MetadataUpdate(make="M"), MetadataUpdate(copyright="C")):  # no tiff:Make, no XMP copyright
        assert packet in apply_metadata(original, update)


@pytest.mark.exiftool
def test_gpano_photo_dates_of_the_capture_time_go_when_it_is_written(tmp_path: Path) -> None:
    """A GoPro MAX image's GPano FirstPhotoDate and LastPhotoDate are its capture time: a time written replaces
    it in EXIF, and they go; the camera's other GPano properties stay."""
    original = (DATA / "trek-view-360" / "GSAG2002.JPG").read_bytes()
    before = exiftool_all(tmp_path / "before.jpg", original)
    dates = ("XMP-GPano:FirstPhotoDate", "XMP-GPano:LastPhotoDate")
    assert [before[tag] for tag in dates] == ["2020:05:09 14:16:30"] * 2

    update = MetadataUpdate(captured_at=CAPTURED, utc_offset_minutes=120)
    after = exiftool_all(tmp_path / "after.jpg", apply_metadata(original, update))
    assert [tag for tag in dates if tag in after] == []
    assert after["ExifIFD:DateTimeOriginal"] == "2024:05:01 09:58:31"
    kept = ("XMP-GPano:SourcePhotosCount", "XMP-GPano:CaptureSoftware", "XMP-GPano:ProjectionType")
    assert {tag: after[tag] for tag in kept} == {tag: before[tag] for tag in kept}
    untouched = apply_metadata(original, MetadataUpdate(make="GoPro"))  # no time written: they stay
    assert [tag for tag in dates if tag in exiftool_all(tmp_path / "make.jpg", untouched)] == list(dates)


@pytest.mark.exiftool
@pytest.mark.parametrize("zone_unknown", [False, True])
def test_every_copy_of_the_capture_time_gets_the_new_one(tmp_path: Path, zone_unknown: bool) -> None:
    """A GoPro MAX image whose capture time photo software also copied into XMP (photoshop:DateCreated,
    xmp:CreateDate) and whose camera wrote it as DateTimeDigitized (ExifTool's CreateDate) with an offset:
    after a time edit, the XMP copies go and DateTimeDigitized reads as DateTimeOriginal (a time whose zone
    is unknown keeps no offset in either)."""
    path = tmp_path / "gopro.jpg"
    path.write_bytes((DATA / "trek-view-360" / "GSAG2002.JPG").read_bytes())
    assignments = [
        f"-{tag}=2020:05:09 14:16:30+02:00" for tag in ("XMP-xmp:CreateDate", "XMP-photoshop:DateCreated")
    ]
    assignments += ["-OffsetTimeOriginal=+02:00", "-OffsetTimeDigitized=+02:00"]
    subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(path)], check=True)
    assert (
        exiftool_all(tmp_path / "before.jpg", path.read_bytes())["ExifIFD:CreateDate"]
        == "2020:05:09 14:16:30"
    )

    update = MetadataUpdate(captured_at=CAPTURED, utc_offset_minutes=120, zone_unknown=zone_unknown)
    after = exiftool_all(tmp_path / "after.jpg", apply_metadata(path.read_bytes(), update))
    assert [tag for tag in after if tag.startswith(("XMP-xmp:", "XMP-photoshop:"))] == []
    clock = "2024:05:01 09:58:31"
    assert after["ExifIFD:DateTimeOriginal"] == after["ExifIFD:CreateDate"] == clock
    assert after["ExifIFD:SubSecTimeOriginal"] == after["ExifIFD:SubSecTimeDigitized"] == 250
    offsets = [after.get(f"ExifIFD:OffsetTime{kind}") for kind in ("Original", "Digitized")]
    assert offsets == ([None, None] if zone_unknown else ["+02:00", "+02:00"])


@pytest.mark.exiftool
def test_a_capture_time_adds_no_digitized_time(tmp_path: Path) -> None:
    original = ifd0_time_jpeg("<", subsec=False, offset=False)
    after = exiftool_all(
        tmp_path / "after.jpg", apply_metadata(original, MetadataUpdate(captured_at=CAPTURED))
    )
    assert after["ExifIFD:DateTimeOriginal"] == "2024:05:01 07:58:31"
    assert not [tag for tag in after if "CreateDate" in tag or "Digitized" in tag]
