"""The job store: the owner of the ``jobs`` and ``artifacts`` tables; every read and write of them is here.

Statements run on a connection of the catalog's (``Catalog.transaction()``), so that a plan reads the
selected subjects (the catalog's ``FromClause``) and the artifacts in one unit of work. Functions that are a
unit of work of their own take the catalog and open the transaction themselves.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.bulk import insert_columns, read_columns, update_by_key
from panopipe.catalog.schema import artifacts, images, jobs
from panopipe.catalog.subjects import CHUNK, KINDS, Selected, Subject, SubjectKind, subject_id
from panopipe.catalog.types import new_id, utcnow
from panopipe.executors.base import JobState
from panopipe.iterutil import batched
from panopipe.steps.base import JobSpec, Step
from panopipe.steps.registry import STEP_TYPES

RERUN_STATUSES = ("failed", "stale", "cancelled", "queued", "running")
CLAIM_PREFIX = "claim:"
"""An external id that starts with this is a submitter's claim on a queued job (:func:`record_submitted`), held
while it submits the job; the executor's id replaces it."""
CLAIM_TTL_S = 900
"""Seconds after which a claim whose submitter died before recording the executor's id expires."""
# When an artifact was made or last found up to date: changes before then are accounted for.
_SEEN = sa.func.coalesce(artifacts.c.checked_at, artifacts.c.created_at)
_JOB_ARTIFACT = artifacts.alias("a")
_JOB_KEY = ("step", "subject", "fingerprint")
"""The columns that identify a job (its unique constraint): a job row is reused when the same job runs again."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """The primary artifact of a step for a subject, as the planner compares it."""

    fingerprint: str
    params_hash: str
    step_version: str
    uri: str
    hash: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One recorded output, as ``verify`` checks it."""

    step: str
    subject: str
    name: str
    fingerprint: str
    uri: str
    hash: str | None
    size: int | None


# Planning: candidates and failures, set-wise over the selected subjects.


