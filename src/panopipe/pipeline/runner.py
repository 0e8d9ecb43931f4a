"""Running a plan: jobs recorded in the catalog, executed by an executor, artifacts recorded on success.

Steps run in order; each step is planned just before it runs, so a job whose upstream reran in this run sees
the new upstream output. An artifact is recorded only after its job reported the output complete (outputs are
written atomically). On Ctrl-C, and on SIGTERM while :func:`run` runs in the main thread (it raises
:class:`~panopipe.errors.Terminated` there), jobs that have not finished are cancelled and marked
``cancelled``: those the local pool runs are stopped.

With a detached executor (AWS Batch) a run may return once its jobs are submitted: they stay ``queued`` with
their external ids, :func:`~panopipe.pipeline.remote.refresh` records how they ended, and a subject with a
job in flight gets no other job (of any step) until it has ended: later steps run in a later run. Ctrl-C
while following them stops following; the jobs go on. A run that executes its jobs itself claims them too
until they end (:mod:`~panopipe.pipeline.store.claims`): two runs at once on one catalog share the work
instead of both doing all of it. A subject that another run has a job of in flight, whatever the step, gets
no job from then on (looked up as each step is planned, and again as its jobs are claimed), nor does a
subject whose outputs another run recorded after this one planned its job.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.rds import retry_read
from panopipe.catalog.subjects import (
    Subject,
    SubjectKind,
    selected_subjects,
    subject_id,
)
from panopipe.catalog.types import new_ids, utcnow
from panopipe.config import Settings, settings_or_loaded
from panopipe.errors import ConfigError, EndpointUnreachableError, Terminated
from panopipe.executors.base import Executor
from panopipe.executors.factory import build_executor
from panopipe.pipeline.config import Pipeline, load_pipeline
from panopipe.pipeline.planner import Plan, Work, followers, plan, plan_step, refusals
from panopipe.pipeline.remote import DISPATCH_EXECUTOR, discard_superseded, refresh, set_aside, work_uri
from panopipe.pipeline.store import (
    CLAIM_TTL_S,
    candidates,
    claimed_jobs,
    drop_vanished_jobs,
    fail_claim,
    failed_jobs,
    forget_vanished_shots,
    in_flight,
    new_claim,
    record_cancelled,
    record_external_ids,
    record_finished,
    record_submitted,
    release_claim,
    renew_claim,
)
from panopipe.steps.base import JobSpec, Step, discard_outputs, frame_fields

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
    """What a run did: jobs per step and status (``submitted``: left running on a detached executor;
    ``queued``: left for the dispatcher; ``waiting``: subjects whose inputs are still arriving, given no
    job), the failures (those of jobs in flight seen to end too), and the jobs in flight seen to end (by step
    and status) before it planned."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    ended: dict[str, dict[str, int]] = field(default_factory=dict)
    removed: int = 0
    """Outputs deleted with the artifacts of shots that no image belongs to any more (a full run's)."""
    left_in_flight: int = 0
    """Jobs the plan listed that are in flight elsewhere (on AWS Batch, or in another ``panopipe run`` at work
    on the same catalog), left to it, or that another run took up or did after this one planned them."""
    held_back: int = 0
    """The other jobs the plan listed of the images or shots that have a job in flight elsewhere (of another
    step, or a failed job due again): held back until it ends, left to the run at work on them or for a later
    run."""

    @property
    def ok(self) -> bool:
        """Whether every job succeeded."""
        return not self.failures and all(
            set(c) <= {"succeeded", "submitted", "queued", "waiting"} for c in self.counts.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "failures": [{"step": f.step, "subject": f.subject, "error": f.error} for f in self.failures],
            "ended": self.ended,
            "removed": self.removed,
            "left_in_flight": self.left_in_flight,
            "held_back": self.held_back,
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
    wait: bool = True,
) -> RunReport:
    """Run what :func:`~panopipe.pipeline.plan` lists, step by step; failed items do not stop the others, but
    a job that found the storage's endpoint unreachable stops the run: :class:`EndpointUnreachableError`, its
    jobs not finished recorded ``cancelled`` (due for the next run), none as failed for that.

    A full run (every image, every step) also deletes the outputs of shots that no image belongs to any more
    (:func:`~panopipe.pipeline.store.forget_vanished_shots`: a reel's folder renamed and ingested again).

    ``executor`` defaults to the one ``settings.executor`` names (unset: a local pool of ``workers`` processes,
    default all cores), closed at the end. With a detached executor (``batch``), jobs in flight are
    refreshed first and never submitted again; unless ``wait``, the run returns once the jobs it can plan now
    are submitted (counted ``submitted``). Raises :class:`ConfigError` before running anything if a step's
    configuration cannot work (e.g. a publish template that escapes its root); subjects a step refuses (two that
    a publish template names alike) fail, counted in the report, and the others run.
    """
    settings = settings_or_loaded(settings)
    pipeline = load_pipeline(catalog, settings, steps)
    selection = selection or Selection()
    report = RunReport()
    started = time.perf_counter()
    own = executor is None
    executor = executor or build_executor(
        settings.executor,
        retries=pipeline.retries,
        backoff_s=pipeline.backoff_s,
        workers=workers,
        settings=settings,
        work_uri=work_uri(pipeline),
    )
    if executor is None:
        raise ConfigError("executor 'none' only plans jobs: choose local, inline or batch to run them")
    with _sigterm_terminates():
        try:
            refreshed = refresh(catalog, settings, executor=executor)
            report.ended, busy = refreshed.ended, refreshed.in_flight
            report.failures.extend(Failure(*failure) for failure in refreshed.failures)
            if executor.detached and not wait:
                _submit_due(catalog, selection, pipeline.steps, force, executor, busy, report, held=True)
            else:
                # refusals: ConfigError; candidates found up to date recorded so, as the steps run
                planned = plan(catalog, selection, steps, settings, force=force, record=True)
                counts = planned.counts()
                # A step without jobs in the plan gets none during the run: jobs that follow an upstream job
                # are in it.
                due = [step for step in pipeline.steps if counts[step.name]]
                held: set[str] = set()
                seen = len(report.failures)  # the failures so far: jobs in flight that ended
                for index, step in enumerate(due):
                    # A subject with a job in flight elsewhere (another run's, of any step) gets no job here
                    # from then on: it would read or replace what that job reads or replaces. Read once this
                    # plan began: a job that ended before is in what it reads, and the claims
                    # (record_submitted) leave those of subjects another run takes up or ends meanwhile.
                    began = utcnow()
                    flying = {(row.step, row.subject) for row in in_flight(catalog)}
                    _hold(report, planned, held, {subject for _, subject in flying}, due[index:], flying)
                    [(_, work)] = _plan(catalog, selection, [step], force, held, checked_at=began)
                    refused = planned.refused[step.name]
                    checked = {i.subject for i in planned if i.step == step.name and not i.in_flight}
                    if (subjects := {w.subject.id for w in work}) != checked:
                        # a subject checked that gets no job now (one before it failed) keeps its names
                        refused = _validate(catalog, step, subjects)
                    work = _refuse(catalog, step, work, refused, report, executor.name)
                    if work:
                        taken = _execute(catalog, executor, work, report, progress)
                        _hold(report, planned, held, taken, due[index + 1 :])
                    # A subject whose job failed in this run gets no later step's job in it: it would read the
                    # output the failed job did not make (a stitch that failed: the panorama stitched before).
                    held.update(failure.subject for failure in report.failures[seen:])
            if selection.selects_all and steps is None:  # a full run: what no subject records any more goes
                drop_vanished_jobs(catalog)
                removed = forget_vanished_shots(catalog)
                discard_outputs(removed)
                report.removed = len(removed)
        finally:
            if own:
                executor.close()
    report.seconds = time.perf_counter() - started
    return report


