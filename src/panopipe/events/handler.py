"""The event handler: S3 object events in, catalog updates and reprocessing jobs out, in Lambda and locally.

A *message* is one SQS message, or the whole event of a direct S3, SNS or EventBridge invocation.

**Failures** (the message goes back in ``batchItemFailures``; SQS delivers it again and, after the queue's
``maxReceiveCount`` receives, moves it to the dead-letter queue, which keeps its body for a human):

* a message that cannot be understood (not JSON, not an S3 event);
* the catalog cannot be reached or written, or S3 cannot be read (throttling, network, permissions).

**Recorded and acknowledged** (retrying cannot change the outcome; each is logged with its reason):

* an event for a bucket outside the allow-list (``Settings.buckets``), a key with ``..``, ``.`` or empty
  segments or control characters, a key that is not a JPEG, an object under panopipe's own output roots (the
  pipeline output and the publish root: its own outputs never trigger it, so there are no event loops);
* an event not newer than the one the image last applied (a duplicate, or out of order);
* an object gone before it could be read (its removal event follows, or came first);
* a JPEG whose header cannot be read, zero-byte objects included: cataloged with ``status='failed'`` and the
  reason, as ingest records them.

Order and idempotence come from the database, so they hold across concurrent handlers: each image stores
the sequencer of the last event applied (upper-case, zero-left-padded, so text order is event order). An
event applies in the transaction whose ``UPDATE ... WHERE source_sequencer < :new`` moves it forward (on
PostgreSQL the rows are locked, in URI order, as they are read); the lock holds until the change is written.
A batch's events share one transaction and a few statements; if any of them fails, the batch is applied again
one event per transaction, so only that event's message fails. Removing an unknown object leaves a deleted
placeholder with its sequencer, so an older creation arriving later cannot bring it back. Only events that
changed an image plan and submit jobs, and jobs are unique per (step, subject, fingerprint). Reprocessing
errors are logged and do not fail messages: the catalog is right, and the planner (state-based) picks the
work up next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.schema import artifacts, images
from panopipe.catalog.types import new_id, utcnow
from panopipe.config import Settings
from panopipe.errors import CatalogError, EventError, ObjectNotFoundError, PanopipeError, StorageError
from panopipe.events.shapes import EventKind, ObjectEvent, parse_event
from panopipe.executors.base import Executor
from panopipe.ingest import JPEG_SUFFIXES, image_record
from panopipe.pipeline import load_pipeline, plan, run
from panopipe.steps.publish import PublishStep
from panopipe.storage import Storage, open_storage, validate_key

SEQUENCER_WIDTH = 64
READ_THREADS = 16

log = logging.getLogger(__name__)


class Action(StrEnum):
    """What handling one object event did."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one object event (or for a whole message that could not be understood)."""

    message_id: str | None
    uri: str | None
    action: Action
    reason: str | None = None
    image_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "uri": self.uri,
            "action": self.action.value,
            "reason": self.reason,
            "image_id": self.image_id,
        }


@dataclass(slots=True)
class HandleReport:
    """What one invocation did: per-event outcomes, failed messages, the reprocessing it started, and the
    seconds spent reading S3 (``read``), writing the catalog (``apply``) and planning (``reprocess``)."""

    outcomes: list[Outcome] = field(default_factory=list)
    failed_messages: list[str | None] = field(default_factory=list)
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    planned: int = 0
    reprocess_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Events ``processed`` (catalog updated or confirmed), ``skipped`` and ``failed``."""
        skipped = sum(o.action is Action.SKIPPED for o in self.outcomes)
        failed = sum(o.action is Action.FAILED for o in self.outcomes)
        return {"processed": len(self.outcomes) - skipped - failed, "skipped": skipped, "failed": failed}

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        """The SQS partial batch response: the messages to deliver again."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_messages if m is not None]}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "failed_messages": self.failed_messages,
            "planned": self.planned,
            "jobs": self.jobs,
            "reprocess_error": self.reprocess_error,
            "seconds": self.seconds,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


