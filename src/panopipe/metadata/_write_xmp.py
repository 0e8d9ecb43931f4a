"""Merging simple properties into an XMP packet (the standard APP1 packet; extended XMP is not touched)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Collection
from xml.sax.saxutils import escape, quoteattr

from panopipe.errors import MetadataError
from panopipe.metadata.xmp import declares_entities

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_RDF = f"{{{RDF_NS}}}RDF"
_DESCRIPTION = f"{{{RDF_NS}}}Description"
_ABOUT = f"{{{RDF_NS}}}about"
_PACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_PACKET_END = '\n<?xpacket end="w"?>'

Property = tuple[str, str]
"""A property name: (namespace URI, local name)."""


def merge_xmp(
    packet: bytes | None,
    values: dict[Property, str],
    prefixes: dict[str, str],
    remove: Collection[Property] = (),
) -> bytes | None:
    """``packet`` (or an empty packet) with ``values`` set as simple properties, replacing earlier values, and
    the properties ``remove`` names taken out; None when that changes nothing (no ``values``, and none of
    ``remove`` in the packet).

    ``prefixes`` maps namespace URIs to the prefixes to declare them with when the packet has none.
    """
    if not values and (packet is None or not remove):
        return None
    if packet is None:
        root = ET.Element(f"{{{X_NS}}}xmpmeta")
        ET.SubElement(ET.SubElement(root, _RDF), _DESCRIPTION, {_ABOUT: ""})
        declared: dict[str, str] = {X_NS: "x", RDF_NS: "rdf"}
    else:
        root, declared = _parse(packet)
    rdf = root if root.tag == _RDF else root.find(_RDF)
    if rdf is None:
        raise MetadataError("corrupt XMP: the packet has no rdf:RDF element")
    descriptions = rdf.findall(_DESCRIPTION) or [ET.SubElement(rdf, _DESCRIPTION, {_ABOUT: ""})]
    removed = False
    for uri, name in (*values, *remove):
        qualified = f"{{{uri}}}{name}"
        for description in descriptions:
            removed |= description.attrib.pop(qualified, None) is not None
            for child in description.findall(qualified):
                description.remove(child)
                removed = True
    if not values and not removed:
        return None
    for (uri, name), value in values.items():
        descriptions[0].set(f"{{{uri}}}{name}", value)
    for uri, prefix in prefixes.items():
        _bind(declared, uri, prefix)
    body = _element(root, declared, top=True)
    return (_PACKET_BEGIN + body + _PACKET_END).encode()


def _parse(packet: bytes) -> tuple[ET.Element, dict[str, str]]:
    """The root element of ``packet`` and a prefix for each namespace URI it declares: the packet's own, or a
    numbered variant of it where the packet binds one prefix to several URIs (legal in XML, one per element);
    ``ns`` for a default namespace."""
    if declares_entities(packet):
        raise MetadataError("unsafe XMP: the packet declares a DOCTYPE or entities")
    declared: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        for event, item in ET.iterparse(
            io.BytesIO(packet.rstrip(b"\x00 \t\r\n")), events=("start-ns", "start")
        ):
            if event == "start-ns":
                prefix, uri = item
                if uri:  # xmlns="" leaves elements in no namespace: they need no prefix
                    _bind(declared, uri, prefix or "ns")
            elif root is None:
                root = item
    except ET.ParseError as exc:
        raise MetadataError(f"corrupt XMP: {exc}") from None
    if root is None:
        raise MetadataError("corrupt XMP: the packet is empty")
    return root, declared


def _bind(declared: dict[str, str], uri: str, prefix: str) -> None:
    """Give ``uri`` a prefix, ``prefix`` or a numbered variant of it, unless it has one."""
    if uri in declared:
        return
    taken = set(declared.values())
    candidate, number = prefix, 0
    while candidate in taken:
        number += 1
        candidate = f"{prefix}{number}"
    declared[uri] = candidate


def _element(elem: ET.Element, prefixes: dict[str, str], *, top: bool = False) -> str:
    """``elem`` as XML; the top element declares every namespace in ``prefixes``."""
    parts = [f"<{_qname(elem.tag, prefixes)}"]
    if top:
        parts += [f" xmlns:{prefix}={quoteattr(uri)}" for uri, prefix in prefixes.items()]
    parts += [f" {_qname(key, prefixes)}={quoteattr(value)}" for key, value in elem.attrib.items()]
    if len(elem) == 0 and not elem.text:
        parts.append("/>")
    else:
        parts += [">", escape(elem.text or "")]
        parts += [_element(child, prefixes) + escape(child.tail or "") for child in elem]
        parts.append(f"</{_qname(elem.tag, prefixes)}>")
    return "".join(parts)


def _qname(tag: str, prefixes: dict[str, str]) -> str:
    if not tag.startswith("{"):
        return tag
    uri, _, local = tag[1:].partition("}")
    if uri == _XML_NS:
        return f"xml:{local}"
    return f"{prefixes[uri]}:{local}"


__all__ = ["RDF_NS", "X_NS", "Property", "merge_xmp"]
