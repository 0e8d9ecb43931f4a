"""Running a plan: jobs recorded in the catalog, executed by an executor, artifacts recorded on success.

Steps run in order; each step is planned just before it runs, so a job whose upstream reran in this run sees
the new upstream output. An artifact is recorded only after its job reported the output complete (outputs are
written atomically). On Ctrl-C, jobs that have not finished are cancelled and marked ``cancelled``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import artifacts, jobs
from panopipe.catalog.types import new_id, utcnow
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.executors.base import FINISHED, Executor, JobState
from panopipe.executors.factory import build_executor
from panopipe.iterutil import batched
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.job_rows import put_job
from panopipe.pipeline.planner import Work, plan, plan_step
from panopipe.pipeline.subjects import CHUNK, KINDS, load_subjects, selected_subjects
from panopipe.steps.base import JobOutcome, JobSpec, Step

Progress = Callable[[str, int, int], None]
"""Called as ``progress(step, finished, total)`` each time jobs of ``step`` finish."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A job that failed: its step, subject and error."""

    step: str
    subject: str
    error: str


@dataclass(slots=True)
class RunReport:
    """What a run did: finished jobs per step and status, and the failures."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every job succeeded."""
        return not self.failures and all(set(c) <= {"succeeded"} for c in self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "failures": [{"step": f.step, "subject": f.subject, "error": f.error} for f in self.failures],
            "seconds": round(self.seconds, 3),
        }


