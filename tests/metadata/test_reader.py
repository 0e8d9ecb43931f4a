"""The header-only JPEG metadata reader against ExifTool: stored answers for real files, live runs on made ones."""

from __future__ import annotations

import io
import json
import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from panopipe.errors import MetadataError
from panopipe.metadata import ImageMetadata, parse_jpeg_header, read_jpeg, read_metadata

DATA = Path(__file__).parents[1] / "data" / "exif"
REFERENCE = json.loads((DATA / "reference.json").read_text())["files"]

# Field -> the ExifTool tags (``-G1 -n``) that give it, in order of preference. A field is expected to be
# None when none of them is reported. GPS:GPSAltitude comes after the Composite: a missing GPSAltitudeRef
# means "above sea level" in EXIF, while ExifTool's Composite requires the Ref.
EXIFTOOL_FIELDS: dict[str, tuple[str, ...]] = {
    "datetime_original": ("ExifIFD:DateTimeOriginal", "IFD0:DateTimeOriginal", "XMP-exif:DateTimeOriginal"),
    "subsec_time_original": ("ExifIFD:SubSecTimeOriginal",),
    "offset_time_original": ("ExifIFD:OffsetTimeOriginal",),
    "gps_latitude": ("Composite:GPSLatitude", "XMP-exif:GPSLatitude"),
    "gps_longitude": ("Composite:GPSLongitude", "XMP-exif:GPSLongitude"),
    "gps_altitude": ("Composite:GPSAltitude", "GPS:GPSAltitude", "XMP-exif:GPSAltitude"),
    "gps_img_direction": ("GPS:GPSImgDirection", "XMP-exif:GPSImgDirection"),
    "gps_h_positioning_error": ("GPS:GPSHPositioningError", "XMP-exif:GPSHPositioningError"),
    "make": ("IFD0:Make", "XMP-tiff:Make"),
    "model": ("IFD0:Model", "XMP-tiff:Model"),
    "orientation": ("IFD0:Orientation",),
    "width": ("File:ImageWidth",),
    "height": ("File:ImageHeight",),
    "projection_type": ("XMP-GPano:ProjectionType",),
    "pose_heading": ("XMP-GPano:PoseHeadingDegrees",),
    "pose_pitch": ("XMP-GPano:PosePitchDegrees",),
    "pose_roll": ("XMP-GPano:PoseRollDegrees",),
    "full_pano_width": ("XMP-GPano:FullPanoWidthPixels",),
    "full_pano_height": ("XMP-GPano:FullPanoHeightPixels",),
    "cropped_width": ("XMP-GPano:CroppedAreaImageWidthPixels",),
    "cropped_height": ("XMP-GPano:CroppedAreaImageHeightPixels",),
    "cropped_left": ("XMP-GPano:CroppedAreaLeftPixels",),
    "cropped_top": ("XMP-GPano:CroppedAreaTopPixels",),
}
# Tags of reference.json that the reader does not report, and why.
NOT_READ = {
    "GPS:GPSLatitude": "unsigned magnitude; the signed Composite is compared",
    "GPS:GPSLongitude": "unsigned magnitude; the signed Composite is compared",
    "IFD0:ImageWidth": "a TIFF tag; the frame (SOF) size is compared",
    "IFD0:ImageHeight": "a TIFF tag; the frame (SOF) size is compared",
    "IFD1:Make": "thumbnail IFD",
    "IFD1:Model": "thumbnail IFD",
    "IFD1:Orientation": "thumbnail IFD",
    "GoPro:Model": "maker notes are skipped (IFD0:Model is compared)",
    "Reconyx:DateTimeOriginal": "maker notes are skipped",
    "ExifTool:Warning": "checked separately",
    "GPS:GPSImgDirectionRef": "a magnetic direction (M) is no heading from true north: expected None",
    "XMP-exif:GPSImgDirectionRef": "as GPS:GPSImgDirectionRef",
}


def expected_fields(tags: dict[str, Any]) -> dict[str, Any]:
    """What the reader should return for a file, from ExifTool's ``-json -n -G1`` tags."""
    expected = {}
    for field, names in EXIFTOOL_FIELDS.items():
        value = next((tags[name] for name in names if name in tags), None)
        if field in ("subsec_time_original", "datetime_original", "make", "model") and value is not None:
            value = str(value)  # ExifTool prints a numeric-looking SubSecTimeOriginal as a number
        expected[field] = value
    ref = tags.get(
        "GPS:GPSImgDirectionRef" if "GPS:GPSImgDirection" in tags else "XMP-exif:GPSImgDirectionRef"
    )
    if ref == "M":
        expected["gps_img_direction"] = None
    return expected


