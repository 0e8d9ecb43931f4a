"""Malformed JPEG headers: each gives a MetadataError or a warning, never another exception."""

from __future__ import annotations

import contextlib
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panopipe.errors import MetadataError
from panopipe.metadata import ImageMetadata, parse_jpeg_header, read_jpeg

DATA = Path(__file__).parents[1] / "data" / "exif"
PLAIN_JPEG = (DATA / "pillow" / "hopper.jpg").read_bytes()  # JFIF, no EXIF
SAMPLES = [path.read_bytes() for path in sorted(DATA.rglob("*")) if path.suffix.lower() == ".jpg"]
HEADERS = [data[: parse_jpeg_header(data).header_bytes + 64] for data in SAMPLES]


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def with_exif(tiff: bytes) -> bytes:
    return PLAIN_JPEG[:2] + app1(b"Exif\x00\x00" + tiff) + PLAIN_JPEG[2:]


def ifd(entries: list[tuple[int, int, int, int]], next_offset: int = 0) -> bytes:
    """A little-endian IFD; each entry is (tag, type, count, value or offset)."""
    packed = b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return struct.pack("<H", len(entries)) + packed + struct.pack("<I", next_offset)


def tiff(*parts: bytes, ifd0_offset: int = 8) -> bytes:
    return b"II*\x00" + struct.pack("<I", ifd0_offset) + b"".join(parts)


MAKE_ABC = (0x010F, 2, 4, int.from_bytes(b"Abc\x00", "little"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "starts with 89 50 4E 47"),
        (b"\xff\xd8", "truncated"),
        (PLAIN_JPEG[:300], "truncated"),
        (b"\xff\xd8\xff\xd9", "end-of-image"),
        (b"\xff\xd8\xff\xda\x00\x08", "no SOF marker"),
        (b"\xff\xd8\xff\xe1\x00\x01", "length below 2"),
        (b"\xff\xd8\x00\x00\x00\x00", "no marker at byte 2"),
        (PLAIN_JPEG[:20] + bytes(5000), "no marker at byte 20 .* nor in the 4096 bytes after it"),
        (PLAIN_JPEG[:20] + bytes(50), "truncated"),
    ],
)
def test_unreadable_files_raise_metadata_error(data: bytes, reason: str) -> None:
    with pytest.raises(MetadataError, match=reason):
        parse_jpeg_header(data)


def test_zero_length_app1_is_a_warning() -> None:
    data = PLAIN_JPEG[:2] + b"\xff\xe1\x00\x02" + PLAIN_JPEG[2:]
    metadata = parse_jpeg_header(data)
    assert (metadata.width, metadata.height) == (128, 128)
    assert any("empty APP1" in warning for warning in metadata.warnings)


@pytest.mark.parametrize(
    ("tiff_bytes", "warning"),
    [
        # ExifIFD and GPS IFD pointers back to IFD0: each IFD is read once
        (tiff(ifd([MAKE_ABC, (0x8769, 4, 1, 8), (0x8825, 4, 1, 8)])), "loop"),
        (tiff(ifd([MAKE_ABC]), ifd0_offset=1_000_000), "outside the EXIF data"),
        (tiff(struct.pack("<H", 65535) + bytes(40)), "do not fit"),
        (tiff(ifd([MAKE_ABC, (0x0110, 2, 100, 99_999)])), "points outside"),
        (tiff(ifd([MAKE_ABC, (0x8769, 4, 1, 0xFFFFFFF0)])), "outside the EXIF data"),
        (tiff(ifd([MAKE_ABC, (0x0112, 99, 1, 1)])), "unknown format"),
        (tiff(ifd([MAKE_ABC, (0x8769, 2, 4, 8)])), "wrong format (string)"),
        (b"II*\x00", "malformed APP1"),
        (b"XX*\x00\x08\x00\x00\x00", "malformed APP1"),
    ],
)
def test_bad_ifds_give_warnings(tiff_bytes: bytes, warning: str) -> None:
    metadata = parse_jpeg_header(with_exif(tiff_bytes))
    assert any(warning in text for text in metadata.warnings), metadata.warnings
    assert metadata.width == 128
    if MAKE_ABC[3].to_bytes(4, "little") in tiff_bytes[8:] and "outside the EXIF data" not in warning:
        assert metadata.make == "Abc"


def test_bogus_gps_values_are_ignored_with_warnings() -> None:
    gps_at = 8 + 2 + 12 * 2 + 4
    values_at = gps_at + 2 + 12 * 4 + 4
    gps = ifd([(1, 2, 2, ord("N")), (2, 5, 3, values_at), (3, 2, 2, ord("E")), (4, 5, 3, values_at + 24)])
    latitude = struct.pack("<6I", 10, 0, 0, 1, 0, 1)  # 10/0 degrees
    longitude = struct.pack("<6I", 200, 1, 0, 1, 0, 1)  # 200 degrees
    data = with_exif(tiff(ifd([MAKE_ABC, (0x8825, 4, 1, gps_at)]), gps, latitude, longitude))
    metadata = parse_jpeg_header(data)
    assert (metadata.gps_latitude, metadata.gps_longitude) == (None, None)
    assert any("zero denominator" in text for text in metadata.warnings)
    assert any("GPSLongitude 200 is out of range" in text for text in metadata.warnings)


