"""Lossless editing of the TIFF structure inside an EXIF APP1 segment.

The IFDs the writer edits (IFD0, ExifIFD, GPS, InteropIFD and IFD1 with its thumbnail) are parsed into
entries and written back as fresh tables. A MakerNote cannot be moved, because many maker notes hold
offsets counted from the start of the TIFF block, so its bytes stay where they are: the original block is
kept up to the end of the maker note and the rebuilt IFDs are appended after it. Structures that lie past
the maker note and that are rebuilt anyway (such as the tables appended by an earlier write) are dropped,
so repeated writes do not grow the file. Without a maker note the block is rewritten from scratch.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from panopipe.errors import MetadataError
from panopipe.metadata.tiff import (
    BYTE,
    EXIF_IFD,
    GPS_IFD,
    IFD,
    INTEROP_IFD,
    LONG,
    POINTER_TYPES,
    RATIONAL,
    SHORT,
    SRATIONAL,
    TYPE_SIZES,
    pointer_offset,
)

log = logging.getLogger(__name__)

IFD0, EXIF, GPS, INTEROP, IFD1 = "IFD0", "ExifIFD", "GPS", "InteropIFD", "IFD1"
_POINTERS = {EXIF: (IFD0, EXIF_IFD), GPS: (IFD0, GPS_IFD), INTEROP: (EXIF, INTEROP_IFD)}
"""Where each sub-IFD hangs: (parent IFD, pointer tag)."""
_WRITE_ORDER = (IFD0, EXIF, INTEROP, GPS, IFD1)
MAKER_NOTE = 0x927C
_THUMB_OFFSET, _THUMB_LENGTH = 0x0201, 0x0202
_OPAQUE_POINTERS = frozenset({0x0111, 0x0144, 0x014A, 0x0201})
"""Tags whose values are offsets this module does not relocate (strips, tiles, SubIFDs, stray thumbnails)."""

Value = str | bytes | tuple[int, ...] | tuple[tuple[int, int], ...]


@dataclass(slots=True)
class Entry:
    """One IFD entry with its value bytes in the block's byte order; ``pinned`` is a fixed value offset."""

    type: int
    count: int
    value: bytes
    pinned: int | None = None


