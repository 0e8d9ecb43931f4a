"""JPEG marker-segment scanning: everything before the first SOS (start of scan) marker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from panopipe.errors import MetadataError

_SOS = 0xDA
_EOI = 0xD9
_APP1 = 0xE1
# Start-of-frame markers: every 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
_EXIF_ID = b"Exif\x00"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
# Bytes read past the end of the segment that crosses a chunk boundary, so that the small DQT/SOF/DHT/SOS
# segments which usually follow the EXIF and XMP segments arrive in the same ranged read.
_LOOKAHEAD = 2048


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


def _walk(data: bytes) -> tuple[list[tuple[int, int, int]], int, int]:
    """Walk the marker segments of ``data``.

    Returns ``(segments, sos, need)``: ``segments`` lists ``(marker, payload_start, payload_end)``;
    ``sos`` is the offset of the SOS marker, or -1 when ``data`` ends first, and then ``need`` is how long
    ``data`` must be for the walk to go on.
    """
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != 0xD8:
        if n == 0:
            raise MetadataError("not a JPEG (empty file)")
        raise MetadataError(f"not a JPEG (starts with {data[:4].hex(' ').upper()})")
    segments: list[tuple[int, int, int]] = []
    pos = 2
    while True:
        if pos + 2 > n:
            return segments, -1, pos + 4
        if data[pos] != 0xFF:
            raise MetadataError(f"corrupt JPEG: no marker at byte {pos} (found {data[pos]:02X})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _SOS:
            return segments, pos, 0
        if marker == _EOI:
            raise MetadataError(f"no image data: end-of-image marker at byte {pos} before any scan")
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            return segments, -1, pos + 4
        end = pos + 2 + (data[pos + 2] << 8 | data[pos + 3])
        if end < pos + 4:
            raise MetadataError(f"corrupt JPEG: segment FF{marker:02X} at byte {pos} has a length below 2")
        if end > n:
            return segments, -1, end
        segments.append((marker, pos + 4, end))
        pos = end


def read_jpeg_header(
    read: Callable[[int, int], bytes], first_chunk: int = 65536, *, size: int | None = None
) -> bytes:
    """Return a JPEG's header bytes (from the start of the file through the SOS marker).

    ``read(start, length)`` returns up to ``length`` bytes from ``start`` (fewer at the end of the file), as
    an S3 ranged GET does. It is called once with ``first_chunk`` bytes; when the header is longer, the next
    call asks for the rest of the segment that crosses the boundary plus a small look-ahead for the short
    segments that follow it, so that a large EXIF thumbnail or XMP packet costs one more call. Reads never
    go past ``size`` (the file size) when it is given.
    """
    limit = size if size is not None else float("inf")
    wanted = int(min(first_chunk, limit))
    data = read(0, wanted) if wanted > 0 else b""
    while True:
        _, sos, need = _walk(data)
        if sos >= 0:
            return data[: sos + 2]
        asked, wanted = wanted, int(min(need + _LOOKAHEAD, limit))
        if len(data) < asked or wanted <= len(data):  # a short read, or the given size: the file ends here
            raise MetadataError(
                f"truncated: the file ends at byte {len(data)}, inside a segment ending at {need}"
            )
        data += read(len(data), wanted - len(data))


def scan_jpeg(data: bytes) -> JpegHeader:
    """Find the SOF size, the EXIF TIFF structure and the XMP packet in a JPEG header."""
    segments, sos, need = _walk(data)
    if sos < 0:
        raise MetadataError(
            f"truncated: the data ends at byte {len(data)}, inside a segment ending at {need}"
        )
    header = JpegHeader(end=sos + 2)
    exif_parts: list[tuple[int, int]] = []
    for marker, start, end in segments:
        if marker == _APP1:
            if data.startswith(_EXIF_ID, start):
                exif_parts.append((start + 6, end))
            elif header.xmp is None and data.startswith(_XMP_ID, start):
                header.xmp = data[start + len(_XMP_ID) : end]
            elif start == end:
                header.warnings.append(f"empty APP1 segment at byte {start - 4}")
        elif marker in _SOF and header.width is None:
            if end - start < 5:
                header.warnings.append(f"SOF segment at byte {start - 4} is too short")
                continue
            header.height = data[start + 1] << 8 | data[start + 2]
            header.width = data[start + 3] << 8 | data[start + 4]
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
