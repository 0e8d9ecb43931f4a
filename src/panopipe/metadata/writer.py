"""Write capture metadata (EXIF and XMP) into a JPEG without re-encoding it.

Only the EXIF and XMP APP1 segments are replaced (or inserted after SOI and JFIF); every other segment, and
the compressed image from SOS to the end, is copied byte for byte. Metadata the update does not set is kept,
maker notes included (see :mod:`panopipe.metadata._write_tiff`).
"""

from __future__ import annotations

import math
import re
import stat
import struct
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from panopipe.errors import MetadataError, StorageError
from panopipe.metadata import tiff
from panopipe.metadata._write_tiff import EXIF, GPS, IFD0, ExifTree, Value
from panopipe.metadata._write_xmp import Property, merge_xmp
from panopipe.metadata.jpeg import (
    APP0,
    APP2,
    EXIF_HEADER,
    EXIF_ID,
    ICC_ID,
    MAX_SEGMENT_PAYLOAD,
    SOF_MARKERS,
    XMP_HEADER,
    Segment,
    app1_segment,
    find_app1,
    frame_size,
    icc_segments,
    scan_segments,
)
from panopipe.metadata.tiff import ASCII, BYTE, LONG, RATIONAL, SHORT, UNDEFINED
from panopipe.metadata.xmp import EXIF_NS, GPANO_NS, TIFF_NS
from panopipe.storage.folder import write_atomic
from panopipe.utc_offsets import offset_text

PANOPIPE_NS = "https://panopipe.dev/ns/1.0/"
_PREFIXES = {GPANO_NS: "GPano", PANOPIPE_NS: "panopipe"}
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_MAX_OFFSET_MINUTES = 18 * 60