def _submit_due(
    catalog: Catalog,
    selection: Selection,
    steps: Sequence[Step],
    force: bool,
    executor: Executor | None,
    busy: set[str],
    report: RunReport,
    *,
    queue: Callable[[Step], bool] | None = None,
    dispatcher: bool = False,
    complete_only: bool = False,
    held: bool = False,
) -> None:
    """Submit, step by step, the jobs due now: not those of subjects in flight, nor (as their subjects join
    ``busy``) those that follow a job submitted earlier in the loop; they wait for a later run. The one rule
    of what is due now, for runs, the event path and the dispatcher (``dispatcher``: only the jobs queued
    for it and those that follow jobs that ended, see :func:`advance`). The jobs of the steps ``queue``
    picks are queued for the dispatcher instead; on an executor that is not detached the others run here,
    step after step; without an executor, nothing is submitted: they are counted ``due``. With
    ``complete_only`` (the event path and the dispatcher), a subject whose inputs are still arriving
    (:meth:`~panopipe.steps.base.Step.incomplete`: a rig shot whose other frames are still uploading) gets
    no job: it is counted ``waiting``, and a later event plans it again. With ``held`` (a run's, on a detached
    executor), the jobs of the subjects in ``busy`` are counted in ``report`` as :func:`_leave` does.

    Steps are planned together over one selection of the subjects, up to the first step that runs here: the
    steps after it are planned once it has run, so that they see its outputs."""
    after = steps if dispatcher else None

    def runs_here(step: Step) -> bool:
        return executor is not None and not executor.detached and not (queue is not None and queue(step))

    pending = list(steps)
    known: dict[SubjectKind, set[Any]] = {}
    recording = executor is not None  # a dry run (due only) writes nothing
    while pending:
        cut = next((i + 1 for i, step in enumerate(pending) if runs_here(step)), len(pending))
        with _collections_paused():
            counted = report if held else None
            due = pending[:cut]
            planned = _plan(catalog, selection, due, force, busy, after, known, counted, record=recording)
        pending = pending[cut:]
        for step, work in planned:
            if complete_only and (waiting := {w.subject.id for w in work if step.incomplete(w.subject)}):
                work = [w for w in work if w.subject.id not in waiting]
                report.counts.setdefault(step.name, {})["waiting"] = len(waiting)
                busy.update(waiting)
            if not work:
                continue
            refused = _validate(catalog, step, {w.subject.id for w in work})
            work = _refuse(catalog, step, work, refused, report, executor.name if executor else None)
            if not work:
                continue
            if executor is None:
                status, count = "due", len(work)
            elif runs_here(step):
                busy.update(_execute(catalog, executor, work, report, None))
                continue
            elif queue is not None and queue(step):
                with _collections_paused():
                    reasons = [w.reason for w in work]
                    planned_at = min(w.planned_at for w in work)
                    record_submitted(
                        catalog, step, _specs(work), reasons, DISPATCH_EXECUTOR, planned_at=planned_at
                    )
                status, count = "queued", len(work)
            else:
                with _collections_paused():
                    status, count = (
                        "submitted",
                        len(_submit(catalog, executor, work, dispatcher=dispatcher)[0]),
                    )
            if count:
                counts = report.counts.setdefault(step.name, {})
                counts[status] = counts.get(status, 0) + count
            busy.update(w.subject.id for w in work)  # those not claimed here are another submitter's


