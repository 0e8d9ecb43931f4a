"""The planner: which jobs a run would make, and why, without fingerprinting every image.

Candidates are found set-wise in SQL, per step: subjects with no artifact, a different ``params_hash``
(parameters or step version changed), a selected image updated after the artifact, an upstream artifact newer
than it, or a job that failed, was cancelled or was marked stale by ``verify --repair``. Only candidates get
their fingerprint computed. A candidate whose fingerprint matches its artifact is up to date: the planner
records that (``artifacts.checked_at``) so that, e.g., a GPS edit does not keep ``stitch`` a candidate.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import artifacts, edits, jobs
from panopipe.catalog.types import utcnow
from panopipe.config import Settings
from panopipe.iterutil import batched
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.subjects import CHUNK, KINDS, Selected, load_subjects, selected_subjects
from panopipe.steps.base import Step, Subject, SubjectKind, Upstream, subject_id
from panopipe.steps.registry import STEP_TYPES

RERUN_STATUSES = ("failed", "stale", "cancelled", "queued", "running")
# When an artifact was made or last found up to date: changes before then are accounted for.
_SEEN = sa.func.coalesce(artifacts.c.checked_at, artifacts.c.created_at)
_JOB_ARTIFACT = artifacts.alias("a")


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One job a run would make: the step, the subject, why, and its fingerprint (``None`` while it depends
    on an upstream job of the same run)."""

    step: str
    subject: str
    reason: str
    fingerprint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "subject": self.subject,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run would do, in run order. Empty (falsy) when everything is up to date."""

    steps: tuple[str, ...]
    items: tuple[PlanItem, ...]

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
    """A job to make now: its step, subject (with frames), upstream output, reason and fingerprint."""

    step: Step
    subject: Subject
    upstream: Upstream | None
    reason: str
    fingerprint: str


def plan(
    catalog: Catalog,
    selection: Selection | None = None,
    steps: list[str] | None = None,
    settings: Settings | None = None,
    *,
    force: bool = False,
) -> Plan:
    """What :func:`~panopipe.pipeline.run` would run over ``selection`` and why.

    Jobs of later steps whose upstream will rerun are listed with the reason ``after <step>``; their
    fingerprint is known only once the upstream job has run. The only write: candidates found up to date are
    recorded so (``artifacts.checked_at``).
    """
    pipeline = load_pipeline(catalog, settings, steps)
    items: list[PlanItem] = []
    rerun: dict[str, set[str]] = {}
    started = utcnow()
    with catalog.engine.begin() as conn, selected_subjects(conn, selection or Selection()) as selected:
        found = {} if force else candidates(conn, pipeline.steps, selected)
        failed = failed_jobs(conn, pipeline.steps, selected)
        known = None if force else _recorded_for(conn, pipeline.steps, found, failed)
        cache: dict[str, Subject] = {}
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
            )
            items += [PlanItem(step.name, w.subject.id, w.reason, w.fingerprint) for w in direct]
            done = {w.subject.id for w in direct}
            for kind in sorted(step.kinds):
                upstream = step.upstream(kind)
                after = sorted(
                    s for s in rerun.get(upstream or "", ()) if s.startswith(f"{kind}:") and s not in done
                )
                items += [PlanItem(step.name, s, f"after {upstream}", None) for s in after]
                done.update(after)
            rerun[step.name] = done
    return Plan(tuple(s.name for s in pipeline.steps), tuple(items))


def plan_step(
    conn: sa.Connection,
    step: Step,
    selected: Selected,
    found: dict[SubjectKind, set[Any]] | None = None,
    failed: dict[SubjectKind, dict[Any, str]] | None = None,
    *,
    force: bool = False,
    cache: dict[str, Subject] | None = None,
    known: dict[str, dict[str, _Recorded]] | None = None,
    checked_at: datetime | None = None,
) -> list[Work]:
    """The jobs ``step`` needs now over the ``selected`` subjects (see :func:`selected_subjects`).

    ``found`` are the step's candidates from :func:`candidates` and ``failed`` its subjects from
    :func:`failed_jobs`, computed here when not given; ``cache`` keeps loaded subjects for the next step;
    ``known`` are the primary artifacts of the step and its upstreams for every subject it may decide on, as
    :func:`recorded` gives them (read here when not given). Candidates found up to date get ``checked_at``
    (default: now, which must not be later than when their images were read) recorded on their artifacts.
    """
    cache = {} if cache is None else cache
    checked_at = checked_at or utcnow()
    if found is None and not force:
        found = candidates(conn, [step], selected)[step.name]
    if failed is None:
        failed = failed_jobs(conn, [step], selected)[step.name]
    work: list[Work] = []
    for kind in KINDS:
        if kind not in step.kinds:
            continue
        if force:
            keys: set[Any] = set(conn.execute(sa.select(selected[kind].c.key), selected.params).scalars())
        else:
            keys = set((found or {}).get(kind, ()))
        failures = failed.get(kind, {})
        keys.update(failures)
        for chunk in batched(sorted(keys), CHUNK):
            missing = [key for key in chunk if subject_id(kind, key) not in cache]
            cache.update((subject.id, subject) for subject in load_subjects(conn, kind, missing))
            subjects = [cache[i] for i in (subject_id(kind, key) for key in chunk) if i in cache]
            work += _decide(conn, step, subjects, step.upstream(kind), failures, force, checked_at, known)
    return work


def candidates(
    conn: sa.Connection, steps: Sequence[Step], selected: Selected
) -> dict[str, dict[SubjectKind, set[Any]]]:
    """Per step and subject kind, the selected subjects that may be stale, found set-wise in SQL.

    A subject is a candidate of a step when the step's primary artifact is missing or has another
    ``params_hash``, or when, since it was made or last found up to date, a selected image of the subject
    changed (for steps that read images) or the upstream step made a new output.
    """
    found: dict[str, dict[SubjectKind, set[Any]]] = {step.name: {} for step in steps}
    build = _kept_candidates_query if selected.shared else _candidates_query
    for kind in KINDS:
        relevant = [step for step in steps if kind in step.kinds]
        if not relevant:
            continue
        signature = tuple((s.name, s.params_hash, bool(s.reads), s.upstream(kind)) for s in relevant)
        query = build(kind, signature, selected[kind], conn.dialect.name)
        for row in conn.execute(query, selected.params):
            for step, flagged in zip(relevant, row[1:], strict=True):
                if flagged:
                    found[step.name].setdefault(kind, set()).add(row[0])
    return found


def _candidates_query(
    kind: SubjectKind,
    signature: tuple[tuple[str, str, bool, str | None], ...],
    table: sa.FromClause,
    dialect: str,
) -> sa.Select[Any]:
    """The candidates of the steps of ``signature`` (name, params hash, whether it reads images, upstream)
    among the subjects of ``kind`` in ``table``: their key and a 0/1 flag per step."""
    upstreams = sorted({upstream for *_, upstream in signature if upstream})
    probes = [
        (f"seen_{i}", _SEEN, _primary(name, params_hash))
        for i, (name, params_hash, _, _) in enumerate(signature)
    ]
    probes += [(f"made_{u}", artifacts.c.created_at, _primary(u)) for u in upstreams]
    rec = _probe(kind, probes, table, dialect)
    flags = []
    for i, (_, _, reads, upstream) in enumerate(signature):
        seen = rec.c[f"seen_{i}"]
        conditions = [seen.is_(None)]
        if reads or upstream is None:
            conditions.append(rec.c.changed > seen)
        if upstream is not None:
            conditions.append(rec.c[f"made_{upstream}"] > seen)
        flags.append(sa.or_(*conditions))
    return sa.select(rec.c.key, *(sa.case((flag, 1), else_=0) for flag in flags)).where(sa.or_(*flags))


_kept_candidates_query = functools.lru_cache(maxsize=64)(_candidates_query)
""":func:`_candidates_query` kept for the shared tables of a few ids (see :class:`Selected`): building the
statement took most of an event batch's planning time."""