# Tags written when an IFD has to be created, so that the new IFD has what the EXIF standard requires.
_NEW_IFD0: dict[int, tuple[int, Value]] = {
    0x011A: (RATIONAL, ((72, 1),)),  # XResolution
    0x011B: (RATIONAL, ((72, 1),)),  # YResolution
    0x0128: (SHORT, (2,)),  # ResolutionUnit: inches
    0x0213: (SHORT, (1,)),  # YCbCrPositioning: centered
}
_NEW_EXIF: dict[int, tuple[int, Value]] = {
    tiff.EXIF_VERSION: (UNDEFINED, b"0232"),
    0x9101: (UNDEFINED, b"\x01\x02\x03\x00"),  # ComponentsConfiguration: Y Cb Cr
    0xA000: (UNDEFINED, b"0100"),  # FlashpixVersion
}
_COLOR_SPACE = 0xA001  # ColorSpace, of a new ExifIFD: see _color_space
_SRGB, _UNCALIBRATED = 1, 0xFFFF
# sRGB's red, green and blue colorants (CIE XYZ adapted to D50) as an ICC profile states them, and how far a
# profile's may be (s15Fixed16 rounding: the ICC's own sRGB profile and lcms's differ by 0.0002).
_SRGB_COLORANTS = {
    b"rXYZ": (0.4361, 0.2225, 0.0139),
    b"gXYZ": (0.3851, 0.7169, 0.0971),
    b"bXYZ": (0.1431, 0.0606, 0.7141),
}
_COLORANT_TOLERANCE = 0.001
_NEW_GPS: dict[int, tuple[int, Value]] = {tiff.GPS_VERSION_ID: (BYTE, (2, 3, 0, 0))}
_OFFSET_TIME_VERSION = b"0231"
# The XMP properties that copy the EXIF tags a MetadataUpdate field writes (XMP's DateTimeOriginal holds the
# sub-seconds and offset, its GPSTimeStamp the date too; photoshop:DateCreated and xmp:CreateDate are the
# capture time as photo software copies it; tiff: holds IFD0's Make and Model; GPano's first and last photo
# dates are the capture time of a 360° camera's image).
_PHOTOSHOP_NS = "http://ns.adobe.com/photoshop/1.0/"
_XMP_NS = "http://ns.adobe.com/xap/1.0/"
_XMP_COPIES: dict[str, tuple[Property, ...]] = {
    "captured_at": (
        (EXIF_NS, "DateTimeOriginal"),
        (_PHOTOSHOP_NS, "DateCreated"),
        (_XMP_NS, "CreateDate"),
        (GPANO_NS, "FirstPhotoDate"),
        (GPANO_NS, "LastPhotoDate"),
    ),
    "gps_latitude": ((EXIF_NS, "GPSLatitude"),),
    "gps_longitude": ((EXIF_NS, "GPSLongitude"),),
    "gps_altitude": ((EXIF_NS, "GPSAltitude"), (EXIF_NS, "GPSAltitudeRef")),
    "gps_img_direction": ((EXIF_NS, "GPSImgDirection"), (EXIF_NS, "GPSImgDirectionRef")),
    "gps_h_positioning_error": ((EXIF_NS, "GPSHPositioningError"),),
    "gps_datetime": ((EXIF_NS, "GPSTimeStamp"),),
    "make": ((TIFF_NS, "Make"),),
    "model": ((TIFF_NS, "Model"),),
}
_CAPTURE_TIME_TAGS = (tiff.DATETIME_ORIGINAL, tiff.SUBSEC_TIME_ORIGINAL, tiff.OFFSET_TIME_ORIGINAL)
_DIGITIZED_TAGS = {
    tiff.DATETIME_ORIGINAL: tiff.DATETIME_DIGITIZED,
    tiff.SUBSEC_TIME_ORIGINAL: tiff.SUBSEC_TIME_DIGITIZED,
    tiff.OFFSET_TIME_ORIGINAL: tiff.OFFSET_TIME_DIGITIZED,
}
# What MetadataUpdate.remove takes out for each name: GPS IFD entries, or a GPano property.
_GPS_ENTRIES: dict[str, tuple[int, ...]] = {
    "gps_latitude": (tiff.GPS_LATITUDE_REF, tiff.GPS_LATITUDE),
    "gps_longitude": (tiff.GPS_LONGITUDE_REF, tiff.GPS_LONGITUDE),
    "gps_altitude": (tiff.GPS_ALTITUDE_REF, tiff.GPS_ALTITUDE),
    "gps_img_direction": (tiff.GPS_IMG_DIRECTION_REF, tiff.GPS_IMG_DIRECTION),
    "gps_h_positioning_error": (tiff.GPS_H_POSITIONING_ERROR,),
}
_POSE = {
    "pose_heading": "PoseHeadingDegrees",
    "pose_pitch": "PosePitchDegrees",
    "pose_roll": "PoseRollDegrees",
}
REMOVABLE = frozenset({*_GPS_ENTRIES, *_POSE})
"""The values :attr:`MetadataUpdate.remove` may name, as the reader
(:class:`~panopipe.metadata.ImageMetadata`) names them."""


@dataclass(frozen=True, slots=True)
class GPano:
    """Google Photo Sphere (GPano) XMP properties. The cropped area defaults to the full panorama;
    UsePanoramaViewer tells viewers to open the image as a panorama."""

    full_pano_width_pixels: int
    full_pano_height_pixels: int
    cropped_area_image_width_pixels: int | None = None
    cropped_area_image_height_pixels: int | None = None
    cropped_area_left_pixels: int = 0
    cropped_area_top_pixels: int = 0
    pose_heading_degrees: float | None = None
    pose_pitch_degrees: float | None = None
    pose_roll_degrees: float | None = None
    projection_type: str = "equirectangular"
    use_panorama_viewer: bool = True

    def properties(self) -> dict[str, str]:
        """The GPano properties by name, as XMP text."""
        width = self.cropped_area_image_width_pixels or self.full_pano_width_pixels
        height = self.cropped_area_image_height_pixels or self.full_pano_height_pixels
        values: dict[str, str] = {
            "UsePanoramaViewer": str(self.use_panorama_viewer),
            "ProjectionType": self.projection_type,
            "FullPanoWidthPixels": str(self.full_pano_width_pixels),
            "FullPanoHeightPixels": str(self.full_pano_height_pixels),
            "CroppedAreaImageWidthPixels": str(width),
            "CroppedAreaImageHeightPixels": str(height),
            "CroppedAreaLeftPixels": str(self.cropped_area_left_pixels),
            "CroppedAreaTopPixels": str(self.cropped_area_top_pixels),
        }
        for name, degrees in (
            ("PoseHeadingDegrees", self.pose_heading_degrees),
            ("PosePitchDegrees", self.pose_pitch_degrees),
            ("PoseRollDegrees", self.pose_roll_degrees),
        ):
            if degrees is not None:
                if not math.isfinite(degrees):
                    raise MetadataError(f"GPano {name} must be a finite number, not {degrees}")
                values[name] = repr(float(degrees))
        return values