_Signature = tuple[tuple[str, str | None, bool, str | None, tuple[str, ...]], ...]
"""Per step of a kind: name, params hash (``None``: any), whether it reads images, upstream, and the steps
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
    changed (for steps that read images) or the upstream step made a new output.

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
) -> tuple[str, str | None, bool, str | None, tuple[str, ...]]:
    if after is None:
        return (step.name, step.params_hash, bool(step.reads), step.upstream(kind), ())
    names = [s.name for s in after]
    before = tuple(s.name for s in after[: names.index(step.name)] if kind in s.kinds)
    return (step.name, None, bool(step.reads), step.upstream(kind), before)


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
    made = sorted({name for *_, upstream, before in signature for name in (*before, upstream) if name})
    probes: list[tuple[str, sa.ColumnElement[Any], Sequence[sa.ColumnElement[bool]]]] = [
        (f"seen_{i}", _SEEN, _primary(name, params_hash))
        for i, (name, params_hash, *_) in enumerate(signature)
    ]
    probes += [(f"made_{name}", artifacts.c.created_at, _primary(name)) for name in made]
    rec = _probe(kind, probes, table, dialect)
    flags = []
    for i, (_, _, reads, upstream, before) in enumerate(signature):
        seen = rec.c[f"seen_{i}"]
        if before:
            outputs = [rec.c[f"made_{name}"] for name in before]
            newer = sa.or_(*(sa.and_(m.is_not(None), sa.or_(seen.is_(None), m > seen)) for m in outputs))
            flags.append(newer)
            continue
        conditions: list[sa.ColumnElement[bool]] = [seen.is_(None)]
        if reads or upstream is None:
            conditions.append(rec.c.changed > seen)
        if upstream is not None:
            conditions.append(rec.c[f"made_{upstream}"] > seen)
        flags.append(sa.or_(*conditions))
    key = sa.cast(rec.c.key, sa.String) if as_text else rec.c.key
    columns = [sa.case((flag, 1), else_=0).label(f"f{i}") for i, flag in enumerate(flags)]
    columns += [sa.literal(0).label(f"f{i}") for i in range(len(flags), width)]
    query = sa.select(sa.literal(kind).label("kind"), key.label("key"), *columns)
    return query if every else query.where(sa.or_(*flags))


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


def _key_of(table: sa.Table | sa.Alias, kind: SubjectKind) -> sa.ColumnElement[Any]:
    return table.c.shot if kind == "shot" else table.c.image_id


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
        query = query.where(jobs.c.status == "queued", jobs.c.executor == queued_for, ~_live(utcnow()))
    params = {}
    if few is not None:
        params["subjects"] = [subject_id(kind, key) for kind, keys in few.items() for key in keys]
    reasons: dict[tuple[str, str], dict[Any, str]] = {}
    for row in conn.execute(query, params):
        kind, _, key = row.subject.partition(":")
        if row.status == "stale":
            reason = row.reason or "marked stale"
        elif row.status == "failed":
            reason = f"failed before: {row.error}"
        elif row.external_id is not None:  # submitted to a remote executor: `run` leaves it be
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
    primary = sa.or_(*(sa.and_(*_primary(step, table=a)) for step in steps))
    query = (
        sa.select(
            jobs.c.step,
            jobs.c.subject,
            jobs.c.status,
            jobs.c.reason,
            jobs.c.error,
            jobs.c.executor,
            jobs.c.external_id,
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
    primary = sa.or_(*(sa.and_(*_primary(step)) for step in steps))
    return sa.select(
        c.step,
        c.subject,
        c.fingerprint,
        c.params_hash,
        c.step_version,
        c.output_uri,
        c.output_hash,
        c.created_at,
    ).where(primary, c.subject.in_(sa.bindparam("subjects", expanding=True)))


def recorded_outputs(
    conn: sa.Connection, steps: Sequence[str], subjects: Iterable[str]
) -> dict[str, dict[str, str]]:
    """Per subject of ``subjects``, the output URIs ``steps`` recorded for it, by artifact name."""
    c = artifacts.c
    found: dict[str, dict[str, str]] = {}
    for chunk in batched(subjects, CHUNK):
        query = sa.select(c.subject, c.name, c.output_uri).where(c.step.in_(steps), c.subject.in_(chunk))
        for row in conn.execute(query):
            found.setdefault(row.subject, {})[row.name] = row.output_uri
    return found


def mark_checked(conn: sa.Connection, step: str, subjects: Sequence[str], checked_at: datetime) -> None:
    """Record that the artifacts of ``step`` for ``subjects`` were found up to date at ``checked_at``."""
    conn.execute(
        artifacts.update()
        .where(artifacts.c.step == step, artifacts.c.subject.in_(subjects))
        .values(checked_at=checked_at)
    )


# Running: jobs recorded as they are submitted and finish, artifacts on success.


def put_job(
    conn: sa.Connection,
    step: str,
    subject: str,
    fingerprint: str,
    values: Mapping[str, Any],
    *,
    on_insert: Mapping[str, Any] | None = None,
    job_id: str | None = None,
) -> str:
    """Set ``values`` on the job of (``step``, ``subject``, ``fingerprint``), or insert it with ``job_id`` (or a
    new id) and ``on_insert`` when there is none; the job's id. Job rows are reused when the same job runs or
    is marked again."""
    key = (jobs.c.step == step, jobs.c.subject == subject, jobs.c.fingerprint == fingerprint)
    existing = conn.execute(sa.select(jobs.c.id).where(*key)).scalar()
    if existing is not None:
        conn.execute(jobs.update().where(jobs.c.id == existing).values(**values))
        return str(existing)
    job_id = job_id or new_id()
    conn.execute(
        jobs.insert().values(
            id=job_id, step=step, subject=subject, fingerprint=fingerprint, **(on_insert or {}), **values
        )
    )
    return job_id


def record_submitted(
    catalog: Catalog,
    step: Step,
    specs: Sequence[JobSpec],
    reasons: Sequence[str],
    executor: str,
    *,
    claim: str | None = None,
) -> dict[str, str]:
    """Record each job of ``step`` as queued (reusing the row of an earlier job with the same fingerprint),
    with the step's version and parameters, which its artifacts will record; job ids by spec id. Set-wise:
    one look-up per chunk of subjects, then one insert and one update for all. With ``claim`` (a
    :func:`new_claim` token), the jobs recorded here are claimed for that submission as they are recorded
    (:func:`claimed_jobs` answers which): not those in flight, nor those another submitter inserted or
    claimed meanwhile. Each job is claimed by one submitter only, however many try at once: the insert skips
    rows another transaction inserted, and the update of an existing row is conditional, which PostgreSQL
    re-checks on a row another transaction changed and SQLite runs with the database's one write lock held."""
    now = utcnow()
    values = {
        "params_hash": step.params_hash,
        "step_version": step.version,
        "status": "queued",
        "executor": executor,
        "external_id": claim,
        "error": None,
        "log": None,
        "submitted_at": now,
        "started_at": None,
        "finished_at": None,
    }
    ids: dict[str, str] = {}
    with catalog.transaction() as conn:
        existing = _job_ids(conn, specs)
        fresh: list[JobSpec] = []
        fresh_reasons: list[str] = []
        updates: list[dict[str, Any]] = []
        for spec, reason in zip(specs, reasons, strict=True):
            key = (spec.step, spec.subject, spec.fingerprint)
            job_id = existing.get(key)
            if job_id is None:
                job_id = existing[key] = spec.id
                fresh.append(spec)
                fresh_reasons.append(reason)
            else:
                updates.append({"job_id": job_id, "why": reason})
            ids[spec.id] = job_id
        if fresh:  # another submitter may insert the same jobs meanwhile: its rows are kept, and used
            columns: dict[str, list[Any]] = {
                "id": [spec.id for spec in fresh],
                "step": [spec.step for spec in fresh],
                "subject": [spec.subject for spec in fresh],
                "fingerprint": [spec.fingerprint for spec in fresh],
                "reason": fresh_reasons,
            }
            columns.update((name, [value] * len(fresh)) for name, value in values.items())
            added = insert_columns(conn, jobs, columns, skip_conflicts=_JOB_KEY)
            if added < len(fresh):
                mine = {spec.id for spec in fresh}
                there = _job_ids(conn, [s for s in specs if ids[s.id] in mine])
                ids = {s.id: there.get((s.step, s.subject, s.fingerprint), ids[s.id]) for s in specs}
        if updates:  # a job in flight (or claimed by another submitter) is left alone
            statement = jobs.update().where(jobs.c.id == sa.bindparam("job_id"), ~_live(now))
            conn.execute(statement.values(reason=sa.bindparam("why"), **values), updates)
    return ids


