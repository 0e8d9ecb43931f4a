"""Jobs in flight on a detached executor (AWS Batch): how they ended, asked of the executor and recorded.

``panopipe run`` with the ``batch`` executor returns once its jobs are submitted; they stay ``queued`` in the
catalog with their external ids. :func:`refresh` (run by ``panopipe status`` and at the start of every run)
asks the executor about them once, records the outcomes and artifacts of those that ended (failures with
Batch's reason) and answers the subjects still in flight, which no run submits again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from panopipe.catalog import Catalog
from panopipe.catalog.subjects import Subject
from panopipe.config import Settings, settings_or_loaded
from panopipe.errors import StorageError
from panopipe.executors.base import Executor
from panopipe.executors.factory import build_executor
from panopipe.pipeline.config import Pipeline, load_pipeline
from panopipe.pipeline.store import in_flight, is_claim, outputs_at, record_finished, record_running
from panopipe.steps.base import Step, discard_outputs
from panopipe.storage import resolve_uri

WORK_FOLDER = "_batch"
"""The folder under the pipeline's output where remote executors keep manifests and results."""
DISPATCH_EXECUTOR = "batch"
"""The executor of the jobs queued for the dispatcher (recorded with them; it submits them there)."""
REMOTE_EXECUTORS = ("batch",)
"""The executors whose jobs outlive the process that submitted them."""


@dataclass(slots=True)
class Refreshed:
    """Jobs that ended since the last look, by step and status, and the subjects still in flight."""

    ended: dict[str, dict[str, int]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """The jobs seen to fail: (step, subject, error)."""


def work_uri(pipeline: Pipeline) -> str:
    """Where a remote executor keeps the manifests and results of this pipeline's jobs."""
    return f"{pipeline.context.output_uri.rstrip('/')}/{WORK_FOLDER}/"


def refresh(
    catalog: Catalog, settings: Settings | None = None, *, executor: Executor | None = None
) -> Refreshed:
    """Ask the executors of the jobs in flight how they are doing and record the ones that ended. The
    subjects of claimed jobs (being submitted, or run by another run's local pool) are in flight too. Makes
    no AWS call when no job is in flight on AWS; ``executor`` is used for its own jobs (else one is built that
    only follows them: it needs credentials and a region, not the settings a submission needs, such as the
    batch executor's job queue and job definition)."""
    refreshed = Refreshed()
    rows = in_flight(catalog)
    refreshed.in_flight.update(row.subject for row in rows if is_claim(row.external_id))
    rows = [row for row in rows if not is_claim(row.external_id) and row.executor in REMOTE_EXECUTORS]
    if not rows:
        return refreshed
    settings = settings_or_loaded(settings)
    pipeline = load_pipeline(catalog, settings, sorted({row.step for row in rows}))
    steps = {step.name: step for step in pipeline.steps}
    for name in sorted({row.executor for row in rows}):
        group = {row.id: row for row in rows if row.executor == name}
        own = executor is None or executor.name != name
        follower = build_executor(name, settings=settings, follow=True) if own else executor
        assert follower is not None  # a remote executor is never ``none``
        try:
            states = follower.describe(follower.attach({i: row.external_id for i, row in group.items()}))
        finally:
            if own:
                follower.close()
        running = []
        renamed: dict[str, str | None] = {}
        for state in states:
            row = group[state.handle]
            if state.outcome is None:
                refreshed.in_flight.add(row.subject)
                if state.status == "running":
                    running.append(row.id)
                continue
            step, subject = steps[row.step], Subject(row.subject, ())
            set_aside(step, record_finished(catalog, row.id, step, subject, row.fingerprint, state), renamed)
            counts = refreshed.ended.setdefault(row.step, {})
            counts[state.status] = counts.get(state.status, 0) + 1
            if state.status == "failed":
                refreshed.failures.append((row.step, row.subject, state.outcome.error or "failed"))
        discard_superseded(catalog, renamed)
        record_running(catalog, running)  # status tells a job AWS runs from one it has not started
    return refreshed


def set_aside(step: Step, superseded: Mapping[str, str | None], renamed: dict[str, str | None]) -> None:
    """The outputs a job of ``step`` superseded (:func:`~panopipe.pipeline.store.record_finished`), deleted at
    once at content-addressed keys; at a step's stable names (publish's: another job of it may be taking one
    over), added to ``renamed`` for :func:`discard_superseded` once the jobs at hand are all recorded."""
    if step.overwrites:
        renamed.update(superseded)
    else:
        discard_outputs(superseded)


def discard_superseded(catalog: Catalog, superseded: Mapping[str, str | None]) -> None:
    """Delete the objects of ``superseded`` (output URIs of a step that writes at stable names, publish's, with
    the SHA-256 recorded of each) that no artifact records now and that still hold what was recorded. A name
    freed and taken in one run (frames renumbered, two names swapped) is another subject's once its job wrote
    there, whether that job's result was recorded before, after, or not yet (a job still running on AWS
    Batch): the caller collects them until the jobs at hand are all recorded."""
    if not superseded:
        return
    recorded = outputs_at(catalog, superseded.keys())
    discard_outputs(uri for uri, sha256 in superseded.items() if uri not in recorded and _holds(uri, sha256))


def _holds(uri: str, sha256: str | None) -> bool:
    """Whether the object at ``uri`` holds content of SHA-256 ``sha256``, as far as can be told (not when it is
    gone or cannot be read)."""
    storage, key = resolve_uri(uri)
    try:
        stored = storage.sha256(key)
    except StorageError:
        return False
    return stored is None or sha256 is None or stored == sha256


__all__ = [
    "DISPATCH_EXECUTOR",
    "REMOTE_EXECUTORS",
    "WORK_FOLDER",
    "Refreshed",
    "discard_superseded",
    "refresh",
    "set_aside",
    "work_uri",
]