@dataclass(frozen=True, slots=True)
class MetadataUpdate:
    """Metadata to write into a JPEG. Every field is optional: None leaves what the file has, unless
    ``remove`` names it.

    ``captured_at`` (timezone-aware) is written as DateTimeOriginal in local time at ``utc_offset_minutes``
    (default: its own offset), with SubSecTimeOriginal (milliseconds) and OffsetTimeOriginal; with
    ``zone_unknown`` (a camera clock whose zone nobody knows), as the clock read, without OffsetTimeOriginal,
    which would claim a zone; a camera's copies of these tags in IFD0, and DateTimeDigitized with its
    SubSecTimeDigitized and OffsetTimeDigitized when the file has it, get the same values. GPS values are
    signed (south, west and below sea level are negative); ``gps_img_direction`` is in degrees true north;
    ``gps_h_positioning_error`` (the position's horizontal accuracy) in metres; ``gps_datetime`` is written
    in UTC. ``panopipe`` holds properties of the panopipe XMP namespace. The XMP copies of the EXIF tags
    written (exif:DateTimeOriginal, photoshop:DateCreated, xmp:CreateDate and GPano FirstPhotoDate/LastPhotoDate,
    exif:GPSLatitude..., tiff:Make and tiff:Model) are removed, so that no reader that prefers XMP finds the values replaced. ``remove`` names
    values the file must not have, as the reader names them (:data:`REMOVABLE`: the GPS values above, and ``pose_heading``, ``pose_pitch`` and
    ``pose_roll`` of the GPano), none of which the update sets: their GPS entries with their Ref tags, GPano
    properties and XMP copies are removed.
    """

    captured_at: datetime | None = None
    utc_offset_minutes: int | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude: float | None = None
    gps_img_direction: float | None = None
    gps_h_positioning_error: float | None = None
    gps_datetime: datetime | None = None
    make: str | None = None
    model: str | None = None
    artist: str | None = None
    copyright: str | None = None
    image_description: str | None = None
    gpano: GPano | None = None
    panopipe: dict[str, str | int] | None = None
    zone_unknown: bool = False
    remove: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("captured_at", "gps_datetime"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise MetadataError(f"{name} must be timezone-aware")
        if self.utc_offset_minutes is not None:
            if self.captured_at is None:
                raise MetadataError("utc_offset_minutes is only written together with captured_at")
            if abs(self.utc_offset_minutes) > _MAX_OFFSET_MINUTES:
                raise MetadataError(f"utc_offset_minutes {self.utc_offset_minutes} is out of range")
        for name, limit in (("gps_latitude", 90), ("gps_longitude", 180), ("gps_img_direction", 360)):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and -limit <= value <= limit):
                raise MetadataError(f"{name} {value} is out of range")
        if self.gps_img_direction is not None and self.gps_img_direction < 0:
            raise MetadataError(f"gps_img_direction {self.gps_img_direction} must be 0 to 360 degrees")
        if self.gps_altitude is not None and not math.isfinite(self.gps_altitude):
            raise MetadataError(f"gps_altitude {self.gps_altitude} is not a number")
        accuracy = self.gps_h_positioning_error
        if accuracy is not None and not (math.isfinite(accuracy) and accuracy >= 0):
            raise MetadataError(f"gps_h_positioning_error {accuracy} must be metres, 0 or more")
        for name in ("make", "model", "artist", "copyright", "image_description"):
            if "\x00" in (getattr(self, name) or ""):
                raise MetadataError(f"{name} must not contain NUL characters")
        for key, value in (self.panopipe or {}).items():
            if not _XML_NAME.match(key) or isinstance(value, bool) or not isinstance(value, str | int):
                raise MetadataError(f"panopipe property {key!r}={value!r}: need an XML name and a str or int")
        for name in self.remove:
            if name not in REMOVABLE:
                raise MetadataError(f"cannot remove {name!r}: removable are {', '.join(sorted(REMOVABLE))}")
            value = getattr(self.gpano, f"{name}_degrees", None) if name in _POSE else getattr(self, name)
            if value is not None:
                raise MetadataError(f"{name} is both set and removed")

    def _sets_exif(self) -> bool:
        return any(
            getattr(self, f.name) is not None
            for f in fields(self)
            if f.name not in ("gpano", "panopipe", "zone_unknown", "remove")
        )


