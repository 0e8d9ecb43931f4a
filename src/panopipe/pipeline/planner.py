"""The planner: which jobs a run would make, and why, without fingerprinting every image.

Candidates are found set-wise in SQL (the job store's queries, :mod:`panopipe.pipeline.store`, over the
subjects the catalog selects, :mod:`panopipe.catalog.subjects`, on one connection without a transaction of
its own on PostgreSQL: :meth:`Catalog.autocommit`), per step: subjects with no artifact, a different ``params_hash``
(parameters or step version changed), a selected image updated after the artifact, an upstream artifact newer
than it, or a job that failed, was cancelled or was marked stale by ``verify --repair``. Only candidates get
their fingerprint computed. A candidate whose fingerprint matches its artifact is up to date: a run's
planning records that (``artifacts.checked_at``) so that, e.g., a GPS edit does not keep ``stitch`` a
candidate; :func:`plan` alone (``panopipe plan``, ``run --estimate``) writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.edits import MEMBERSHIP_FIELDS, edited_since
from panopipe.catalog.subjects import (
    CHUNK,
    KINDS,
    Selected,
    Subject,
    SubjectKind,
    load_subjects,
    selected_subjects,
    subject_id,
)
from panopipe.catalog.types import utcnow
from panopipe.config import Settings
from panopipe.errors import ConfigError, StepError
from panopipe.iterutil import batched
from panopipe.pipeline.config import Pipeline, load_pipeline
from panopipe.pipeline.store import (
    Recorded,
    candidates,
    failed_jobs,
    mark_checked,
    recorded,
    recorded_outputs,
    taken_outputs,
)
from panopipe.steps.base import Step, Upstream, frame_fields

if TYPE_CHECKING:
    from sqlalchemy import Connection

_IN_FLIGHT = "in flight on "
"""How the reason of a job in flight begins (:func:`~panopipe.pipeline.store.failed_jobs`): its subject gets no
other job until it ends, so it comes before what changed since (``parameters changed``)."""


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One job a run would make: the step, the subject, why, its fingerprint (``None`` while it depends on an
    upstream job of the same run) and, when known beforehand, why it will fail (:meth:`Step.problem`)."""

    step: str
    subject: str
    reason: str
    fingerprint: str | None
    problem: str | None = None

    @property
    def in_flight(self) -> bool:
        """Whether the job is in flight (on AWS Batch, or in another run): no run makes it again."""
        return _in_flight(self.reason)

    @property
    def conditional(self) -> bool:
        """Whether the job runs only if the job it follows in the same run (reason ``after STEP``) makes an
        output other than before: a stitch made again of the same frames gives the same panorama, and then
        nothing after it runs."""
        return self.fingerprint is None and not self.in_flight

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "subject": self.subject,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "problem": self.problem,
            "conditional": self.conditional,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run would do, in run order. Empty (falsy) when everything is up to date."""

    steps: tuple[str, ...]
    items: tuple[PlanItem, ...]
    refused: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """By step, the subjects it refuses before any job runs (:func:`refusals`), with why: their items'
    ``problem``."""

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[PlanItem]:
        return iter(self.items)

    def counts(self) -> dict[str, int]:
        """How many jobs per step (every step of the plan, zero included)."""
        counts = dict.fromkeys(self.steps, 0)
        for item in self.items:
            counts[item.step] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "items": [item.to_dict() for item in self.items]}


@dataclass(frozen=True, slots=True)
class Work:
    """A job to make now: its step, subject (with frames), upstream output, reason and fingerprint, and when
    the planner began reading what they were made from (``planned_at``: a change after it is not in them)."""

    step: Step
    subject: Subject
    upstream: Upstream | None
    reason: str
    fingerprint: str
    planned_at: datetime

    @property
    def in_flight(self) -> bool:
        """Whether the job is in flight (on AWS Batch, or in another run): no run makes it again."""
        return _in_flight(self.reason)


def plan(
    catalog: Catalog,
    selection: Selection | None = None,
    steps: list[str] | None = None,
    settings: Settings | None = None,
    *,
    force: bool = False,
    pipeline: Pipeline | None = None,
    record: bool = False,
) -> Plan:
    """What :func:`~panopipe.pipeline.run` would run over ``selection`` and why.

    Jobs of later steps whose upstream will rerun are listed with the reason ``after <step>``; their
    fingerprint is known only once the upstream job has run. A job its step refuses before it runs (a publish
    name another subject ends with, :func:`refusals`) has why as its ``problem``. It writes nothing, unless
    ``record`` (a run's plan): then candidates found up to date are recorded so (``artifacts.checked_at``).
    ``pipeline`` is the one ``settings`` and ``steps`` configure when the caller has it already (the event
    handler keeps one per configuration version), else it is loaded.
    """
    pipeline = pipeline or load_pipeline(catalog, settings, steps)
    items: list[PlanItem] = []
    rerun: dict[str, set[str]] = {}
    started = utcnow()
    with catalog.autocommit() as conn, selected_subjects(conn, selection or Selection()) as selected:
        found = {} if force else candidates(conn, pipeline.steps, selected)
        failed = failed_jobs(conn, pipeline.steps, selected)
        known = None if force else _recorded_for(conn, pipeline.steps, found, failed)
        cache: dict[str, Subject] = {}
        fields = frame_fields(pipeline.steps)
        for step in pipeline.steps:
            direct = plan_step(
                conn,
                step,
                selected,
                found.get(step.name),
                failed[step.name],
                force=force,
                cache=cache,
                known=known,
                checked_at=started,
                record=record,
                fields=fields,
            )
            items += [
                PlanItem(step.name, w.subject.id, w.reason, w.fingerprint, step.problem(w.subject))
                for w in direct
            ]
            after = followers(step, rerun, {w.subject.id for w in direct})
            items += [PlanItem(step.name, s, f"after {followed}", None) for s, followed in after]
        refused = {  # what a step refuses before it runs (publish's names alike) fails too
            step.name: refusals(
                conn, step, {i.subject for i in items if i.step == step.name and not i.in_flight}
            )
            for step in pipeline.steps
        }
    items = [replace(i, problem=why) if (why := refused[i.step].get(i.subject)) else i for i in items]
    return Plan(tuple(s.name for s in pipeline.steps), tuple(items), refused)


def refusals(conn: Connection, step: Step, subject_ids: Collection[str]) -> dict[str, str]:
    """The subjects among ``subject_ids`` (those a run gives ``step``) that ``step`` refuses before any job runs,
    with why (:meth:`~panopipe.steps.base.Step.validate`: the subjects a publish template names alike), given
    the outputs recorded at their names; :class:`ConfigError` if its configuration cannot work for one."""
    if not subject_ids or type(step).validate is Step.validate:
        return {}
    subjects = [
        subject
        for kind in KINDS
        for subject in load_subjects(
            conn, kind, sorted(s.partition(":")[2] for s in subject_ids if s.startswith(f"{kind}:"))
        )
    ]
    uris = []
    for subject in subjects:
        with contextlib.suppress(ConfigError, StepError):  # validate() says why, with the subject
            uris.append(step.output_uri(subject, step.outputs[0]))
    return step.validate(subjects, taken_outputs(conn, step.name, uris))


def followers(step: Step, rerun: dict[str, set[str]], direct: set[str]) -> list[tuple[str, str]]:
    """The subjects whose ``step`` job follows a job of a step it reads or copies, ``(subject, that step)`` in
    plan order, besides the subjects of its ``direct`` jobs; ``rerun`` holds the subjects of each earlier
    step's jobs, and gains those of ``step``'s."""
    done = set(direct)
    found: list[tuple[str, str]] = []
    for kind in sorted(step.kinds):
        for followed in filter(None, (step.upstream(kind), *step.copies)):
            after = sorted(s for s in rerun.get(followed, ()) if s.startswith(f"{kind}:") and s not in done)
            found += [(s, followed) for s in after]
            done.update(after)
    rerun[step.name] = done
    return found


def plan_step(
    conn: Connection,
    step: Step,
    selected: Selected,
    found: dict[SubjectKind, set[Any]] | None = None,
    failed: dict[SubjectKind, dict[Any, str]] | None = None,
    *,
    force: bool = False,
    cache: dict[str, Subject] | None = None,
    known: dict[str, dict[str, Recorded]] | None = None,
    checked_at: datetime | None = None,
    record: bool = False,
    fields: Collection[str] | None = None,
) -> list[Work]:
    """The jobs ``step`` needs now over the ``selected`` subjects (see :func:`selected_subjects`).

    ``found`` are the step's candidates from :func:`candidates` and ``failed`` its subjects from
    :func:`failed_jobs`, computed here when not given; ``cache`` keeps loaded subjects for the next step;
    ``known`` are the primary artifacts of the step and its upstreams for every subject it may decide on, as
    :func:`recorded` gives them (read here when not given). ``checked_at`` (default: now, which must not be
    later than when their images were read) is the jobs' ``planned_at``, and with ``record`` (a run's), it is
    recorded on the artifacts of the candidates found up to date.
    Frames are loaded with the ``fields`` the steps sharing ``cache`` read (default: this step's, see
    :func:`~panopipe.steps.base.frame_fields`), only for the subjects the step decides on (not those whose
    upstream step has not made their input yet); a cached subject loaded without some of ``fields`` is
    loaded again.
    """
    cache = {} if cache is None else cache
    fields = frame_fields([step]) if fields is None else fields
    checked_at = checked_at or utcnow()
    if found is None and not force:
        found = candidates(conn, [step], selected)[step.name]
    if failed is None:
        failed = failed_jobs(conn, [step], selected)[step.name]
    work: list[Work] = []
    for kind in KINDS:
        if kind not in step.kinds:
            continue
        keys = selected.keys_of(conn, kind) if force else set((found or {}).get(kind, ()))
        failures = failed.get(kind, {})
        keys.update(failures)
        upstream = step.upstream(kind)
        names = [step.name, *([upstream] if upstream else [])]
        for chunk in batched(sorted(keys), CHUNK):
            ids = [subject_id(kind, key) for key in chunk]
            artifacts_of = known if known is not None else recorded(conn, names, ids)
            if upstream is not None:  # subjects whose input the upstream step has not made are not loaded
                inputs = artifacts_of.get(upstream, {})
                ids = [i for i in ids if i in inputs]
            missing = [i.partition(":")[2] for i in ids if not _carries(cache.get(i), fields)]
            cache.update((subject.id, subject) for subject in load_subjects(conn, kind, missing, fields))
            subjects = [cache[i] for i in ids if i in cache]
            work += _decide(conn, step, subjects, upstream, failures, force, checked_at, artifacts_of, record)
    return work


def _in_flight(reason: str) -> bool:
    return reason.startswith(_IN_FLIGHT)


def _carries(subject: Subject | None, fields: Collection[str]) -> bool:
    """Whether ``subject`` was loaded with (at least) the frame ``fields`` (see :func:`load_subjects`)."""
    if subject is None:
        return False
    try:
        for frame in subject.frames[:1]:
            for name in fields:
                getattr(frame, name)
    except AttributeError:
        return False
    return True


def _recorded_for(
    conn: Connection,
    steps: Sequence[Step],
    found: dict[str, dict[SubjectKind, set[Any]]],
    failed: dict[str, dict[SubjectKind, dict[Any, str]]],
) -> dict[str, dict[str, Recorded]] | None:
    """:func:`recorded` for ``steps`` and their upstreams, of every subject found or failed for any of them;
    ``None`` past :data:`CHUNK` subjects, which the steps read chunk by chunk (not all in memory at once)."""
    subjects = {
        subject_id(kind, key)
        for step in steps
        for kind in step.kinds
        for key in (*found.get(step.name, {}).get(kind, ()), *failed[step.name].get(kind, {}))
    }
    if len(subjects) > CHUNK:
        return None
    names = {step.name for step in steps} | {
        u for step in steps for k in step.kinds if (u := step.upstream(k))
    }
    return recorded(conn, sorted(names), sorted(subjects))


def _decide(
    conn: Connection,
    step: Step,
    subjects: Sequence[Subject],
    upstream: str | None,
    failures: dict[Any, str],
    force: bool,
    checked_at: datetime,
    artifacts_of: dict[str, dict[str, Recorded]],
    record: bool,
) -> list[Work]:
    """The jobs of ``step`` over ``subjects``, given the primary artifacts of the step and its upstream; with
    ``record``, those found up to date are recorded so as of ``checked_at``."""
    ids = [s.id for s in subjects]
    confirmed: list[str] = []
    current = artifacts_of[step.name]
    inputs = artifacts_of.get(upstream or "", {})
    # Copied outputs go with the input: none are read for subjects whose upstream step has not run.
    reading = [i for i in ids if upstream is None or i in inputs]
    copied = recorded_outputs(conn, step.copies, reading) if step.copies else {}
    work: list[Work] = []
    unexplained: list[tuple[Subject, Upstream | None, str, Recorded]] = []
    for subject in subjects:
        source = inputs.get(subject.id)
        if upstream is not None and source is None:
            continue  # the upstream step has not produced this subject's input yet
        copies = copied.get(subject.id, {})
        if source is not None:
            up: Upstream | None = Upstream(upstream, source.uri, source.hash, copies)
        else:  # the image files, and the outputs it copies if any
            up = Upstream(None, None, None, copies) if copies else None
        fingerprint = step.fingerprint(subject, up)
        artifact = current.get(subject.id)
        failure = failures.get(subject.key)
        if failure is not None and _in_flight(failure):  # even forced or changed, `run` leaves it
            reason: str | None = failure
        elif force:
            reason = "forced"
        elif artifact is None:
            reason = failure or "new input"
        elif artifact.fingerprint == fingerprint:
            reason = failure
            if not failure:
                confirmed.append(subject.id)
        elif artifact.step_version != step.version:
            reason = f"step version changed ({artifact.step_version} -> {step.version})"
        elif artifact.params_hash != step.params_hash:
            reason = "parameters changed"
        elif source is not None and source.created_at > artifact.created_at:
            reason = f"input changed ({upstream} output)"
        elif up and (newer := [c.step for c in up.copies.values() if c.created_at > artifact.created_at]):
            reason = f"input changed ({newer[0]} output)"
        else:
            unexplained.append((subject, up, fingerprint, artifact))
            continue
        if reason:
            work.append(Work(step, subject, up, reason, fingerprint, checked_at))
    if record and confirmed:  # so that later plans no longer take them for candidates
        mark_checked(conn, step.name, confirmed, checked_at)
    # Planning loads no frame ids of shots (see load_subjects): the subjects found changed for no reason above
    # whose frames lack them are read again, ids only, to look up their edits.
    with_ids = {s.id: s for s, *_ in unexplained if _carries(s, ("id",))}
    if lacking := [s for s, *_ in unexplained if s.id not in with_ids]:
        with_ids.update(
            (s.id, s) for s in load_subjects(conn, lacking[0].kind, [s.key for s in lacking], ("id",))
        )
    edited = edited_since(  # edits of what the step reads, or of which frames are the subject's
        conn,
        [(with_ids[s.id], a.seen_at) for s, _, _, a in unexplained if s.id in with_ids],
        {*step.reads, *step.reads_if_set, *MEMBERSHIP_FIELDS},
    )
    for subject, up, fingerprint, _ in unexplained:
        reason = "metadata edited" if subject.id in edited else "input changed"
        work.append(Work(step, subject, up, reason, fingerprint, checked_at))
    return work


__all__ = ["Plan", "PlanItem", "Work", "followers", "plan", "plan_step", "refusals"]