def gpano_packet(attributes: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>{doctype}<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        f' xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" {attributes}/></rdf:RDF></x:xmpmeta>'
    ).encode()


def with_xmp(packet: bytes) -> bytes:
    return PLAIN_JPEG[:2] + app1(b"http://ns.adobe.com/xap/1.0/\x00" + packet) + PLAIN_JPEG[2:]


@pytest.mark.parametrize("before", ["", "<!-- a comment -->"])
def test_xmp_with_entity_declarations_is_refused(before: str) -> None:
    lol = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)
    )
    packet = gpano_packet(
        'GPano:ProjectionType="&lol9;" GPano:PoseHeadingDegrees="12.5"',
        f"{before}<!DOCTYPE x:xmpmeta [{lol}]>",
    )
    started = time.perf_counter()
    metadata = parse_jpeg_header(with_xmp(packet))
    assert time.perf_counter() - started < 0.1
    assert (metadata.projection_type, metadata.pose_heading) == (None, None)
    assert metadata.warnings == ("XMP packet declares a DOCTYPE or entities, ignored",)
    assert metadata.width == 128


def test_xmp_character_references_are_decoded() -> None:
    metadata = parse_jpeg_header(with_xmp(gpano_packet('GPano:PoseHeadingDegrees="&#49;&#x32;.5"')))
    assert metadata.pose_heading == 12.5
    assert metadata.warnings == ()


@pytest.mark.parametrize("value", ["&lol9;", "cubemap", "Equirectangular", "cylindrical", "x" * 300])
def test_projection_type_outside_the_gpano_values_is_dropped(value: str) -> None:
    metadata = parse_jpeg_header(with_xmp(gpano_packet(f'GPano:ProjectionType="{value}"')))
    assert metadata.projection_type is None
    assert metadata.warnings == (f"XMP ProjectionType {value!r} is not a GPano projection type, ignored",)
    kept = parse_jpeg_header(with_xmp(gpano_packet('GPano:ProjectionType="equirectangular"')))
    assert (kept.projection_type, kept.warnings) == ("equirectangular", ())


def test_empty_xmp_attributes_are_empty_values() -> None:
    xmp = (
        b'<rdf:Description xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" GPano:ProjectionType=""'
        b" GPano:PosePitchDegrees='' GPano:PoseRollDegrees=\"2\"/>"
    )
    data = PLAIN_JPEG[:2] + app1(b"http://ns.adobe.com/xap/1.0/\x00" + xmp) + PLAIN_JPEG[2:]
    metadata = parse_jpeg_header(data)
    assert (metadata.projection_type, metadata.pose_pitch, metadata.pose_roll) == (None, None, 2.0)
    assert any("PosePitchDegrees '' is not a number" in text for text in metadata.warnings)


def parse_or_error(data: bytes) -> None:
    with contextlib.suppress(MetadataError):
        assert isinstance(parse_jpeg_header(data), ImageMetadata)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.sampled_from(HEADERS),
    span=st.sampled_from([600, 4000, 1_000_000]),  # mostly where the IFDs are, sometimes anywhere
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=12
    ),
    keep=st.floats(0.0, 1.0),
)
def test_mutated_samples_give_metadata_or_metadata_error(
    header: bytes, span: int, edits: list[tuple[float, int]], keep: float
) -> None:
    data = bytearray(header)
    for where, value in edits:
        data[int(where * min(span, len(data)))] = value
    parse_or_error(bytes(data))
    parse_or_error(bytes(data[: int(keep * len(data))]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_give_metadata_or_metadata_error(noise: bytes, with_soi: bool) -> None:
    parse_or_error(b"\xff\xd8" + noise if with_soi else noise)
    parse_or_error(
        PLAIN_JPEG[:2] + app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + noise[:65000]) + PLAIN_JPEG[2:]
    )
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + b' xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
    parse_or_error(PLAIN_JPEG[:2] + app1(xmp + noise) + PLAIN_JPEG[2:])


@settings(max_examples=200, deadline=None)
@given(header=st.sampled_from(HEADERS), keep=st.integers(0, 70_000), first_chunk=st.integers(1, 70_000))
def test_read_jpeg_stays_inside_the_file(header: bytes, keep: int, first_chunk: int) -> None:
    data = header[:keep]
    calls: list[tuple[int, int]] = []

    def read(start: int, length: int) -> bytes:
        calls.append((start, length))
        return data[start : start + length]

    try:
        metadata, read_bytes = read_jpeg(read, first_chunk, size=len(data))
    except MetadataError:
        pass
    else:
        assert data.startswith(read_bytes) and read_bytes[: metadata.header_bytes].endswith(b"\xff\xda")
    assert all(length > 0 and start + length <= len(data) for start, length in calls)