def initiate(
    catalog: Catalog,
    selection: Selection,
    steps: list[str] | None,
    settings: Settings,
    *,
    executor: Executor,
    pipeline: Pipeline | None = None,
) -> RunReport:
    """What changed images start with nobody typing anything (the event path). When AWS Batch is configured
    (``settings.batch_job_queue``), the jobs of heavy steps (:attr:`~panopipe.steps.base.Step.heavy`) are
    queued in the catalog for the dispatcher (:func:`~panopipe.pipeline.dispatch.dispatch`), which submits
    them as array jobs, and so is every job when ``executor`` is detached; the other jobs run on ``executor``,
    step after step. A subject whose job is queued gets no later job here: the dispatcher plans those once it
    has run. Asks no executor about jobs in flight. ``pipeline`` is the one ``settings`` and ``steps``
    configure when the caller has it already (see :func:`~panopipe.pipeline.plan`), else it is loaded."""
    started = time.perf_counter()
    report = RunReport()
    pipeline = pipeline or load_pipeline(catalog, settings, steps)
    _submit_due(
        catalog,
        selection,
        pipeline.steps,
        False,
        executor,
        set(),
        report,
        queue=lambda step: executor.detached or (step.heavy and bool(settings.batch_job_queue)),
        complete_only=True,
    )
    report.seconds = time.perf_counter() - started
    return report


def advance(catalog: Catalog, settings: Settings, *, executor: Executor | None) -> RunReport:
    """What the dispatcher does each tick (:func:`~panopipe.pipeline.dispatch.dispatch`): record how the jobs
    in flight on ``executor`` (detached) ended, then submit, step by step as :func:`run` does, the jobs queued
    for it (by the event path, :func:`initiate`) and those that follow jobs that ended: a later step of a
    subject, once a step before it made an output and no job of the later step was submitted since. Never
    the jobs a configuration change or an edit made due, nor jobs that failed: ``panopipe run`` does those.
    Without ``executor``, asks no executor and submits nothing: what is due as the catalog stands (the jobs
    in flight as last seen), counted ``due``."""
    started = time.perf_counter()
    report = RunReport()
    pipeline = load_pipeline(catalog, settings)
    if executor is not None:
        drop_vanished_jobs(catalog)  # the queued jobs of shots an upload regrouped away
    if executor is None:
        busy = {row.subject for row in in_flight(catalog)}
    else:
        refreshed = refresh(catalog, settings, executor=executor)
        report.ended, busy = refreshed.ended, refreshed.in_flight
        report.failures.extend(Failure(*failure) for failure in refreshed.failures)
    _submit_due(
        catalog,
        Selection(),
        pipeline.steps,
        False,
        executor,
        busy,
        report,
        dispatcher=True,
        complete_only=True,
    )
    report.seconds = time.perf_counter() - started
    return report


