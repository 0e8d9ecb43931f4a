"""Read capture metadata (time, GPS, camera, panorama) from the header of a JPEG, without decoding it."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from panopipe.errors import MetadataError
from panopipe.metadata import tiff
from panopipe.metadata.jpeg import Segment, read_header, scan_jpeg, scan_segments
from panopipe.metadata.tiff import ExifTags, Value, parse_tiff
from panopipe.metadata.xmp import parse_xmp
from panopipe.utc_offsets import UTC_OFFSETS_IN_USE
from panopipe.utc_offsets import offset_text as utc_offset_text

_DATETIME = re.compile(
    r"\s*(\d{4})[:-](\d\d)[:-](\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(Z|[+-]\d\d:?\d\d)?\s*$"
)
_XMP_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d:\d\d)(:\d\d(?:\.\d+)?)?\s*(\S*)$")
_OFFSET = re.compile(r"\s*([+-])(\d\d):?(\d\d)\s*$")
_DIGITS = re.compile(r"\s*(\d+)")
# Numbers in a coordinate, and a south/west suffix, as ExifTool's GPS::ToDegrees finds them.
_NUMBER = re.compile(r"[+-]?(?=\d|\.\d)\d*(?:\.\d*)?(?:[Ee][+-]\d+)?")
_SOUTH_WEST = re.compile(r"[^A-Z](?:S(?:outh)?|W(?:est)?)\s*$", re.IGNORECASE)
_RATIONAL = re.compile(r"\s*(-?\d+)/(-?\d+)\s*$")
_OFFSET_INFERENCE_WINDOW = timedelta(hours=24)
# The first read of a local file: enough for a header without an EXIF thumbnail (a larger header costs one more
# read of just its remainder). Copying 64 KiB from the page cache, as a ranged GET asks, costs more CPU than
# the parsing of a small header.
_LOCAL_CHUNK = 16384
PROJECTION_TYPES = frozenset(["equirectangular"])
"""The GPano ProjectionType values kept: the one the GPano specification defines (Google's Photo Sphere XMP
metadata: "Google products currently support the value equirectangular"). Others are dropped with a warning."""
# The GPano properties read: ImageMetadata field, XMP key, property name, whether it is an integer.
_GPANO = [
    (field, f"GPano:{name}", name, integer)
    for field, name, integer in (
        ("pose_heading", "PoseHeadingDegrees", False),
        ("pose_pitch", "PosePitchDegrees", False),
        ("pose_roll", "PoseRollDegrees", False),
        ("full_pano_width", "FullPanoWidthPixels", True),
        ("full_pano_height", "FullPanoHeightPixels", True),
        ("cropped_width", "CroppedAreaImageWidthPixels", True),
        ("cropped_height", "CroppedAreaImageHeightPixels", True),
        ("cropped_left", "CroppedAreaLeftPixels", True),
        ("cropped_top", "CroppedAreaTopPixels", True),
    )
]


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """What a JPEG header says about a capture. Numbers follow ExifTool's ``-n`` output.

    ``captured_at`` is UTC: ``datetime_original`` (local time, with its sub-seconds) shifted by
    ``OffsetTimeOriginal``, or by an offset inferred from the GPS time (nearest 15 minutes, when within 24 h),
    and otherwise taken as UTC with ``utc_offset_minutes`` left None. ``gps_h_positioning_error`` is the
    horizontal accuracy of the position in metres (EXIF GPSHPositioningError). ``gps_img_direction`` is from
    true north: a direction from magnetic north (GPSImgDirectionRef M) is left out, with a warning.
    """

    datetime_original: str | None
    subsec_time_original: str | None
    offset_time_original: str | None
    captured_at: datetime | None
    utc_offset_minutes: int | None
    gps_latitude: float | None
    gps_longitude: float | None
    gps_altitude: float | None
    gps_img_direction: float | None
    gps_h_positioning_error: float | None
    gps_datetime: datetime | None
    make: str | None
    model: str | None
    body_serial_number: str | None
    orientation: int | None
    width: int | None
    height: int | None
    projection_type: str | None
    pose_heading: float | None
    pose_pitch: float | None
    pose_roll: float | None
    full_pano_width: int | None
    full_pano_height: int | None
    cropped_width: int | None
    cropped_height: int | None
    cropped_left: int | None
    cropped_top: int | None
    warnings: tuple[str, ...] = ()
    header_bytes: int = 0


def read_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read the metadata of a local JPEG, reading only its header (one 16 KiB read, or two for a larger one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            metadata, _ = read_jpeg(lambda start, length: os.pread(fd, length, start), _LOCAL_CHUNK)
        finally:
            os.close(fd)
    except OSError as error:
        raise MetadataError(f"cannot read {os.fspath(path)}: {error.strerror or error}") from error
    return metadata


def read_jpeg(
    read: Callable[[int, int], bytes], first_chunk: int = 65536, *, size: int | None = None
) -> tuple[ImageMetadata, bytes]:
    """The metadata of a JPEG read through ``read(start, length)`` (a file's ``pread``, an S3 ranged GET), and
    the bytes read: the header, and whatever the reads brought past it. The header is walked once, as it is
    read (:func:`~panopipe.metadata.jpeg.read_header` says how many reads it takes)."""
    data, segments, end = read_header(read, first_chunk, size=size)
    return _parse(data, segments, end), data


def parse_jpeg_header(data: bytes) -> ImageMetadata:
    """Parse the metadata from a JPEG's bytes (the whole file, or at least its header).

    Raises MetadataError when the data is not a readable JPEG; problems in the metadata itself are
    reported in ``warnings`` and the affected values are None.
    """
    segments, _, end = scan_segments(data)
    return _parse(data, segments, end)


def _parse(data: bytes, segments: list[Segment], end: int) -> ImageMetadata:
    header = scan_jpeg(data, segments, end)
    warnings = header.warnings
    tags = (
        parse_tiff(header.exif, header.exif_start, header.exif_end, warnings) if header.exif else ExifTags()
    )
    xmp = parse_xmp(header.xmp, warnings) if header.xmp else {}
    main, gps = tags.main, tags.gps

    datetime_original = _text(main, tiff.DATETIME_ORIGINAL)
    if datetime_original is None and "exif:DateTimeOriginal" in xmp:
        datetime_original = _exiftool_date(xmp["exif:DateTimeOriginal"])
    subsec = _text(main, tiff.SUBSEC_TIME_ORIGINAL)
    offset_text = _text(main, tiff.OFFSET_TIME_ORIGINAL)
    gps_datetime = _gps_datetime(gps, xmp, warnings)
    captured_at, utc_offset = _capture_time(datetime_original, subsec, offset_text, gps_datetime, warnings)

    latitude = _exif_coordinate(gps, tiff.GPS_LATITUDE, tiff.GPS_LATITUDE_REF, "S", warnings)
    longitude = _exif_coordinate(gps, tiff.GPS_LONGITUDE, tiff.GPS_LONGITUDE_REF, "W", warnings)
    if latitude is None and "exif:GPSLatitude" in xmp:
        latitude = _xmp_coordinate(xmp["exif:GPSLatitude"], "GPSLatitude", warnings)
    if longitude is None and "exif:GPSLongitude" in xmp:
        longitude = _xmp_coordinate(xmp["exif:GPSLongitude"], "GPSLongitude", warnings)
    latitude = _in_range(latitude, 90, "GPSLatitude", warnings)
    longitude = _in_range(longitude, 180, "GPSLongitude", warnings)
    direction = _direction(gps, xmp, warnings)

    accuracy = _number(gps, tiff.GPS_H_POSITIONING_ERROR)
    if accuracy is None and "exif:GPSHPositioningError" in xmp:
        accuracy = _xmp_number(xmp["exif:GPSHPositioningError"], "GPSHPositioningError", warnings)
    if accuracy is not None and accuracy < 0:
        warnings.append(f"GPSHPositioningError {accuracy:g} is negative, ignored")
        accuracy = None

    orientation = _number(main, tiff.ORIENTATION)
    if orientation is not None and not 1 <= orientation <= 8:
        warnings.append(f"Orientation {orientation:g} is not a valid value (1 to 8)")
    gpano: dict[str, Any] = {}
    for field, key, name, integer in _GPANO:
        text = xmp.get(key)
        gpano[field] = None if text is None else (_xmp_int if integer else _xmp_number)(text, name, warnings)
    return ImageMetadata(
        datetime_original=datetime_original,
        subsec_time_original=subsec,
        offset_time_original=offset_text,
        captured_at=captured_at,
        utc_offset_minutes=utc_offset,
        gps_latitude=latitude,
        gps_longitude=longitude,
        gps_altitude=_altitude(gps, xmp, warnings),
        gps_img_direction=direction,
        gps_h_positioning_error=accuracy,
        gps_datetime=gps_datetime,
        make=_text(main, tiff.MAKE) or xmp.get("tiff:Make") or None,
        model=_text(main, tiff.MODEL) or xmp.get("tiff:Model") or None,
        body_serial_number=_text(main, tiff.BODY_SERIAL_NUMBER)
        or xmp.get("exifEX:BodySerialNumber")
        or xmp.get("aux:SerialNumber")
        or None,
        orientation=None if orientation is None else int(orientation),
        width=header.width,
        height=header.height,
        projection_type=_projection_type(xmp.get("GPano:ProjectionType"), warnings),
        **gpano,
        warnings=tuple(warnings),
        header_bytes=header.end,
    )


def _projection_type(text: str | None, warnings: list[str]) -> str | None:
    if not text:
        return None
    if text not in PROJECTION_TYPES:
        warnings.append(f"XMP ProjectionType {text!r} is not a GPano projection type, ignored")
        return None
    return text


def _text(values: dict[int, Value], tag: int) -> str | None:
    value = values.get(tag)
    return value if isinstance(value, str) and value else None


def _number(values: dict[int, Value], tag: int) -> float | None:
    value = values.get(tag)
    if isinstance(value, tuple) and value and math.isfinite(value[0]):
        return value[0]
    return None


def _degrees(parts: tuple[float, ...] | list[float]) -> float:
    # ExifTool's GPS::ToDegrees: degrees, minutes and seconds, any of the last two missing.
    minutes = parts[1] if len(parts) > 1 else 0.0
    seconds = parts[2] if len(parts) > 2 else 0.0
    return parts[0] + (minutes + seconds / 60) / 60


def _exif_coordinate(
    gps: dict[int, Value], tag: int, ref_tag: int, negative: str, warnings: list[str]
) -> float | None:
    value = gps.get(tag)
    if not isinstance(value, tuple) or not value:
        return None
    name = "GPSLatitude" if tag == tiff.GPS_LATITUDE else "GPSLongitude"
    if not all(map(math.isfinite, value[:3])):
        warnings.append(f"{name} has a zero denominator, ignored")
        return None
    ref = _text(gps, ref_tag)
    if ref is None:
        warnings.append(f"{name} has no {name}Ref, ignored")
        return None
    degrees = _degrees(value[:3])
    return -degrees if ref[0].upper() == negative else degrees


def _xmp_coordinate(text: str, name: str, warnings: list[str]) -> float | None:
    parts = [float(number) for number in _NUMBER.findall(text)[:3]]
    if not parts:
        warnings.append(f"XMP {name} {text!r} is not a coordinate, ignored")
        return None
    degrees = _degrees(parts)
    return -degrees if _SOUTH_WEST.search(text) else degrees


def _in_range(value: float | None, limit: int, name: str, warnings: list[str]) -> float | None:
    if value is not None and not -limit <= value <= limit:
        warnings.append(f"{name} {value:g} is out of range, ignored")
        return None
    return value


def _altitude(gps: dict[int, Value], xmp: dict[str, str], warnings: list[str]) -> float | None:
    altitude = _number(gps, tiff.GPS_ALTITUDE)
    if altitude is not None:
        # Absent means above sea level (the EXIF default). Stored as text, not a BYTE, ExifTool takes it as Perl
        # does a boolean: any text but "" and "0" is below ("1", but "0 " too).
        ref = gps.get(tiff.GPS_ALTITUDE_REF)
        below = ref not in ("", "0") if isinstance(ref, str) else _number(gps, tiff.GPS_ALTITUDE_REF)
    elif "exif:GPSAltitude" in xmp:
        altitude = _xmp_number(xmp["exif:GPSAltitude"], "GPSAltitude", warnings)
        below = _xmp_number(xmp.get("exif:GPSAltitudeRef"), "GPSAltitudeRef", warnings)
    else:
        return None
    return -abs(altitude) if altitude is not None and below else altitude


def _direction(gps: dict[int, Value], xmp: dict[str, str], warnings: list[str]) -> float | None:
    """GPSImgDirection (EXIF, else XMP) in degrees from true north, or None. A direction from magnetic north
    (GPSImgDirectionRef M) is none: making it one takes the magnetic declination of the place and time."""
    direction, ref = _number(gps, tiff.GPS_IMG_DIRECTION), _text(gps, tiff.GPS_IMG_DIRECTION_REF)
    if direction is None and "exif:GPSImgDirection" in xmp:
        direction = _xmp_number(xmp["exif:GPSImgDirection"], "GPSImgDirection", warnings)
        ref = xmp.get("exif:GPSImgDirectionRef")
    if direction is None:
        return None
    if not 0 <= direction <= 360:
        warnings.append(f"GPSImgDirection {direction} is out of range, ignored")
        return None
    if ref is not None and ref.strip()[:1].upper() == "M":
        warnings.append(
            f"GPSImgDirection {direction:g} is from magnetic north (GPSImgDirectionRef M), not true north:"
            " not used as the heading"
        )
        return None
    return direction


def _xmp_number(text: str | None, name: str, warnings: list[str]) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        rational = _RATIONAL.match(text)
        value = int(rational[1]) / int(rational[2]) if rational and int(rational[2]) else math.nan
    if not math.isfinite(value):
        warnings.append(f"XMP {name} {text!r} is not a number, ignored")
        return None
    return value


def _xmp_int(text: str | None, name: str, warnings: list[str]) -> int | None:
    value = _xmp_number(text, name, warnings)
    if value is None:
        return None
    if not value.is_integer():
        warnings.append(f"XMP {name} {text!r} is not an integer, ignored")
        return None
    return int(value)


def _exiftool_date(text: str) -> str:
    """An XMP date in EXIF form, as ExifTool shows it ("2013-07-05T03:18:27Z" -> "2013:07:05 03:18:27Z")."""
    match = _XMP_DATE.match(text)
    if match is None:
        return text
    year, month, day, hours_minutes, seconds, zone = match.groups()
    return f"{year}:{month}:{day} {hours_minutes}{seconds or ''}{zone}"


def _parse_datetime(text: str) -> tuple[datetime, str | None] | None:
    """The wall-clock time (with any sub-seconds) labelled UTC, and its zone suffix ("Z", "+02:00"), or None."""
    match = _DATETIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    year_number = int(year)
    if (
        not 1 < year_number < 9999
    ):  # keeps every later shift by an offset or sub-seconds inside datetime's range
        return None
    try:
        moment = datetime(
            year_number, int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    if fraction:
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment, zone


def _offset_minutes(text: str) -> int | None:
    match = _OFFSET.match(text)
    if match is None or int(match[2]) > 23 or int(match[3]) > 59:
        return None
    minutes = int(match[2]) * 60 + int(match[3])
    return -minutes if match[1] == "-" else minutes


def _gps_datetime(gps: dict[int, Value], xmp: dict[str, str], warnings: list[str]) -> datetime | None:
    date, time = _text(gps, tiff.GPS_DATE_STAMP), gps.get(tiff.GPS_TIME_STAMP)
    if date is not None and isinstance(time, tuple) and len(time) == 3:
        if not all(map(math.isfinite, time)):
            warnings.append("GPSTimeStamp has a zero denominator, ignored")
            return None
        seconds = round((time[0] * 60 + time[1]) * 60 + time[2], 6)
        parsed = _parse_datetime(date.strip() + " 00:00:00")
        if parsed is None or not 0 <= seconds < 86400:
            warnings.append(f"GPSDateStamp/GPSTimeStamp {date!r} {time} is not a valid time, ignored")
            return None
        return parsed[0] + timedelta(seconds=seconds)
    text = xmp.get("exif:GPSTimeStamp")
    if text is None:
        return None
    parsed = _parse_datetime(text)
    if parsed is None:
        warnings.append(f"XMP GPSTimeStamp {text!r} is not a valid date/time, ignored")
        return None
    moment, zone = parsed
    offset = _offset_minutes(zone) if zone and zone != "Z" else 0
    return moment - timedelta(minutes=offset or 0)


def _capture_time(
    datetime_original: str | None,
    subsec: str | None,
    offset_text: str | None,
    gps_datetime: datetime | None,
    warnings: list[str],
) -> tuple[datetime | None, int | None]:
    """``captured_at`` (UTC) and the UTC offset of the local time, following the rule of ImageMetadata."""
    if datetime_original is None:
        return None, None
    parsed = _parse_datetime(datetime_original)
    if parsed is None:
        warnings.append(f"DateTimeOriginal {datetime_original!r} is not a valid date/time, ignored")
        return None, None
    local, zone = parsed
    if subsec and "." not in datetime_original and (digits := _DIGITS.match(subsec)):
        local += timedelta(microseconds=int(digits[1][:6].ljust(6, "0")))
    if zone == "Z":
        return local, None
    offset = _offset_minutes(zone) if zone else None
    if offset is None and offset_text is not None:
        offset = _offset_minutes(offset_text)
        if offset is None:
            warnings.append(f"OffsetTimeOriginal {offset_text!r} is not a valid offset, ignored")
    if offset is None and gps_datetime is not None:
        difference = local - gps_datetime
        if abs(difference) <= _OFFSET_INFERENCE_WINDOW:
            offset = round(difference / timedelta(minutes=15)) * 15
            if offset not in UTC_OFFSETS_IN_USE:
                warnings.append(
                    f"UTC offset {utc_offset_text(offset)} inferred from the GPS time is one no time zone uses"
                    " (the camera clock drifted?), not used"
                )
                offset = None
    if offset is None:
        return local, None
    return local - timedelta(minutes=offset), offset


__all__ = ["PROJECTION_TYPES", "ImageMetadata", "parse_jpeg_header", "read_jpeg", "read_metadata"]
