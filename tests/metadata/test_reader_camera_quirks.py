"""Classes of real camera files the reader once got wrong, each rebuilt as a minimal file and checked against
ExifTool (``exiftool -j -n -G1``) on the same bytes."""

from __future__ import annotations

import json
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.metadata.test_reader_malformed import PLAIN_JPEG, app1, with_exif

from panopipe.errors import MetadataError
from panopipe.metadata import ImageMetadata, MetadataUpdate, apply_metadata, parse_jpeg_header
from panopipe.utc_offsets import UTC_OFFSETS_IN_USE, offset_text

# TIFF types of one integer, and their struct codes.
INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I"}
BIGTIFF_TYPES = {16: "Q", 17: "q", 18: "Q"}

Entry = tuple[int, int, int, bytes]
"""(tag, type, count, value bytes)"""


def exiftool(tmp_path: Path, files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    command = ["exiftool", "-j", "-n", "-G1", *(str(tmp_path / name) for name in files)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return {Path(entry["SourceFile"]).name: entry for entry in json.loads(result.stdout)}


def ifd_size(entries: list[Entry]) -> int:
    return 2 + 12 * len(entries) + 4 + sum(len(v) + len(v) % 2 for *_, v in entries if len(v) > 4)


def ifd_bytes(order: str, at: int, entries: list[Entry]) -> bytes:
    """An IFD at offset ``at`` followed by the values that do not fit in their entries."""
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            table += struct.pack(order + "HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack(order + "HHII", tag, typ, count, data_at + len(data))
            data += value + b"\0" * (len(value) % 2)
    return struct.pack(order + "H", len(entries)) + table + struct.pack(order + "I", 0) + data


def rationals(order: str, *values: float) -> bytes:
    return b"".join(struct.pack(order + "II", round(value * 10_000), 10_000) for value in values)


def text(value: str) -> tuple[int, int, bytes]:
    raw = value.encode() + b"\0"
    return 2, len(raw), raw


def exif_tiff(
    order: str, ifd0: list[Entry], gps: list[Entry], pointer_type: int = 4, pointer_code: str = "I"
) -> bytes:
    """A TIFF block: IFD0 (``ifd0`` and a GPS pointer of ``pointer_type``) and the GPS IFD after it."""
    width = struct.calcsize(pointer_code)
    ifd0 = [*ifd0, (0x8825, pointer_type, 1, bytes(width))]
    gps_at = 8 + ifd_size(ifd0)
    ifd0[-1] = (0x8825, pointer_type, 1, struct.pack(order + pointer_code, gps_at))
    head = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", 8)
    return head + ifd_bytes(order, 8, ifd0) + ifd_bytes(order, gps_at, gps)


def gps_entries(order: str, latitude: float, longitude: float) -> list[Entry]:
    def dms(value: float) -> bytes:
        return rationals(order, int(value), round(value % 1 * 60, 4), 0)

    return [
        (1, 2, 2, b"S\0" if latitude < 0 else b"N\0"),
        (2, 5, 3, dms(abs(latitude))),
        (3, 2, 2, b"W\0" if longitude < 0 else b"E\0"),
        (4, 5, 3, dms(abs(longitude))),
    ]


def coordinates(metadata: ImageMetadata) -> tuple[float | None, float | None]:
    return metadata.gps_latitude, metadata.gps_longitude


# 1. Sub-IFD pointers of any integer type


def pointer_jpeg(order: str, pointer_type: int, latitude: float = 48.5, longitude: float = -2.25) -> bytes:
    code = INTEGER_TYPES.get(pointer_type) or BIGTIFF_TYPES[pointer_type]
    make = (0x010F, *text("Abc"))
    return with_exif(exif_tiff(order, [make], gps_entries(order, latitude, longitude), pointer_type, code))


@pytest.mark.exiftool
def test_gps_pointer_of_any_integer_type_agrees_with_exiftool(tmp_path: Path) -> None:
    files = {
        f"pointer_{typ}_{'le' if order == '<' else 'be'}.jpg": pointer_jpeg(order, typ)
        for typ in [*INTEGER_TYPES, *BIGTIFF_TYPES]
        for order in "<>"
    }
    answers = exiftool(tmp_path, files)
    for name, data in files.items():
        metadata, tags = parse_jpeg_header(data), answers[name]
        assert metadata.make == tags["IFD0:Make"] == "Abc"
        expected = (tags.get("Composite:GPSLatitude"), tags.get("Composite:GPSLongitude"))
        assert coordinates(metadata) == expected, name
        if int(name.split("_")[1]) in INTEGER_TYPES:
            assert expected == (48.5, -2.25) and metadata.warnings == (), name
        else:  # not an EXIF type: ExifTool rejects it as a bad format
            assert "Bad format" in tags["ExifTool:Warning"]
            assert metadata.warnings == (
                f"wrong format ({name.split('_')[1]}) for IFD0 0x8825 GPSInfo, not followed",
            )


@settings(max_examples=200, deadline=None)
@given(
    order=st.sampled_from("<>"),
    pointer_type=st.sampled_from(sorted(INTEGER_TYPES)),
    latitude=st.floats(-89, 89),
    longitude=st.floats(-179, 179),
)
def test_gps_pointer_type_does_not_change_the_position(
    order: str, pointer_type: int, latitude: float, longitude: float
) -> None:
    metadata = parse_jpeg_header(pointer_jpeg(order, pointer_type, latitude, longitude))
    reference = parse_jpeg_header(pointer_jpeg(order, 4, latitude, longitude))
    assert coordinates(metadata) == coordinates(reference)
    assert metadata.gps_latitude == pytest.approx(latitude, abs=1e-4)
    assert metadata.warnings == ()


@pytest.mark.parametrize("pointer_type", sorted(INTEGER_TYPES))
def test_the_writer_follows_the_same_pointers(pointer_type: int) -> None:
    written = apply_metadata(pointer_jpeg(">", pointer_type), MetadataUpdate(make="Rewritten"))
    metadata = parse_jpeg_header(written)
    assert (metadata.make, coordinates(metadata), metadata.warnings) == ("Rewritten", (48.5, -2.25), ())


# 2. XMP properties of the top-level rdf:Description only

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"


def location(form: str, latitude: float) -> str:
    """An IPTC location structure holding an exif:GPSLatitude, in one of the ways RDF writes a structure."""
    if form == "resource":
        return (
            '<Iptc4xmpExt:LocationCreated rdf:parseType="Resource">'
            f"<exif:GPSLatitude>{latitude:.6f}N</exif:GPSLatitude></Iptc4xmpExt:LocationCreated>"
        )
    if form == "bag":
        return (
            "<Iptc4xmpExt:LocationShown><rdf:Bag><rdf:li><rdf:Description"
            f' exif:GPSLatitude="{latitude:.6f}N" exif:GPSLongitude="1.5E"/></rdf:li></rdf:Bag>'
            "</Iptc4xmpExt:LocationShown>"
        )
    return f'<Iptc4xmpExt:LocationShown exif:GPSLatitude="{latitude:.6f}N"/>'  # property attributes


def location_xmp(
    nested: list[str], top: float | None, *, top_first: bool, top_as_attribute: bool, container: str = "rdf"
) -> bytes:
    """A packet whose rdf:Description holds IPTC locations and maybe a GPSLatitude of its own; the
    description sits in rdf:RDF, right in x:xmpmeta (``container="xmpmeta"``) or in another element."""
    attribute = element = ""
    if top is not None and top_as_attribute:
        attribute = f' exif:GPSLatitude="{top:.6f}N"'
    elif top is not None:
        element = f"<exif:GPSLatitude>{top:.6f}N</exif:GPSLatitude>"
    structures = "".join(location(form, 10.0 + index) for index, form in enumerate(nested))
    body = element + structures if top_first else structures + element
    description = (
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/"'
        f' xmlns:Iptc4xmpExt="{IPTC_EXT}"{attribute}>{body}</rdf:Description>'
    )
    if container == "other":
        description = f'<foo:Bar xmlns:foo="urn:x">{description}</foo:Bar>'
    if container != "xmpmeta":
        description = f"<rdf:RDF>{description}</rdf:RDF>"
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f"{description}</x:xmpmeta>"
    )
    return PLAIN_JPEG[:2] + app1(b"http://ns.adobe.com/xap/1.0/\0" + packet.encode()) + PLAIN_JPEG[2:]


@pytest.mark.exiftool
def test_gps_in_iptc_locations_is_not_the_photo_position(tmp_path: Path) -> None:
    forms = ["resource", "bag", "attributes"]
    files = {
        "nested_only.jpg": location_xmp(forms, None, top_first=True, top_as_attribute=False),
        "top_after.jpg": location_xmp(forms, 47.25, top_first=False, top_as_attribute=False),
        "top_attribute.jpg": location_xmp(forms, 47.25, top_first=False, top_as_attribute=True),
    }
    for container in ("xmpmeta", "other"):
        files[f"in_{container}.jpg"] = location_xmp(
            [], 47.25, top_first=True, top_as_attribute=True, container=container
        )
    answers = exiftool(tmp_path, files)
    assert "XMP-iptcExt:LocationCreatedGPSLatitude" in answers["nested_only.jpg"]
    assert "XMP-foo:BarGPSLatitude" in answers["in_other.jpg"]
    for name, data in files.items():
        metadata = parse_jpeg_header(data)
        assert metadata.gps_latitude == answers[name].get("XMP-exif:GPSLatitude"), name
        assert metadata.warnings == ()
    assert parse_jpeg_header(files["top_after.jpg"]).gps_latitude == 47.25
    assert parse_jpeg_header(files["in_xmpmeta.jpg"]).gps_latitude == 47.25


@settings(max_examples=200, deadline=None)
@given(
    nested=st.lists(st.sampled_from(["resource", "bag", "attributes"]), max_size=4),
    top=st.one_of(st.none(), st.floats(0, 89).map(lambda value: round(value, 6))),
    top_first=st.booleans(),
    top_as_attribute=st.booleans(),
)
def test_only_the_top_level_property_counts(
    nested: list[str], top: float | None, top_first: bool, top_as_attribute: bool
) -> None:
    data = location_xmp(nested, top, top_first=top_first, top_as_attribute=top_as_attribute)
    assert parse_jpeg_header(data).gps_latitude == top


# 3. Stray bytes between segments


def comment(text: bytes, short_by: int = 0) -> bytes:
    """A COM segment whose length field is ``short_by`` bytes short, as some cameras write it."""
    return b"\xff\xfe" + (len(text) + 2 - short_by).to_bytes(2, "big") + text


def stray_jpeg(stray: bytes, after_soi: bool = False) -> bytes:
    tiff = exif_tiff("<", [(0x010F, *text("Stray"))], gps_entries("<", 40.5, 3.25))
    exif = app1(b"Exif\0\0" + tiff)
    if after_soi:
        return PLAIN_JPEG[:2] + stray + exif + PLAIN_JPEG[2:]
    return PLAIN_JPEG[:2] + comment(b"camera note" + stray, short_by=len(stray)) + exif + PLAIN_JPEG[2:]


@pytest.mark.exiftool
def test_stray_bytes_between_segments_are_skipped_like_exiftool(tmp_path: Path) -> None:
    files = {"short_segment.jpg": stray_jpeg(b"\x00\x12\x34"), "after_soi.jpg": stray_jpeg(b"\x01\x02", True)}
    answers = exiftool(tmp_path, files)
    metadata, tags = parse_jpeg_header(files["short_segment.jpg"]), answers["short_segment.jpg"]
    assert tags["ExifTool:Warning"] == "[minor] Skipped unknown 3 bytes after JPEG COM segment"
    assert (metadata.make, metadata.width, metadata.height) == (
        tags["IFD0:Make"],
        tags["File:ImageWidth"],
        tags["File:ImageHeight"],
    )
    assert coordinates(metadata) == (tags["Composite:GPSLatitude"], tags["Composite:GPSLongitude"])
    assert metadata.make == "Stray"
    at = 2 + 4 + len(b"camera note")  # SOI, then the COM segment as its length field says
    assert metadata.warnings == (f"3 stray bytes at byte {at} before the next marker, skipped",)
    # Without a marker right after SOI, ExifTool (and Pillow) do not take the file for a JPEG.
    assert "File:ImageWidth" not in answers["after_soi.jpg"]
    with pytest.raises(MetadataError, match="no marker at byte 2"):
        parse_jpeg_header(files["after_soi.jpg"])


@settings(max_examples=200, deadline=None)
# (an 0xFF in stray bytes starts a marker for every reader: libjpeg, ExifTool and this one)
@given(stray=st.binary(min_size=1, max_size=64).filter(lambda raw: b"\xff" not in raw))
def test_stray_bytes_leave_the_metadata_unchanged(stray: bytes) -> None:
    clean = parse_jpeg_header(stray_jpeg(b""))
    metadata = parse_jpeg_header(stray_jpeg(stray))
    assert (metadata.make, coordinates(metadata), metadata.width) == (
        clean.make,
        coordinates(clean),
        clean.width,
    )
    assert any("stray bytes" in warning for warning in metadata.warnings)


# 4. Inferred UTC offsets that no time zone uses; 5. impossible GPS dates


def time_jpeg(local: str, gps_date: str, gps_time: tuple[int, int, int]) -> bytes:
    gps = [(7, 5, 3, rationals("<", *gps_time)), (0x1D, *text(gps_date))]
    return with_exif(exif_tiff("<", [(0x9003, *text(local))], gps))


@pytest.mark.exiftool
def test_offsets_and_gps_dates_agree_with_exiftool(tmp_path: Path) -> None:
    files = {
        "offset_plus_15_30.jpg": time_jpeg("2024:05:01 23:30:00", "2024:05:01", (8, 0, 0)),
        "offset_minus_13.jpg": time_jpeg("2024:05:01 01:00:00", "2024:05:01", (14, 0, 0)),
        "offset_plus_14.jpg": time_jpeg("2024:05:01 22:00:00", "2024:05:01", (8, 0, 0)),
        "offset_plus_0_15.jpg": time_jpeg("2024:05:01 08:15:00", "2024:05:01", (8, 0, 0)),  # a drifted clock
        "gps_day_259.jpg": time_jpeg("2014:09:25 12:00:00", "2014:09:259", (10, 0, 0)),
    }
    answers = exiftool(tmp_path, files)
    for name, data in files.items():
        metadata, tags = parse_jpeg_header(data), answers[name]
        local = datetime.strptime(tags["IFD0:DateTimeOriginal"], "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
        if name == "gps_day_259.jpg":
            assert tags["GPS:GPSDateStamp"] == "2014:09:259"  # not a date ExifTool can read either
            assert metadata.gps_datetime is None
            assert metadata.warnings == (
                "GPSDateStamp/GPSTimeStamp '2014:09:259' (10.0, 0.0, 0.0) is not a valid time, ignored",
            )
            assert (metadata.captured_at, metadata.utc_offset_minutes) == (local, None)
            continue
        gps = datetime.strptime(tags["Composite:GPSDateTime"], "%Y:%m:%d %H:%M:%SZ").replace(tzinfo=UTC)
        assert metadata.gps_datetime == gps
        if name == "offset_plus_14.jpg":
            assert (metadata.captured_at, metadata.utc_offset_minutes) == (gps, 14 * 60)
            assert metadata.warnings == ()
        else:  # no time zone is that far from UTC, or at +00:15: the local time stays, without an offset
            assert (metadata.captured_at, metadata.utc_offset_minutes) == (local, None)
            (warning,) = metadata.warnings
            assert "is one no time zone uses (the camera clock drifted?), not used" in warning


@settings(max_examples=200, deadline=None)
@given(quarters=st.integers(-96, 96), seconds=st.integers(0, 86399))
def test_an_inferred_offset_is_used_only_if_a_time_zone_uses_it(quarters: int, seconds: int) -> None:
    gps = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    local = gps + timedelta(minutes=15 * quarters)
    data = time_jpeg(
        local.strftime("%Y:%m:%d %H:%M:%S"), gps.strftime("%Y:%m:%d"), (gps.hour, gps.minute, gps.second)
    )
    metadata = parse_jpeg_header(data)
    if 15 * quarters in UTC_OFFSETS_IN_USE:
        assert (metadata.captured_at, metadata.utc_offset_minutes) == (gps, 15 * quarters)
    else:
        assert (metadata.captured_at, metadata.utc_offset_minutes) == (local, None)


@pytest.mark.parametrize(
    ("offset", "used"),
    [
        ("+05:45", True),
        ("-09:30", True),
        ("+12:45", True),
        ("-12:00", True),
        ("+00:15", False),
        ("+01:15", False),
    ],
)
def test_the_offsets_time_zones_use(offset: str, used: bool) -> None:
    """Nepal, the Marquesas, the Chatham Islands and Baker Island, against two a drifted clock gives."""
    minutes = (int(offset[1:3]) * 60 + int(offset[4:])) * (-1 if offset[0] == "-" else 1)
    assert (minutes in UTC_OFFSETS_IN_USE) is used and offset_text(minutes) == offset


@pytest.mark.parametrize("date", ["2014:09:259", "2014:09:2", "2014:13:01", "2014:09:25:1", "20140925"])
def test_an_impossible_gps_date_is_refused(date: str) -> None:
    metadata = parse_jpeg_header(time_jpeg("2014:09:25 12:00:00", date, (10, 0, 0)))
    assert metadata.gps_datetime is None
    assert any("is not a valid time" in warning for warning in metadata.warnings)


# 6. Image directions from magnetic north


def exiftool_written(tmp_path: Path, name: str, *assignments: str) -> bytes:
    """A plain JPEG with ``assignments`` (``-TAG=VALUE``) written by ExifTool (``-n``: values as given)."""
    path = tmp_path / name
    path.write_bytes(PLAIN_JPEG)
    subprocess.run(["exiftool", "-q", "-n", "-overwrite_original", *assignments, str(path)], check=True)
    return path.read_bytes()


@pytest.mark.exiftool
def test_a_direction_from_magnetic_north_is_no_heading(tmp_path: Path) -> None:
    """GPSImgDirectionRef M: the direction is not from true north, and turning it into one takes the magnetic
    declination of the place and time, so the reader leaves it out (and ingest takes GPano's heading)."""
    pose = "-XMP-GPano:PoseHeadingDegrees=123.5"
    files = {
        "true.jpg": exiftool_written(tmp_path, "t.jpg", "-GPSImgDirection=90", "-GPSImgDirectionRef=T"),
        "no_ref.jpg": exiftool_written(tmp_path, "n.jpg", "-GPSImgDirection=90"),
        "magnetic.jpg": exiftool_written(tmp_path, "m.jpg", "-GPSImgDirection=90", "-GPSImgDirectionRef=M"),
        "magnetic_pose.jpg": exiftool_written(
            tmp_path, "mp.jpg", "-GPSImgDirection=90", "-GPSImgDirectionRef=M", pose
        ),
        "magnetic_xmp.jpg": exiftool_written(
            tmp_path, "mx.jpg", "-XMP-exif:GPSImgDirection=90", "-XMP-exif:GPSImgDirectionRef=M"
        ),
    }
    answers = exiftool(tmp_path, files)
    for name, data in files.items():
        metadata, tags = parse_jpeg_header(data), answers[name]
        group = "XMP-exif" if name == "magnetic_xmp.jpg" else "GPS"
        assert tags[f"{group}:GPSImgDirection"] == 90, name
        assert tags.get(f"{group}:GPSImgDirectionRef") == {"t": "T", "n": None}.get(name[0], "M"), name
        assert metadata.pose_heading == (123.5 if name == "magnetic_pose.jpg" else None)
        if name.startswith("magnetic"):
            assert metadata.gps_img_direction is None, name
            assert metadata.warnings == (
                "GPSImgDirection 90 is from magnetic north (GPSImgDirectionRef M), not true north:"
                " not used as the heading",
            )
        else:
            assert (metadata.gps_img_direction, metadata.warnings) == (90, ()), name


# 7. Make and model in XMP only; GPSAltitudeRef stored as text


@pytest.mark.exiftool
def test_make_and_model_in_xmp_only_are_read_as_exiftool_reads_them(tmp_path: Path) -> None:
    xmp = ("-XMP-tiff:Make=GoPro", "-XMP-tiff:Model=GoPro Max")
    files = {
        "xmp_only.jpg": exiftool_written(tmp_path, "xmp_only.jpg", *xmp),
        "both.jpg": exiftool_written(tmp_path, "both.jpg", *xmp, "-IFD0:Make=Cam", "-IFD0:Model=M"),
    }
    command = ["exiftool", "-j", "-Make", "-Model", *(str(tmp_path / name) for name in files)]
    answers = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    preferred = {Path(entry.pop("SourceFile")).name: entry for entry in answers}  # EXIF's, else XMP's
    assert preferred == {
        "xmp_only.jpg": {"Make": "GoPro", "Model": "GoPro Max"},
        "both.jpg": {"Make": "Cam", "Model": "M"},
    }
    for name, data in files.items():
        metadata = parse_jpeg_header(data)
        assert {"Make": metadata.make, "Model": metadata.model} == preferred[name], name


@pytest.mark.exiftool
@pytest.mark.parametrize("order", "<>")
def test_a_gps_altitude_ref_stored_as_text_is_read_as_exiftool_reads_it(tmp_path: Path, order: str) -> None:
    """GPSAltitudeRef is a BYTE; some writers store the text "1". ExifTool reads text as Perl reads a boolean:
    below sea level unless it is "" or "0"."""
    refs = {
        "one": b"1\0",
        "zero": b"0\0",
        "empty": b"\0",
        "two": b"2\0",
        "zero_space": b"0 \0",
        "no_nul": b"1",
    }
    files = {
        f"{name}.jpg": with_exif(
            exif_tiff(
                order,
                [],
                [*gps_entries(order, 48.1, 11.5), (5, 2, len(raw), raw), (6, 5, 1, rationals(order, 100))],
            )
        )
        for name, raw in refs.items()
    }
    answers = exiftool(tmp_path, files)
    for name, data in files.items():
        metadata, tags = parse_jpeg_header(data), answers[name]
        assert tags["Composite:GPSAltitude"] == (100 if name in ("zero.jpg", "empty.jpg") else -100), name
        assert (metadata.gps_altitude, metadata.warnings) == (tags["Composite:GPSAltitude"], ()), name
