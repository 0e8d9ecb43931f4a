"""A few simple XMP properties, found with regular expressions instead of an XML parser.

XMP comes from untrusted files: an XML parser would have to be guarded against entity expansion and is slow.
The properties read here are simple values written either as attributes of ``rdf:Description``
(``GPano:ProjectionType="equirectangular"``) or as elements (``<GPano:ProjectionType>...</...>``).
Prefixes are resolved through the packet's ``xmlns`` declarations, and only the five predefined XML
entities and character references are decoded: no DTD entity is ever expanded.
"""

from __future__ import annotations

import re
from functools import lru_cache

GPANO_NS = "http://ns.google.com/photos/1.0/panorama/"
EXIF_NS = "http://ns.adobe.com/exif/1.0/"
EXIF_EX_NS = "http://cipa.jp/exif/1.0/"
AUX_NS = "http://ns.adobe.com/exif/1.0/aux/"
# namespace URI -> (canonical prefix, property names read)
_NAMESPACES = {
    GPANO_NS: (
        "GPano",
        (
            "ProjectionType",
            "PoseHeadingDegrees",
            "PosePitchDegrees",
            "PoseRollDegrees",
            "FullPanoWidthPixels",
            "FullPanoHeightPixels",
            "CroppedAreaImageWidthPixels",
            "CroppedAreaImageHeightPixels",
            "CroppedAreaLeftPixels",
            "CroppedAreaTopPixels",
        ),
    ),
    EXIF_NS: (
        "exif",
        (
            "DateTimeOriginal",
            "GPSLatitude",
            "GPSLongitude",
            "GPSAltitude",
            "GPSAltitudeRef",
            "GPSImgDirection",
            "GPSTimeStamp",
        ),
    ),
    EXIF_EX_NS: ("exifEX", ("BodySerialNumber",)),
    AUX_NS: ("aux", ("SerialNumber",)),
}
_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")
_REFERENCE = re.compile(r"&(?:#(\d+)|#x([0-9A-Fa-f]+)|(lt|gt|amp|quot|apos));")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


@lru_cache(maxsize=64)
def _pattern(
    declarations: tuple[tuple[bytes, bytes], ...],
) -> tuple[re.Pattern[bytes] | None, dict[tuple[bytes, bytes], str]]:
    """The property regex for a packet's ``xmlns`` (prefix, URI) declarations, and (prefix, name) -> result
    key; no regex when none of the namespaces read is declared."""
    bindings = {(prefix, uri.decode("latin-1")) for prefix, uri in declarations}
    keys = {
        (prefix, name.encode()): f"{_NAMESPACES[uri][0]}:{name}"
        for prefix, uri in sorted(bindings)
        if uri in _NAMESPACES
        for name in _NAMESPACES[uri][1]
    }
    if not keys:
        return None, keys
    prefixes = sorted({prefix for prefix, _ in keys}, key=len, reverse=True)
    names = sorted({name for _, name in keys}, key=len, reverse=True)
    # Each prefix is checked to follow whitespace or "<" by a look-behind after it, not before it, so that the
    # regex engine can skip ahead to the prefixes quickly.
    after = b"|".join(
        re.escape(prefix) + rb"(?<=[ \t\r\n<]" + re.escape(prefix) + b")" for prefix in prefixes
    )
    pattern = re.compile(
        b"(" + after + b"):(" + b"|".join(names) + b")"
        rb"""(?:\s*=\s*(?:"([^"]*)"|'([^']*)')|(?:\s[^>]*)?>([^<]*)</)"""
    )
    return pattern, keys


def parse_xmp(packet: bytes) -> dict[str, str]:
    """Return the properties read from an XMP packet, keyed ``"GPano:ProjectionType"`` etc."""
    pattern, keys = _pattern(tuple(_XMLNS.findall(packet)))
    if pattern is None:
        return {}
    found: dict[str, str] = {}
    for prefix, name, double, single, element in pattern.findall(packet):
        key = keys.get((prefix, name))
        if key is not None and key not in found:
            found[key] = _decode(double or single or element).strip()  # the one alternative that matched
    return found


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if "&" in text:
        text = _REFERENCE.sub(_reference, text)
    return text


def _reference(match: re.Match[str]) -> str:
    decimal, hexadecimal, name = match.groups()
    try:
        return chr(int(decimal)) if decimal else chr(int(hexadecimal, 16)) if hexadecimal else _ENTITIES[name]
    except (ValueError, OverflowError):
        return match.group()


__all__ = ["AUX_NS", "EXIF_EX_NS", "EXIF_NS", "GPANO_NS", "parse_xmp"]