@functools.lru_cache(maxsize=256)
def _primary(
    step: str, params_hash: str | None = None, table: sa.Table | sa.Alias = artifacts
) -> tuple[sa.ColumnElement[bool], ...]:
    """Conditions for the primary artifact of ``step`` (made with ``params_hash``, when given) in ``table``;
    built once (SQL expressions are immutable), as every plan asks for the same ones."""
    conditions = [table.c.step == step, table.c.name == STEP_TYPES[step].outputs[0]]
    if params_hash is not None:
        conditions.append(table.c.params_hash == params_hash)
    return tuple(conditions)


def _probe(
    kind: SubjectKind,
    probes: Sequence[tuple[str, Any, Sequence[sa.ColumnElement[bool]]]],
    table: sa.FromClause,
    dialect: str,
) -> sa.Subquery | sa.CTE:
    """The selected subjects (``key``, ``changed``) with one column per ``(label, value, conditions)`` probe:
    ``value`` of the subject's artifact that meets ``conditions``, ``NULL`` if none does.

    SQLite, and PostgreSQL for the few subjects of a subquery (see :func:`selected_subjects`), probe the
    artifacts index once per subject and probe (correlated subqueries, materialized so that each runs once);
    PostgreSQL is faster aggregating all artifacts in one parallel pass and hash-joining for a temporary table.
    """
    key = _key_of(artifacts, kind)
    columns: list[Any] = [table.c.key, table.c.changed]
    if dialect == "sqlite" or isinstance(table, sa.Subquery):
        for label, value, conditions in probes:
            probe = sa.select(value).where(key == table.c.key, *conditions)
            columns.append(probe.scalar_subquery().label(label))
        return sa.select(*columns).cte(f"probed_{kind}").prefix_with("MATERIALIZED")
    aggregates = [key.label("key")]
    aggregates += [sa.func.max(sa.case((sa.and_(*c), value))).label(label) for label, value, c in probes]
    per_subject = sa.select(*aggregates).where(key.is_not(None)).group_by(key).subquery()
    columns += [per_subject.c[label] for label, _, _ in probes]
    return (
        sa.select(*columns)
        .select_from(table.outerjoin(per_subject, per_subject.c.key == table.c.key))
        .subquery()
    )