class ExifTree:
    """The editable IFDs of one EXIF TIFF block."""

    def __init__(self, order: str, source: bytes = b"") -> None:
        self.order = order
        self.ifds: dict[str, dict[int, Entry]] = {}
        self.thumbnail = b""
        self._source = source
        self._keep = 8  # bytes of ``source`` kept in place
        self._pinned_end = 0
        self._keep_all = False
        self._tables: list[tuple[int, int]] = []
        self._movable: list[tuple[int, int]] = []  # spans of structures that are rebuilt elsewhere

    @classmethod
    def parse(cls, block: bytes) -> ExifTree:
        """Parse a TIFF block (the APP1 payload after the Exif header); raise MetadataError if it is corrupt."""
        if len(block) < 8:
            raise MetadataError("corrupt EXIF: the TIFF header is truncated")
        order = {b"II": "<", b"MM": ">"}.get(block[:2])
        if order is None or struct.unpack_from(order + "H", block, 2)[0] != 42:
            raise MetadataError("corrupt EXIF: no TIFF byte-order mark")
        tree = cls(order, block)
        ifd0_offset = tree._u32(block, 4)
        next_offset = tree._read_ifd(IFD0, ifd0_offset)
        for name in (EXIF, GPS, INTEROP):
            parent, tag = _POINTERS[name]
            entry = tree.ifds.get(parent, {}).pop(tag, None)
            if entry is not None:
                if entry.type not in POINTER_TYPES or entry.count != 1:
                    raise MetadataError(f"corrupt EXIF: the {name} pointer in {parent} has type {entry.type}")
                tree._read_ifd(name, pointer_offset(tree.order, entry.type, entry.value))
        if next_offset:
            tree._read_ifd1(next_offset)
        tree._keep = tree._kept_prefix()
        return tree

    def get(self, ifd: str, tag: int) -> Entry | None:
        """The entry ``tag`` of ``ifd``, if the block has it."""
        return self.ifds.get(ifd, {}).get(tag)

    def ensure(self, ifd: str, defaults: dict[int, tuple[int, Value]]) -> None:
        """Create ``ifd`` (and its parents) if missing, seeded with ``defaults`` (tag: (type, value))."""
        if ifd in self.ifds:
            return
        parent = _POINTERS.get(ifd, (None,))[0]
        if parent is not None:
            self.ensure(parent, {})
        self.ifds[ifd] = {}
        for tag, (type_, value) in defaults.items():
            self.set(ifd, tag, type_, value)

    def set(self, ifd: str, tag: int, type_: int, value: Value) -> None:
        """Set ``tag`` in ``ifd`` (which must exist) to ``value``, encoded as TIFF type ``type_``."""
        data, count = self._encode(type_, value)
        self.ifds[ifd][tag] = Entry(type_, count, data)

    def remove(self, ifd: str, tag: int) -> bool:
        """Remove ``tag`` from ``ifd``; whether the block had it."""
        return self.ifds.get(ifd, {}).pop(tag, None) is not None

    def copy(self, source: str, ifd: str, tag: int, to: int | None = None) -> None:
        """Give ``ifd`` (which must exist) the entry ``tag`` of ``source`` as its tag ``to`` (default: ``tag``),
        or remove that if ``source`` has none."""
        entry = self.get(source, tag)
        target = tag if to is None else to
        if entry is None:
            self.ifds[ifd].pop(target, None)
        else:
            self.ifds[ifd][target] = Entry(entry.type, entry.count, entry.value)

    def serialize(self, limit: int) -> bytes:
        """The TIFF block; if it exceeds ``limit`` bytes, drop the thumbnail (IFD1) or raise MetadataError."""
        block = self._serialize()
        if len(block) > limit and IFD1 in self.ifds:
            log.warning("EXIF would exceed the 64 KB APP1 limit: dropping the IFD1 thumbnail")
            del self.ifds[IFD1]
            self.thumbnail = b""
            block = self._serialize()
        if len(block) > limit:
            raise MetadataError(f"EXIF block of {len(block)} bytes does not fit in one APP1 segment")
        return block

    def _serialize(self) -> bytes:
        o = self.order
        out = bytearray(self._source[: self._keep] if self._source else bytes(8))
        ifds = {name: dict(self.ifds[name]) for name in _WRITE_ORDER if name in self.ifds}
        placeholder = Entry(LONG, 1, bytes(4))
        for name in (EXIF, GPS, INTEROP):
            if name in ifds:
                parent, tag = _POINTERS[name]
                ifds[parent][tag] = placeholder
        thumb = IFD1 in ifds and _THUMB_OFFSET in ifds[IFD1] and bool(self.thumbnail)
        if thumb:
            ifds[IFD1][_THUMB_OFFSET] = placeholder
            ifds[IFD1][_THUMB_LENGTH] = Entry(LONG, 1, struct.pack(o + "L", len(self.thumbnail)))
        tables: dict[str, tuple[int, dict[int, int], int]] = {}
        for name, entries in ifds.items():
            tables[name] = _put_ifd(out, entries, o)
        out[0:8] = (b"II" if o == "<" else b"MM") + struct.pack(o + "HL", 42, tables[IFD0][0])
        for name in (EXIF, GPS, INTEROP):
            if name in tables:
                parent, tag = _POINTERS[name]
                _patch(out, tables[parent][1][tag], tables[name][0], o)
        if IFD1 in tables:
            _patch(out, tables[IFD0][2], tables[IFD1][0], o)
        if thumb:
            _align(out)
            _patch(out, tables[IFD1][1][_THUMB_OFFSET], len(out), o)
            out += self.thumbnail
        return bytes(out)

    def _read_ifd(self, name: str, offset: int) -> int:
        """Parse the IFD at ``offset`` into ``self.ifds[name]``; return its next-IFD offset."""
        block = self._source
        if offset < 8 or offset + 2 > len(block):
            raise MetadataError(f"corrupt EXIF: {name} offset {offset} is outside the block")
        count = struct.unpack_from(self.order + "H", block, offset)[0]
        end = offset + 2 + 12 * count
        if end > len(block):
            raise MetadataError(f"corrupt EXIF: {name} with {count} entries overruns the block")
        if any(start < end and offset < stop for start, stop in self._tables):
            raise MetadataError(f"corrupt EXIF: {name} overlaps another IFD (a loop?)")
        next_offset = self._u32(block, end) if end + 4 <= len(block) else 0
        self._tables.append((offset, end))
        self._movable.append((offset, min(end + 4, len(block))))
        opaque = _OPAQUE_POINTERS - {_THUMB_OFFSET} if name == IFD1 else _OPAQUE_POINTERS
        entries: dict[int, Entry] = {}
        for pos in range(offset + 2, end, 12):
            tag, type_, n = struct.unpack_from(self.order + "HHL", block, pos)
            size = TYPE_SIZES.get(type_)
            if size is None:
                raise MetadataError(f"corrupt EXIF: {name} tag {tag:#06x} has unknown type {type_}")
            nbytes = size * n
            if nbytes <= 4:
                entry = Entry(type_, n, block[pos + 8 : pos + 8 + nbytes])
            else:
                start = self._u32(block, pos + 8)
                if start + nbytes > len(block):
                    raise MetadataError(
                        f"corrupt EXIF: the value of {name} tag {tag:#06x} is outside the block"
                    )
                entry = Entry(type_, n, block[start : start + nbytes])
                if tag == MAKER_NOTE:
                    entry.pinned = start
                    self._pinned_end = max(self._pinned_end, start + nbytes)
                else:
                    self._movable.append((start, start + nbytes))
            if tag in opaque or (type_ == IFD and (tag, name) not in _POINTER_TAGS):
                self._keep_all = True
            entries.setdefault(tag, entry)
        self.ifds[name] = entries
        return next_offset

    def _read_ifd1(self, offset: int) -> None:
        """Parse IFD1 and its JPEG thumbnail; a broken IFD1 is dropped with a warning, as it is disposable."""
        keep_all, tables, movable = self._keep_all, len(self._tables), len(self._movable)
        try:
            self._read_ifd(IFD1, offset)
            entries = self.ifds[IFD1]
            where, length = entries.get(_THUMB_OFFSET), entries.get(_THUMB_LENGTH)
            if where is None or length is None:
                return
            start, size = self._scalar(where), self._scalar(length)
            if size == 0 or start + size > len(self._source):
                raise MetadataError(f"thumbnail of {size} bytes at offset {start} is outside the block")
        except MetadataError as exc:
            log.warning("dropping the broken EXIF thumbnail directory (IFD1): %s", exc)
            self.ifds.pop(IFD1, None)
            self._keep_all, self._tables[tables:], self._movable[movable:] = keep_all, [], []
            return
        self.thumbnail = self._source[start : start + size]
        self._movable.append((start, start + size))

    def _kept_prefix(self) -> int:
        """How many leading bytes of the source must stay in place (see the module docstring)."""
        if self._keep_all:
            return len(self._source)
        if not self._pinned_end:
            return 8
        cut = len(self._source)
        for start, stop in sorted(self._movable, key=lambda span: span[1], reverse=True):
            if stop < cut - 3:  # allow word-alignment padding between dropped structures
                break
            cut = min(cut, start)
        return max(cut, self._pinned_end)

    def _scalar(self, entry: Entry) -> int:
        if entry.type == SHORT and entry.count == 1:
            return struct.unpack(self.order + "H", entry.value)[0]
        if entry.type in (LONG, IFD) and entry.count == 1:
            return self._u32(entry.value, 0)
        raise MetadataError(f"expected one SHORT or LONG, found type {entry.type} x{entry.count}")

    def _u32(self, data: bytes, offset: int) -> int:
        return struct.unpack_from(self.order + "L", data, offset)[0]

    def _encode(self, type_: int, value: Value) -> tuple[bytes, int]:
        o = self.order
        if isinstance(value, str):
            data = value.encode() + b"\x00"
            return data, len(data)
        if isinstance(value, bytes):
            return value, len(value)
        if type_ in (RATIONAL, SRATIONAL):
            flat = [part for pair in value for part in pair]  # type: ignore[union-attr]
            code = "L" if type_ == RATIONAL else "l"
            return struct.pack(f"{o}{len(flat)}{code}", *flat), len(value)
        code = {BYTE: "B", SHORT: "H", LONG: "L"}[type_]
        return struct.pack(f"{o}{len(value)}{code}", *value), len(value)


