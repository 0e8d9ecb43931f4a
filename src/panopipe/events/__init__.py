"""Incoming S3 change events, normalised whatever envelope they arrive in."""

from panopipe.events.shapes import (
    EventKind,
    EventMessage,
    ObjectEvent,
    compare_sequencers,
    object_events,
    parse_event,
)

__all__ = [
    "EventKind",
    "EventMessage",
    "ObjectEvent",
    "compare_sequencers",
    "object_events",
    "parse_event",
]
