"""The few TIFF/EXIF IFD entries panopipe needs, read from an EXIF APP1 segment."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import truediv

# TIFF field types, and the bytes of one value of each.
BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD = range(
    1, 14
)
TYPE_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, SBYTE: 1, UNDEFINED: 1, SSHORT: 2}
TYPE_SIZES |= {SLONG: 4, SRATIONAL: 8, FLOAT: 4, DOUBLE: 8, IFD: 4}

# IFD0 and ExifIFD tags. The reader searches both IFDs for all of them, since some cameras put tags in the
# wrong one.
IMAGE_DESCRIPTION = 0x010E
MAKE = 0x010F
MODEL = 0x0110
ORIENTATION = 0x0112
ARTIST = 0x013B
COPYRIGHT = 0x8298
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
EXIF_VERSION = 0x9000
DATETIME_ORIGINAL = 0x9003
DATETIME_DIGITIZED = 0x9004
OFFSET_TIME_ORIGINAL = 0x9011
OFFSET_TIME_DIGITIZED = 0x9012
SUBSEC_TIME_ORIGINAL = 0x9291
SUBSEC_TIME_DIGITIZED = 0x9292
INTEROP_IFD = 0xA005
BODY_SERIAL_NUMBER = 0xA431
# GPS IFD tags.
GPS_VERSION_ID = 0x00
GPS_LATITUDE_REF = 0x01
GPS_LATITUDE = 0x02
GPS_LONGITUDE_REF = 0x03
GPS_LONGITUDE = 0x04
GPS_ALTITUDE_REF = 0x05
GPS_ALTITUDE = 0x06
GPS_TIME_STAMP = 0x07
GPS_IMG_DIRECTION_REF = 0x10
GPS_IMG_DIRECTION = 0x11
GPS_DATE_STAMP = 0x1D
GPS_H_POSITIONING_ERROR = 0x1F

_MAIN_STRINGS = frozenset(
    [MAKE, MODEL, DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, SUBSEC_TIME_ORIGINAL, BODY_SERIAL_NUMBER]
)
_MAIN_TAGS = _MAIN_STRINGS | {ORIENTATION, EXIF_IFD, GPS_IFD}
_GPS_STRINGS = frozenset([GPS_LATITUDE_REF, GPS_LONGITUDE_REF, GPS_IMG_DIRECTION_REF, GPS_DATE_STAMP])
_GPS_TAGS = _GPS_STRINGS | {GPS_LATITUDE, GPS_LONGITUDE, GPS_ALTITUDE_REF, GPS_ALTITUDE, GPS_TIME_STAMP}
_GPS_TAGS |= {GPS_IMG_DIRECTION, GPS_H_POSITIONING_ERROR}
# Tags whose home is the ExifIFD: there they win over a copy in IFD0.
_EXIF_HOME = frozenset([DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, SUBSEC_TIME_ORIGINAL, BODY_SERIAL_NUMBER])
# Numeric GPS tags that some writers store as text (GPSAltitudeRef "1"): their text is kept as it is, up to its
# first NUL, for the reader to read as ExifTool does.
_NUMBERS_AS_TEXT = frozenset([GPS_ALTITUDE_REF])
_POINTERS = {EXIF_IFD: "0x8769 ExifOffset", GPS_IFD: "0x8825 GPSInfo"}
POINTER_TYPES = frozenset([BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG, IFD])
"""Like ExifTool, a sub-IFD pointer of any integer type is followed (BigTIFF's 8-byte types are no EXIF
types: ExifTool rejects them as a bad format)."""
_TEXT_TYPES = frozenset([BYTE, ASCII, UNDEFINED])
_RATIONALS = frozenset([RATIONAL, SRATIONAL])
_TYPE_NAMES = {1: "int8u", 2: "string", 3: "int16u", 4: "int32u", 5: "rational64u", 6: "int8s", 7: "undef"}
_TYPE_NAMES |= {8: "int16s", 9: "int32s", 10: "rational64s", 11: "float", 12: "double", 13: "ifd"}
# The struct code of one number of each type; a rational is two numbers.
_CODES = {BYTE: "B", SHORT: "H", LONG: "I", RATIONAL: "I", SBYTE: "b", UNDEFINED: "B", SSHORT: "h"}
_CODES |= {SLONG: "i", SRATIONAL: "i", FLOAT: "f", DOUBLE: "d", IFD: "I"}
_MAX_NUMBERS = 8  # none of the numeric tags read here has more values
_POINTER_READERS = {
    (order, typ): struct.Struct(order + _CODES[typ]).unpack_from for order in "<>" for typ in POINTER_TYPES
}

_BYTE_ORDERS = {b"II": "<", b"MM": ">"}
_UNPACK = {order: tuple(struct.Struct(order + f).unpack_from for f in ("H", "I")) for order in "<>"}
_ENTRIES = {order: struct.Struct(order + "HHII").iter_unpack for order in "<>"}
_NUMBERS: dict[str, dict[int, Callable[[bytes, int], tuple[int | float, ...]]]] = {"<": {}, ">": {}}
"""Byte order -> (type << 4 | count) -> the compiled unpacker of that many numbers, filled as they are met."""

Value = str | tuple[float, ...]


@dataclass(slots=True)
class ExifTags:
    """Decoded values by tag: ``main`` merges IFD0 and ExifIFD (IFD0 first), ``gps`` is the GPS IFD."""

    main: dict[int, Value] = field(default_factory=dict)
    gps: dict[int, Value] = field(default_factory=dict)


class _Reader:
    def __init__(self, buf: bytes, start: int, end: int, order: str, warnings: list[str]) -> None:
        self.buf = buf
        self.start = start
        self.end = end
        self.order = order
        self.u16, self.u32 = _UNPACK[order]
        self.entries = _ENTRIES[order]
        self.numbers = _NUMBERS[order]
        self.warnings = warnings
        self.visited: set[int] = set()

    def ifd(
        self, name: str, offset: int, wanted: frozenset[int], strings: frozenset[int]
    ) -> dict[int, Value]:
        """Read the wanted entries of the IFD at ``offset`` (relative to the TIFF header)."""
        values: dict[int, Value] = {}
        if offset in self.visited:
            self.warnings.append(f"{name} directory at offset {offset} was already read (loop), ignored")
            return values
        self.visited.add(offset)
        pos = self.start + offset
        if offset < 8 or pos + 2 > self.end:
            self.warnings.append(f"{name} directory offset {offset} is outside the EXIF data, ignored")
            return values
        count = self.u16(self.buf, pos)[0]
        if pos + 2 + 12 * count > self.end:
            self.warnings.append(
                f"bad {name} directory: {count} entries do not fit in the EXIF data, ignored"
            )
            return values
        table = pos + 2
        buf, start, end, numbers_of = self.buf, self.start, self.end, self.numbers
        # The value decoding is inlined: this loop is the reader's hot spot.
        for index, (tag, typ, n, raw) in enumerate(self.entries(buf[table : table + 12 * count])):
            if tag not in wanted or tag in values:
                continue
            inline = table + 12 * index + 8
            if tag in _POINTERS:
                if typ in POINTER_TYPES and n == 1:
                    values[tag] = (float(pointer_offset(self.order, typ, buf, inline)),)
                else:
                    self._bad_pointer(name, tag, typ, n)
                continue
            size = TYPE_SIZES.get(typ)
            if size is None:
                self.warnings.append(f"{name} tag 0x{tag:04x} has unknown format {typ}, ignored")
                continue
            total = size * n
            at = inline if total <= 4 else start + raw
            if at + total > end:
                self.warnings.append(f"{name} tag 0x{tag:04x} points outside the EXIF data, ignored")
            elif tag in strings:
                if typ in _TEXT_TYPES:
                    stop = buf.find(b"\x00", at, at + total)
                    text = buf[at : at + total if stop < 0 else stop]
                    try:
                        values[tag] = text.decode().rstrip()
                    except UnicodeDecodeError:
                        values[tag] = text.decode("latin-1").rstrip()
                else:
                    self.warnings.append(
                        f"{name} tag 0x{tag:04x} has format {_TYPE_NAMES[typ]}, not string, ignored"
                    )
            elif typ == ASCII:
                if tag in _NUMBERS_AS_TEXT:
                    stop = buf.find(b"\x00", at, at + total)
                    values[tag] = buf[at : at + total if stop < 0 else stop].decode("latin-1")
                else:
                    self.warnings.append(f"{name} tag 0x{tag:04x} has format string, not a number, ignored")
            else:
                key = typ << 4 | (n if n < _MAX_NUMBERS else _MAX_NUMBERS)
                unpack = numbers_of.get(key) or numbers_of.setdefault(key, _unpacker(self.order, typ, n))
                numbers = unpack(buf, at)
                if typ in _RATIONALS:
                    denominators = numbers[1::2]
                    divide: Callable[[float, float], float] = truediv if all(denominators) else _ratio
                    values[tag] = tuple(map(divide, numbers[::2], denominators))
                else:
                    values[tag] = tuple(map(float, numbers))
        return values

    def _bad_pointer(self, ifd: str, tag: int, typ: int, n: int) -> None:
        if typ not in POINTER_TYPES:
            fmt = _TYPE_NAMES.get(typ, str(typ))
            self.warnings.append(f"wrong format ({fmt}) for {ifd} {_POINTERS[tag]}, not followed")
        else:
            self.warnings.append(f"{ifd} {_POINTERS[tag]} has {n} values instead of 1, not followed")


def pointer_offset(order: str, typ: int, data: bytes, at: int = 0) -> int:
    """The offset held by a sub-IFD pointer of type ``typ`` (one of :data:`POINTER_TYPES`) at ``data[at:]``."""
    return int(_POINTER_READERS[order, typ](data, at)[0])


def _unpacker(order: str, typ: int, n: int) -> Callable[[bytes, int], tuple[int | float, ...]]:
    n = min(n, _MAX_NUMBERS)
    count = 2 * n if typ in _RATIONALS else n
    return struct.Struct(f"{order}{count}{_CODES[typ]}").unpack_from


def _ratio(num: float, den: float) -> float:
    if den:
        return num / den
    return math.inf if num else math.nan


def parse_tiff(buf: bytes, start: int, end: int, warnings: list[str]) -> ExifTags:
    """Read the tags panopipe needs from the TIFF structure ``buf[start:end]`` of an EXIF segment.

    Problems become ``warnings``; offsets are checked against ``end`` and each IFD is read at most once.
    """
    tags = ExifTags()
    order = _BYTE_ORDERS.get(buf[start : start + 2])
    if end - start < 8 or order is None:
        warnings.append("malformed APP1 EXIF segment (no TIFF header)")
        return tags
    reader = _Reader(buf, start, end, order, warnings)
    if reader.u16(buf, start + 2)[0] != 42:
        warnings.append("malformed APP1 EXIF segment (bad TIFF magic number)")
        return tags
    main = reader.ifd("IFD0", reader.u32(buf, start + 4)[0], _MAIN_TAGS, _MAIN_STRINGS)
    exif_offset = main.get(EXIF_IFD)
    if exif_offset is not None:
        exif = reader.ifd("ExifIFD", int(exif_offset[0]), _MAIN_TAGS, _MAIN_STRINGS)
        main = exif | main | {tag: value for tag, value in exif.items() if tag in _EXIF_HOME}
    gps_offset = main.get(GPS_IFD)
    if gps_offset is not None:
        tags.gps = reader.ifd("GPS", int(gps_offset[0]), _GPS_TAGS, _GPS_STRINGS)
    tags.main = main
    return tags


__all__ = [
    "ARTIST",
    "BODY_SERIAL_NUMBER",
    "COPYRIGHT",
    "DATETIME_DIGITIZED",
    "DATETIME_ORIGINAL",
    "EXIF_IFD",
    "EXIF_VERSION",
    "GPS_ALTITUDE",
    "GPS_ALTITUDE_REF",
    "GPS_DATE_STAMP",
    "GPS_H_POSITIONING_ERROR",
    "GPS_IFD",
    "GPS_IMG_DIRECTION",
    "GPS_IMG_DIRECTION_REF",
    "GPS_LATITUDE",
    "GPS_LATITUDE_REF",
    "GPS_LONGITUDE",
    "GPS_LONGITUDE_REF",
    "GPS_TIME_STAMP",
    "GPS_VERSION_ID",
    "IMAGE_DESCRIPTION",
    "INTEROP_IFD",
    "MAKE",
    "MODEL",
    "OFFSET_TIME_DIGITIZED",
    "OFFSET_TIME_ORIGINAL",
    "ORIENTATION",
    "POINTER_TYPES",
    "SUBSEC_TIME_DIGITIZED",
    "SUBSEC_TIME_ORIGINAL",
    "TYPE_SIZES",
    "ExifTags",
    "Value",
    "parse_tiff",
    "pointer_offset",
]
