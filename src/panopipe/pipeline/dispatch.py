"""The dispatcher: queued jobs go to AWS Batch, and jobs that ended lead to the next steps, with nobody typing.

An upload queues the jobs of heavy steps (stitch, derive; nadir when on) in the catalog
(:func:`~panopipe.pipeline.runner.initiate`).
:func:`dispatch` is one tick of the dispatcher, run every minute by the stack's schedule
(``panopipe.aws.lambda_handler.dispatcher``) or by ``panopipe dispatch``: it records how the jobs in flight
ended (:func:`~panopipe.pipeline.remote.refresh`) and submits the work due now
(:func:`~panopipe.pipeline.runner.advance`: the queued jobs, and the steps that follow jobs that ended)
through the batch executor, one array job per step, as ``panopipe run --executor batch`` does. Ticks one
after another drive a shot through every step. What a configuration change (``config push``) or an edit
makes stale is not the dispatcher's: ``panopipe run`` reprocesses it, when asked. Two dispatchers at once
never submit a job twice: a submission first claims its jobs in the catalog
as it records them (:func:`~panopipe.pipeline.store.record_submitted`) and submits only those it got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.executors.base import Executor
from panopipe.executors.factory import build_executor
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.remote import DISPATCH_EXECUTOR, work_uri
from panopipe.pipeline.runner import advance


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
    configure. With ``dry_run``, asks AWS nothing and submits nothing: the jobs the same rule finds due now
    as the catalog stands (those in flight left out; their ends are not known without asking)."""
    started = time.perf_counter()
    if dry_run:
        ran = advance(catalog, settings, executor=None)
    else:
        own = executor is None
        executor = executor or build_executor(
            DISPATCH_EXECUTOR, settings=settings, work_uri=work_uri(load_pipeline(catalog, settings))
        )
        assert executor is not None  # the batch executor is never ``none``
        try:
            ran = advance(catalog, settings, executor=executor)
        finally:
            if own:
                executor.close()
    status = "due" if dry_run else "submitted"
    submitted = {step: n for step, counts in ran.counts.items() if (n := counts.get(status, 0))}
    report = DispatchReport(ran.ended, submitted, dry_run)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["DispatchReport", "dispatch"]