def run(
    catalog: Catalog,
    selection: Selection | None = None,
    steps: list[str] | None = None,
    settings: Settings | None = None,
    *,
    force: bool = False,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Run what :func:`~panopipe.pipeline.plan` lists, step by step; failed items do not stop the others.

    ``executor`` defaults to the one ``settings.executor`` names (unset: a local pool of ``workers`` processes,
    default all cores), closed at the end. Raises :class:`ConfigError` before running anything if a step's
    configuration cannot work (e.g. a publish template that collides or escapes its root).
    """
    pipeline = load_pipeline(catalog, settings, steps)
    selection = selection or Selection()
    report = RunReport()
    started = time.perf_counter()
    planned = plan(catalog, selection, steps, settings, force=force)
    counts = planned.counts()
    for step in pipeline.steps:
        _validate(catalog, step, {item.subject for item in planned if item.step == step.name})
    own = executor is None
    executor = executor or build_executor(
        (settings or Settings()).executor,
        retries=pipeline.retries,
        backoff_s=pipeline.backoff_s,
        workers=workers,
    )
    if executor is None:
        raise ConfigError("executor 'none' only plans jobs: choose local or inline to run them")
    try:
        # A step without jobs in the plan gets none during the run: jobs that follow an upstream job are in it.
        for step in (step for step in pipeline.steps if counts[step.name]):
            work = _plan(catalog, selection, step, force)
            if work:
                _execute(catalog, executor, work, report, progress)
    finally:
        if own:
            executor.close()
    report.seconds = time.perf_counter() - started
    return report


def _plan(catalog: Catalog, selection: Selection, step: Step, force: bool) -> list[Work]:
    with catalog.engine.begin() as conn, selected_subjects(conn, selection) as selected:
        return plan_step(conn, step, selected, force=force)


def _validate(catalog: Catalog, step: Step, subject_ids: set[str]) -> None:
    """Let a step that checks its subjects (publish) see every subject the run will give it, before it starts."""
    if not subject_ids or type(step).validate is Step.validate:
        return
    with catalog.engine.connect() as conn:
        subjects = [
            subject
            for kind in KINDS
            for subject in load_subjects(
                conn, kind, sorted(s.partition(":")[2] for s in subject_ids if s.startswith(f"{kind}:"))
            )
        ]
        step.validate(subjects, _taken(conn, step, subjects))


def _taken(conn: sa.Connection, step: Step, subjects: Sequence[Any]) -> list[tuple[str, str]]:
    """``(subject, output URI)`` of ``step``'s artifacts at the URIs ``subjects`` would write."""
    try:
        uris = [step.output_uri(s, step.outputs[0]) for s in subjects]
    except ConfigError:
        return []  # validate() reports the bad template with the subject it failed on
    c = artifacts.c
    taken: list[tuple[str, str]] = []
    for chunk in batched(uris, CHUNK):
        query = sa.select(c.subject, c.output_uri).where(c.step == step.name, c.output_uri.in_(chunk))
        taken += [(row.subject, row.output_uri) for row in conn.execute(query)]
    return taken


def _execute(
    catalog: Catalog, executor: Executor, work: Sequence[Work], report: RunReport, progress: Progress | None
) -> None:
    step = work[0].step
    specs = [
        JobSpec(new_id(), step.name, w.subject.id, w.fingerprint, step.payload(w.subject, w.upstream))
        for w in work
    ]
    by_id = dict(zip((s.id for s in specs), work, strict=True))
    job_ids = _record_submitted(catalog, specs, work, executor.name)
    handles = executor.submit(specs)
    spec_of = dict(zip(handles, specs, strict=True))
    pending = list(handles)
    counts = report.counts.setdefault(step.name, {})
    total, finished = len(handles), 0
    try:
        while pending:
            states = [s for s in executor.describe(pending) if s.status in FINISHED]
            for state in states:
                spec = spec_of[state.handle]
                _record_finished(catalog, job_ids[spec.id], by_id[spec.id], state)
                counts[state.status] = counts.get(state.status, 0) + 1
                if state.status == "failed" and state.outcome is not None:
                    report.failures.append(Failure(step.name, spec.subject, state.outcome.error or "failed"))
                pending.remove(state.handle)
            if states:
                finished += len(states)
                if progress is not None:
                    progress(step.name, finished, total)
            else:
                time.sleep(executor.poll_interval_s)
    except KeyboardInterrupt:
        executor.cancel(pending)
        _record_cancelled(catalog, [job_ids[spec_of[h].id] for h in pending])
        counts["cancelled"] = counts.get("cancelled", 0) + len(pending)
        raise


def _record_submitted(
    catalog: Catalog, specs: Sequence[JobSpec], work: Sequence[Work], executor: str
) -> dict[str, str]:
    """Record each job as queued (reusing the row of an earlier job with the same fingerprint); job ids."""
    ids: dict[str, str] = {}
    now = utcnow()
    with catalog.engine.begin() as conn:
        for spec, item in zip(specs, work, strict=True):
            values = {
                "status": "queued",
                "reason": item.reason,
                "executor": executor,
                "external_id": None,
                "error": None,
                "log": None,
                "submitted_at": now,
                "started_at": None,
                "finished_at": None,
            }
            ids[spec.id] = put_job(conn, spec.step, spec.subject, spec.fingerprint, values, job_id=spec.id)
    return ids


def _record_finished(catalog: Catalog, job_id: str, item: Work, state: JobState) -> None:
    outcome = state.outcome
    if outcome is None:  # cancelled before it started
        _record_cancelled(catalog, [job_id])
        return
    with catalog.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(
                status=outcome.status,
                attempts=jobs.c.attempts + outcome.attempts,
                external_id=state.external_id,
                error=outcome.error,
                log=outcome.log or None,
                started_at=outcome.started_at,
                finished_at=outcome.finished_at,
            )
        )
        if outcome.status == "succeeded":
            _record_artifacts(conn, job_id, item, outcome)


def _record_artifacts(conn: sa.Connection, job_id: str, item: Work, outcome: JobOutcome) -> None:
    step, subject = item.step, item.subject
    c = artifacts.c
    conn.execute(artifacts.delete().where(c.step == step.name, c.subject == subject.id))
    now = utcnow()
    conn.execute(
        artifacts.insert(),
        [
            {
                "step": step.name,
                "subject": subject.id,
                "name": output.name,
                "image_id": subject.key if subject.kind == "image" else None,
                "shot": subject.key if subject.kind == "shot" else None,
                "step_version": step.version,
                "params_hash": step.params_hash,
                "fingerprint": item.fingerprint,
                "output_uri": output.uri,
                "output_hash": output.hash,
                "output_size": output.size,
                "job_id": job_id,
                "created_at": now,
            }
            for output in outcome.outputs
        ],
    )


def _record_cancelled(catalog: Catalog, job_ids: Sequence[str]) -> None:
    with catalog.engine.begin() as conn:
        for chunk in batched(job_ids, CHUNK):
            conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(chunk), jobs.c.status.in_(("queued", "running")))
                .values(status="cancelled", finished_at=utcnow())
            )


__all__ = ["Failure", "Progress", "RunReport", "run"]
