"""The event handler: S3 object events in, catalog updates and reprocessing jobs out, in Lambda and locally.

A *message* is one SQS message, or the whole event of a direct S3, SNS or EventBridge invocation.

**Failures** (the message goes back in ``batchItemFailures``; SQS delivers it again and, after the queue's
``maxReceiveCount`` receives, moves it to the dead-letter queue, which keeps its body for a human):

* a message that cannot be understood (not JSON, not an S3 event, a sequencer that is not hexadecimal);
* the catalog cannot be reached or written, or S3 cannot be read (throttling, network, permissions): when the
  catalog refuses the batch (locked, read-only, full, unreachable), every message fails at once, with the line
  that says why.

**Recorded and acknowledged** (retrying cannot change the outcome; each is logged with its reason):

* an event for a bucket outside the allow-list (``Settings.buckets``), a key with ``..``, ``.`` or empty
  segments or control characters, a key that is not a JPEG, an object under panopipe's own output roots (the
  pipeline output, the publish root and ``Settings.output_prefix``: its own outputs never trigger it, so there
  are no event loops), a URI longer than the catalog holds;
* an event not newer than the one the image last applied (a duplicate, or out of order);
* an object gone before it could be read (its removal event follows, or came first);
* the removal of an object the catalog never had (``skipped``: nothing to delete; the removal is kept, for
  its older creation, delivered late, not to add it);
* the removal of an object whose key still holds one (an older version or a delete marker removed, an upload
  since, a redelivery): the key is read, and the catalog follows what it holds;
* a copy of an image's file (its SHA-256 an image's), ``aws s3 cp`` within the bucket: known as that image's
  copy (``duplicate``), not a new image; a move keeps its image, whatever order its two events come in (see
  :mod:`panopipe.catalog.object_events`);
* a JPEG whose header cannot be read, zero-byte objects included: cataloged with ``status='failed'`` and the
  reason, as ingest records them.

Order and idempotence come from the database, so they hold across concurrent handlers (see
:mod:`panopipe.catalog.object_events`): a batch's events are applied in one transaction; if that fails, one
event per transaction, so only that event's message fails (its later events are not applied, and the events
of a message that failed before reaching the catalog are not applied: the message comes back whole), and the
shots of the changed frames are regrouped in the same transaction. Only events that changed an image plan and
start jobs, and jobs are unique per (step, subject, fingerprint): heavy steps (stitch, derive; nadir when on) are queued
for the dispatcher, the others run on the handler's executor (:func:`~panopipe.pipeline.runner.initiate`).
Reprocessing errors are logged and do not fail messages: the catalog is right, and the planner (state-based)
picks the work up next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.object_events import Action, ObjectChange, padded_sequencer
from panopipe.config import Settings, project_settings
from panopipe.errors import EventError, ObjectNotFoundError, PanopipeError, StorageError
from panopipe.events.shapes import EventKind, ObjectEvent, parse_event
from panopipe.executors.base import Executor
from panopipe.executors.factory import EVENT_EXECUTOR, build_executor
from panopipe.ingest import JPEG_SUFFIXES, image_record, unstorable_uri
from panopipe.pipeline import Pipeline, load_pipeline, output_prefixes, plan
from panopipe.pipeline.runner import initiate
from panopipe.pipeline.store import orphan_artifacts
from panopipe.storage import CONCURRENT_REQUESTS, Storage, open_storage, validate_key
from panopipe.storage.base import shown_name

log = logging.getLogger(__name__)


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
    seconds spent reading S3 (``read``), writing the catalog (``apply``) and planning (``reprocess``).
    ``refused`` are the outcomes of the events skipped whose objects an uploader meant for the catalog (see
    :meth:`refusals`)."""

    outcomes: list[Outcome] = field(default_factory=list)
    failed_messages: list[str | None] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    planned: int = 0
    reprocess_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Events ``processed`` (catalog updated or confirmed), ``skipped`` and ``failed``."""
        skipped = sum(o.action is Action.SKIPPED for o in self.outcomes)
        failed = sum(o.action is Action.FAILED for o in self.outcomes)
        return {"processed": len(self.outcomes) - skipped - failed, "skipped": skipped, "failed": failed}

    def actions(self) -> dict[str, int]:
        """How many events had each outcome: ``added``, ``updated``, ``unchanged``, ``deleted``, ``skipped``,
        ``failed`` (all present, in that order)."""
        return {action.value: sum(o.action is action for o in self.outcomes) for action in Action}

    def refusals(self) -> dict[str, list[str]]:
        """The URIs of the objects never catalogued, by why their events were refused: a bucket not handled, an
        unsafe key, a name not a JPEG's, a URI too long (panopipe's own outputs, skipped as expected, are not
        refusals)."""
        grouped: dict[str, list[str]] = {}
        for outcome in self.refused:
            grouped.setdefault(outcome.reason or "", []).append(outcome.uri or "")
        return grouped

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
    """An object event on its way: where it points, the change to apply once read, or its outcome."""

    message_id: str | None
    event: ObjectEvent
    storage: Storage | None = None
    uri: str | None = None
    sequencer: str | None = None
    change: ObjectChange | None = None
    outcome: Outcome | None = None
    refused: bool = False


@dataclass(slots=True)
class _View:
    """A version of the project configuration as a batch uses it: the settings and panopipe's own output
    prefixes (the filters and reads), and the pipeline of the handler's steps once planning has built it."""

    settings: Settings
    own_prefixes: tuple[str, ...]
    pipeline: Pipeline | None = None


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
        self.settings = settings
        self.executor = executor
        self.steps = steps
        self._view: _View | None = None
        self._storages: dict[str, Storage] = {}
        self._pool = ThreadPoolExecutor(CONCURRENT_REQUESTS, thread_name_prefix="panopipe-read")

    @classmethod
    def from_settings(cls, catalog: Catalog, settings: Settings) -> EventHandler:
        """A handler whose executor is the one ``settings.executor`` names (``none``: plan only)."""
        pipeline = load_pipeline(catalog, settings)
        executor = build_executor(
            settings.executor, default=EVENT_EXECUTOR, retries=pipeline.retries, backoff_s=pipeline.backoff_s
        )
        return cls(catalog, settings, executor=executor)

    @property
    def own_prefixes(self) -> tuple[str, ...]:
        """The URI prefixes of panopipe's own outputs, whose events are skipped (none before the first batch)."""
        return self._view.own_prefixes if self._view is not None else ()

    def close(self) -> None:
        """Stop the read threads and the executor."""
        self._pool.shutdown()
        if self.executor is not None:
            self.executor.close()

    def handle(self, payload: Mapping[str, Any] | str | bytes) -> HandleReport:
        """Handle one Lambda event (or SQS batch); never raises for bad records, see the module's docs.

        The database work that needs no object's header overlaps the reads: the objects are read with the
        configuration of the previous batch while the catalog's is read (read again with it if it changed),
        and the rows of their URIs are read and locked while the reads finish (see
        :meth:`Catalog.apply_object_events`)."""
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
        view = self._view
        reads, uris = self._start_reads(pending, view) if view is not None else ([], [])
        try:
            current = self._use_project_config()
        except PanopipeError as exc:
            wait(reads)
            for item in pending:
                self._fail(report, item.message_id, None, f"cannot read the project configuration: {exc}")
            return report
        if current is not view:  # the first batch, or a version pushed since: read with the one that applies
            wait(reads)
            pending = [_Pending(item.message_id, item.event) for item in pending]
            reads, uris = self._start_reads(pending, current)
        read = started
        ready: list[tuple[_Pending, ObjectChange]] = []

        def changes() -> list[ObjectChange]:
            """The changes read, once every read has ended (those of messages that fail left out)."""
            nonlocal read
            for future in reads:
                future.result()
            read = time.perf_counter()
            failing = {i.message_id for i in pending if i.outcome and i.outcome.action is Action.FAILED}
            ready.extend(
                (item, item.change)
                for item in pending
                if item.change is not None and (item.message_id is None or item.message_id not in failing)
            )
            return [change for _, change in ready]

        # The shots of the changed frames are regrouped in the same transaction.
        applied = self.catalog.apply_object_events(
            changes,
            uris=uris,
            on_removed=orphan_artifacts,
            shot_tolerance_s=current.settings.ingest.shot_tolerance_s,
        )
        for (item, _), result in zip(ready, applied, strict=True):
            if result is not None:
                item.outcome = Outcome(
                    item.message_id, item.uri, result.action, result.reason, result.image_id
                )
        changed: set[str] = set()  # a removed frame's too: its shot, made with it, is made again
        for item in pending:
            outcome = item.outcome
            if outcome is None or (item.message_id in report.failed_messages and item.message_id is not None):
                continue  # its message fails as a whole and comes back
            if outcome.action is Action.FAILED:
                self._fail(report, item.message_id, item.uri, outcome.reason or "failed")
                continue
            report.outcomes.append(outcome)
            if item.refused:
                report.refused.append(outcome)
            if outcome.action is Action.SKIPPED:
                log.info("skipped", extra=outcome.to_dict())
            elif outcome.action not in (Action.UNCHANGED, Action.DUPLICATE) and outcome.image_id:
                changed.add(outcome.image_id)
        applied_at = time.perf_counter()
        if changed:
            self._reprocess(report, changed, current)
        report.seconds = {
            "read": round(read - started, 4),
            "apply": round(applied_at - read, 4),
            "reprocess": round(time.perf_counter() - applied_at, 4),
        }
        return report

    def _use_project_config(self) -> _View:
        """The catalog's project configuration in use: read once per batch, so a version pushed since applies."""
        settings = project_settings(self.catalog, self.settings)
        if self._view is None or settings is not self.settings:
            pipeline = load_pipeline(self.catalog, settings)
            self.settings = settings
            self._view = _View(
                settings, output_prefixes(pipeline, settings), pipeline if self.steps is None else None
            )
        return self._view

    # Reading: the filters here, then in threads the header's ranged GETs.

    def _start_reads(self, pending: list[_Pending], view: _View) -> tuple[list[Future[None]], list[str]]:
        """Filter ``pending`` with ``view`` and start reading the objects of those that pass; the reads and
        the URIs read."""
        located = []
        for item in pending:
            self._locate(item, view)
            if item.outcome is None and item.uri is not None:
                located.append(item)
        removed = [item.uri for item in located if item.event.kind is EventKind.REMOVED and item.uri]
        try:
            copies = self.catalog.copies_of(removed)
        except PanopipeError:  # the batch's transaction meets the failure too, and fails the messages
            copies = {}
        reads = [
            self._pool.submit(self._read, item, view, copies.get(item.uri or "", [])) for item in located
        ]
        return reads, [item.uri for item in located if item.uri]

    def _locate(self, item: _Pending, view: _View) -> None:
        """Set the item's URI, storage and sequencer, or its outcome (skipped) for events panopipe must not
        act on. A refusal's outcome has the object's URI as written (``s3://BUCKET/KEY``, an unsafe key too),
        and a reason that does not repeat it, the same for every object refused so."""
        event = item.event
        try:
            if view.settings.buckets and event.bucket not in view.settings.buckets:
                raise _Refused(f"bucket {event.bucket!r} is not one this deployment handles")
            try:
                validate_key(event.key)
            except StorageError as exc:
                why = str(exc).removeprefix(f"invalid storage key {shown_name(event.key)!r}: ")
                raise _Refused(f"unsafe key: {why}") from None
            item.storage = self._storage(event.bucket)
            item.uri = item.storage.uri(event.key)
            if item.uri.startswith(view.own_prefixes):
                raise _Skip("panopipe's own output")
            if not event.key.lower().endswith(JPEG_SUFFIXES):
                raise _Refused("not a JPEG image (by its name)")
            if reason := unstorable_uri(item.uri):
                raise _Refused(reason)
            item.sequencer = padded_sequencer(event.sequencer)
        except _Skip as skip:
            uri = item.uri or f"s3://{event.bucket}/{shown_name(event.key)}"
            item.outcome = Outcome(item.message_id, uri, Action.SKIPPED, str(skip))
            item.refused = isinstance(skip, _Refused)
        except EventError as exc:  # a malformed record: the message fails, for a human to see in the DLQ
            item.outcome = Outcome(item.message_id, item.uri, Action.FAILED, str(exc))

    def _read(self, item: _Pending, view: _View, copies: list[str]) -> None:
        """Read the item's object (its header) into its change, or set its outcome.

        A removal reads the object too: the key may still hold one (an older version or a delete marker was
        removed in a versioned bucket, an upload followed, or the event is a redelivery), and the catalog
        follows what the key holds. When it holds none, the header of the first of the removed image's
        ``copies`` still in its bucket is read, for the image to move to (``aws s3 mv`` within the bucket)."""
        event = item.event
        assert item.uri is not None and item.storage is not None
        rules = view.settings.ingest
        try:
            try:
                record = image_record(item.storage, event.key, rules)
                change = ObjectChange(item.uri, item.sequencer, event.version_id, record, item.message_id)
                if event.kind is EventKind.REMOVED:  # the version the event removed is not the current one
                    change = replace(change, version_id=None)
            except ObjectNotFoundError:
                if event.kind is EventKind.CREATED:
                    raise
                successor = self._first_copy_left(item.storage, copies, view)
                change = ObjectChange(
                    item.uri, item.sequencer, event.version_id, None, item.message_id, successor
                )
            item.change = change
        except ObjectNotFoundError:
            reason = "object no longer exists (deleted before it could be read)"
            item.outcome = Outcome(item.message_id, item.uri, Action.SKIPPED, reason)
        except StorageError as exc:
            item.outcome = Outcome(item.message_id, item.uri, Action.FAILED, str(exc))

    @staticmethod
    def _first_copy_left(storage: Storage, copies: list[str], view: _View) -> ImageRecord | None:
        """The record of the first of ``copies`` in ``storage`` (the bucket) that is still there."""
        bucket = storage.root_uri.rstrip("/") + "/"
        for uri in copies:
            if uri.startswith(bucket) and not uri.startswith(view.own_prefixes):
                try:
                    return image_record(storage, storage.key(uri), view.settings.ingest)
                except ObjectNotFoundError:
                    continue
        return None

    def _storage(self, bucket: str) -> Storage:
        storage = self._storages.get(bucket)
        if storage is None:
            storage = self._storages[bucket] = open_storage(f"s3://{bucket}", self.settings)
        return storage

    # Reprocessing

    def _reprocess(self, report: HandleReport, changed: set[str], view: _View) -> None:
        selection = Selection(ids=tuple(sorted(changed)))
        settings = view.settings
        try:
            # Built once per configuration version: building the steps (the stitcher's rig) is not free.
            pipeline = view.pipeline = view.pipeline or load_pipeline(self.catalog, settings, self.steps)
            if self.executor is None:
                report.planned = len(plan(self.catalog, selection, self.steps, settings, pipeline=pipeline))
                return
            result = initiate(
                self.catalog, selection, self.steps, settings, executor=self.executor, pipeline=pipeline
            )
        except PanopipeError as exc:
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


class _Refused(_Skip):
    """A skipped event whose object its uploader meant for the catalog (see :meth:`HandleReport.refusals`)."""


__all__ = [
    "Action",
    "EventHandler",
    "HandleReport",
    "Outcome",
]