def assert_agrees(metadata: ImageMetadata, tags: dict[str, Any]) -> None:
    for field, value in expected_fields(tags).items():
        actual = getattr(metadata, field)
        if isinstance(value, float):
            assert actual == pytest.approx(value, abs=1e-6), field
        else:
            assert actual == value, field


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_agrees_with_exiftool_reference(name: str) -> None:
    tags = REFERENCE[name]
    metadata = read_metadata(DATA / name)
    assert_agrees(metadata, tags)
    warning = tags.get("ExifTool:Warning", "")
    if warning and not warning.startswith("[minor]"):
        assert metadata.warnings, f"ExifTool warns {warning!r}"


def test_every_reference_tag_is_compared_or_explained() -> None:
    compared = {name for names in EXIFTOOL_FIELDS.values() for name in names}
    for name, tags in REFERENCE.items():
        unexplained = {
            tag
            for tag in tags
            if tag not in compared and tag not in NOT_READ and not tag.startswith("XMP-GPano:")
        }
        assert not unexplained, name


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_header_bytes_end_at_the_first_scan(name: str) -> None:
    data = (DATA / name).read_bytes()
    metadata = parse_jpeg_header(data)
    assert data[metadata.header_bytes - 2 : metadata.header_bytes] == b"\xff\xda"
    assert parse_jpeg_header(data[: metadata.header_bytes]) == metadata


class RecordingReader:
    """``read(start, length)`` over bytes, recording each call and refusing reads past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, length: int) -> bytes:
        assert 0 <= start < len(self.data) and length > 0
        self.calls.append((start, length))
        return self.data[start : start + length]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_read_jpeg_reads_one_chunk_for_the_samples(name: str) -> None:
    data = (DATA / name).read_bytes()
    read = RecordingReader(data)
    metadata, read_bytes = read_jpeg(read)
    assert read.calls == [(0, 65536)]
    assert read_bytes == data[:65536]
    assert metadata == parse_jpeg_header(data)


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """A JPEG with extra marker segments inserted right after SOI."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def make_jpeg(
    exif: Image.Exif | None = None, xmp: bytes | None = None, size: tuple[int, int] = (48, 24)
) -> bytes:
    """A JPEG of random pixels (so that the scan data is not tiny) with the given EXIF and XMP."""
    pixels = random.Random(size[0] * size[1]).randbytes(size[0] * size[1] * 3)
    image = Image.frombytes("RGB", size, pixels)
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": 85}
    if exif is not None:
        options["exif"] = exif
    if xmp is not None:
        options["xmp"] = xmp
    image.save(out, "JPEG", **options)
    return out.getvalue()


def big_header_jpeg() -> bytes:
    """A JPEG whose header is about 85 KB: an EXIF APP1 padded to 60 KB (like a thumbnail) and a 25 KB XMP."""
    exif = Image.Exif()
    exif[0x010F] = "BigHeader"
    tiff = exif.tobytes()[6:]
    xmp = gpano_xmp(attributes=True).replace(b"</x:xmpmeta>", b" " * 25_000 + b"</x:xmpmeta>")
    return with_segments(
        make_jpeg(size=(300, 200)),
        app1(b"Exif\x00\x00" + tiff + bytes(60_000)),
        app1(b"http://ns.adobe.com/xap/1.0/\x00" + xmp),
    )


def test_read_jpeg_reads_the_remainder_of_a_large_header_in_one_more_call() -> None:
    data = big_header_jpeg()
    read = RecordingReader(data)
    metadata, read_bytes = read_jpeg(read)
    assert metadata.make == "BigHeader"
    assert metadata.projection_type == "equirectangular"
    assert read_bytes == data[: len(read_bytes)]
    assert metadata == parse_jpeg_header(data)
    assert len(read.calls) == 2
    assert read.calls[0] == (0, 65536)
    start, length = read.calls[1]
    assert start == 65536
    # the header, plus a little look-ahead for the short segments that follow the XMP, and no more
    assert metadata.header_bytes <= start + length <= metadata.header_bytes + 4096 < len(data)