def apply_metadata(jpeg: bytes, update: MetadataUpdate) -> bytes:
    """``jpeg`` with ``update`` written into its EXIF and XMP; the image data is copied unchanged.

    Raises MetadataError when ``jpeg`` is not a JPEG, its EXIF or XMP is corrupt, or the metadata does not
    fit in a JPEG segment.
    """
    return b"".join(_splice(jpeg, update))


def _splice(jpeg: bytes, update: MetadataUpdate) -> list[bytes | memoryview]:
    """The pieces of the updated JPEG: new segments and views of ``jpeg``. Joining 2 MB costs more than
    the rest of an update, so the file writer writes the pieces as they are."""
    segments, sos, _ = scan_segments(jpeg)
    replace: dict[int, bytes] = {}  # segment start -> new segment
    insert: list[bytes] = []
    exif = find_app1(jpeg, segments, EXIF_ID)
    block = jpeg[exif.payload_start + len(EXIF_HEADER) : exif.end] if exif else b""
    if update._sets_exif() or (block and not update.remove.isdisjoint(_GPS_ENTRIES)):
        tree = ExifTree.parse(block) if block else ExifTree(">")
        if _edit_exif(tree, update, _new_exif(jpeg, segments)):
            new = app1_segment(EXIF_HEADER + tree.serialize(MAX_SEGMENT_PAYLOAD - len(EXIF_HEADER)))
            if exif:
                replace[exif.start] = new
            else:
                insert.append(new)
    xmp = find_app1(jpeg, segments, XMP_HEADER)
    packet = jpeg[xmp.payload_start + len(XMP_HEADER) : xmp.end] if xmp else None
    merged = merge_xmp(packet, _xmp_values(update), _PREFIXES, _xmp_copies(update))
    if merged is not None:
        new = app1_segment(XMP_HEADER + merged)
        if xmp:
            replace[xmp.start] = new
        elif exif:
            replace[exif.start] = replace.get(exif.start, jpeg[exif.start : exif.end]) + new
        else:
            insert.append(new)
    at = next((seg.start for seg in segments if seg.marker != APP0), sos)
    parts: list[bytes | memoryview] = [jpeg[:at], *insert]
    view = memoryview(jpeg)
    for seg in segments:
        if seg.start >= at:
            parts.append(replace.get(seg.start) or view[seg.start : seg.end])
    parts.append(view[sos:])
    return parts


_COM = 0xFE
_ENCODER_OWN = frozenset({APP0, 0xEE})  # JFIF, Adobe (colour transform): they describe the encoded data


