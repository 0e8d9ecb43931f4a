"""Turn every envelope an S3 change arrives in into normalised object events.

Handled envelopes: the direct S3 notification (``Records[].eventSource == "aws:s3"``), SNS
(``Records[].Sns.Message``), SQS whose ``body`` is an S3 notification (also SNS raw delivery), an SNS
envelope or an EventBridge event, and EventBridge ``Object Created`` / ``Object Deleted`` events. SQS messages
come as Lambda delivers them (``Records``) or as ReceiveMessage returns them (``Messages[].Body``: what
``aws sqs receive-message`` prints, e.g. of the dead-letter queue). The ``s3:TestEvent`` S3 sends when a
notification configuration is saved is ignored, with the reason.

Each SQS message is parsed on its own, so one poison message does not hide the others in its batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from panopipe.errors import EventError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class EventKind(StrEnum):
    """What happened to the object."""

    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object created or removed, whatever envelope it came in.

    ``key`` is the real object key (URL-decoded). ``time`` is timezone-aware UTC.
    """

    bucket: str
    key: str
    kind: EventKind
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None
    time: datetime | None
    event_name: str
    region: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``time`` as ISO 8601 in UTC with a ``Z`` suffix, millisecond precision."""
        time = None
        if self.time is not None:
            time = self.time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "bucket": self.bucket,
            "key": self.key,
            "kind": self.kind.value,
            "size": self.size,
            "etag": self.etag,
            "version_id": self.version_id,
            "sequencer": self.sequencer,
            "time": time,
            "event_name": self.event_name,
            "region": self.region,
        }


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One unit that can fail on its own.

    An SQS message (``message_id`` is its ``messageId``, for ``batchItemFailures``), or the whole event
    for direct S3, SNS and EventBridge invocations (``message_id`` is None). ``error`` says why the
    message could not be understood (then ``events`` is empty); ``ignored`` says why records in it were
    skipped (``s3:TestEvent``, an event type that is neither created nor removed).
    """

    message_id: str | None
    events: tuple[ObjectEvent, ...]
    error: str | None
    ignored: str | None


def parse_event(payload: Mapping[str, Any] | str | bytes) -> list[EventMessage]:
    """Split a Lambda event into messages and normalise the object events in each.

    Never raises for bad input: a message that cannot be understood carries ``error``, and a payload
    that is no known envelope yields one such message.
    """
    if isinstance(payload, str | bytes) and not payload.strip():
        return [EventMessage(message_id=None, events=(), error=_EMPTY, ignored=None)]
    try:
        document = _load_json(payload) if isinstance(payload, str | bytes) else payload
    except EventError as exc:
        return [EventMessage(message_id=None, events=(), error=str(exc), ignored=None)]
    records = document.get("Records") if isinstance(document, Mapping) else None
    if isinstance(records, list) and records and all(_is_sqs_record(r) for r in records):
        return [_sqs_message(record) for record in records]
    received = document.get("Messages") if isinstance(document, Mapping) else None
    if isinstance(received, list) and records is None:
        return [_sqs_message(message, _RECEIVED) for message in received]
    return [_message(None, lambda: _parse_top_level(document))]


def object_events(payload: Mapping[str, Any] | str | bytes) -> list[ObjectEvent]:
    """All object events in ``payload``, in order; raises EventError if any message is malformed."""
    messages = parse_event(payload)
    failed = [m for m in messages if m.error is not None]
    if failed:
        details = "; ".join(f"{m.message_id or 'event'}: {m.error}" for m in failed)
        raise EventError(f"{len(failed)} of {len(messages)} message(s) could not be understood: {details}")
    return [event for message in messages for event in message.events]


def compare_sequencers(a: str, b: str) -> int:
    """Order two S3 sequencers of the same object key: negative if ``a`` came first, 0 if equal.

    Raises EventError if either is not a hexadecimal string.
    """
    for value in (a, b):
        if not value or not _HEX_DIGITS.issuperset(value):
            raise EventError(f"sequencer must be a hexadecimal string, got {value!r}")
    # S3 User Guide, "Event message structure": "The sequencers can be of different lengths. So to
    # compare these values, you first left pad the shorter value with zeros, and then do a
    # lexicographical comparison." Upper-casing first makes that the hexadecimal value order.
    width = max(len(a), len(b))
    left, right = a.upper().rjust(width, "0"), b.upper().rjust(width, "0")
    return (left > right) - (left < right)