@dataclass(slots=True)
class _Pending:
    """An object event on its way: where it points, its padded sequencer, and the record read for a creation."""

    message_id: str | None
    event: ObjectEvent
    storage: Storage | None = None
    uri: str | None = None
    sequencer: str | None = None
    record: Any = None
    outcome: Outcome | None = None


class EventHandler:
    """Applies S3 object events to ``catalog`` and submits the reprocessing they make due to ``executor``.

    With ``executor=None`` the handler only plans (``HandleReport.planned``). Keep one handler per process:
    it reuses its S3 clients and read threads across invocations.
    """

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        *,
        executor: Executor | None = None,
        steps: list[str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = with_output_prefix(settings)
        self.executor = executor
        self.steps = steps
        self.own_prefixes = own_output_prefixes(catalog, self.settings)
        self._storages: dict[str, Storage] = {}
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="panopipe-read")

    @classmethod
    def from_settings(cls, catalog: Catalog, settings: Settings) -> EventHandler:
        """A handler whose executor is the one ``settings.executor`` names (``none``: plan only)."""
        return cls(catalog, settings, executor=make_executor(catalog, settings))

    def close(self) -> None:
        """Stop the read threads and the executor."""
        self._pool.shutdown()
        if self.executor is not None:
            self.executor.close()

    def handle(self, payload: Mapping[str, Any] | str | bytes) -> HandleReport:
        """Handle one Lambda event (or SQS batch); never raises for bad records, see the module's docs."""
        report = HandleReport()
        pending: list[_Pending] = []
        for message in parse_event(payload):
            if message.error is not None:
                self._fail(
                    report, message.message_id, None, f"cannot understand the message: {message.error}"
                )
            elif message.ignored:
                log.info("ignored", extra={"message_id": message.message_id, "reason": message.ignored})
            pending += [_Pending(message.message_id, event) for event in message.events]
        started = time.perf_counter()
        list(self._pool.map(self._read, pending))
        read = time.perf_counter()
        failing = {i.message_id for i in pending if i.outcome and i.outcome.action is Action.FAILED} - {None}
        self._apply_batch([i for i in pending if i.outcome is None and i.message_id not in failing])
        changed: set[str] = set()
        frames: dict[str | None, dict[str, datetime | None]] = {}  # per reel, changed frames' capture times
        for item in pending:
            if item.message_id in report.failed_messages and item.message_id is not None:
                continue  # its message fails as a whole and comes back
            outcome = item.outcome or self._apply_logged(item)
            if outcome.action is Action.FAILED:
                self._fail(report, item.message_id, item.uri, outcome.reason or "failed")
                continue
            report.outcomes.append(outcome)
            if outcome.action is Action.SKIPPED:
                log.info("skipped", extra=outcome.to_dict())
            elif outcome.action is not Action.UNCHANGED and outcome.image_id:
                changed.add(outcome.image_id)
                if getattr(item.record, "reel", None) is not None:
                    frames.setdefault(item.record.reel, {})[outcome.image_id] = item.record.captured_at
        applied = time.perf_counter()
        if changed:
            self._reprocess(report, changed, frames)
        report.seconds = {
            "read": round(read - started, 4),
            "apply": round(applied - read, 4),
            "reprocess": round(time.perf_counter() - applied, 4),
        }
        return report

    # Reading (in threads): filters first, then a HEAD and the header's ranged GETs.

    def _read(self, item: _Pending) -> None:
        event = item.event
        try:
            item.uri = self._locate(item)
            item.sequencer = padded_sequencer(event.sequencer)
            if event.kind is EventKind.CREATED:
                assert item.storage is not None
                item.record = image_record(item.storage, event.key, self.settings.ingest)
        except (_Skip, EventError) as skip:
            item.outcome = Outcome(item.message_id, item.uri, Action.SKIPPED, str(skip))
        except ObjectNotFoundError:
            reason = "object no longer exists (deleted before it could be read)"
            item.outcome = Outcome(item.message_id, item.uri, Action.SKIPPED, reason)
        except StorageError as exc:
            item.outcome = Outcome(item.message_id, item.uri, Action.FAILED, str(exc))

    def _locate(self, item: _Pending) -> str:
        """The object's URI; raises :class:`_Skip` for events panopipe must not act on."""
        event = item.event
        if self.settings.buckets and event.bucket not in self.settings.buckets:
            raise _Skip(f"bucket {event.bucket!r} is not one this deployment handles")
        try:
            validate_key(event.key)
        except StorageError as exc:
            raise _Skip(f"unsafe key: {exc}") from None
        item.storage = self._storage(event.bucket)
        uri = item.storage.uri(event.key)
        if uri.startswith(self.own_prefixes):
            raise _Skip("panopipe's own output")
        if not event.key.lower().endswith(JPEG_SUFFIXES):
            raise _Skip("not a JPEG image (by its name)")
        return uri

    def _storage(self, bucket: str) -> Storage:
        storage = self._storages.get(bucket)
        if storage is None:
            storage = self._storages[bucket] = open_storage(f"s3://{bucket}", self.settings)
        return storage

    # Applying: the whole batch in one transaction; one transaction per event if that fails.

    def _apply_batch(self, items: list[_Pending]) -> None:
        """Apply ``items`` in one transaction, setting their outcomes; leave them unset if it fails.

        Any error rolls the whole transaction back, and :meth:`handle` then applies each event in its own
        transaction, which fails only that event's message: one bad event costs the batch its shortcut,
        never its other messages.
        """
        try:
            with self.catalog.engine.begin() as conn:
                outcomes = [pair for round_ in _rounds(items) for pair in self._apply_round(conn, round_)]
        except (PanopipeError, sa.exc.SQLAlchemyError) as exc:
            log.info("batch transaction rolled back", extra={"reason": f"{type(exc).__name__}: {exc}"})
            return
        for item, outcome in outcomes:
            item.outcome = outcome

    def _apply_logged(self, item: _Pending) -> Outcome:
        try:
            return self._apply(item)
        except (PanopipeError, sa.exc.SQLAlchemyError) as exc:
            return Outcome(item.message_id, item.uri, Action.FAILED, f"{type(exc).__name__}: {exc}")

    def _apply(self, item: _Pending) -> Outcome:
        for attempt in (1, 2):
            try:
                with self.catalog.engine.begin() as conn:
                    ((_, outcome),) = self._apply_round(conn, [item])
                    return outcome
            except (sa.exc.IntegrityError, _Raced):
                if attempt == 2:  # a concurrent handler wrote the same URI first: read its row again
                    raise
        raise AssertionError("unreachable")

    def _apply_round(self, conn: sa.Connection, items: list[_Pending]) -> list[tuple[_Pending, Outcome]]:
        """Apply events for distinct URIs, a few statements for all of them: the images' rows are read (and
        locked, on PostgreSQL, in URI order, as every handler locks them), events not newer than the one an
        image applied are skipped, the others claim their row with their sequencer (an unknown URI's creation
        is added with it, its removal leaves a deleted placeholder), then creations are upserted together and
        removals mark their image deleted.

        A claim is guarded in SQL too (``source_sequencer < :new``): SQLite does not lock what was read, and
        a claim that a concurrent handler overtook raises :class:`_Raced`, so that nothing older is written.
        """
        c = images.c
        uris = [item.uri for item in items]
        query = sa.select(c.uri, c.id, c.source_sequencer).where(c.uri.in_(uris)).order_by(c.uri)
        rows = {row.uri: row for row in conn.execute(query.with_for_update())}
        now = utcnow()
        outcomes: list[tuple[_Pending, Outcome]] = []
        claimed: list[tuple[_Pending, str, bool]] = []
        placeholders: list[dict[str, Any]] = []
        claims: list[dict[str, Any]] = []
        records: list[ImageRecord] = []
        sources: dict[str, dict[str, Any]] = {}
        for item in items:
            row = rows.get(item.uri)
            source = {"source_sequencer": item.sequencer, "source_version_id": item.event.version_id}
            if row is None:
                image_id = new_id()
                if item.event.kind is EventKind.CREATED:  # added by the upsert, with its event
                    records.append(replace(item.record, id=image_id))
                    sources[item.record.uri] = source
                else:
                    placeholder = {"id": image_id, "uri": item.uri, "deleted": True}
                    placeholders.append(placeholder | {"ingested_at": now, "updated_at": now} | source)
            elif (
                item.sequencer is None
                or row.source_sequencer is None
                or row.source_sequencer < item.sequencer
            ):
                image_id = row.id
                claims.append({"_id": image_id, "_new": item.sequencer} | source)
            else:
                reason = "not newer than the event applied"
                outcomes.append((item, Outcome(item.message_id, item.uri, Action.SKIPPED, reason)))
                continue
            claimed.append((item, image_id, row is None))
        if placeholders:
            conn.execute(images.insert(), placeholders)
        if claims:
            new = sa.bindparam("_new", type_=sa.String)
            newer = sa.or_(new.is_(None), c.source_sequencer.is_(None), c.source_sequencer < new)
            claim = images.update().where(c.id == sa.bindparam("_id"), newer)
            if conn.execute(claim, claims).rowcount != len(claims):
                raise _Raced("a concurrent handler applied a newer event of the same object")
        records += [
            item.record for item, _, added in claimed if item.event.kind is EventKind.CREATED and not added
        ]
        result = self.catalog.upsert_in(conn, records, added_values=sources) if records else None
        unknown = {record.id for record in records if record.uri in sources}
        if result is not None and not unknown <= set(result.added):
            # A concurrent handler inserted one of these URIs after they were read: its row was updated
            # without the sequencer guard. Roll back; read again, the row is there and the guard applies.
            raise _Raced("a concurrent handler added the same object")
        updated = set(result.updated) if result is not None else set()
        for item, image_id, added in claimed:
            if item.event.kind is EventKind.REMOVED:
                deleted = conn.execute(
                    images.update()
                    .where(c.id == image_id, c.deleted == sa.false())
                    .values(deleted=True, updated_at=utcnow())
                ).rowcount
                _orphan_artifacts(conn, image_id)
                action = Action.DELETED if deleted or added else Action.UNCHANGED
                outcome = Outcome(item.message_id, item.uri, action, image_id=image_id if deleted else None)
            else:
                action = (
                    Action.ADDED if added else Action.UPDATED if image_id in updated else Action.UNCHANGED
                )
                reason = item.record.error if item.record.status == "failed" else None
                outcome = Outcome(item.message_id, item.uri, action, reason, image_id)
            outcomes.append((item, outcome))
        return outcomes

    # Reprocessing

    def _reprocess(
        self, report: HandleReport, changed: set[str], frames: dict[str | None, dict[str, datetime | None]]
    ) -> None:
        selection = Selection(ids=tuple(sorted(changed)))
        try:
            self.catalog.assign_shots(frames, self.settings.ingest.shot_tolerance_s, around=frames)
            if self.executor is None:
                report.planned = len(plan(self.catalog, selection, self.steps, self.settings))
                return
            result = run(self.catalog, selection, self.steps, self.settings, executor=self.executor)
        except (PanopipeError, sa.exc.SQLAlchemyError) as exc:
            report.reprocess_error = f"{type(exc).__name__}: {exc}"
            log.warning("reprocessing failed", extra={"reason": report.reprocess_error})
            return
        report.jobs = result.counts
        report.planned = sum(sum(counts.values()) for counts in result.counts.values())

    def _fail(self, report: HandleReport, message_id: str | None, uri: str | None, reason: str) -> None:
        outcome = Outcome(message_id, uri, Action.FAILED, reason)
        report.outcomes.append(outcome)
        if message_id not in report.failed_messages:
            report.failed_messages.append(message_id)
        log.warning("failed", extra=outcome.to_dict())