def with_segments_of(source: bytes, jpeg: bytes) -> bytes:
    """``jpeg`` with the metadata segments of ``source`` in place of its own: the pixels of one, the EXIF, XMP,
    ICC profile, IPTC and comments of the other, copied unchanged. Segments that describe an encoding (JFIF,
    Adobe) stay ``jpeg``'s own, and APP2 segments other than an ICC profile (an MPF index holds offsets into
    ``source``) are left out. Raises MetadataError when either is not a JPEG."""
    source_segments, _, _ = scan_segments(source)
    segments, sos, _ = scan_segments(jpeg)
    carried = [
        source[seg.start : seg.end]
        for seg in source_segments
        if _describes_image(seg.marker)
        and seg.marker not in _ENCODER_OWN
        and (seg.marker != APP2 or source.startswith(ICC_ID, seg.payload_start))
    ]
    kept = [jpeg[seg.start : seg.end] for seg in segments if seg.marker in _ENCODER_OWN]
    coding = [jpeg[seg.start : seg.end] for seg in segments if not _describes_image(seg.marker)]
    return b"".join([jpeg[:2], *kept, *carried, *coding, jpeg[sos:]])


def _describes_image(marker: int) -> bool:
    """Whether a segment of ``marker`` is an application segment (APP0-APP15) or a comment, not coding data."""
    return 0xE0 <= marker <= 0xEF or marker == _COM


def apply_metadata_file(src: Path, dst: Path | None = None, *, update: MetadataUpdate) -> None:
    """Write ``update`` into the JPEG ``src``, saving the result atomically to ``dst`` (default: ``src``).

    The result goes to a temporary file in ``dst``'s folder, is flushed to disk and renamed over ``dst``, so
    ``dst`` is either untouched or complete, even after a crash. ``dst`` keeps its permission bits (a new
    ``dst`` gets those of ``src``). Raises MetadataError for bad metadata, StorageError when a file cannot be
    read or written.
    """
    src = Path(src)
    dst = src if dst is None else Path(dst)
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {src}: {exc.strerror}") from exc
    parts = _splice(data, update)
    try:
        mode = stat.S_IMODE((dst if dst.exists() else src).stat().st_mode)
    except OSError as exc:
        raise StorageError(f"cannot read {src}: {exc.strerror}") from exc
    write_atomic(dst, parts, mode)


def _new_exif(jpeg: bytes, segments: list[Segment]) -> dict[int, tuple[int, Value]]:
    """The tags an ExifIFD created in ``jpeg`` starts with: those the standard requires, its size and its
    colour space (:func:`_color_space`)."""
    new_exif = {**_NEW_EXIF, _COLOR_SPACE: (SHORT, (_color_space(jpeg, segments),))}
    sofs = (frame_size(jpeg, seg) for seg in segments if seg.marker in SOF_MARKERS)
    size = next(filter(None, sofs), None)
    if size:
        new_exif |= {0xA002: (LONG, (size[0],)), 0xA003: (LONG, (size[1],))}  # ExifImageWidth, -Height
    return new_exif


def _color_space(jpeg: bytes, segments: list[Segment]) -> int:
    """The EXIF ColorSpace of ``jpeg``: uncalibrated when it carries an ICC profile other than sRGB, whose
    colours a reader takes from the profile; else sRGB, as a JPEG without a profile is read."""
    chunks = sorted(  # a large profile is split into numbered chunks
        (jpeg[seg.payload_start + len(ICC_ID)], jpeg[seg.payload_start + len(ICC_ID) + 2 : seg.end])
        for seg in icc_segments(jpeg, segments)
    )
    if not chunks:
        return _SRGB
    return _SRGB if _has_srgb_colorants(b"".join(chunk for _, chunk in chunks)) else _UNCALIBRATED


