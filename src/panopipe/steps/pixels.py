"""The pixels of an image file, decoded one way with one error message for every step that reads them
(stitch, nadir, derive), and turned as its EXIF ``Orientation`` tells a viewer to show them.

JPEGs are decoded by libjpeg-turbo through simplejpeg, which stops at libjpeg's first warning: damaged
entropy-coded data (a bad card sector's block of zeros) decodes to garbage with a mere warning, which OpenCV
prints bare on stderr before it returns the garbage as an image. The pixels are OpenCV's, as fast
(``bench/README.md``), in one decode. Other formats are OpenCV's.

Where pixels are not to be decoded (planning loads no decoder), :func:`structure_damage` tells a PNG or JPEG
cut short, or a PNG with a damaged chunk, from its structure alone.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING

from panopipe.errors import MetadataError, StepError
from panopipe.metadata import parse_jpeg_header
from panopipe.metadata.jpeg import scan_segments

if TYPE_CHECKING:  # numpy, OpenCV and simplejpeg are imported by the worker only: planning never loads them
    import numpy as np

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"  # EOI: never within a scan's data, where a 0xFF byte is followed by 0x00 or RSTn
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_IMAGE_MAGIC = (_PNG_MAGIC, b"II*\x00", b"MM\x00*", b"RIFF", b"BM")  # the formats OpenCV decodes
_CORRUPT = "Corrupt JPEG data: "  # how libjpeg begins most of its warnings about the entropy-coded data
_EXTRANEOUS_BEFORE_EOI = re.compile(r"Corrupt JPEG data: (\d+) extraneous bytes before marker 0xd9")
_HARMLESS = (  # libjpeg's warnings of quirks of the header, which leave the pixels whole (jerror.h)
    "Warning: unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Unknown Adobe color transform code",
)
MAX_PIXELS = 1 << 30
"""The most pixels a decode makes (3 GiB as BGR): OpenCV's own limit, which the other formats keep; a header
claiming more is refused before anything is allocated."""


def decode_pixels(
    data: bytes, source: str, *, upright: bool = False, shrink: int = 1, alpha: bool = False
) -> np.ndarray:
    """``data`` (the bytes of ``source``) as 8-bit BGR pixels, as stored, or turned as its EXIF orientation
    says (``upright``); a JPEG scaled down by ``shrink`` (1, 2, 4 or 8) as it is decoded. With ``alpha``,
    8-bit BGRA pixels as stored and full size: a PNG's transparency kept (a logo's), other images opaque.
    Raises :class:`StepError` saying why it cannot be decoded: for a JPEG, what libjpeg found wrong with its
    data (``corrupt JPEG data in <source>: premature end of data segment``), warnings that pixels are missing
    included. A JPEG libjpeg warns of otherwise (a quirk of its header) is OpenCV's to decode, as before."""
    if alpha and (upright or shrink != 1):
        raise ValueError("decode_pixels(alpha=True) decodes pixels as stored and full size")
    if data.startswith(_JPEG_MAGIC):
        pixels = _decode_jpeg(
            data, source, upright=upright, shrink=shrink, colours="BGRA" if alpha else "BGR"
        )
        if pixels is not None:
            return pixels
    import cv2
    import numpy as np

    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
        shrink, cv2.IMREAD_REDUCED_COLOR_8
    )
    flags |= 0 if upright else cv2.IMREAD_IGNORE_ORIENTATION
    flags = cv2.IMREAD_UNCHANGED if alpha else flags  # its alpha and depth, as stored: made BGRA by _bgra
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None:
        raise StepError(f"cannot decode {source}: {_undecodable(data)}")
    return _bgra(image) if alpha else image


def _bgra(image: np.ndarray) -> np.ndarray:
    """``image`` as OpenCV decodes an image unchanged (grey or colour, with alpha or without, 8 or 16 bits)
    as 8-bit BGRA."""
    import cv2
    import numpy as np

    if image.dtype != np.uint8:  # a 16-bit PNG
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2BGRA) if image.shape[2] == 3 else image