def _job_ids(conn: sa.Connection, specs: Sequence[JobSpec]) -> dict[tuple[str, str, str], str]:
    """The ids of the recorded jobs among those of ``specs``, by (step, subject, fingerprint)."""
    c = jobs.c
    found: dict[tuple[str, str, str], str] = {}
    for chunk in batched(specs, CHUNK):
        query = sa.select(c.id, c.step, c.subject, c.fingerprint).where(
            c.step.in_({s.step for s in chunk}), c.subject.in_({s.subject for s in chunk})
        )
        found.update(((row.step, row.subject, row.fingerprint), str(row.id)) for row in conn.execute(query))
    return found


def record_external_ids(catalog: Catalog, external_ids: Mapping[str, str | None]) -> None:
    """Record where each job (by id) runs, as the remote executor names it, once it has been submitted: the
    rows updated by the driver in one batch (:func:`~panopipe.catalog.bulk.update_by_key`)."""
    with catalog.transaction() as conn:
        update_by_key(conn, jobs, "id", list(external_ids), {"external_id": list(external_ids.values())})


def new_claim() -> str:
    """A claim token, unique to one submission (it fits the ``external_id`` column)."""
    return f"{CLAIM_PREFIX}{uuid.uuid4().hex}"


def claimed_jobs(catalog: Catalog, token: str) -> set[str]:
    """The ids of the jobs claimed by ``token`` (read column-wise: a submission claims up to millions)."""
    with catalog.connect() as conn:
        [ids] = read_columns(conn, sa.select(jobs.c.id).where(jobs.c.external_id == token))
        return set(ids)


def release_claim(catalog: Catalog, token: str) -> None:
    """Give up the jobs claimed by ``token`` (their submission failed): queued again for the next one."""
    with catalog.transaction() as conn:
        conn.execute(jobs.update().where(jobs.c.external_id == token).values(external_id=None))


def _claim_expiry(now: datetime) -> datetime:
    return now - timedelta(seconds=CLAIM_TTL_S)


