"""Planning: the candidates of each step and the jobs that did not finish, set-wise over the selected subjects,
and the artifacts the planner compares."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.schema import artifacts, jobs
from panopipe.catalog.subjects import CHUNK, KINDS, Selected, SubjectKind, subject_id
from panopipe.catalog.types import utcnow
from panopipe.iterutil import batched
from panopipe.pipeline.store.claims import in_flight_condition, is_in_flight
from panopipe.pipeline.store.shared import primary_conditions, reads_images, subject_key
from panopipe.steps.base import CopiedOutput, Step

RERUN_STATUSES = ("failed", "stale", "cancelled", "queued", "running")
# When an artifact's inputs were read for its job, or it was last found up to date: changes before then are
# accounted for (artifacts recorded before this rule have only created_at).
_SEEN = sa.func.coalesce(artifacts.c.checked_at, artifacts.c.created_at)
_JOB_ARTIFACT = artifacts.alias("a")


@dataclass(frozen=True, slots=True)
class Recorded:
    """The primary artifact of a step for a subject, as the planner compares it."""

    fingerprint: str
    params_hash: str
    step_version: str
    uri: str
    hash: str | None
    created_at: datetime
    seen_at: datetime
    """When it was last known to hold its inputs: when the planner began reading them for its job, or last
    found it up to date."""


_Signature = tuple[tuple[str, str | None, bool, tuple[str, ...], tuple[str, ...]], ...]
"""Per step of a kind: name, params hash (``None``: any), whether it reads images (its own metadata reads,
or the image files), the steps whose outputs it reads (its upstream and the steps it copies), and the steps
before it that it follows (:func:`candidates` with ``after``)."""


def candidates(
    conn: sa.Connection,
    steps: Sequence[Step],
    selected: Selected,
    *,
    after: Sequence[Step] | None = None,
) -> dict[str, dict[SubjectKind, set[Any]]]:
    """Per step and subject kind, the selected subjects that may be stale, found set-wise in SQL.

    A subject is a candidate of a step when the step's primary artifact is missing or has another
    ``params_hash``, or when, since it was made or last found up to date, a selected image of the subject
    changed (for steps that read images) or the upstream step, or a step it copies, made a new output.

    With ``after`` (the pipeline's steps, in run order), only the subjects that follow a job that ended, as
    the dispatcher moves them on: a step before it in ``after`` made an output after the step's own primary
    artifact (of any parameters), if any, was made or last found up to date, and no job of the step was
    submitted for the subject since. Parameters changed and edited images make no such candidate.
    """
    found: dict[str, dict[SubjectKind, set[Any]]] = {step.name: {} for step in steps}
    parts: tuple[tuple[SubjectKind, _Signature], ...] = tuple(
        (kind, tuple(_signature(s, kind, after) for s in steps if kind in s.kinds)) for kind in KINDS
    )
    if after is not None:  # a step that follows none (the first of its kind) is left to the queue
        parts = tuple((kind, tuple(part for part in signature if part[4])) for kind, signature in parts)
    parts = tuple((kind, signature) for kind, signature in parts if signature)
    if not parts:
        return found
    few = selected.few
    build = _kept_candidates_query if selected.shared else _candidates_query
    query = build(parts, tuple(selected[kind] for kind, _ in parts), conn.dialect.name, every=few)
    keys: dict[SubjectKind, set[Any]] = {kind: set() for kind, _ in parts}
    rows = conn.execute(query, selected.params).all()
    # Column by column, each step's flagged keys picked at C speed (a plan of 100,000 shots reads as many rows).
    kinds, all_keys, *flags = zip(*rows, strict=True) if rows else ((), ())
    for kind, signature in parts:
        mine = list(map(kind.__eq__, kinds)) if len(parts) > 1 else None
        kind_keys = list(all_keys if mine is None else compress(all_keys, mine))
        if mine is not None and kind == "image":
            # An image id cast to text is dashed on PostgreSQL and bare hex on SQLite; its key is the dashed form.
            kind_keys = [str(uuid.UUID(key)) for key in kind_keys]
        keys[kind].update(kind_keys)
        for (name, *_), column in zip(signature, flags, strict=False):
            flagged = set(compress(kind_keys, column if mine is None else compress(column, mine)))
            if flagged:
                found[name].setdefault(kind, set()).update(flagged)
    if after is not None:
        _leave_out_submitted(conn, dict(parts), found)
    if few:  # every selected subject of these kinds was read: failed_jobs needs no query of its own for them
        selected.known.update(keys)
    return found


def _signature(
    step: Step, kind: SubjectKind, after: Sequence[Step] | None
) -> tuple[str, str | None, bool, tuple[str, ...], tuple[str, ...]]:
    upstream = step.upstream(kind)
    followed = (*([upstream] if upstream else []), *step.copies)
    if after is None:
        return (step.name, step.params_hash, reads_images(step, kind), followed, ())
    names = [s.name for s in after]
    before = tuple(s.name for s in after[: names.index(step.name)] if kind in s.kinds)
    return (step.name, None, reads_images(step, kind), followed, before)


def _leave_out_submitted(
    conn: sa.Connection,
    signatures: dict[SubjectKind, _Signature],
    found: dict[str, dict[SubjectKind, set[Any]]],
) -> None:
    """Leave out of ``found`` (candidates that follow steps before them) the subjects with a job of the step
    submitted since the latest output of those steps: in flight, queued, or ended without making an
    artifact (failed: ``panopipe run`` retries it, the dispatcher does not)."""
    for kind, signature in signatures.items():
        for name, _, _, _, before in signature:
            keys = found[name].get(kind, set())
            if not keys:
                continue
            ids = {subject_id(kind, key): key for key in keys}
            made: dict[str, datetime] = {}
            for outputs in recorded(conn, before, ids).values():
                for subject, output in outputs.items():
                    made[subject] = max(made.get(subject, output.created_at), output.created_at)
            for chunk in batched(sorted(ids), CHUNK):
                query = (
                    sa.select(jobs.c.subject, sa.func.max(jobs.c.submitted_at))
                    .where(jobs.c.step == name, jobs.c.subject.in_(chunk))
                    .group_by(jobs.c.subject)
                )
                for subject, submitted in conn.execute(query):
                    if subject in made and submitted >= made[subject]:
                        keys.discard(ids[subject])


def _candidates_query(
    parts: tuple[tuple[SubjectKind, _Signature], ...],
    tables: tuple[sa.FromClause, ...],
    dialect: str,
    *,
    every: bool = False,
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The candidates of every kind of ``parts`` in one statement (with ``every``, every subject, candidate
    or not): ``kind``, ``key`` (as text when kinds are combined) and a 0/1 flag per step of the kind's
    signature (0 past its end)."""
    width = max(len(signature) for _, signature in parts)
    selects = [
        _kind_candidates(kind, signature, table, dialect, width, as_text=len(parts) > 1, every=every)
        for (kind, signature), table in zip(parts, tables, strict=True)
    ]
    return selects[0] if len(selects) == 1 else sa.union_all(*selects)


def _kind_candidates(
    kind: SubjectKind,
    signature: _Signature,
    table: sa.FromClause,
    dialect: str,
    width: int,
    *,
    as_text: bool,
    every: bool,
) -> sa.Select[Any]:
    """The candidates of the steps of ``signature`` among the subjects of ``kind`` in ``table`` (with
    ``every``, all of them): the kind, their key and a 0/1 flag per step. A step that follows steps before it
    is flagged when one of them made an output since its own artifact was seen (or it has none); the others
    as :func:`candidates` says."""
    made = sorted({name for *_, followed, before in signature for name in (*before, *followed)})
    probes: list[tuple[str, sa.ColumnElement[Any], Sequence[sa.ColumnElement[bool]]]] = [
        (f"seen_{i}", _SEEN, primary_conditions(name, params_hash))
        for i, (name, params_hash, *_) in enumerate(signature)
    ]
    probes += [(f"made_{name}", artifacts.c.created_at, primary_conditions(name)) for name in made]
    rec = _probe(kind, probes, table, dialect)
    flags = []
    for i, (_, _, images_read, followed, before) in enumerate(signature):
        seen = rec.c[f"seen_{i}"]
        if before:
            outputs = [rec.c[f"made_{name}"] for name in before]
            newer = sa.or_(*(sa.and_(m.is_not(None), sa.or_(seen.is_(None), m > seen)) for m in outputs))
            flags.append(newer)
            continue
        conditions: list[sa.ColumnElement[bool]] = [seen.is_(None)]
        if images_read:
            conditions.append(rec.c.changed > seen)
        conditions += [rec.c[f"made_{name}"] > seen for name in followed]
        flags.append(sa.or_(*conditions))
    key = sa.cast(rec.c.key, sa.String) if as_text else rec.c.key
    columns = [sa.case((flag, 1), else_=0).label(f"f{i}") for i, flag in enumerate(flags)]
    columns += [sa.literal(0).label(f"f{i}") for i in range(len(flags), width)]
    query = sa.select(sa.literal(kind).label("kind"), key.label("key"), *columns)
    return query if every else query.where(sa.or_(*flags))


_kept_candidates_query = functools.lru_cache(maxsize=64)(_candidates_query)
""":func:`_candidates_query` kept for the shared tables of a few ids (see :class:`Selected`): building the
statement took most of an event batch's planning time."""


def _probe(
    kind: SubjectKind,
    probes: Sequence[tuple[str, sa.ColumnElement[Any], Sequence[sa.ColumnElement[bool]]]],
    table: sa.FromClause,
    dialect: str,
) -> sa.Subquery | sa.CTE:
    """The selected subjects (``key``, ``changed``) with one column per ``(label, value, conditions)`` probe:
    ``value`` of the subject's artifact that meets ``conditions``, ``NULL`` if none does.

    SQLite, and PostgreSQL for the few subjects of a subquery (see
    :func:`~panopipe.catalog.subjects.selected_subjects`), probe the artifacts index once per subject and
    probe (correlated subqueries, materialized so that each runs once); PostgreSQL is faster aggregating all
    artifacts in one parallel pass and hash-joining for a temporary table.
    """
    key = subject_key(artifacts, kind)
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


def failed_jobs(
    conn: sa.Connection, steps: Sequence[Step], selected: Selected, *, queued_for: str | None = None
) -> dict[str, dict[SubjectKind, dict[Any, str]]]:
    """Per step and subject kind, the selected subjects (by key) whose latest job of the step did not succeed
    after its artifact was made, with the reason: one query for all ``steps``. A few subjects (an event batch)
    read only their own jobs; a large selection reads every unfinished job and keeps the selected ones.
    With ``queued_for``, only the jobs queued for that executor and not submitted yet (the dispatcher's)."""
    few = _few_keys(conn, selected, {kind for step in steps for kind in step.kinds})
    query = _failed_query(tuple(step.name for step in steps), few is not None)
    if queued_for is not None:
        query = query.where(
            jobs.c.status == "queued", jobs.c.executor == queued_for, ~in_flight_condition(utcnow())
        )
    params = {}
    if few is not None:
        params["subjects"] = [subject_id(kind, key) for kind, keys in few.items() for key in keys]
    reasons: dict[tuple[str, str], dict[Any, str]] = {}
    now = utcnow()
    for row in conn.execute(query, params):
        kind, _, key = row.subject.partition(":")
        if row.status == "stale":
            reason = row.reason or "marked stale"
        elif row.status == "failed":
            reason = f"failed before: {row.error}"
        elif is_in_flight(row.status, row.external_id, row.submitted_at, now):  # `run` leaves it be
            reason = f"in flight on {row.executor} ({row.external_id})"
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


@functools.lru_cache(maxsize=64)
def _failed_query(steps: tuple[str, ...], few: bool) -> sa.Select[Any]:
    """The unfinished or failed jobs of ``steps`` that no artifact of theirs followed, of the subjects given as
    ``subjects`` when ``few`` (built once: every event batch's planning runs it)."""
    a = _JOB_ARTIFACT
    primary = sa.or_(*(sa.and_(*primary_conditions(step, table=a)) for step in steps))
    query = (
        sa.select(
            jobs.c.step,
            jobs.c.subject,
            jobs.c.status,
            jobs.c.reason,
            jobs.c.error,
            jobs.c.executor,
            jobs.c.external_id,
            jobs.c.submitted_at,
        )
        .select_from(
            jobs.outerjoin(a, sa.and_(a.c.step == jobs.c.step, a.c.subject == jobs.c.subject, primary))
        )
        .where(
            jobs.c.step.in_(steps),
            jobs.c.status.in_(RERUN_STATUSES),
            sa.or_(
                a.c.id.is_(None), a.c.fingerprint == jobs.c.fingerprint, jobs.c.submitted_at > a.c.created_at
            ),
        )
        .order_by(jobs.c.submitted_at)
    )
    return query.where(jobs.c.subject.in_(sa.bindparam("subjects", expanding=True))) if few else query


def _few_keys(
    conn: sa.Connection, selected: Selected, kinds: set[SubjectKind]
) -> dict[SubjectKind, set[str]] | None:
    """The keys of ``kinds`` in a few-ids selection (subqueries, see
    :func:`~panopipe.catalog.subjects.selected_subjects`), as :func:`candidates` read them or else in one
    query; ``None`` for a large one."""
    if not selected.few:
        return None
    if kinds <= selected.known.keys():
        return {kind: selected.known.get(kind, set()) for kind in KINDS}
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


def recorded(
    conn: sa.Connection, steps: Sequence[str], subjects: Iterable[str]
) -> dict[str, dict[str, Recorded]]:
    """Per step of ``steps``, the primary artifact of the step for each of ``subjects`` that has one."""
    found: dict[str, dict[str, Recorded]] = {step: {} for step in steps}
    query = _recorded_query(tuple(steps))
    for chunk in batched(subjects, CHUNK):
        for row in conn.execute(query, {"subjects": list(chunk)}):
            found[row.step][row.subject] = Recorded(*row[2:])
    return found


@functools.lru_cache(maxsize=64)
def _recorded_query(steps: tuple[str, ...]) -> sa.Select[Any]:
    """The primary artifacts of ``steps`` for the subjects given as ``subjects`` (built once per steps)."""
    c = artifacts.c
    primary = sa.or_(*(sa.and_(*primary_conditions(step)) for step in steps))
    return sa.select(
        c.step,
        c.subject,
        c.fingerprint,
        c.params_hash,
        c.step_version,
        c.output_uri,
        c.output_hash,
        c.created_at,
        _SEEN,
    ).where(primary, c.subject.in_(sa.bindparam("subjects", expanding=True)))


def recorded_outputs(
    conn: sa.Connection, steps: Sequence[str], subjects: Iterable[str]
) -> dict[str, dict[str, CopiedOutput]]:
    """Per subject of ``subjects``, the outputs ``steps`` recorded for it, by artifact name."""
    c = artifacts.c
    found: dict[str, dict[str, CopiedOutput]] = {}
    for chunk in batched(subjects, CHUNK):
        query = sa.select(c.subject, c.name, c.step, c.output_uri, c.output_hash, c.created_at).where(
            c.step.in_(steps), c.subject.in_(chunk)
        )
        for row in conn.execute(query):
            found.setdefault(row.subject, {})[row.name] = CopiedOutput(*row[2:])
    return found


def mark_checked(conn: sa.Connection, step: str, subjects: Sequence[str], checked_at: datetime) -> None:
    """Record that the artifacts of ``step`` for ``subjects`` were found up to date at ``checked_at``."""
    conn.execute(
        artifacts.update()
        .where(artifacts.c.step == step, artifacts.c.subject.in_(subjects))
        .values(checked_at=checked_at)
    )


__all__ = [
    "RERUN_STATUSES",
    "Recorded",
    "candidates",
    "failed_jobs",
    "mark_checked",
    "recorded",
    "recorded_outputs",
]