def _plan(
    catalog: Catalog,
    selection: Selection,
    steps: Sequence[Step],
    force: bool,
    busy: set[str],
    after: Sequence[Step] | None = None,
    known: dict[SubjectKind, set[Any]] | None = None,
    held: RunReport | None = None,
    *,
    record: bool = True,
    checked_at: datetime | None = None,
) -> list[tuple[Step, list[Work]]]:
    """The jobs of each of ``steps`` due now, in order, over one selection of the subjects: the subjects in
    ``busy``, or in the jobs of an earlier step of ``steps``, left out before they are loaded. With ``after``
    (the pipeline's steps), only the dispatcher's: the jobs queued for it, and those that follow jobs of the
    steps before them that ended (:func:`~panopipe.pipeline.store.candidates`). ``known`` gathers the
    selected subjects of the kinds read so far (of a few ids only, ``Selected.known``): steps all of whose
    selected subjects are busy are not planned (e.g. an event's shots whose stitch was just queued). With
    ``held``, the subjects in ``busy`` are planned too, and their jobs, as :func:`~panopipe.pipeline.plan` lists
    them, counted there (:func:`_leave`) instead of returned. With ``record`` (unless nothing is to be
    submitted), the candidates found up to date are recorded so (:func:`plan_step`). ``checked_at`` (default:
    now) is when planning began."""
    queued_for = DISPATCH_EXECUTOR if after is not None else None
    known = {} if known is None else known
    kinds = {kind for step in steps for kind in step.kinds}
    if (
        busy
        and held is None
        and kinds <= known.keys()
        and busy.issuperset(subject_id(k, key) for k in kinds for key in known[k])
    ):
        return [(step, []) for step in steps]
    taken = set(busy) if held is None else set()
    rerun: dict[str, set[str]] = {}  # the busy subjects' jobs so far, by step (with held)
    planned: list[tuple[Step, list[Work]]] = []
    checked_at = checked_at or utcnow()
    with catalog.autocommit() as conn, selected_subjects(conn, selection) as selected:
        found = None if force else candidates(conn, steps, selected, after=after)
        known.update(selected.known)
        failed = failed_jobs(conn, steps, selected, queued_for=queued_for)
        cache: dict[str, Subject] = {}
        for index, step in enumerate(steps):
            # The first step loads the frame fields it reads; a later one, those it and the steps after it
            # read (once, not once per step). A later step decides on a subject only once the step it reads
            # from has made its input, so when a run's new subjects go to the first step (new uploads), the
            # others load nothing; a subject loaded without the fields a step reads is loaded again.
            fields = frame_fields([step] if index == 0 else steps[index:])
            free = None
            if found is not None:
                free = {
                    kind: {key for key in keys if subject_id(kind, key) not in taken}
                    for kind, keys in found[step.name].items()
                }
            failures = {
                kind: {key: why for key, why in reasons.items() if subject_id(kind, key) not in taken}
                for kind, reasons in failed[step.name].items()
            }
            work = plan_step(
                conn,
                step,
                selected,
                free,
                failures,
                force=force,
                cache=cache,
                checked_at=checked_at,
                record=record,
                fields=fields,
            )
            work = [w for w in work if w.subject.id not in taken]
            if held is not None:
                theirs = [w for w in work if w.subject.id in busy]
                following = followers(step, rerun, {w.subject.id for w in theirs})
                _leave(held, [w.in_flight for w in theirs] + [False] * len(following))
                work = [w for w in work if w.subject.id not in busy]
            planned.append((step, work))
            taken.update(w.subject.id for w in work)
    return planned