def _live(now: datetime) -> sa.ColumnElement[bool]:
    """Jobs in flight: queued or running with an executor's id or an unexpired claim."""
    c = jobs.c
    return sa.and_(
        sa.or_(c.status == "queued", c.status == "running"),  # no IN: record_submitted runs it executemany
        c.external_id.is_not(None),
        sa.or_(~c.external_id.startswith(CLAIM_PREFIX), c.submitted_at >= _claim_expiry(now)),
    )


@dataclass(frozen=True, slots=True)
class InFlight:
    """A job submitted to a remote executor that has not been seen to finish."""

    id: str
    step: str
    subject: str
    fingerprint: str
    executor: str
    external_id: str


def in_flight(catalog: Catalog, executors: Sequence[str]) -> list[InFlight]:
    """The jobs queued or running on any of ``executors`` that have an external id (an unexpired claim
    included: see :func:`is_claim`), oldest first."""
    c = jobs.c
    query = (
        sa.select(c.id, c.step, c.subject, c.fingerprint, c.executor, c.external_id)
        .where(c.executor.in_(executors), _live(utcnow()))
        .order_by(c.submitted_at, c.id)
    )
    with catalog.connect() as conn:
        return [InFlight(*row) for row in conn.execute(query)]


def is_claim(external_id: str) -> bool:
    """Whether ``external_id`` is a submitter's claim (the job is being submitted), not an executor's id."""
    return external_id.startswith(CLAIM_PREFIX)


def record_finished(
    catalog: Catalog, job_id: str, step: Step, subject: Subject, fingerprint: str, state: JobState
) -> list[str]:
    """Record how job ``job_id`` of ``step`` over ``subject`` ended, and its artifacts if it succeeded, made
    with the version and parameters the job was submitted with (:func:`record_submitted`), whatever the
    configuration is now; the output URIs that no artifact records any more (superseded objects): those of
    the artifacts they replaced, or the job's own when the subject's artifacts come from a job submitted
    after it (a late result of a retried or reclaimed job is recorded as a job, never over newer outputs)."""
    outcome = state.outcome
    if outcome is None:  # cancelled before it started
        record_cancelled(catalog, [job_id])
        return []
    with catalog.transaction() as conn:
        # The version and parameters the job was submitted with come back with the update (not the step's
        # now: a configuration pushed while it ran must leave its artifacts stale). Jobs recorded before
        # revision 0010 have none.
        made = conn.execute(
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
            .returning(jobs.c.step_version, jobs.c.params_hash)
        ).first()
        if outcome.status != "succeeded":
            return []
        version, params_hash = (
            (made.step_version, made.params_hash)
            if made is not None and made.params_hash is not None
            else (step.version, step.params_hash)
        )
        c = artifacts.c
        mine = (c.step == step.name, c.subject == subject.id)
        replaced = set(conn.execute(sa.select(c.output_uri).where(*mine)).scalars())
        submitted = sa.select(jobs.c.submitted_at).where(jobs.c.id == job_id).scalar_subquery()
        newer = (
            sa.select(c.id).join(jobs, jobs.c.id == c.job_id).where(*mine, jobs.c.submitted_at > submitted)
        )
        if conn.execute(newer.limit(1)).first() is not None:
            return sorted({output.uri for output in outcome.outputs} - replaced)
        conn.execute(artifacts.delete().where(*mine))
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
                    "step_version": version,
                    "params_hash": params_hash,
                    "fingerprint": fingerprint,
                    "output_uri": output.uri,
                    "output_hash": output.hash,
                    "output_size": output.size,
                    "job_id": job_id,
                    "created_at": now,
                }
                for output in outcome.outputs
            ],
        )
        replaced -= {output.uri for output in outcome.outputs}
        if replaced:  # a URI another step or subject records (a publish name taken over) is not superseded
            replaced -= set(
                conn.execute(sa.select(c.output_uri).where(c.output_uri.in_(sorted(replaced)))).scalars()
            )
    return sorted(replaced)


def record_cancelled(catalog: Catalog, job_ids: Sequence[str]) -> None:
    """Mark the jobs of ``job_ids`` that have not finished ``cancelled``."""
    with catalog.transaction() as conn:
        for chunk in batched(job_ids, CHUNK):
            conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(chunk), jobs.c.status.in_(("queued", "running")))
                .values(status="cancelled", finished_at=utcnow())
            )


