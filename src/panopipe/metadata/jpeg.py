"""JPEG marker segments before the first SOS (start of scan): one walk for the metadata reader and writer.

The scan and everything after it is never looked at, so the compressed image is neither decoded nor touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from panopipe.errors import MetadataError

SOS = 0xDA
EOI = 0xD9
APP0 = 0xE0
APP1 = 0xE1
APP2 = 0xE2
# Start-of-frame markers: every 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
STRAY = -1
"""The "marker" of a :class:`Segment` that holds stray bytes found where a marker should be."""
# How far the walk looks past stray bytes for the next marker before it gives up on the file.
_MAX_STRAY = 4096
EXIF_HEADER = b"Exif\x00\x00"
EXIF_ID = EXIF_HEADER[:5]  # the pad byte after "Exif\0" is not always 0
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
ICC_ID = b"ICC_PROFILE\x00"
"""How the payload of an APP2 segment that carries an ICC profile (a chunk of it) begins."""
MAX_SEGMENT_PAYLOAD = 65533
"""The most bytes a marker segment can carry after its two length bytes."""
# Bytes read past the end of the segment that crosses a chunk boundary, so that the small DQT/SOF/DHT/SOS
# segments which usually follow the EXIF and XMP segments arrive in the same ranged read.
_LOOKAHEAD = 2048


class Segment(NamedTuple):
    """One marker segment: ``data[start:end]`` is the whole segment, fill bytes and marker included.

    Stray bytes between two segments (a segment length a few bytes short, as some cameras write) form a
    segment of their own whose marker is :data:`STRAY`; like libjpeg, Pillow and ExifTool, the walk skips
    them to the next marker.
    """

    marker: int
    start: int
    payload_start: int
    end: int


_segment = tuple.__new__  # builds a Segment without the Python-level __new__ of a NamedTuple: walk's hot spot


@dataclass(slots=True)
class JpegHeader:
    """What the header segments hold, as byte ranges into the scanned data."""

    end: int
    width: int | None = None
    height: int | None = None
    exif: bytes | None = None  # the TIFF structure, multi-segment EXIF joined
    exif_start: int = 0  # where the TIFF structure starts in ``exif`` (it may be the whole data)
    exif_end: int = 0
    xmp: bytes | None = None
    warnings: list[str] = field(default_factory=list)


def walk(data: bytes) -> tuple[list[Segment], int, int]:
    """Walk the marker segments of ``data``.

    Returns ``(segments, sos, end)``: the segments before the first SOS, the offset of the SOS marker (its
    fill bytes included) and the offset just past it. When ``data`` ends first, ``sos`` is -1 and ``end`` is
    how long ``data`` must be for the walk to go on.
    """
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != 0xD8:
        if n == 0:
            raise MetadataError("not a JPEG (empty file)")
        raise MetadataError(f"not a JPEG (starts with {data[:4].hex(' ').upper()})")
    segments: list[Segment] = []
    pos = start = 2
    while True:
        if pos + 2 > n:
            return segments, -1, pos + 4
        if data[pos] != 0xFF:
            # Like ExifTool and Pillow, a file whose SOI is not followed by a marker is no JPEG.
            found = _next_marker(data, pos) if segments else -1
            if found < 0:
                if segments and n - pos < _MAX_STRAY:
                    return segments, -1, pos + _MAX_STRAY
                raise MetadataError(
                    f"corrupt JPEG: no marker at byte {pos} (expected a marker, found {data[pos]:02X})"
                    + (f" nor in the {_MAX_STRAY} bytes after it" if segments else "")
                )
            segments.append(_segment(Segment, (STRAY, start, pos, found)))
            pos = start = found
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == SOS:
            return segments, start, pos + 2
        if marker == EOI:
            raise MetadataError(
                f"no image data: end of image (end-of-image marker at byte {pos}) before any scan"
            )
        if marker in _STANDALONE:
            pos = start = pos + 2
            continue
        if pos + 4 > n:
            return segments, -1, pos + 4
        end = pos + 2 + (data[pos + 2] << 8 | data[pos + 3])
        if end < pos + 4:
            raise MetadataError(f"corrupt JPEG: segment FF{marker:02X} at byte {pos} has a length below 2")
        if end > n:
            return segments, -1, end
        segments.append(_segment(Segment, (marker, start, pos + 4, end)))
        pos = start = end


def _next_marker(data: bytes, pos: int) -> int:
    """Where the next marker (0xFF not followed by a stuffed 0x00) starts within ``_MAX_STRAY`` bytes of
    ``pos``, or -1."""
    limit = pos + _MAX_STRAY
    found = data.find(b"\xff", pos, limit)
    while found >= 0 and found + 1 < len(data) and data[found + 1] == 0:
        found = data.find(b"\xff", found + 2, limit)
    return found if found + 1 < len(data) else -1


def scan_segments(data: bytes) -> tuple[list[Segment], int, int]:
    """Like :func:`walk`, for data that holds the whole header: raise MetadataError when it ends first."""
    segments, sos, end = walk(data)
    if sos < 0:
        raise MetadataError(
            f"truncated: a segment ending at byte {end} overruns the data, which ends at byte {len(data)}"
        )
    return segments, sos, end


def read_header(
    read: Callable[[int, int], bytes], first_chunk: int = 65536, *, size: int | None = None
) -> tuple[bytes, list[Segment], int]:
    """Read the bytes of a JPEG through its header: ``(data, segments, end)``, the last two as :func:`walk`.

    ``read(start, length)`` returns up to ``length`` bytes from ``start`` (fewer at the end of the file), as
    an S3 ranged GET does. It is called once with ``first_chunk`` bytes; when the header is longer, the next
    call asks for the rest of the segment that crosses the boundary plus a small look-ahead for the short
    segments that follow it, so that a large EXIF thumbnail or XMP packet costs one more call. Reads never
    go past ``size`` (the file size) when it is given. ``data`` may go on past ``end``.
    """
    limit = size if size is not None else float("inf")
    wanted = int(min(first_chunk, limit))
    data = read(0, wanted) if wanted > 0 else b""
    while True:
        segments, sos, end = walk(data)
        if sos >= 0:
            return data, segments, end
        asked, wanted = wanted, int(min(end + _LOOKAHEAD, limit))
        if len(data) < asked or wanted <= len(data):  # a short read, or the given size: the file ends here
            raise MetadataError(
                f"truncated: the file ends at byte {len(data)}, inside a segment ending at {end}"
            )
        data += read(len(data), wanted - len(data))


def scan_jpeg(data: bytes, segments: list[Segment], end: int) -> JpegHeader:
    """Find the SOF size, the EXIF TIFF structure and the XMP packet in the walked segments of a header."""
    header = JpegHeader(end=end)
    exif_parts: list[tuple[int, int]] = []
    for segment in segments:
        marker, _, start, stop = segment
        if marker == STRAY:
            header.warnings.append(
                f"{stop - start} stray bytes at byte {start} before the next marker, skipped"
            )
        elif marker == APP1:
            if data.startswith(EXIF_ID, start):
                exif_parts.append((start + 6, stop))
            elif header.xmp is None and data.startswith(XMP_HEADER, start):
                header.xmp = data[start + len(XMP_HEADER) : stop]
            elif start == stop:
                header.warnings.append(f"empty APP1 segment at byte {start - 4}")
        elif marker in SOF_MARKERS and header.width is None:
            size = frame_size(data, segment)
            if size is None:
                header.warnings.append(f"SOF segment at byte {start - 4} is too short")
                continue
            header.width, header.height = size
    if header.width is None:
        raise MetadataError("no SOF marker before the image data")
    if len(exif_parts) == 1:
        header.exif = data
        header.exif_start, header.exif_end = exif_parts[0]
    elif exif_parts:
        # Like ExifTool, read EXIF split over several APP1 segments as one TIFF structure.
        header.warnings.append(f"EXIF is split over {len(exif_parts)} APP1 segments")
        header.exif = b"".join(data[a:b] for a, b in exif_parts)
        header.exif_end = len(header.exif)
    return header


def frame_size(data: bytes, sof: Segment) -> tuple[int, int] | None:
    """The (width, height) of the image in a SOF segment, or None when the segment is too short."""
    p = sof.payload_start
    if sof.end - p < 5:
        return None
    return data[p + 3] << 8 | data[p + 4], data[p + 1] << 8 | data[p + 2]


def find_app1(data: bytes, segments: list[Segment], header: bytes) -> Segment | None:
    """The first APP1 segment whose payload starts with ``header``."""
    for segment in segments:
        if segment.marker == APP1 and data.startswith(header, segment.payload_start, segment.end):
            return segment
    return None


def icc_segments(data: bytes, segments: list[Segment]) -> list[Segment]:
    """The segments that carry an ICC profile (APP2 ``ICC_PROFILE``, a chunk of it each), in file order."""
    return [seg for seg in segments if seg.marker == APP2 and data.startswith(ICC_ID, seg.payload_start)]


def icc_profile(data: bytes) -> bytes:
    """The ICC profile segments (APP2 ``ICC_PROFILE``) of ``data`` (a JPEG), whole and in order; empty
    without one."""
    segments, _, _ = scan_segments(data)
    return b"".join(data[seg.start : seg.end] for seg in icc_segments(data, segments))


def with_icc(jpeg: bytes, profile: bytes) -> bytes:
    """``jpeg`` (an encoder's output: SOI, then a JFIF segment) with the ICC ``profile`` segments (as
    :func:`icc_profile` returns them) after its JFIF segment, so that its colours read as those of the images
    it was made from."""
    if not profile:
        return jpeg
    segments, _, _ = scan_segments(jpeg)
    at = next((seg.start for seg in segments if seg.marker != APP0), segments[-1].end if segments else 2)
    return jpeg[:at] + profile + jpeg[at:]


def app1_segment(payload: bytes) -> bytes:
    """A complete APP1 segment carrying ``payload``."""
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise MetadataError(f"APP1 payload of {len(payload)} bytes exceeds the JPEG limit of 65533")
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


__all__ = [
    "APP0",
    "APP1",
    "APP2",
    "EOI",
    "EXIF_HEADER",
    "EXIF_ID",
    "ICC_ID",
    "MAX_SEGMENT_PAYLOAD",
    "SOF_MARKERS",
    "SOS",
    "STRAY",
    "XMP_HEADER",
    "JpegHeader",
    "Segment",
    "app1_segment",
    "find_app1",
    "frame_size",
    "icc_profile",
    "icc_segments",
    "read_header",
    "scan_jpeg",
    "scan_segments",
    "walk",
    "with_icc",
]