# --- envelopes -------------------------------------------------------------------------------------

# What _parse_document returns: the object events, and the reasons records were skipped.
_Parsed = tuple[list[ObjectEvent], list[str]]


def _is_sqs_record(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs"


_EMPTY = "empty: no event (`aws sqs receive-message` prints nothing when no message is there)"

_SqsFields = tuple[str, str]
"""The names of an SQS message's id and body."""
_DELIVERED: _SqsFields = ("messageId", "body")
"""As Lambda delivers an SQS message (a record of its event)."""
_RECEIVED: _SqsFields = ("MessageId", "Body")
"""As ReceiveMessage returns one."""


def _sqs_message(message: object, fields: _SqsFields = _DELIVERED) -> EventMessage:
    if not isinstance(message, Mapping):
        error = f"SQS message must be an object, got {type(message).__name__}"
        return EventMessage(message_id=None, events=(), error=error, ignored=None)
    id_field, body_field = fields
    message_id = message.get(id_field)
    message_id = message_id if isinstance(message_id, str) else None
    return _message(message_id, lambda: _parse_document(_load_json(_field(message, body_field, str, "SQS"))))


def _message(message_id: str | None, parse: Callable[[], _Parsed]) -> EventMessage:
    try:
        events, ignored = parse()
    except EventError as exc:
        return EventMessage(message_id=message_id, events=(), error=str(exc), ignored=None)
    return EventMessage(
        message_id=message_id, events=tuple(events), error=None, ignored="; ".join(ignored) or None
    )


class _UnknownShape(EventError):
    """A document that is no envelope :func:`_parse_document` knows."""


def _parse_top_level(document: object) -> _Parsed:
    """:func:`_parse_document`, an unknown shape's error naming the shapes a payload may have."""
    try:
        return _parse_document(document)
    except _UnknownShape as exc:
        known = "an S3, SNS or EventBridge event, Lambda's SQS event, or the messages `aws sqs receive-message` prints"
        raise EventError(f"{exc} (known: {known})") from None


def _parse_document(document: object) -> _Parsed:
    """Unwrap one document: S3/SNS ``Records``, an SNS envelope, an EventBridge event or the test event."""
    if not isinstance(document, Mapping):
        raise _UnknownShape(
            f"unrecognised event shape: expected a JSON object, got {type(document).__name__}"
        )
    if "Records" in document:
        return _parse_records(document["Records"])
    if document.get("Event") == "s3:TestEvent":
        return [], ["s3:TestEvent"]
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return _parse_eventbridge(document)
    if document.get("Type") == "Notification" and "Message" in document:
        return _parse_document(_load_json(_field(document, "Message", str, "SNS")))
    raise _UnknownShape(f"unrecognised event shape: top-level keys {sorted(map(str, document))}")


def _parse_records(records: object) -> _Parsed:
    if not isinstance(records, list):
        raise EventError(f"Records must be a list, got {type(records).__name__}")
    events: list[ObjectEvent] = []
    ignored: list[str] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise EventError(f"record {index} must be an object, got {type(record).__name__}")
        if record.get("eventSource") == "aws:s3":
            more_events, more_ignored = _parse_s3_record(record, f"record {index}")
        elif "Sns" in record:
            sns = _field(record, "Sns", Mapping, f"record {index}")
            more_events, more_ignored = _parse_document(_load_json(_field(sns, "Message", str, "SNS")))
        else:
            raise EventError(f"record {index} is neither an S3 nor an SNS record: keys {sorted(record)}")
        events.extend(more_events)
        ignored.extend(more_ignored)
    return events, ignored


def _parse_s3_record(record: Mapping[str, Any], where: str) -> _Parsed:
    event_name = _field(record, "eventName", str, where)
    if event_name.startswith("ObjectCreated:"):
        kind = EventKind.CREATED
    elif event_name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        kind = EventKind.REMOVED
    else:
        return [], [f"event type {event_name}"]
    s3 = _field(record, "s3", Mapping, where)
    obj = _field(s3, "object", Mapping, f"{where} s3")
    event = _object_event(
        bucket=_field(_field(s3, "bucket", Mapping, f"{where} s3"), "name", str, f"{where} s3.bucket"),
        raw_key=_field(obj, "key", str, f"{where} s3.object"),
        kind=kind,
        size=_optional(obj, "size", int, f"{where} s3.object"),
        etag=_optional(obj, "eTag", str, f"{where} s3.object"),
        version_id=_optional(obj, "versionId", str, f"{where} s3.object"),
        sequencer=_optional(obj, "sequencer", str, f"{where} s3.object"),
        time=_optional(record, "eventTime", str, where),
        event_name=event_name,
        region=_optional(record, "awsRegion", str, where),
    )
    return [event], []


def _parse_eventbridge(document: Mapping[str, Any]) -> _Parsed:
    detail_type = _field(document, "detail-type", str, "EventBridge event")
    if detail_type == "Object Created":
        kind = EventKind.CREATED
    elif detail_type == "Object Deleted":
        kind = EventKind.REMOVED
    else:
        return [], [f"event type {detail_type}"]
    detail = _field(document, "detail", Mapping, "EventBridge event")
    obj = _field(detail, "object", Mapping, "detail")
    reason = _optional(detail, "reason", str, "detail")
    event = _object_event(
        bucket=_field(_field(detail, "bucket", Mapping, "detail"), "name", str, "detail.bucket"),
        raw_key=_field(obj, "key", str, "detail.object"),
        kind=kind,
        size=_optional(obj, "size", int, "detail.object"),
        etag=_optional(obj, "etag", str, "detail.object"),
        version_id=_optional(obj, "version-id", str, "detail.object"),
        sequencer=_optional(obj, "sequencer", str, "detail.object"),
        time=_optional(document, "time", str, "EventBridge event"),
        event_name=f"{detail_type}:{reason}" if reason else detail_type,
        region=_optional(document, "region", str, "EventBridge event"),
    )
    return [event], []


# --- fields ----------------------------------------------------------------------------------------


def _object_event(
    *, bucket: str, raw_key: str, size: int | None, time: str | None, **fields: Any
) -> ObjectEvent:
    """Build the event: the one place where keys are URL-decoded and times parsed."""
    if not bucket:
        raise EventError("bucket name is empty")
    if size is not None and size < 0:
        raise EventError(f"object size {size} is negative")
    # S3 URL-encodes keys as a form value ("red flower.jpg" -> "red+flower.jpg", S3 User Guide, "Event
    # message structure"), percent-escapes being UTF-8. The EventBridge detail is decoded the same way,
    # as Powertools' S3EventBridgeNotificationObject.key does.
    try:
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError as exc:
        raise EventError(f"object key {raw_key!r} has percent-escapes that are not UTF-8") from exc
    if not key:
        raise EventError("object key is empty")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can escape (\ud800) and no S3 key holds
        raise EventError(f"object key {raw_key!r} is not valid UTF-8") from None
    return ObjectEvent(bucket=bucket, key=key, size=size, time=_parse_time(time), **fields)


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise EventError(f"event time {value!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        raise EventError(f"event time {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _load_json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError of bytes
        raise EventError(f"not JSON: {exc}") from exc


def _field(mapping: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in mapping:
        raise EventError(f"{where} has no {name!r}")
    return _checked(mapping[name], name, kind, where)


def _optional(mapping: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = mapping.get(name)
    return None if value is None else _checked(value, name, kind, where)


def _checked(value: object, name: str, kind: type, where: str) -> Any:
    # bool is an int subclass, but never a valid size
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EventError(f"{where} {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


__all__ = ["EventKind", "EventMessage", "ObjectEvent", "compare_sequencers", "object_events", "parse_event"]
