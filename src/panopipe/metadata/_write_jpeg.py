"""JPEG segment scanning and splicing for the metadata writer.

Only the marker segments before the first SOS are looked at; the scan and everything after it is kept as
one opaque byte range, so the compressed image is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from panopipe.errors import MetadataError

SOI = 0xD8
SOS = 0xDA
EOI = 0xD9
APP0 = 0xE0
APP1 = 0xE1
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
MAX_SEGMENT_PAYLOAD = 65533
"""The most bytes a marker segment can carry after its two length bytes."""

_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOF_MARKERS = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC})


@dataclass(frozen=True, slots=True)
class Segment:
    """One marker segment: ``data[start:end]`` is the whole segment, marker bytes included."""

    marker: int
    start: int
    end: int
    payload_start: int


def scan_segments(data: bytes | memoryview) -> tuple[list[Segment], int]:
    """The marker segments between SOI and the first SOS, and the offset of that SOS marker."""
    if len(data) < 2 or data[0] != 0xFF or data[1] != SOI:
        raise MetadataError("not a JPEG file (no SOI marker)")
    segments: list[Segment] = []
    pos = 2
    size = len(data)
    while True:
        if pos + 1 >= size:
            raise MetadataError(f"truncated JPEG: no image data (SOS) after offset {pos}")
        if data[pos] != 0xFF:
            raise MetadataError(f"corrupt JPEG: expected a marker at offset {pos}")
        start = pos
        while pos < size and data[pos] == 0xFF:  # fill bytes may pad a marker
            pos += 1
        if pos >= size:
            raise MetadataError("truncated JPEG: file ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == SOS:
            return segments, start
        if marker == EOI:
            raise MetadataError("corrupt JPEG: end of image before any image data")
        if marker in _STANDALONE:
            continue
        if pos + 2 > size:
            raise MetadataError(f"truncated JPEG: segment 0xFF{marker:02X} at offset {start} has no length")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > size:
            raise MetadataError(
                f"truncated JPEG: segment 0xFF{marker:02X} at offset {start} overruns the file"
            )
        segments.append(Segment(marker, start, pos + length, pos + 2))
        pos += length


def frame_size(data: bytes | memoryview, segments: list[Segment]) -> tuple[int, int] | None:
    """The (width, height) of the image from its SOF segment, if there is one."""
    for seg in segments:
        if seg.marker in _SOF_MARKERS and seg.end - seg.payload_start >= 5:
            p = seg.payload_start
            return (data[p + 3] << 8) | data[p + 4], (data[p + 1] << 8) | data[p + 2]
    return None


def find_app1(data: bytes | memoryview, segments: list[Segment], header: bytes) -> Segment | None:
    """The first APP1 segment whose payload starts with ``header``."""
    for seg in segments:
        if seg.marker == APP1 and bytes(data[seg.payload_start : seg.payload_start + len(header)]) == header:
            return seg
    return None


def app1_segment(payload: bytes) -> bytes:
    """A complete APP1 segment carrying ``payload``."""
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise MetadataError(f"APP1 payload of {len(payload)} bytes exceeds the JPEG limit of 65533")
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
