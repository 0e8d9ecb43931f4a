"""A few simple XMP properties, found with regular expressions instead of an XML parser.

XMP comes from untrusted files: an XML parser would have to be guarded against entity expansion and is slow.
The properties read here are simple values written either as attributes of a top-level ``rdf:Description``
(``GPano:ProjectionType="equirectangular"``) or as its child elements (``<GPano:ProjectionType>...</...>``).
Prefixes are resolved through the packet's ``xmlns`` declarations, and only the five predefined XML
entities and character references are decoded: a packet with a DOCTYPE is refused.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

GPANO_NS = "http://ns.google.com/photos/1.0/panorama/"
EXIF_NS = "http://ns.adobe.com/exif/1.0/"
EXIF_EX_NS = "http://cipa.jp/exif/1.0/"
AUX_NS = "http://ns.adobe.com/exif/1.0/aux/"
TIFF_NS = "http://ns.adobe.com/tiff/1.0/"
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
            "GPSImgDirectionRef",
            "GPSHPositioningError",
            "GPSTimeStamp",
        ),
    ),
    EXIF_EX_NS: ("exifEX", ("BodySerialNumber",)),
    AUX_NS: ("aux", ("SerialNumber",)),
    TIFF_NS: ("tiff", ("Make", "Model")),
}
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")
# A start or end tag ("/" for an end tag, the qualified name, the rest up to ">") and the text after it.
_TAG = re.compile(rb"<(/?)([A-Za-z_][\w.:-]*)([^>]*)>([^<]*)")
_REFERENCE = re.compile(r"&(?:#(\d+)|#x([0-9A-Fa-f]+)|(lt|gt|amp|quot|apos));")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_MARKUP = re.compile(rb"<[!A-Za-z_]")  # a declaration, comment or element: not a processing instruction
_XMPMETA = (b":xmpmeta", b":xapmeta")
# What an open element is to the walk of the packet.
_OTHER, _ROOT, _TOP = range(3)  # _ROOT: rdf:RDF or x:xmpmeta, whose descriptions are top-level


class _Grammar(NamedTuple):
    attribute: re.Pattern[bytes]  # a property written as an attribute: qualified name, value in '' or ""
    keys: dict[bytes, str]  # qualified name ("GPano:ProjectionType" with the packet's prefix) -> result key
    rdf: bytes  # the name of rdf:RDF with the packet's prefix
    description: bytes  # likewise for rdf:Description


@lru_cache(maxsize=64)
def _grammar(declarations: tuple[tuple[bytes, bytes], ...]) -> _Grammar | None:
    """How to find the properties read in a packet with these ``xmlns`` (prefix, URI) declarations; None when
    none of the namespaces read is declared."""
    bindings = {(prefix, uri.decode("latin-1")) for prefix, uri in declarations}
    keys = {
        prefix + b":" + name.encode(): f"{_NAMESPACES[uri][0]}:{name}"
        for prefix, uri in sorted(bindings)
        if uri in _NAMESPACES
        for name in _NAMESPACES[uri][1]
    }
    if not keys:
        return None
    # Each prefix is checked to follow whitespace by a look-behind after it, not before it, so that the regex
    # engine can skip ahead to the prefixes quickly.
    prefixes = sorted({name.partition(b":")[0] for name in keys}, key=len, reverse=True)
    locals_ = sorted({name.partition(b":")[2] for name in keys}, key=len, reverse=True)
    attribute = re.compile(
        b"((?:"
        + b"|".join(re.escape(prefix) + rb"(?<=\s" + re.escape(prefix) + b")" for prefix in prefixes)
        + b"):(?:"
        + b"|".join(map(re.escape, locals_))
        + rb"""))\s*=\s*(?:"([^"]*)"|'([^']*)')"""
    )
    rdf = next((prefix for prefix, uri in sorted(bindings) if uri == RDF_NS), b"rdf")
    return _Grammar(attribute, keys, rdf + b":RDF", rdf + b":Description")


def declares_entities(packet: bytes) -> bool:
    """Whether an XMP packet has a DOCTYPE or entity declarations: such a packet is neither read nor edited."""
    first = _MARKUP.search(packet)  # a DOCTYPE comes before the root element
    return first is not None and first[0] == b"<!" and (b"<!DOCTYPE" in packet or b"<!ENTITY" in packet)


def parse_xmp(packet: bytes, warnings: list[str]) -> dict[str, str]:
    """Return the properties read from an XMP packet, keyed ``"GPano:ProjectionType"`` etc.

    Only properties of a top-level ``rdf:Description`` (a child of ``rdf:RDF`` or, as ExifTool reads it, of
    ``x:xmpmeta``) count: the same names inside a structure (IPTC's ``Iptc4xmpExt:LocationShown`` holds an
    ``exif:GPSLatitude``) describe something else.
    A packet that declares a DOCTYPE or entities is refused with a warning.
    """
    if declares_entities(packet):
        warnings.append("XMP packet declares a DOCTYPE or entities, ignored")
        return {}
    # A packet ends in kilobytes of padding before its trailer: the scans stop at the last markup before both.
    trailer = packet.rfind(b"<?xpacket end")
    stop = packet.rfind(b">", 0, trailer if trailer >= 0 else len(packet)) + 1
    grammar = _grammar(tuple(_XMLNS.findall(packet, 0, stop)))
    if grammar is None:
        return {}
    found: dict[str, str] = {}
    keys = grammar.keys
    stack: list[int] = []  # what each open element is
    tags = _TAG.findall(packet, 0, stop)
    for index, (close, name, rest, text) in enumerate(tags):
        if close:
            if stack:
                stack.pop()
            continue
        parent = stack[-1] if stack else _ROOT  # a bare rdf:Description is a packet of its own
        kind = _OTHER
        if name == grammar.rdf or name.endswith(_XMPMETA):
            kind = _ROOT
        elif name == grammar.description and parent == _ROOT:
            kind = _TOP
            for qualified, double, single in grammar.attribute.findall(rest):
                if qualified in keys:  # not a name of another namespace under a prefix read
                    found.setdefault(keys[qualified], _decode(double or single).strip())
        elif parent == _TOP and name in keys and not rest.endswith(b"/") and index + 1 < len(tags):
            following = tags[index + 1]
            if following[0] and following[1] == name:  # a simple value, not a structure
                found.setdefault(keys[name], _decode(text).strip())
        if not rest.endswith(b"/"):
            stack.append(kind)
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


__all__ = [
    "AUX_NS",
    "EXIF_EX_NS",
    "EXIF_NS",
    "GPANO_NS",
    "RDF_NS",
    "TIFF_NS",
    "declares_entities",
    "parse_xmp",
]