class _Skip(Exception):
    """An event panopipe acknowledges without acting on it (the message is the reason)."""


class _Raced(CatalogError):
    """A concurrent handler applied a newer event of an object between reading and claiming its row."""


def _rounds(items: list[_Pending]) -> list[list[_Pending]]:
    """``items`` in rounds of distinct URIs, sorted by URI: round *n* holds the *n*-th event of each URI, so
    that one object's events apply in delivery order."""
    rounds: list[list[_Pending]] = []
    seen: dict[str | None, int] = {}
    for item in sorted(items, key=lambda item: item.uri or ""):
        n = seen[item.uri] = seen.get(item.uri, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(item)
    return rounds


def _orphan_artifacts(conn: sa.Connection, image_id: str) -> None:
    """Mark the image's own artifacts, and those of its shot once no frame of it is left, orphaned."""
    c = artifacts.c
    conn.execute(artifacts.update().where(c.image_id == image_id).values(orphaned=True))
    shot = conn.execute(sa.select(images.c.shot).where(images.c.id == image_id)).scalar()
    if shot is None:
        return
    alive = sa.select(images.c.id).where(images.c.shot == shot, images.c.deleted == sa.false()).exists()
    conn.execute(artifacts.update().where(c.shot == shot, ~alive).values(orphaned=True))


def padded_sequencer(sequencer: str | None) -> str | None:
    """``sequencer`` upper-cased and zero-left-padded to :data:`SEQUENCER_WIDTH`, so text order is event order.

    Raises :class:`EventError` for a sequencer that is not hexadecimal or too long.
    """
    if sequencer is None:
        return None
    if (
        not sequencer
        or len(sequencer) > SEQUENCER_WIDTH
        or not all(ch in "0123456789abcdefABCDEF" for ch in sequencer)
    ):
        raise EventError(f"sequencer must be up to {SEQUENCER_WIDTH} hexadecimal digits, got {sequencer!r}")
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


def with_output_prefix(settings: Settings) -> Settings:
    """``settings`` whose pipeline output is ``settings.output_prefix`` unless ``[steps.pipeline] output`` is set."""
    shared = settings.steps.get("pipeline", {})
    if not settings.output_prefix or shared.get("output"):
        return settings
    return replace(
        settings, steps={**settings.steps, "pipeline": {**shared, "output": settings.output_prefix}}
    )


def own_output_prefixes(catalog: Catalog, settings: Settings) -> tuple[str, ...]:
    """The URI prefixes panopipe writes outputs under: the pipeline output root and the publish root."""
    pipeline = load_pipeline(catalog, settings)
    roots = [pipeline.context.output_uri]
    roots += [step.root.root_uri for step in pipeline.steps if isinstance(step, PublishStep)]
    return tuple(sorted({root.rstrip("/") + "/" for root in roots}))


def make_executor(catalog: Catalog, settings: Settings) -> Executor | None:
    """The executor ``settings.executor`` names, with the pipeline's retry settings; ``None`` for ``none``."""
    if settings.executor == "none":
        return None
    pipeline = load_pipeline(catalog, with_output_prefix(settings))
    if settings.executor == "local":
        from panopipe.executors.local import LocalExecutor

        return LocalExecutor(retries=pipeline.retries, backoff_s=pipeline.backoff_s)
    from panopipe.executors.inline import InlineExecutor

    return InlineExecutor(retries=pipeline.retries, backoff_s=pipeline.backoff_s)


__all__ = [
    "READ_THREADS",
    "SEQUENCER_WIDTH",
    "Action",
    "EventHandler",
    "HandleReport",
    "Outcome",
    "make_executor",
    "own_output_prefixes",
    "padded_sequencer",
    "with_output_prefix",
]