def _has_srgb_colorants(profile: bytes) -> bool:
    """Whether the ICC ``profile``'s red, green and blue colorants are sRGB's (a profile without them, or that
    cannot be read, is not taken for sRGB)."""
    try:
        (count,) = struct.unpack_from(">I", profile, 128)
        table = {
            sig: offset for sig, offset, _ in struct.iter_unpack(">4sII", profile[132 : 132 + 12 * count])
        }
        for sig, expected in _SRGB_COLORANTS.items():
            if sig not in table or profile[table[sig] : table[sig] + 4] != b"XYZ ":
                return False
            found = (v / 65536 for v in struct.unpack_from(">3i", profile, table[sig] + 8))
            if any(abs(f - e) > _COLORANT_TOLERANCE for f, e in zip(found, expected, strict=True)):
                return False
    except struct.error:
        return False
    return True


def _edit_exif(tree: ExifTree, update: MetadataUpdate, new_exif: dict[int, tuple[int, Value]]) -> bool:
    """Write ``update`` into ``tree`` (an ExifIFD created starts with ``new_exif``); whether that changed it
    (removing what it does not have does not)."""
    ifd0_text = {
        tiff.IMAGE_DESCRIPTION: update.image_description,
        tiff.MAKE: update.make,
        tiff.MODEL: update.model,
        tiff.ARTIST: update.artist,
        tiff.COPYRIGHT: update.copyright,
    }
    tree.ensure(IFD0, _NEW_IFD0)
    for tag, text in ifd0_text.items():
        if text is not None:
            tree.set(IFD0, tag, ASCII, text)
    if update.captured_at is not None:
        tree.ensure(EXIF, new_exif)
        _set_capture_time(
            tree, update.captured_at, update.utc_offset_minutes, zone_unknown=update.zone_unknown
        )
    gps = _gps_tags(update)
    if gps:
        tree.ensure(GPS, _NEW_GPS)
        if tree.get(GPS, tiff.GPS_VERSION_ID) is None:
            gps |= _NEW_GPS  # GPSVersionID is mandatory in a GPS IFD
        for tag, (type_, value) in gps.items():
            tree.set(GPS, tag, type_, value)
    removed = [
        tree.remove(GPS, tag)
        for name in update.remove.intersection(_GPS_ENTRIES)
        for tag in _GPS_ENTRIES[name]
    ]
    return update._sets_exif() or any(removed)