def test_read_jpeg_never_reads_past_the_given_size() -> None:
    data = big_header_jpeg()
    end = parse_jpeg_header(data).header_bytes
    read = RecordingReader(data[: end + 10])
    metadata, read_bytes = read_jpeg(read, first_chunk=1024, size=end + 10)
    assert metadata.header_bytes == end and data.startswith(read_bytes)
    assert all(start + length <= end + 10 for start, length in read.calls)


def test_read_jpeg_reports_a_file_that_ends_inside_the_header() -> None:
    data = big_header_jpeg()
    with pytest.raises(MetadataError, match="truncated"):
        read_jpeg(RecordingReader(data[:70_000]))


def test_read_metadata_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="cannot read"):
        read_metadata(tmp_path / "missing.jpg")


def rational(value: float) -> IFDRational:
    return IFDRational(round(value * 10_000), 10_000)


def dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    whole = int(degrees)
    minutes = int((degrees - whole) * 60)
    seconds = ((degrees - whole) * 60 - minutes) * 60
    return IFDRational(whole, 1), IFDRational(minutes, 1), rational(seconds)


def build_exif(
    *,
    endian: str = "<",
    ifd0: dict[int, Any] | None = None,
    exif_ifd: dict[int, Any] | None = None,
    gps: dict[int, Any] | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif.endian = endian
    exif.update(ifd0 or {})
    if exif_ifd:
        exif.get_ifd(0x8769).update(exif_ifd)
    if gps:
        exif.get_ifd(0x8825).update(gps)
    return exif


def gpano_xmp(*, attributes: bool, heading: float = 176.5, extra: str = "", prefix: str = "GPano") -> bytes:
    """An XMP packet with GPano properties as attributes or as elements; ``extra`` attributes are added."""
    properties = {
        "ProjectionType": "equirectangular",
        "PoseHeadingDegrees": heading,
        "PosePitchDegrees": -1.25,
        "PoseRollDegrees": 0.5,
        "FullPanoWidthPixels": 4096,
        "FullPanoHeightPixels": 2048,
        "CroppedAreaImageWidthPixels": 4096,
        "CroppedAreaImageHeightPixels": 2000,
        "CroppedAreaLeftPixels": 0,
        "CroppedAreaTopPixels": 24,
    }
    if attributes:
        body = "".join(f'\n   {prefix}:{key}="{value}"' for key, value in properties.items()) + ">"
    else:
        body = ">" + "".join(
            f"\n   <{prefix}:{key}>{value}</{prefix}:{key}>" for key, value in properties.items()
        )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" xmlns:{prefix}="http://ns.google.com/photos/1.0/panorama/"\n'
        '   xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:aux="http://ns.adobe.com/exif/1.0/aux/"'
        f"{extra}{body}\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def random_sample(rng: random.Random) -> bytes:
    """A JPEG with random but valid EXIF and XMP, covering hemispheres, byte orders, refs and XMP forms."""
    latitude, longitude = rng.uniform(-89, 89), rng.uniform(-179, 179)
    altitude = rng.uniform(-400, 4000)
    day = datetime(2015, 1, 1) + (datetime(2024, 12, 31) - datetime(2015, 1, 1)) * rng.random()
    ifd0 = {
        0x010F: rng.choice(["GoPro", "RICOH", "Insta360  ", "SAMSUNG"]),
        0x0110: f"Cam {rng.randrange(99)}",
    }
    ifd0[0x0112] = rng.randrange(1, 9)
    exif_ifd = {0x9003: day.strftime("%Y:%m:%d %H:%M:%S"), 0xA431: f"SN{rng.randrange(10**8)}"}
    if rng.random() < 0.5:
        exif_ifd[0x9291] = f"{rng.randrange(1000):03d}"
    if rng.random() < 0.5:
        exif_ifd[0x9011] = rng.choice(["+02:00", "-07:00", "+05:45", "+00:00", "-03:30"])
    xmp_gps = ""
    gps: dict[int, Any] = {}
    if rng.random() < 0.75:
        gps = {1: "N" if latitude >= 0 else "S", 2: dms(abs(latitude)), 3: "E" if longitude >= 0 else "W"}
        gps |= {4: dms(abs(longitude)), 5: int(altitude < 0), 6: rational(abs(altitude))}
        gps |= {17: rational(rng.uniform(0, 359)), 29: day.strftime("%Y:%m:%d")}
        if rng.random() < 0.5:
            gps[31] = rational(rng.choice([0.008, 0.5, 3.2, 25.0]))  # GPSHPositioningError: RTK to poor GNSS
        gps[7] = (IFDRational(day.hour, 1), IFDRational(day.minute, 1), rational(rng.uniform(0, 59)))
    else:
        minutes = abs(latitude) % 1 * 60
        xmp_gps = (
            f'\n   exif:GPSLatitude="{int(abs(latitude))},{minutes:.6f}{"N" if latitude >= 0 else "S"}"'
            f'\n   exif:GPSLongitude="{int(abs(longitude))},{abs(longitude) % 1 * 60:.6f}{"E" if longitude >= 0 else "W"}"'
            f'\n   exif:GPSAltitude="{round(abs(altitude) * 100)}/100" exif:GPSAltitudeRef="{int(altitude < 0)}"'
        )
        if rng.random() < 0.5:
            xmp_gps += f' exif:GPSHPositioningError="{rng.choice(["0.02", "15/10", "4"])}"'
    exif = build_exif(endian=rng.choice("<>"), ifd0=ifd0, exif_ifd=exif_ifd, gps=gps)
    xmp = gpano_xmp(attributes=rng.random() < 0.5, heading=round(rng.uniform(0, 359), 2), extra=xmp_gps)
    return make_jpeg(exif, xmp, size=(rng.randrange(16, 80), rng.randrange(16, 80)))


def run_exiftool(paths: list[Path]) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        ["exiftool", "-json", "-n", "-G1", *map(str, paths)], check=True, capture_output=True, text=True
    )
    return {Path(entry["SourceFile"]).name: entry for entry in json.loads(result.stdout)}