_POINTER_TAGS = frozenset((tag, parent) for parent, tag in _POINTERS.values())


def _align(out: bytearray) -> None:
    if len(out) % 2:
        out.append(0)


def _patch(out: bytearray, position: int, value: int, order: str) -> None:
    struct.pack_into(order + "L", out, position, value)


def _put_ifd(out: bytearray, entries: dict[int, Entry], order: str) -> tuple[int, dict[int, int], int]:
    """Append an IFD table (sorted by tag) and its values; return its offset, the position of each entry's
    value field, and the position of its next-IFD pointer."""
    _align(out)
    table = len(out)
    tags = sorted(entries)
    next_field = table + 2 + 12 * len(tags)
    out += struct.pack(order + "H", len(tags)) + bytes(12 * len(tags) + 4)
    fields: dict[int, int] = {}
    for position, tag in zip(range(table + 2, next_field, 12), tags, strict=True):
        entry = entries[tag]
        if len(entry.value) <= 4:
            field = entry.value.ljust(4, b"\x00")
        elif entry.pinned is not None:
            field = struct.pack(order + "L", entry.pinned)
        else:
            _align(out)
            field = struct.pack(order + "L", len(out))
            out += entry.value
        out[position : position + 12] = struct.pack(order + "HHL", tag, entry.type, entry.count) + field
        fields[tag] = position + 8
    return table, fields, next_field


__all__ = ["MAKER_NOTE", "Entry", "ExifTree", "Value"]
