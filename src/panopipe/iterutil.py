"""Iteration helpers missing from Python 3.11's standard library."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Tuples of up to ``size`` consecutive items (``itertools.batched`` from Python 3.12)."""
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def spaced(index: int, total: int, count: int) -> bool:
    """Whether item ``index`` of ``total`` is one of ``count`` evenly spaced among them (all of them when
    ``count`` is ``total`` or more): what thins a stream read once, whose length is known."""
    return index * count // total != (index + 1) * count // total


def evenly(items: Sequence[T], count: int) -> list[T]:
    """Up to ``count`` of ``items``, evenly spaced (:func:`spaced`)."""
    return [item for index, item in enumerate(items) if spaced(index, len(items), count)]


def by_message(problems: Iterable[tuple[K, str, str]]) -> dict[tuple[K, str], tuple[str, list[str]]]:
    """``(what, subject, message)`` problems (``subject`` an id such as ``shot:R001-000002``) grouped by what
    and message, where the subject's own key does not count (``shot R001-000002 is missing ...`` is the message
    of ``shot:R001-000001`` too): per group, the first one's message and the subjects, in their order."""
    groups: dict[tuple[K, str], tuple[str, list[str]]] = {}
    for what, subject, message in problems:
        key = subject.partition(":")[2]
        masked = message.replace(key, "\0") if key else message
        groups.setdefault((what, masked), (message, []))[1].append(subject)
    return groups


EXAMPLES = 3
"""Subjects named in a line that stands for many (:func:`examples`)."""


def examples(subjects: Sequence[str], count: int) -> str:
    """The first :data:`EXAMPLES` of ``subjects``, ``count`` in all, joined; an ellipsis when some are left out."""
    return ", ".join(subjects[:EXAMPLES]) + (", …" if count > min(len(subjects), EXAMPLES) else "")


__all__ = ["EXAMPLES", "batched", "by_message", "evenly", "examples", "spaced"]
