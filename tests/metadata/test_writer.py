"""The metadata writer on real JPEG files, checked with Pillow, by looking at the bytes, and with ExifTool
(the reference reader; those tests are marked ``exiftool``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import struct
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms

from panopipe.errors import MetadataError, StorageError
from panopipe.metadata.jpeg import scan_segments
from panopipe.metadata.writer import (
    GPANO_NS,
    PANOPIPE_NS,
    REMOVABLE,
    GPano,
    MetadataUpdate,
    apply_metadata,
    apply_metadata_file,
    with_segments_of,
)

DATA = Path(__file__).parents[1] / "data" / "writer"
CAMERA_FILES = ["DSC00001.JPG", "GSAG2002.JPG"]
UPDATE = MetadataUpdate(
    captured_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    utc_offset_minutes=120,
    gps_latitude=-33.123456789,
    gps_longitude=151.987654321,
    gps_altitude=-12.345,
    gps_img_direction=271.25,
    gps_h_positioning_error=0.024,
    gps_datetime=datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC),
    make="PanoCam",
    model="P-1",
    artist="Ada",
    copyright="© 2024 Ada",
    image_description="corridor 7",
    gpano=GPano(64, 32, pose_heading_degrees=12.5),
    panopipe={"project": "tunnel", "reel": "A", "frame": 42, "shot": "s1"},
)


def pillow_jpeg(exif: Image.Exif | None = None, size: tuple[int, int] = (64, 32)) -> bytes:
    """A small JPEG written by Pillow (JFIF APP0), with ``exif`` if given."""
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (120, 60, 200))
    image.save(buffer, "JPEG", quality=85, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def pillow_exif(endian: str) -> Image.Exif:
    exif = Image.Exif()
    exif.endian = endian
    exif[ExifTags.Base.Software] = "pillow-test"
    exif[ExifTags.Base.Orientation] = 3
    exif[ExifTags.Base.Make] = "OldMake"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.ExposureTime] = 0.004
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2001:02:03 04:05:06"
    return exif


def samples() -> dict[str, bytes]:
    return {
        "no-exif": pillow_jpeg(),
        "pillow-II": pillow_jpeg(pillow_exif("<")),
        "pillow-MM": pillow_jpeg(pillow_exif(">")),
        **{name: (DATA / name).read_bytes() for name in CAMERA_FILES},
    }


def split(jpeg: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """(the EXIF/XMP APP1 segments, every other segment, the bytes from SOS to the end)."""
    segments, sos, _ = scan_segments(jpeg)
    metadata, other = [], []
    for seg in segments:
        body = jpeg[seg.start : seg.end]
        is_metadata = seg.marker == 0xE1 and body[4:9] in (b"Exif\x00", b"http:")
        (metadata if is_metadata else other).append(body)
    return metadata, other, jpeg[sos:]


@pytest.mark.parametrize("name", ["no-exif", "pillow-II", "pillow-MM", *CAMERA_FILES])
def test_image_data_and_other_segments_are_byte_identical(name: str) -> None:
    original = samples()[name]
    written = apply_metadata(original, UPDATE)
    _, other_before, scan_before = split(original)
    _, other_after, scan_after = split(written)
    assert scan_after == scan_before
    assert other_after == other_before  # APP0, APP2 (ICC/MPF), APP6, DQT, SOF, DHT: same bytes, same order
    assert written != original


def test_creates_exif_and_xmp_after_jfif() -> None:
    written = apply_metadata(pillow_jpeg(), UPDATE)
    segments, _, _ = scan_segments(written)
    assert [seg.marker for seg in segments[:3]] == [0xE0, 0xE1, 0xE1]
    assert written[segments[1].payload_start :].startswith(b"Exif\x00\x00MM")
    assert written[segments[2].payload_start :].startswith(b"http://ns.adobe.com/xap/1.0/\x00")
    exif = Image.open(io.BytesIO(written)).getexif()
    assert exif[ExifTags.Base.Make] == "PanoCam"
    assert exif[ExifTags.Base.XResolution] == 72  # required IFD0 tags of a new EXIF block
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "2024:05:06 09:08:09"
    assert exif_ifd[ExifTags.Base.SubsecTimeOriginal] == "123"
    assert exif_ifd[ExifTags.Base.OffsetTimeOriginal] == "+02:00"
    assert (exif_ifd[ExifTags.Base.ExifImageWidth], exif_ifd[ExifTags.Base.ExifImageHeight]) == (64, 32)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSVersionID] == b"\x02\x03\x00\x00"
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "S"
    assert gps[ExifTags.GPS.GPSLongitudeRef] == "E"
    assert gps[ExifTags.GPS.GPSAltitudeRef] == b"\x01"
    assert gps[ExifTags.GPS.GPSImgDirectionRef] == "T"
    assert gps[ExifTags.GPS.GPSDateStamp] == "2024:05:06"


@pytest.mark.parametrize("endian", ["<", ">"])
def test_keeps_the_tags_it_does_not_set_and_the_byte_order(endian: str) -> None:
    original = pillow_jpeg(pillow_exif(endian))
    written = apply_metadata(original, MetadataUpdate(make="NewMake", gps_latitude=1.5))
    assert written[written.index(b"Exif\x00\x00") + 6 :][:2] == (b"II" if endian == "<" else b"MM")
    exif = Image.open(io.BytesIO(written)).getexif()
    assert exif[ExifTags.Base.Make] == "NewMake"
    assert exif[ExifTags.Base.Software] == "pillow-test"
    assert exif[ExifTags.Base.Orientation] == 3
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "2001:02:03 04:05:06"
    assert float(exif_ifd[ExifTags.Base.ExposureTime]) == pytest.approx(0.004)
    assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == (1.0, 30.0, 0.0)


def test_maker_note_stays_at_its_offset() -> None:
    original = (DATA / "DSC00001.JPG").read_bytes()
    written = apply_metadata(original, UPDATE)
    (exif_before, *_), _, _ = split(original)
    (exif_after, *_), _, _ = split(written)
    tiff_before, tiff_after = exif_before[10:], exif_after[10:]
    note = find_entry(tiff_before, 0x927C)
    assert note is not None
    assert find_entry(tiff_after, 0x927C) == note
    offset, count = note
    assert tiff_after[offset : offset + count] == tiff_before[offset : offset + count]


def find_entry(tiff: bytes, wanted: int) -> tuple[int, int] | None:
    """(value offset, count) of tag ``wanted`` in the ExifIFD of a little-endian TIFF block."""
    (ifd0,) = struct.unpack_from("<L", tiff, 4)
    entries = {}
    for ifd in (ifd0, None):
        if ifd is None:
            ifd = entries[0x8769]
        (count,) = struct.unpack_from("<H", tiff, ifd)
        for pos in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, _type, n, value = struct.unpack_from("<HHLL", tiff, pos)
            entries[tag] = value
            if tag == wanted:
                return value, n
    return None


@pytest.mark.parametrize("name", ["pillow-II", *CAMERA_FILES])
def test_repeated_writes_do_not_grow_the_file(name: str) -> None:
    data = samples()[name]
    sizes = []
    for i in range(4):
        data = apply_metadata(data, MetadataUpdate(captured_at=datetime(2024, 1, 1, i, tzinfo=UTC), make="M"))
        sizes.append(len(data))
    assert sizes[1] == sizes[2] == sizes[3]


def test_new_values_replace_old_ones() -> None:
    first = apply_metadata(pillow_jpeg(), UPDATE)
    second = apply_metadata(first, MetadataUpdate(gps_latitude=48.5, panopipe={"frame": 43}))
    gps = Image.open(io.BytesIO(second)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert gps[ExifTags.GPS.GPSLongitudeRef] == "E"
    assert xmp_properties(second)[(PANOPIPE_NS, "frame")] == ["43"]
    assert xmp_properties(second)[(PANOPIPE_NS, "project")] == ["tunnel"]


def xmp_properties(jpeg: bytes) -> dict[tuple[str, str], list[str]]:
    """Every simple property of the XMP packet, as attribute or element, by (namespace, name)."""
    start = jpeg.index(b"http://ns.adobe.com/xap/1.0/\x00") + 29
    length = int.from_bytes(jpeg[start - 31 : start - 29], "big") - 31
    root = ET.fromstring(jpeg[start : start + length])
    found: dict[tuple[str, str], list[str]] = {}
    for description in root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"):
        items = [*description.attrib.items(), *((child.tag, child.text or "") for child in description)]
        for key, value in items:
            uri, _, name = key[1:].partition("}")
            found.setdefault((uri, name), []).append(value)
    return found


def test_xmp_merge_keeps_other_properties() -> None:
    packet = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:my="urn:example:my/">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Tunnel &amp; shaft</rdf:li></rdf:Alt></dc:title>
<my:Note>keep me</my:Note></rdf:Description>
<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"
 GPano:UsePanoramaViewer="True"><GPano:ProjectionType>cylindrical</GPano:ProjectionType></rdf:Description>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""
    original = insert_app1(pillow_jpeg(), b"http://ns.adobe.com/xap/1.0/\x00" + packet)
    written = apply_metadata(original, MetadataUpdate(gpano=GPano(8000, 4000)))
    found = xmp_properties(written)
    assert found[(GPANO_NS, "ProjectionType")] == ["equirectangular"]
    assert found[(GPANO_NS, "FullPanoWidthPixels")] == ["8000"]
    assert found[(GPANO_NS, "UsePanoramaViewer")] == ["True"]
    assert found[("urn:example:my/", "Note")] == ["keep me"]
    assert b"my:Note" in written and b'xml:lang="x-default">Tunnel &amp; shaft<' in written
    assert len(split(written)[0]) == 1  # the packet is replaced, not duplicated


def insert_app1(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


@pytest.mark.parametrize(
    "packet",
    [
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>',
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF",
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>",
    ],
    ids=["doctype", "truncated", "no-rdf"],
)
def test_unsafe_or_corrupt_xmp_is_refused(packet: bytes) -> None:
    jpeg = insert_app1(pillow_jpeg(), b"http://ns.adobe.com/xap/1.0/\x00" + packet)
    with pytest.raises(MetadataError, match="XMP"):
        apply_metadata(jpeg, MetadataUpdate(panopipe={"frame": 1}))


@pytest.mark.exiftool
@pytest.mark.parametrize(
    "descriptions",
    [
        b'<rdf:Description rdf:about="" xmlns:a="urn:one"><a:p>1</a:p></rdf:Description>'
        b'<rdf:Description rdf:about="" xmlns:a="urn:two"><a:q>2</a:q></rdf:Description>',
        b'<rdf:Description rdf:about="" xmlns="urn:one" xmlns:ns="urn:two"><p>1</p><ns:q>2</ns:q>'
        b"</rdf:Description>",
    ],
    ids=["one-prefix-two-namespaces", "default-namespace"],
)
def test_xmp_properties_keep_their_namespaces_whatever_the_prefixes(
    tmp_path: Path, descriptions: bytes
) -> None:
    """Legal XMP that binds a prefix to two namespaces (one per rdf:Description) or uses a default namespace:
    each property keeps its own namespace (under a prefix of its own), as ExifTool reads them."""
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        + descriptions
        + b"</rdf:RDF></x:xmpmeta>"
    )
    before, after = tmp_path / "before.jpg", tmp_path / "after.jpg"
    before.write_bytes(insert_app1(pillow_jpeg(), b"http://ns.adobe.com/xap/1.0/\x00" + packet))
    apply_metadata_file(before, after, update=MetadataUpdate(gpano=GPano(64, 32), panopipe={"frame": 3}))
    found = xmp_properties(after.read_bytes())
    assert found[("urn:one", "p")] == ["1"] and found[("urn:two", "q")] == ["2"]
    assert found[(GPANO_NS, "FullPanoWidthPixels")] == ["64"] and found[(PANOPIPE_NS, "frame")] == ["3"]
    # ExifTool names the group of a namespace it does not know after its prefix: compare the tags by name
    tags_before, tags_after = (json.loads(exiftool("-json", "-n", "-XMP:all", p))[0] for p in (before, after))
    kept = {name: value for name, value in tags_before.items() if name != "SourceFile"}
    assert len(kept) == 2 and kept.items() <= tags_after.items()
    assert tags_after["FullPanoWidthPixels"] == 64 and tags_after["Frame"] == 3


def tiff_with_thumbnail(thumbnail_size: int) -> bytes:
    """A little-endian TIFF block: IFD0 with Make, IFD1 pointing to a fake JPEG thumbnail."""
    thumb = b"\xff\xd8" + bytes(thumbnail_size - 4) + b"\xff\xd9"
    ifd0 = (
        struct.pack("<H", 1) + struct.pack("<HHL4s", 0x010F, 2, 2, b"X\x00\x00\x00") + struct.pack("<L", 26)
    )
    ifd1 = (
        struct.pack("<H", 2)
        + struct.pack("<HHLL", 0x0201, 4, 1, 56)
        + struct.pack("<HHLL", 0x0202, 4, 1, len(thumb))
    )
    return b"II*\x00" + struct.pack("<L", 8) + ifd0 + ifd1 + struct.pack("<L", 0) + thumb


def test_thumbnail_is_kept_then_dropped_when_the_exif_would_not_fit(caplog: pytest.LogCaptureFixture) -> None:
    jpeg = insert_app1(pillow_jpeg(), b"Exif\x00\x00" + tiff_with_thumbnail(60_000))
    small = apply_metadata(jpeg, MetadataUpdate(artist="A"))
    assert Image.open(io.BytesIO(small)).getexif().get_ifd(ExifTags.IFD.IFD1)[0x0202] == 60_000
    with caplog.at_level(logging.WARNING):
        big = apply_metadata(jpeg, MetadataUpdate(image_description="x" * 10_000))
    assert "dropping the IFD1 thumbnail" in caplog.text
    exif = Image.open(io.BytesIO(big)).getexif()
    assert exif[ExifTags.Base.ImageDescription] == "x" * 10_000
    assert not exif.get_ifd(ExifTags.IFD.IFD1)
    with pytest.raises(MetadataError, match="does not fit"):
        apply_metadata(jpeg, MetadataUpdate(image_description="x" * 70_000))


def test_offset_time_raises_the_exif_version() -> None:
    written = apply_metadata(pillow_jpeg(pillow_exif("<")), MetadataUpdate(captured_at=UPDATE.captured_at))
    assert Image.open(io.BytesIO(written)).getexif().get_ifd(ExifTags.IFD.Exif)[0x9000] == b"0231"


def test_capture_time_defaults_to_its_own_offset() -> None:
    moment = datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    written = apply_metadata(pillow_jpeg(), MetadataUpdate(captured_at=moment))
    exif_ifd = Image.open(io.BytesIO(written)).getexif().get_ifd(ExifTags.IFD.Exif)
    assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "2024:12:31 23:59:59"
    assert exif_ifd[ExifTags.Base.OffsetTimeOriginal] == "-05:30"
    assert exif_ifd[ExifTags.Base.SubsecTimeOriginal] == "000"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GIF89a" + bytes(100), "not a JPEG"),
        (b"\xff\xd8\xff", "truncated"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "overruns"),
        (b"\xff\xd8\xff\xe0\x00\x04\x00\x00\xff\xd9", "end of image"),
        (b"\xff\xd8\x00\x00\xff\xda", "expected a marker"),
    ],
)
def test_malformed_jpeg_raises_metadata_error(data: bytes, reason: str) -> None:
    with pytest.raises(MetadataError, match=reason):
        apply_metadata(data, UPDATE)


@pytest.mark.parametrize(
    ("tiff", "reason"),
    [
        (b"XX*\x00\x08\x00\x00\x00", "byte-order"),
        (b"II*\x00\xff\x00\x00\x00", "IFD0 offset"),
        (b"II*\x00\x08\x00\x00\x00\x20\x00", "overruns"),
        (
            b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHLL", 0x010F, 2, 100, 999) + bytes(4),
            "outside",
        ),
        (
            b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHLL", 0x010F, 99, 1, 0) + bytes(4),
            "unknown type",
        ),
        (b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHLL", 0x8769, 4, 1, 8) + bytes(4), "loop"),
        (b"II*\x00", "truncated"),
    ],
)
def test_corrupt_exif_raises_metadata_error(tiff: bytes, reason: str) -> None:
    jpeg = insert_app1(pillow_jpeg(), b"Exif\x00\x00" + tiff)
    with pytest.raises(MetadataError, match=reason):
        apply_metadata(jpeg, UPDATE)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 1999), st.integers(1, 255)), max_size=6)
)
def test_damaged_headers_raise_only_metadata_error(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(FUZZ_BASE[:cut] if cut < 2000 else FUZZ_BASE)
    for position, mask in flips:
        if position < len(data):
            data[position] ^= mask
    with contextlib.suppress(MetadataError):
        apply_metadata(bytes(data), UPDATE)


FUZZ_BASE = apply_metadata(pillow_jpeg(pillow_exif(">")), UPDATE)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"captured_at": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"gps_datetime": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"utc_offset_minutes": 60}, "together with captured_at"),
        ({"gps_latitude": 91.0}, "out of range"),
        ({"gps_longitude": float("nan")}, "out of range"),
        ({"gps_img_direction": -1.0}, "0 to 360"),
        ({"gps_h_positioning_error": -0.5}, "metres, 0 or more"),
        ({"gps_h_positioning_error": float("inf")}, "metres, 0 or more"),
        ({"make": "a\x00b"}, "NUL"),
        ({"panopipe": {"bad key": "x"}}, "XML name"),
        ({"remove": frozenset({"make"})}, "cannot remove 'make'"),
        ({"gps_altitude": 5.0, "remove": frozenset({"gps_altitude"})}, "both set and removed"),
        ({"gpano": GPano(64, 32, pose_roll_degrees=1.0), "remove": frozenset({"pose_roll"})}, "both set"),
    ],
)
def test_invalid_updates_are_refused(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(MetadataError, match=reason):
        MetadataUpdate(**fields)  # type: ignore[arg-type]


def test_apply_metadata_file_in_place_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(pillow_jpeg())
    path.chmod(0o640)
    apply_metadata_file(path, update=UPDATE)
    assert Image.open(path).getexif()[ExifTags.Base.Make] == "PanoCam"
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_apply_metadata_file_to_another_path_leaves_the_source(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.jpg", tmp_path / "out" / "dst.jpg"
    dst.parent.mkdir()
    src.write_bytes(original := pillow_jpeg())
    apply_metadata_file(src, dst, update=UPDATE)
    assert src.read_bytes() == original
    assert dst.read_bytes() == apply_metadata(original, UPDATE)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_crash_before_the_rename_leaves_the_original_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(original := pillow_jpeg())

    def crash(*args: object) -> None:
        raise failure

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError if isinstance(failure, OSError) else KeyboardInterrupt):
        apply_metadata_file(path, update=UPDATE)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_unwritable_destination_raises_storage_error(tmp_path: Path) -> None:
    # A destination "folder" that is a regular file cannot be written even by root (ENOTDIR).
    src, blocker = tmp_path / "a.jpg", tmp_path / "not-a-folder"
    src.write_bytes(pillow_jpeg())
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write"):
        apply_metadata_file(src, blocker / "a.jpg", update=UPDATE)
    assert sorted(os.listdir(tmp_path)) == ["a.jpg", "not-a-folder"]


def test_missing_source_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        apply_metadata_file(tmp_path / "missing.jpg", update=UPDATE)


# ExifTool as the oracle
INPUTS = ["no-exif", "pillow-II", "pillow-MM", *CAMERA_FILES]
# Tags the update sets, and tags that follow from them or from the new layout, left out of "kept" checks.
CHANGED_GROUPS = ("System:", "File:", "Composite:", "ExifTool:", "XMP-panopipe:")
_GPS_SET = (
    "LatitudeRef Latitude LongitudeRef Longitude AltitudeRef Altitude TimeStamp DateStamp ImgDirectionRef"
)
CHANGED_TAGS = {
    *(f"IFD0:{name}" for name in ("Make", "Model", "Artist", "Copyright", "ImageDescription")),
    *(f"ExifIFD:{name}" for name in ("DateTimeOriginal", "SubSecTimeOriginal", "OffsetTimeOriginal")),
    *(f"ExifIFD:{name}" for name in ("CreateDate", "SubSecTimeDigitized", "OffsetTimeDigitized")),  # the same
    *(f"GPS:GPS{name}" for name in (*_GPS_SET.split(), "ImgDirectionRef", "ImgDirection")),
    *(f"XMP-GPano:{name}" for name in UPDATE.gpano.properties()),  # type: ignore[union-attr]
    "ExifIFD:ExifVersion",  # raised to 0231 for OffsetTimeOriginal
    *("XMP-GPano:FirstPhotoDate", "XMP-GPano:LastPhotoDate"),  # copies of the capture time: removed
    *("XMP-photoshop:DateCreated", "XMP-xmp:CreateDate"),
    "IFD1:ThumbnailOffset",
    "MPImage2:MPImageStart",  # an absolute file offset: the second image moved with the longer header
}


def exiftool(*args: str | Path) -> str:
    return subprocess.run(["exiftool", *map(str, args)], check=True, capture_output=True, text=True).stdout


def tags(path: Path) -> dict[str, object]:
    return json.loads(exiftool("-json", "-n", "-G1", "-a", path))[0]


def warnings(path: Path) -> set[str]:
    lines = exiftool(
        "-validate", "-warning", "-a", "-s", path
    ).splitlines()  # JSON would merge duplicate keys
    return {
        value.strip()
        for name, _, value in (line.partition(":") for line in lines)
        if name.strip() == "Warning"
    }


def binary(path: Path, tag: str) -> str:
    output = subprocess.run(["exiftool", "-b", f"-{tag}", str(path)], check=True, capture_output=True).stdout
    return hashlib.sha256(output).hexdigest()


@pytest.fixture(params=INPUTS)
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """(the input file, a copy with UPDATE written into it)."""
    original, copy = tmp_path / "in.jpg", tmp_path / "out.jpg"
    original.write_bytes(samples()[request.param])
    apply_metadata_file(original, copy, update=UPDATE)
    return original, copy


@pytest.mark.exiftool
def test_exiftool_reads_back_what_was_written(written: tuple[Path, Path]) -> None:
    found = tags(written[1])
    assert found["Composite:GPSLatitude"] == pytest.approx(UPDATE.gps_latitude, abs=1e-7)
    assert found["Composite:GPSLongitude"] == pytest.approx(UPDATE.gps_longitude, abs=1e-7)
    assert found["Composite:GPSAltitude"] == pytest.approx(UPDATE.gps_altitude, abs=5e-4)
    assert found["GPS:GPSImgDirectionRef"] == "T"
    assert found["GPS:GPSImgDirection"] == pytest.approx(UPDATE.gps_img_direction, abs=1e-4)
    assert found["GPS:GPSHPositioningError"] == pytest.approx(UPDATE.gps_h_positioning_error, abs=5e-4)
    assert found["Composite:GPSDateTime"] == "2024:05:06 07:08:09.5Z"
    assert found["ExifIFD:DateTimeOriginal"] == "2024:05:06 09:08:09"
    assert found["Composite:SubSecDateTimeOriginal"] == "2024:05:06 09:08:09.123+02:00"
    expected_ifd0 = {"Make": "PanoCam", "Model": "P-1", "Artist": "Ada", "Copyright": "© 2024 Ada"}
    assert {name: found[f"IFD0:{name}"] for name in expected_ifd0} == expected_ifd0
    assert found["IFD0:ImageDescription"] == "corridor 7"
    assert UPDATE.gpano is not None and UPDATE.panopipe is not None
    for name, text in UPDATE.gpano.properties().items():
        assert str(found[f"XMP-GPano:{name}"]) == text.removesuffix(".0")
    for name, value in UPDATE.panopipe.items():
        assert str(found[f"XMP-panopipe:{name.capitalize()}"]) == str(value)


@pytest.mark.exiftool
def test_exiftool_validate_reports_no_new_warnings(written: tuple[Path, Path]) -> None:
    assert warnings(written[1]) <= warnings(written[0])


@pytest.mark.exiftool
def test_tags_that_were_not_set_are_kept(written: tuple[Path, Path]) -> None:
    before, after = tags(written[0]), tags(written[1])
    kept = {
        key: value
        for key, value in before.items()
        if key not in CHANGED_TAGS and not key.startswith(CHANGED_GROUPS) and key != "SourceFile"
    }
    assert {key: after.get(key) for key in kept} == kept


@pytest.mark.exiftool
@pytest.mark.parametrize(
    ("name", "embedded"),
    [
        ("DSC00001.JPG", "ThumbnailImage"),
        ("DSC00001.JPG", "PreviewImage"),
        ("GSAG2002.JPG", "ThumbnailImage"),
    ],
)
def test_thumbnail_and_preview_images_are_unchanged(tmp_path: Path, name: str, embedded: str) -> None:
    copy = tmp_path / name
    apply_metadata_file(DATA / name, copy, update=UPDATE)
    assert binary(copy, embedded) == binary(DATA / name, embedded)


@pytest.mark.exiftool
@pytest.mark.parametrize("name", CAMERA_FILES)
def test_maker_note_reads_the_same_after_repeated_writes(tmp_path: Path, name: str) -> None:
    copy = tmp_path / name
    apply_metadata_file(DATA / name, copy, update=UPDATE)
    apply_metadata_file(copy, update=MetadataUpdate(gps_latitude=10.0, artist="Bob"))

    def maker_notes(path: Path) -> dict[str, object]:
        found = json.loads(exiftool("-json", "-n", "-G1", "-a", "-u", "-MakerNotes:all", path))[0]
        return {key: value for key, value in found.items() if key != "SourceFile"}

    assert maker_notes(copy) == maker_notes(DATA / name)
    assert binary(copy, "MakerNote") == binary(DATA / name, "MakerNote")
    assert tags(copy)["IFD0:Artist"] == "Bob"


# A RICOH THETA V 360° photo: GPS position and altitude, GPano PosePitchDegrees and PoseRollDegrees.
THETA = DATA.parent / "exif" / "trek-view-360" / "R0014760.JPG"
REMOVED_TAGS = {
    *(f"GPS:GPS{name}" for name in _GPS_SET.split()[:6]),
    *("GPS:GPSImgDirectionRef", "GPS:GPSImgDirection", "GPS:GPSHPositioningError"),
    *(f"XMP-GPano:Pose{name}Degrees" for name in ("Heading", "Pitch", "Roll")),
}


@pytest.mark.exiftool
@pytest.mark.parametrize("source", [*(DATA / name for name in CAMERA_FILES), THETA], ids=lambda p: p.name)
def test_removed_values_leave_the_file_with_their_ref_tags_and_everything_else_stays(
    tmp_path: Path, source: Path
) -> None:
    """What a camera wrote of values the catalog says an image does not have (a cleared position, heading,
    altitude, pitch or roll) goes; every other tag, the maker note and the image data stay as they were."""
    copy = tmp_path / source.name
    apply_metadata_file(source, copy, update=MetadataUpdate(remove=REMOVABLE))
    before, after = tags(source), tags(copy)

    assert before.keys() & REMOVED_TAGS  # each camera wrote some of them
    assert not after.keys() & REMOVED_TAGS
    moved = ("SourceFile", "System:", "File:", "Composite:", "IFD1:ThumbnailOffset", "MPImage2:MPImageStart")
    kept = {
        key: value for key, value in before.items() if key not in REMOVED_TAGS and not key.startswith(moved)
    }
    assert {key: after.get(key) for key in kept} == kept
    assert split(copy.read_bytes())[1:] == split(source.read_bytes())[1:]  # other segments, image data
    assert binary(copy, "MakerNote") == binary(source, "MakerNote")
    assert warnings(copy) <= warnings(source)


def test_removing_what_a_file_does_not_have_leaves_it_byte_for_byte() -> None:
    for original in (pillow_jpeg(), pillow_jpeg(pillow_exif("<"))):
        assert apply_metadata(original, MetadataUpdate(remove=REMOVABLE)) == original


@pytest.mark.exiftool
@pytest.mark.parametrize("name", CAMERA_FILES)
def test_new_pixels_keep_every_tag_of_the_source_but_its_multi_picture_index(
    tmp_path: Path, name: str
) -> None:
    source = (DATA / name).read_bytes()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (10, 200, 30)).save(buffer, "JPEG")
    combined = tmp_path / name
    combined.write_bytes(with_segments_of(source, buffer.getvalue()))

    def kept(path: Path) -> dict[str, object]:
        # left out: the file, the encoding's own (JFIF), and what moves with the header (an offset)
        left_out = ("SourceFile", "System:", "File:", "Composite:", "JFIF:", "MP", "IFD1:ThumbnailOffset")
        return {k: v for k, v in tags(path).items() if not k.startswith(left_out)}

    assert kept(combined) == kept(DATA / name)
    assert not any(key.startswith(("MPF", "MPImage")) for key in tags(combined))  # offsets into the source
    assert Image.open(combined).getpixel((5, 5)) == Image.open(buffer).getpixel((5, 5))
    assert warnings(combined) <= warnings(DATA / name)


ADOBE_RGB = {  # Adobe RGB (1998)'s colorants adapted to D50, as its ICC profile states them
    b"rXYZ": (0.6097, 0.3111, 0.0195),
    b"gXYZ": (0.2053, 0.6257, 0.0609),
    b"bXYZ": (0.1492, 0.0632, 0.7446),
}


def icc_profile(colorants: dict[bytes, tuple[float, float, float]] | None = None, *, past: int = 0) -> bytes:
    """lcms's sRGB profile (Pillow's), with other red, green and blue ``colorants`` if given; with ``past``,
    its colorants moved that many bytes on, so that a JPEG carries them in a later chunk of the profile."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", profile, 128)
    profile += bytes(past)
    for entry in range(132, 132 + 12 * count, 12):
        sig, offset, size = struct.unpack_from(">4sII", profile, entry)
        if sig in ADOBE_RGB:
            data = bytearray(profile[offset : offset + size])
            if colorants:
                struct.pack_into(">3i", data, 8, *(round(v * 65536) for v in colorants[sig]))
            struct.pack_into(">4sII", profile, entry, sig, len(profile), size)
            profile += data
    struct.pack_into(">I", profile, 0, len(profile))
    return bytes(profile)


@pytest.mark.exiftool
@pytest.mark.parametrize(
    ("profile", "color_space"),
    [
        (None, 1),  # read as sRGB
        (icc_profile(), 1),
        (icc_profile(past=70_000), 1),  # in two chunks, the colorants in the second
        (icc_profile(ADOBE_RGB), 0xFFFF),  # its colours are the profile's: "uncalibrated"
    ],
    ids=["no profile", "sRGB", "sRGB in chunks", "Adobe RGB"],
)
def test_a_new_exif_block_says_srgb_unless_the_image_has_another_profile(
    tmp_path: Path, profile: bytes | None, color_space: int
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (120, 60, 200)).save(buffer, "JPEG", icc_profile=profile)
    path = tmp_path / "written.jpg"
    path.write_bytes(apply_metadata(buffer.getvalue(), UPDATE))
    found = tags(path)
    assert found["ExifIFD:ColorSpace"] == color_space
    assert ("ICC_Profile:ProfileDescription" in found) == (profile is not None)  # the profile is kept