def _hold(
    report: RunReport,
    planned: Plan,
    held: set[str],
    subjects: Collection[str],
    steps: Sequence[Step],
    flying: Collection[tuple[str, str]] = (),
) -> None:
    """Hold ``subjects`` back for the rest of the run: those not yet in ``held`` join it, and the jobs the plan
    lists of them in ``steps`` (the steps still to run) are counted in ``report`` as :func:`_leave` does, in
    flight when their step and subject are in ``flying``."""
    new = set(subjects) - held
    if new:
        names = {step.name for step in steps}
        _leave(
            report, [(i.step, i.subject) in flying for i in planned if i.subject in new and i.step in names]
        )
        held.update(new)


def _leave(report: RunReport, in_flight: Sequence[bool]) -> None:
    """Count in ``report`` the jobs the plan lists for the subjects with a job in flight, each told whether it
    is that job (``left_in_flight``) or another (``held_back``)."""
    report.left_in_flight += sum(in_flight)
    report.held_back += len(in_flight) - sum(in_flight)


def _validate(catalog: Catalog, step: Step, subject_ids: set[str]) -> dict[str, str]:
    """Let a step that checks its subjects (publish) see every subject the run will give it, before it starts:
    those it refuses, with why (:func:`~panopipe.pipeline.planner.refusals`)."""
    with catalog.connect() as conn:
        return refusals(conn, step, subject_ids)


def _refuse(
    catalog: Catalog,
    step: Step,
    work: list[Work],
    refused: Mapping[str, str],
    report: RunReport,
    record_as: str | None,
) -> list[Work]:
    """``work`` without the jobs of the subjects ``step`` refused, each counted failed with why in ``report``
    and, with ``record_as`` (the executor's name; none when nothing is submitted), recorded as a job of that
    executor that failed, which ``status`` and the exports show (the run goes on with the others; a later run
    plans them again)."""
    if not refused:
        return work
    kept, rejected = [], []
    for w in work:
        if w.subject.id in refused:
            report.failures.append(Failure(step.name, w.subject.id, refused[w.subject.id]))
            counts = report.counts.setdefault(step.name, {})
            counts["failed"] = counts.get("failed", 0) + 1
            rejected.append(w)
        else:
            kept.append(w)
    if record_as is not None and rejected:
        for reason in sorted({refused[w.subject.id] for w in rejected}):
            alike = [w for w in rejected if refused[w.subject.id] == reason]
            specs = [  # no payload: a job refused is never sent (a publish name that cannot be made, say)
                JobSpec(job_id, step.name, w.subject.id, w.fingerprint, {})
                for job_id, w in zip(new_ids(len(alike)), alike, strict=True)
            ]
            token = new_claim()
            planned_at = min(w.planned_at for w in alike)
            reasons = [w.reason for w in alike]
            record_submitted(catalog, step, specs, reasons, record_as, claim=token, planned_at=planned_at)
            fail_claim(catalog, token, reason)
    return kept