def _decode_jpeg(data: bytes, source: str, *, upright: bool, shrink: int, colours: str) -> np.ndarray | None:
    """The pixels of ``data`` (a JPEG), or ``None`` when libjpeg warned of something that leaves them whole
    (see :func:`_damaged`)."""
    import numpy as np
    import simplejpeg

    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data, strict=False)  # the decode warns
        size = {"min_factor": shrink, "min_height": -(-height // shrink), "min_width": -(-width // shrink)}
        if size["min_height"] * size["min_width"] > MAX_PIXELS:
            raise StepError(f"cannot decode {source}: {width}x{height} pixels, more than {MAX_PIXELS:,}")
        try:  # 1/shrink exactly: the smallest scale that keeps this size
            pixels = simplejpeg.decode_jpeg(data, colours, **size)
        except ValueError as warned:
            if _damaged(data, str(warned)):
                raise
            return None
        orientation = parse_jpeg_header(data).orientation if upright else None
    except (ValueError, MetadataError) as exc:
        reason = str(exc).removeprefix(_CORRUPT)
        raise StepError(f"corrupt JPEG data in {source}: {reason[:1].lower()}{reason[1:]}") from None
    return np.ascontiguousarray(as_displayed(pixels, orientation))  # not copied when not turned


def _damaged(data: bytes, warning: str) -> bool:
    """Whether libjpeg's ``warning`` (or error) about ``data`` says that its pixels are not all there. Only
    quirks of the header leave them whole (:data:`_HARMLESS`: an unknown JFIF revision, SOS parameters a
    sequential JPEG need not have, an Adobe colour transform code libjpeg does not know), as does fill before
    the end marker (``N extraneous bytes before marker 0xd9`` where those bytes are all 0x00 or all 0xFF; other
    bytes there are data a damaged stream left unread). Anything else is damage, an error included: random
    damage to the entropy-coded data reads, most often, as a marker libjpeg does not know (``Unsupported marker
    type 0x56``), where OpenCV's decode goes on with grey and a mere warning."""
    extraneous = _EXTRANEOUS_BEFORE_EOI.fullmatch(warning)
    if extraneous is not None:
        end = data.rfind(b"\xff\xd9")
        fill = data[max(0, end - int(extraneous[1])) : end]
        return not fill or all(fill.strip(pad) for pad in (b"\x00", b"\xff"))
    return not warning.startswith(_HARMLESS)


def _undecodable(data: bytes) -> str:
    """Why OpenCV decoded nothing from ``data``."""
    if not data:
        return "the file is empty"
    if data.startswith(_IMAGE_MAGIC):
        return "its data is truncated or corrupt"
    return f"not an image format OpenCV reads (starts with {data[:4].hex(' ').upper()})"


def structure_damage(data: bytes) -> str | None:
    """What is wrong with the structure of ``data``, a PNG or a JPEG, found without decoding its pixels: a PNG
    chunk whose checksum fails, or a file cut short before its end; ``None`` when it is whole (or another
    format). Damage within a JPEG's compressed data, which no checksum covers, shows when it is decoded
    (:func:`decode_pixels`)."""
    if data.startswith(_PNG_MAGIC):
        return _png_damage(data)
    if data.startswith(_JPEG_MAGIC):
        try:
            _, _, scan = scan_segments(data)
        except MetadataError as exc:
            return str(exc)
        return (
            None
            if data.find(_JPEG_END, scan) >= 0
            else "cut short: no end-of-image marker after its image data"
        )
    return None


def _png_damage(data: bytes) -> str | None:
    """What is wrong with the chunks of ``data`` (a PNG) up to its end chunk, ``IEND``; ``None`` if nothing."""
    pos = len(_PNG_MAGIC)
    while pos + 12 <= len(data):  # length, type, data, CRC of type and data
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > len(data):
            break
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return (
                f"its chunk at byte {pos} ({data[pos + 4 : pos + 8].decode('latin-1')!r}) fails its checksum"
            )
        if data[pos + 4 : pos + 8] == b"IEND":
            return None
        pos = end
    return f"cut short: the chunk at byte {pos} runs past the end of the file ({len(data)} bytes)"


def as_displayed(pixels: np.ndarray, orientation: int | None) -> np.ndarray:
    """A view of ``pixels`` (as stored) turned and mirrored as EXIF ``orientation`` (1 to 8) tells a viewer
    to show them; writing into it writes into ``pixels``."""
    turned = {
        2: pixels[:, ::-1],
        3: pixels[::-1, ::-1],
        4: pixels[::-1],
        5: pixels.swapaxes(0, 1),
        6: pixels[::-1].swapaxes(0, 1),
        7: pixels[::-1, ::-1].swapaxes(0, 1),
        8: pixels[:, ::-1].swapaxes(0, 1),
    }
    return turned.get(orientation or 1, pixels)


__all__ = ["MAX_PIXELS", "as_displayed", "decode_pixels", "structure_damage"]