def _key_of(table: sa.Table | sa.Alias, kind: SubjectKind) -> sa.Column[Any]:
    return table.c.shot if kind == "shot" else table.c.image_id


def failed_jobs(
    conn: sa.Connection, steps: Sequence[Step], selected: Selected
) -> dict[str, dict[SubjectKind, dict[Any, str]]]:
    """Per step and subject kind, the selected subjects (by key) whose latest job of the step did not succeed
    after its artifact was made, with the reason: one query for all ``steps``. A few subjects (an event batch)
    read only their own jobs; a large selection reads every unfinished job and keeps the selected ones."""
    a = _JOB_ARTIFACT
    primary = sa.or_(*(sa.and_(*_primary(step.name, table=a)) for step in steps))
    few = _few_keys(conn, selected)
    query = (
        sa.select(jobs.c.step, jobs.c.subject, jobs.c.status, jobs.c.reason, jobs.c.error)
        .select_from(
            jobs.outerjoin(a, sa.and_(a.c.step == jobs.c.step, a.c.subject == jobs.c.subject, primary))
        )
        .where(
            jobs.c.step.in_([step.name for step in steps]),
            jobs.c.status.in_(RERUN_STATUSES),
            sa.or_(
                a.c.id.is_(None), a.c.fingerprint == jobs.c.fingerprint, jobs.c.submitted_at > a.c.created_at
            ),
        )
        .order_by(jobs.c.submitted_at)
    )
    if few is not None:
        query = query.where(
            jobs.c.subject.in_([subject_id(kind, key) for kind, keys in few.items() for key in keys])
        )
    reasons: dict[tuple[str, str], dict[Any, str]] = {}
    for row in conn.execute(query):
        kind, _, key = row.subject.partition(":")
        if row.status == "stale":
            reason = row.reason or "marked stale"
        elif row.status == "failed":
            reason = f"failed before: {row.error}"
        else:
            reason = f"{row.status} before, not finished"
        reasons.setdefault((row.step, kind), {})[key] = reason
    failed: dict[str, dict[SubjectKind, dict[Any, str]]] = {step.name: {} for step in steps}
    for kind in KINDS:
        if few is not None:
            chosen = few[kind]
        else:
            keys = {key for (_, k), found in reasons.items() if k == kind for key in found}
            chosen = set()
            for chunk in batched(keys, CHUNK):
                chosen.update(
                    str(k)
                    for k in conn.execute(
                        sa.select(selected[kind].c.key).where(selected[kind].c.key.in_(chunk))
                    ).scalars()
                )
        for step in steps:
            found = reasons.get((step.name, kind), {})
            failed[step.name][kind] = {key: reason for key, reason in found.items() if key in chosen}
    return failed


def _few_keys(conn: sa.Connection, selected: Selected) -> dict[SubjectKind, set[str]] | None:
    """The keys of a few-ids selection (subqueries, see :func:`selected_subjects`), both kinds in one query;
    ``None`` for a large one."""
    if not all(isinstance(table, sa.Subquery) for table in selected.values()):
        return None
    query = sa.union_all(
        *(
            sa.select(sa.literal(kind).label("kind"), sa.cast(t.c.key, sa.String).label("key"))
            for kind, t in selected.items()
        )
    )
    keys: dict[SubjectKind, set[str]] = {kind: set() for kind in selected}
    for kind, key in conn.execute(query, selected.params):
        # An image id cast to text is dashed on PostgreSQL and bare hex on SQLite; its key is the dashed form.
        keys[kind].add(str(uuid.UUID(key)) if kind == "image" else key)
    return keys