def _set_capture_time(
    tree: ExifTree, moment: datetime, offset_minutes: int | None, *, zone_unknown: bool
) -> None:
    offset = (
        moment.utcoffset() or timedelta(0) if offset_minutes is None else timedelta(minutes=offset_minutes)
    )
    local = moment.astimezone(timezone(offset))
    tree.set(EXIF, tiff.DATETIME_ORIGINAL, ASCII, local.strftime("%Y:%m:%d %H:%M:%S"))
    tree.set(EXIF, tiff.SUBSEC_TIME_ORIGINAL, ASCII, f"{local.microsecond // 1000:03d}")
    if zone_unknown:
        tree.remove(EXIF, tiff.OFFSET_TIME_ORIGINAL)
    else:
        tree.set(EXIF, tiff.OFFSET_TIME_ORIGINAL, ASCII, offset_text(int(offset.total_seconds()) // 60))
        version = tree.get(EXIF, tiff.EXIF_VERSION)
        if version is None or version.value < _OFFSET_TIME_VERSION:  # OffsetTimeOriginal needs EXIF 2.31
            tree.set(EXIF, tiff.EXIF_VERSION, UNDEFINED, _OFFSET_TIME_VERSION)
    # Some cameras write the capture time in IFD0, where ExifTool reads it first: its copies get the same
    # values (one the ExifIFD does not have, an OffsetTimeOriginal whose zone is now unknown, goes).
    for tag in _CAPTURE_TIME_TAGS:
        if tree.get(IFD0, tag) is not None:
            tree.copy(EXIF, IFD0, tag)
    # A camera digitises the image when it captures it: a DateTimeDigitized the file has (ExifTool's CreateDate)
    # gets the capture time too, rather than contradict it; one the file lacks is not added.
    if tree.get(EXIF, tiff.DATETIME_DIGITIZED) is not None:
        for original, digitized in _DIGITIZED_TAGS.items():
            tree.copy(EXIF, EXIF, original, to=digitized)


def _gps_tags(update: MetadataUpdate) -> dict[int, tuple[int, Value]]:
    """The GPS IFD entries to write. Rationals follow ExifTool: whole degrees and minutes, seconds in
    millionths; altitude and horizontal positioning error in millimetres; direction in 1/10000 degree."""
    tags: dict[int, tuple[int, Value]] = {}
    if update.gps_latitude is not None:
        tags[tiff.GPS_LATITUDE_REF] = (ASCII, "S" if update.gps_latitude < 0 else "N")
        tags[tiff.GPS_LATITUDE] = (RATIONAL, _dms(update.gps_latitude))
    if update.gps_longitude is not None:
        tags[tiff.GPS_LONGITUDE_REF] = (ASCII, "W" if update.gps_longitude < 0 else "E")
        tags[tiff.GPS_LONGITUDE] = (RATIONAL, _dms(update.gps_longitude))
    if update.gps_altitude is not None:
        tags[tiff.GPS_ALTITUDE_REF] = (BYTE, (1 if update.gps_altitude < 0 else 0,))
        tags[tiff.GPS_ALTITUDE] = (RATIONAL, ((round(abs(update.gps_altitude) * 1000), 1000),))
    if update.gps_datetime is not None:
        utc = update.gps_datetime.astimezone(UTC)
        seconds = (utc.second * 1000 + utc.microsecond // 1000, 1000)
        tags[tiff.GPS_TIME_STAMP] = (RATIONAL, ((utc.hour, 1), (utc.minute, 1), seconds))
        tags[tiff.GPS_DATE_STAMP] = (ASCII, utc.strftime("%Y:%m:%d"))
    if update.gps_img_direction is not None:
        tags[tiff.GPS_IMG_DIRECTION_REF] = (ASCII, "T")
        tags[tiff.GPS_IMG_DIRECTION] = (
            RATIONAL,
            ((round(update.gps_img_direction * 10000) % 3_600_000, 10000),),
        )
    if update.gps_h_positioning_error is not None:
        tags[tiff.GPS_H_POSITIONING_ERROR] = (
            RATIONAL,
            ((round(update.gps_h_positioning_error * 1000), 1000),),
        )
    return tags


def _dms(degrees: float) -> tuple[tuple[int, int], ...]:
    micro_arcsec = round(abs(degrees) * 3600 * 1_000_000)
    whole, rest = divmod(micro_arcsec, 3600 * 1_000_000)
    minutes, micro = divmod(rest, 60 * 1_000_000)
    return (whole, 1), (minutes, 1), (micro, 1_000_000)


def _xmp_copies(update: MetadataUpdate) -> list[Property]:
    """The XMP properties that go: the copies of the EXIF tags ``update`` writes or removes, so that no reader
    that prefers XMP finds the values the update replaced (EXIF holds the new ones) or removed, and the GPano
    properties it removes."""
    copies = [
        copy
        for field, field_copies in _XMP_COPIES.items()
        if getattr(update, field) is not None or field in update.remove
        for copy in field_copies
    ]
    return copies + [(GPANO_NS, name) for field, name in _POSE.items() if field in update.remove]


def _xmp_values(update: MetadataUpdate) -> dict[Property, str]:
    values: dict[Property, str] = {}
    if update.gpano is not None:
        values |= {(GPANO_NS, name): text for name, text in update.gpano.properties().items()}
    if update.panopipe:
        values |= {(PANOPIPE_NS, name): str(value) for name, value in update.panopipe.items()}
    return values


__all__ = [
    "PANOPIPE_NS",
    "REMOVABLE",
    "GPano",
    "MetadataUpdate",
    "apply_metadata",
    "apply_metadata_file",
    "with_segments_of",
]
