"""The dispatcher: queued jobs go to AWS Batch, and jobs that ended lead to the next steps, with nobody typing.

An upload queues the jobs of heavy steps (stitch) in the catalog (:func:`~panopipe.pipeline.runner.initiate`).
:func:`dispatch` is one tick of the dispatcher, run every minute by the stack's schedule
(``panopipe.aws.lambda_handler.dispatcher``) or by ``panopipe dispatch``: it records how the jobs in flight
ended (:func:`~panopipe.pipeline.remote.refresh`), plans the work due now over the catalog (the planner: the
queued jobs, and the steps that follow jobs that ended) and submits it through the batch executor, one array
job per step, as ``panopipe run --executor batch`` does. Ticks one after another drive a shot through every
step. Two dispatchers at once never submit a job twice: a submission first claims its jobs in the catalog
(:func:`~panopipe.pipeline.store.record_submitted`) and submits only those it got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from panopipe.catalog import Catalog, Selection
from panopipe.config import Settings
from panopipe.executors.base import Executor
from panopipe.executors.factory import build_executor
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.planner import plan
from panopipe.pipeline.remote import DISPATCH_EXECUTOR, REMOTE_EXECUTORS, work_uri
from panopipe.pipeline.runner import run
from panopipe.pipeline.store import in_flight


@dataclass(slots=True)
class DispatchReport:
    """One tick: the jobs in flight seen to end (by step and status), the jobs submitted per step (with
    ``dry_run``: that would be submitted, as the catalog stands) and the tick's seconds."""

    ended: dict[str, dict[str, int]] = field(default_factory=dict)
    submitted: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ended": self.ended,
            "submitted": self.submitted,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }


def dispatch(
    catalog: Catalog, settings: Settings, *, dry_run: bool = False, executor: Executor | None = None
) -> DispatchReport:
    """One dispatcher tick (see the module's docs); ``executor`` defaults to the batch executor the settings
    configure. With ``dry_run``, asks AWS nothing and submits nothing: the jobs due now as the catalog stands
    (those in flight left out; their ends are not known without asking)."""
    started = time.perf_counter()
    if dry_run:
        report = DispatchReport(submitted=_due(catalog, settings), dry_run=True)
    else:
        own = executor is None
        executor = executor or build_executor(
            DISPATCH_EXECUTOR, settings=settings, work_uri=work_uri(load_pipeline(catalog, settings))
        )
        assert executor is not None  # the batch executor is never ``none``
        try:
            ran = run(catalog, Selection(), None, settings, executor=executor, wait=False)
        finally:
            if own:
                executor.close()
        submitted = {step: counts.get("submitted", 0) for step, counts in ran.counts.items()}
        report = DispatchReport(ran.ended, {step: n for step, n in submitted.items() if n})
    report.seconds = time.perf_counter() - started
    return report


def _due(catalog: Catalog, settings: Settings) -> dict[str, int]:
    """Per step, the planned jobs a tick would submit now: each subject's first job whose inputs are known,
    unless the subject has a job in flight."""
    busy = {row.subject for row in in_flight(catalog, REMOTE_EXECUTORS)}
    due: dict[str, int] = {}
    for item in plan(catalog, Selection(), None, settings):
        if item.fingerprint is not None and item.subject not in busy:
            busy.add(item.subject)
            due[item.step] = due.get(item.step, 0) + 1
    return due


__all__ = ["DispatchReport", "dispatch"]