def exiftool_datetime(text: str) -> datetime:
    text = text.replace("Z", "+00:00")
    for layout in ("%Y:%m:%d %H:%M:%S.%f%z", "%Y:%m:%d %H:%M:%S%z"):
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    raise AssertionError(f"unexpected ExifTool date {text!r}")


@pytest.mark.exiftool
def test_agrees_with_exiftool_on_generated_files(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    paths = []
    for index in range(40):
        path = tmp_path / f"sample_{index:02d}.jpg"
        path.write_bytes(random_sample(rng))
        paths.append(path)
    answers = run_exiftool(paths)
    for path in paths:
        tags = answers[path.name]
        metadata = read_metadata(path)
        assert metadata.warnings == (), path.name
        assert_agrees(metadata, tags)
        assert metadata.body_serial_number == str(tags["ExifIFD:SerialNumber"])
        if "Composite:GPSDateTime" in tags:
            assert metadata.gps_datetime == exiftool_datetime(tags["Composite:GPSDateTime"]), path.name
        else:
            assert metadata.gps_datetime is None
        if "ExifIFD:OffsetTimeOriginal" in tags:
            assert metadata.captured_at == exiftool_datetime(tags["Composite:SubSecDateTimeOriginal"])
        assert metadata.gps_latitude is not None and metadata.projection_type == "equirectangular"


def test_big_endian_and_little_endian_give_the_same_values() -> None:
    values = {
        "ifd0": {0x010F: "Maker", 0x0110: "Model X", 0x0112: 3},
        "exif_ifd": {0x9003: "2021:03:04 10:07:00", 0x9291: "25", 0x9011: "-03:30"},
        "gps": {1: "S", 2: dms(33.5), 3: "W", 4: dms(70.25), 5: 1, 6: rational(12.5)},
    }
    little = parse_jpeg_header(make_jpeg(build_exif(endian="<", **values)))
    big = parse_jpeg_header(make_jpeg(build_exif(endian=">", **values)))
    assert little == big
    assert (little.gps_latitude, little.gps_longitude, little.gps_altitude) == pytest.approx(
        (-33.5, -70.25, -12.5)
    )
    assert little.captured_at == datetime(2021, 3, 4, 13, 37, 0, 250000, tzinfo=UTC)
    assert little.utc_offset_minutes == -210


def gps_time(moment: datetime) -> dict[int, Any]:
    return {
        7: (IFDRational(moment.hour, 1), IFDRational(moment.minute, 1), IFDRational(moment.second, 1)),
        29: moment.strftime("%Y:%m:%d"),
    }


@pytest.mark.parametrize(
    ("local", "gps", "offset", "captured"),
    [
        # 9 h 07 min ahead of GPS time: the offset is rounded to the nearest quarter hour.
        ("2021:03:04 10:07:00", datetime(2021, 3, 4, 1, 0, 0), 540, datetime(2021, 3, 4, 1, 7, 0)),
        # behind GPS time, across midnight
        ("2021:03:03 22:00:10", datetime(2021, 3, 4, 3, 0, 0), -300, datetime(2021, 3, 4, 3, 0, 10)),
        # more than 24 h apart: no offset is inferred, the local time is taken as UTC
        ("2021:03:04 10:07:00", datetime(2021, 3, 1, 1, 0, 0), None, datetime(2021, 3, 4, 10, 7, 0)),
        # no GPS time at all
        ("2021:03:04 10:07:00", None, None, datetime(2021, 3, 4, 10, 7, 0)),
    ],
)
def test_offset_is_inferred_from_gps_time(
    local: str, gps: datetime | None, offset: int | None, captured: datetime
) -> None:
    exif = build_exif(exif_ifd={0x9003: local}, gps=gps_time(gps) if gps else None)
    metadata = parse_jpeg_header(make_jpeg(exif))
    assert metadata.utc_offset_minutes == offset
    assert metadata.captured_at == captured.replace(tzinfo=UTC)
    assert metadata.warnings == ()


def test_offset_time_original_wins_over_gps_time() -> None:
    exif = build_exif(
        exif_ifd={0x9003: "2021:03:04 10:07:00", 0x9011: "+01:00"}, gps=gps_time(datetime(2021, 3, 4))
    )
    metadata = parse_jpeg_header(make_jpeg(exif))
    assert (metadata.captured_at, metadata.utc_offset_minutes) == (datetime(2021, 3, 4, 9, 7, tzinfo=UTC), 60)


def test_xmp_gps_and_date_fill_in_when_exif_has_none() -> None:
    extra = (
        ' exif:DateTimeOriginal="2019-07-16T10:26:11.5+03:00" exif:GPSLatitude="12,30.5N"'
        ' exif:GPSLongitude="3,15W" exif:GPSImgDirection="1763/10" aux:SerialNumber="AUX-1"'
    )
    metadata = parse_jpeg_header(make_jpeg(xmp=gpano_xmp(attributes=True, extra=extra)))
    assert metadata.datetime_original == "2019:07:16 10:26:11.5+03:00"
    assert metadata.captured_at == datetime(2019, 7, 16, 7, 26, 11, 500000, tzinfo=UTC)
    assert metadata.utc_offset_minutes == 180
    assert (metadata.gps_latitude, metadata.gps_longitude) == pytest.approx((12 + 30.5 / 60, -3.25))
    assert metadata.gps_img_direction == pytest.approx(176.3)
    assert metadata.body_serial_number == "AUX-1"


def test_a_negative_positioning_error_is_ignored_with_a_warning() -> None:
    extra = ' exif:GPSHPositioningError="-1.5"'  # EXIF's is an unsigned rational: only XMP can say this

    metadata = parse_jpeg_header(make_jpeg(xmp=gpano_xmp(attributes=True, extra=extra)))

    assert metadata.gps_h_positioning_error is None
    assert metadata.warnings == ("GPSHPositioningError -1.5 is negative, ignored",)


@pytest.mark.parametrize("attributes", [True, False])
def test_gpano_in_attribute_and_element_form_with_any_prefix(attributes: bool) -> None:
    metadata = parse_jpeg_header(make_jpeg(xmp=gpano_xmp(attributes=attributes, prefix="pano")))
    assert metadata.projection_type == "equirectangular"
    assert (metadata.pose_heading, metadata.pose_pitch, metadata.pose_roll) == (176.5, -1.25, 0.5)
    assert (metadata.full_pano_width, metadata.full_pano_height) == (4096, 2048)
    assert (metadata.cropped_width, metadata.cropped_height) == (4096, 2000)
    assert (metadata.cropped_left, metadata.cropped_top) == (0, 24)