def taken_outputs(conn: sa.Connection, step: str, uris: Sequence[str]) -> list[tuple[str, str]]:
    """``(subject, output URI)`` of ``step``'s artifacts at ``uris``."""
    c = artifacts.c
    taken: list[tuple[str, str]] = []
    for chunk in batched(uris, CHUNK):
        query = sa.select(c.subject, c.output_uri).where(c.step == step, c.output_uri.in_(chunk))
        taken += [(row.subject, row.output_uri) for row in conn.execute(query)]
    return taken


def orphan_artifacts(conn: sa.Connection, image_ids: Sequence[str], shots: Sequence[str]) -> None:
    """Mark the artifacts of removed images, and of shots that have no frame left, orphaned (a
    :data:`~panopipe.catalog.object_events.OnRemoved` hook, run in the transaction that removes them)."""
    c = artifacts.c
    for column, keys in ((c.image_id, image_ids), (c.shot, shots)):
        for chunk in batched(keys, CHUNK):
            conn.execute(artifacts.update().where(column.in_(chunk)).values(orphaned=True))


def excluded_outputs(conn: sa.Connection, selection: Selection) -> list[StoredOutput]:
    """The recorded outputs of the selected images an edit excluded (``qc --fix`` thinning), and of shots
    whose every frame it excluded: no longer subjects, so nothing reruns or removes them."""
    c, i = artifacts.c, images.c
    chosen = sa.select(i.id).where(i.excluded == sa.true(), *selection.where())
    shots = (
        sa.select(i.shot)
        .where(i.shot.is_not(None), *selection.where())
        .group_by(i.shot)
        .having(sa.func.sum(sa.case((i.excluded == sa.true(), 0), else_=1)) == 0)
    )
    query = (
        sa.select(c.step, c.subject, c.name, c.fingerprint, c.output_uri, c.output_hash, c.output_size)
        .where(sa.or_(c.image_id.in_(chosen), c.shot.in_(shots)))
        .order_by(c.subject, c.step, c.name)
    )
    return [StoredOutput(*row) for row in conn.execute(query)]


# Status and verification.


def job_status(
    catalog: Catalog, failures_limit: int
) -> tuple[dict[str, dict[str, int]], dict[str, int], list[Any]]:
    """Counts of the latest job of each step and subject by step and status, subjects with artifacts per
    step, and up to ``failures_limit`` latest jobs that failed or were marked stale (step, subject, status,
    reason, error, attempts, finished_at, log)."""
    current = _latest_jobs(sa.select(jobs)).subquery()
    counts: dict[str, dict[str, int]] = {}
    with catalog.connect() as conn:
        query = sa.select(current.c.step, current.c.status, sa.func.count()).group_by(
            current.c.step, current.c.status
        )
        for step, state, count in conn.execute(query.order_by(current.c.step, current.c.status)):
            counts.setdefault(step, {})[state] = count
        made: dict[str, int] = {
            step: count
            for step, count in conn.execute(
                sa.select(artifacts.c.step, sa.func.count(sa.distinct(artifacts.c.subject))).group_by(
                    artifacts.c.step
                )
            )
        }
        failed = conn.execute(
            sa.select(
                current.c.step,
                current.c.subject,
                current.c.status,
                current.c.reason,
                current.c.error,
                current.c.attempts,
                current.c.finished_at,
                current.c.log,
            )
            .where(current.c.status.in_(("failed", "stale")))
            .order_by(current.c.step, current.c.subject)
            .limit(failures_limit)
        ).all()
    return counts, made, list(failed)


def _latest_jobs(query: sa.Select[Any]) -> sa.Select[Any]:
    """The rows of ``query`` (over ``jobs``) that are the latest job of their step and subject."""
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(jobs.c.step, jobs.c.subject),
            order_by=(jobs.c.submitted_at.desc(), jobs.c.id.desc()),
        )
        .label("rank")
    )
    ranked = query.add_columns(rank).subquery()
    return sa.select(*(c for c in ranked.c if c.name != "rank")).where(ranked.c.rank == 1)


def latest_job_states(conn: sa.Connection, subjects: Iterable[str]) -> dict[str, dict[str, str]]:
    """Per subject id of ``subjects`` that has jobs, the status of its latest job of each step."""
    states: dict[str, dict[str, str]] = {}
    for chunk in batched(subjects, CHUNK):
        query = _latest_jobs(
            sa.select(jobs.c.step, jobs.c.subject, jobs.c.status).where(jobs.c.subject.in_(chunk))
        )
        for step, subject, status in conn.execute(query):
            states.setdefault(subject, {})[step] = status
    return states


