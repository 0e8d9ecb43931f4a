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

# namespace URI -> (canonical prefix, property names read)
_NAMESPACES = {
    "http://ns.google.com/photos/1.0/panorama/": (
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
    "http://ns.adobe.com/exif/1.0/": (
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
    "http://cipa.jp/exif/1.0/": ("exifEX", ("BodySerialNumber",)),
    "http://ns.adobe.com/exif/1.0/aux/": ("aux", ("SerialNumber",)),
}
_NAMES = {prefix: frozenset(names) for prefix, names in _NAMESPACES.values()}
_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")
_REFERENCE = re.compile(r"&(?:#(\d+)|#x([0-9A-Fa-f]+)|(lt|gt|amp|quot|apos));")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


@lru_cache(maxsize=64)
def _pattern(prefixes: tuple[tuple[bytes, str], ...]) -> tuple[re.Pattern[bytes], dict[bytes, str]]:
    """The property regex for one set of (prefix, namespace URI) bindings, and prefix -> canonical prefix."""
    canonical = {prefix: _NAMESPACES[uri][0] for prefix, uri in prefixes}
    names = {name for _, uri in prefixes for name in _NAMESPACES[uri][1]}
    alternatives = b"|".join(re.escape(p) for p in sorted(canonical, key=len, reverse=True))
    name_alternatives = "|".join(sorted(names, key=len, reverse=True)).encode()
    pattern = re.compile(
        rb"(?<=[\s<])(" + alternatives + rb"):(" + name_alternatives + rb")"
        rb"""(?:\s*=\s*(?:"([^"]*)"|'([^']*)')|(?:\s[^>]*)?>([^<]*)</)"""
    )
    return pattern, canonical


def parse_xmp(packet: bytes) -> dict[str, str]:
    """Return the properties read from an XMP packet, keyed ``"GPano:ProjectionType"`` etc."""
    bindings = tuple(
        (prefix, uri)
        for prefix, uri in {(p, u.decode("latin-1")) for p, u in _XMLNS.findall(packet)}
        if uri in _NAMESPACES
    )
    if not bindings:
        return {}
    pattern, canonical = _pattern(tuple(sorted(bindings)))
    found: dict[str, str] = {}
    for prefix, name, double, single, element in pattern.findall(packet):
        namespace, local = canonical[prefix], name.decode()
        key = f"{namespace}:{local}"
        if key in found or local not in _NAMES[namespace]:
            continue
        raw = double or single or element
        found[key] = _decode(raw).strip()
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