@contextlib.contextmanager
def _sigterm_terminates() -> Iterator[None]:
    """Meanwhile, SIGTERM (``timeout``, systemd, ``docker stop``, a CI job cancelled) raises
    :class:`Terminated` in the main thread, which takes Ctrl-C's path; a second SIGTERM ends the process at
    once. Off the main thread nothing changes (signal handlers belong to it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _collections_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (reference counting still frees what is dropped): planning and
    submitting many jobs make millions of objects that live until the end, which the collector would scan
    again and again for nothing (about 15% of the time of 100,000 shots). Restored afterwards, unless it was
    already paused (by another thread: the first to pause it restores it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _specs(work: Sequence[Work]) -> list[JobSpec]:
    step = work[0].step
    payload = step.payload
    return [
        JobSpec(job_id, step.name, w.subject.id, w.fingerprint, payload(w.subject, w.upstream, w.fingerprint))
        for job_id, w in zip(new_ids(len(work)), work, strict=True)
    ]


def _submit(
    catalog: Catalog, executor: Executor, work: Sequence[Work], *, dispatcher: bool = False
) -> tuple[list[tuple[JobSpec, Work]], list[str], str]:
    """Record the jobs of ``work`` as queued and submit those this submission claims (another run or
    submitter holds the others, see :func:`record_submitted`). The submitted specs (whose ids are the job
    rows' ids, as results name them) with their work, their handles, and the claim: a remote executor's ids
    replace it, and an executor that runs the jobs here (the local pool, inline) leaves it on them until they
    end, for :func:`_execute` to renew.

    A submission that fails gives its claims up, queued again for the next submitter, unless AWS refused it as
    configured (a missing job queue) in a command someone typed: those jobs fail with the reason, so that
    none is left for the dispatcher to submit after the command said it failed. The dispatcher keeps its
    jobs queued either way, for the tick after the cause is fixed."""
    specs = _specs(work)
    executor.check(
        specs
    )  # jobs it cannot run (local inputs on AWS Batch) are refused before they are recorded
    token = new_claim()
    job_ids = record_submitted(
        catalog,
        work[0].step,
        specs,
        [w.reason for w in work],
        executor.name,
        claim=token,
        planned_at=min(w.planned_at for w in work),
    )
    claimed = claimed_jobs(catalog, token)
    pairs = [
        (spec if job_ids[spec.id] == spec.id else replace(spec, id=job_ids[spec.id]), w)
        for spec, w in zip(specs, work, strict=True)
        if job_ids[spec.id] in claimed
    ]
    if not pairs:
        return [], [], token
    try:
        handles = executor.submit([spec for spec, _ in pairs])
    except ConfigError as exc:
        if executor.detached and not dispatcher:
            fail_claim(catalog, token, f"not submitted: {exc}")
        else:
            release_claim(catalog, token)
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | Terminated) and not executor.detached:  # inline runs them here
            record_cancelled(catalog, [spec.id for spec, _ in pairs])
        else:
            release_claim(catalog, token)
        raise
    if executor.detached:
        record_external_ids(
            catalog, dict(zip((spec.id for spec, _ in pairs), executor.external_ids(handles), strict=True))
        )
    return pairs, handles, token


def _execute(
    catalog: Catalog, executor: Executor, work: Sequence[Work], report: RunReport, progress: Progress | None
) -> set[str]:
    """Submit the jobs of ``work`` that this run claims and follow them until they end, recording how; the
    subjects of the others, which another run or submitter took up or ended meanwhile (counted
    ``left_in_flight``)."""
    step = work[0].step
    pairs, handles, claim = _submit(catalog, executor, work)
    report.left_in_flight += len(work) - len(pairs)
    taken = {w.subject.id for w in work} - {w.subject.id for _, w in pairs}
    renewed = time.monotonic()
    spec_of = dict(zip(handles, pairs, strict=True))
    pending = dict.fromkeys(handles)  # ordered, and each finished handle leaves it in constant time
    counts = report.counts.setdefault(step.name, {})
    total, finished = len(handles), 0
    failed: dict[str, Failure] = {}  # by handle: reported in the plan's order, not the order jobs end in
    renamed: dict[str, str | None] = {}  # names it superseded: another job of it may be taking one over
    try:
        while pending:
            if not executor.detached and time.monotonic() - renewed > CLAIM_TTL_S / 3:
                renew_claim(catalog, claim)  # still running here: no other run is to take them over
                renewed = time.monotonic()
            states = executor.finished(pending)
            unreachable = None
            for state in states:
                spec, item = spec_of[state.handle]
                if state.outcome is not None and state.outcome.unreachable:
                    unreachable = state.outcome.error  # left pending: cancelled below, due again
                    continue
                # A connection lost meanwhile (a failover, an idle cut-off) is not worth the run: the write
                # is tried again once on a new one, as writing the same outcome again does no harm.
                superseded = retry_read(
                    functools.partial(
                        record_finished,
                        catalog,
                        spec.id,
                        step,
                        item.subject,
                        item.fingerprint,
                        state,
                        planned_at=item.planned_at,
                    )
                )
                set_aside(step, superseded, renamed)
                counts[state.status] = counts.get(state.status, 0) + 1
                if state.status == "failed" and state.outcome is not None:
                    failed[state.handle] = Failure(step.name, spec.subject, state.outcome.error or "failed")
                del pending[state.handle]
            if unreachable is not None:  # every other job would fail alike: one error, not one per job
                raise EndpointUnreachableError(
                    f"{unreachable}; the run stopped: run again once it is, its jobs not run are due"
                )
            if states:
                finished += len(states)
                if progress is not None:
                    progress(step.name, finished, total)
            else:
                executor.wait(pending)
    except BaseException:  # Ctrl-C, or an error: the jobs not finished here are cancelled, their claim let go
        if executor.detached:
            raise  # the jobs go on where they run; `panopipe status` follows them
        executor.cancel(list(pending))
        record_cancelled(catalog, [spec_of[h][0].id for h in pending])
        counts["cancelled"] = counts.get("cancelled", 0) + len(pending)
        raise
    finally:
        report.failures.extend(failed[handle] for handle in handles if handle in failed)
        discard_superseded(catalog, renamed)
    return taken


__all__ = ["Failure", "Progress", "RunReport", "advance", "initiate", "run"]