@dataclass(frozen=True, slots=True)
class _Recorded:
    fingerprint: str
    params_hash: str
    step_version: str
    uri: str
    hash: str | None
    created_at: datetime


def recorded(
    conn: sa.Connection, steps: Sequence[str], subjects: Iterable[str]
) -> dict[str, dict[str, _Recorded]]:
    """Per step of ``steps``, the primary artifact of the step for each of ``subjects`` that has one."""
    c = artifacts.c
    found: dict[str, dict[str, _Recorded]] = {step: {} for step in steps}
    primary = sa.or_(*(sa.and_(*_primary(step)) for step in steps))
    for chunk in batched(subjects, CHUNK):
        query = sa.select(
            c.step,
            c.subject,
            c.fingerprint,
            c.params_hash,
            c.step_version,
            c.output_uri,
            c.output_hash,
            c.created_at,
        ).where(primary, c.subject.in_(chunk))
        for row in conn.execute(query):
            found[row.step][row.subject] = _Recorded(*row[2:])
    return found


def _recorded_for(
    conn: sa.Connection,
    steps: Sequence[Step],
    found: dict[str, dict[SubjectKind, set[Any]]],
    failed: dict[str, dict[SubjectKind, dict[Any, str]]],
) -> dict[str, dict[str, _Recorded]] | None:
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
    conn: sa.Connection,
    step: Step,
    subjects: Sequence[Subject],
    upstream: str | None,
    failures: dict[Any, str],
    force: bool,
    checked_at: datetime,
    known: dict[str, dict[str, _Recorded]] | None,
) -> list[Work]:
    ids = [s.id for s in subjects]
    confirmed: list[str] = []
    artifacts_of = (
        known if known is not None else recorded(conn, [step.name, *([upstream] if upstream else [])], ids)
    )
    current = artifacts_of[step.name]
    inputs = artifacts_of.get(upstream or "", {})
    work: list[Work] = []
    unexplained: list[tuple[Subject, Upstream | None, str, _Recorded]] = []
    for subject in subjects:
        source = inputs.get(subject.id)
        if upstream is not None and source is None:
            continue  # the upstream step has not produced this subject's input yet
        up = Upstream(upstream, source.uri, source.hash) if upstream and source else None
        fingerprint = step.fingerprint(subject, up)
        artifact = current.get(subject.id)
        failure = failures.get(subject.key)
        if force:
            reason: str | None = "forced"
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
        else:
            unexplained.append((subject, up, fingerprint, artifact))
            continue
        if reason:
            work.append(Work(step, subject, up, reason, fingerprint))
    if confirmed:  # so that later plans no longer take them for candidates
        conn.execute(
            artifacts.update()
            .where(artifacts.c.step == step.name, artifacts.c.subject.in_(confirmed))
            .values(checked_at=checked_at)
        )
    edited = _edited_since(conn, [(s, a.created_at) for s, _, _, a in unexplained])
    for subject, up, fingerprint, _ in unexplained:
        reason = "metadata edited" if subject.id in edited else "input changed"
        work.append(Work(step, subject, up, reason, fingerprint))
    return work


def _edited_since(conn: sa.Connection, subjects: Sequence[tuple[Subject, datetime]]) -> set[str]:
    """Subjects any of whose frames had an edit made or undone after the given time."""
    since = {frame.id: (subject.id, moment) for subject, moment in subjects for frame in subject.frames}
    found: set[str] = set()
    for chunk in batched(since, CHUNK):
        query = (
            sa.select(edits.c.image_id, sa.func.max(edits.c.created_at), sa.func.max(edits.c.undone_at))
            .where(edits.c.image_id.in_(chunk))
            .group_by(edits.c.image_id)
        )
        for image_id, created, undone in conn.execute(query):
            subject, moment = since[image_id]
            if created > moment or (undone is not None and undone > moment):
                found.add(subject)
    return found


__all__ = [
    "RERUN_STATUSES",
    "Plan",
    "PlanItem",
    "Work",
    "candidates",
    "failed_jobs",
    "plan",
    "plan_step",
    "recorded",
]