def job_seconds(
    catalog: Catalog, step: str, *, before: datetime | None = None, limit: int = 1000
) -> list[float]:
    """Seconds from start to finish of the latest ``limit`` jobs of ``step`` that succeeded (submitted before
    ``before``, when given)."""
    c = jobs.c
    query = (
        sa.select(c.started_at, c.finished_at)
        .where(c.step == step, c.status == "succeeded", c.started_at.is_not(None), c.finished_at.is_not(None))
        .order_by(c.finished_at.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(c.submitted_at < before)
    with catalog.connect() as conn:
        return [(finished - started).total_seconds() for started, finished in conn.execute(query)]


def latest_submissions(catalog: Catalog) -> dict[str, tuple[datetime, int, list[float]]]:
    """Per step, its latest submission (the jobs a run submitted at once for it): when, how many jobs, and
    the seconds from start to finish of those that have finished (succeeded or failed)."""
    c = jobs.c
    latest = sa.select(c.step, sa.func.max(c.submitted_at).label("at")).group_by(c.step).subquery()
    query = sa.select(c.step, c.submitted_at, c.status, c.started_at, c.finished_at).join(
        latest, sa.and_(latest.c.step == c.step, latest.c.at == c.submitted_at)
    )
    found: dict[str, tuple[datetime, int, list[float]]] = {}
    with catalog.connect() as conn:
        for row in conn.execute(query):
            at, count, seconds = found.get(row.step, (row.submitted_at, 0, []))
            if row.status in ("succeeded", "failed") and row.started_at and row.finished_at:
                seconds.append((row.finished_at - row.started_at).total_seconds())
            found[row.step] = (at, count + 1, seconds)
    return found


def stored_outputs(
    conn: sa.Connection, kind: SubjectKind, selected: Selected
) -> dict[Any, list[StoredOutput]]:
    """The recorded outputs of the selected subjects of ``kind``, by subject key, ordered by step and name."""
    table = selected[kind]
    c = artifacts.c
    key = _key_of(artifacts, kind)
    query = (
        sa.select(
            key.label("key"),
            c.step,
            c.subject,
            c.name,
            c.fingerprint,
            c.output_uri,
            c.output_hash,
            c.output_size,
        )
        .join(table, table.c.key == key)
        .where(c.subject.startswith(f"{kind}:"))
        .order_by(key, c.step, c.name)
    )
    by_key: dict[Any, list[StoredOutput]] = {}
    for row in conn.execute(query, selected.params):
        by_key.setdefault(row.key, []).append(StoredOutput(*row[1:]))
    return by_key


def primary_outputs(conn: sa.Connection, step: str, limit: int) -> dict[str, str]:
    """The URI of the primary output of ``step`` by subject id, for up to ``limit`` subjects in id order."""
    c = artifacts.c
    query = sa.select(c.subject, c.output_uri).where(*_primary(step)).order_by(c.subject).limit(limit)
    return {row.subject: row.output_uri for row in conn.execute(query)}


def mark_stale(conn: sa.Connection, outputs: Iterable[tuple[StoredOutput, str]]) -> None:
    """Mark the job of each of ``outputs`` ``stale`` with the reason given with it (a job row is made if
    none)."""
    now = utcnow()
    for output, reason in outputs:
        values = {"status": "stale", "reason": reason, "finished_at": now}
        put_job(
            conn, output.step, output.subject, output.fingerprint, values, on_insert={"submitted_at": now}
        )


__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_TTL_S",
    "RERUN_STATUSES",
    "InFlight",
    "Recorded",
    "StoredOutput",
    "candidates",
    "claimed_jobs",
    "excluded_outputs",
    "failed_jobs",
    "in_flight",
    "is_claim",
    "job_seconds",
    "job_status",
    "latest_job_states",
    "latest_submissions",
    "mark_checked",
    "mark_stale",
    "new_claim",
    "orphan_artifacts",
    "primary_outputs",
    "put_job",
    "record_cancelled",
    "record_external_ids",
    "record_finished",
    "record_submitted",
    "recorded",
    "recorded_outputs",
    "release_claim",
    "stored_outputs",
    "taken_outputs",
]
