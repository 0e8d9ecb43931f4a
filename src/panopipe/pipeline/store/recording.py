"""Recording jobs as they are submitted and finish, and their artifacts on success."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.bulk import insert_columns, update_by_key
from panopipe.catalog.locks import hold_write_lock
from panopipe.catalog.schema import artifacts, images, jobs
from panopipe.catalog.subjects import CHUNK, Subject
from panopipe.catalog.types import new_id, utcnow
from panopipe.executors.base import FINISHED, JobState
from panopipe.iterutil import batched
from panopipe.pipeline.store.claims import in_flight_condition
from panopipe.steps.base import JobSpec, Step
from panopipe.steps.registry import STEP_TYPES

_JOB_KEY = ("step", "subject", "fingerprint")
"""The columns that identify a job (its unique constraint): a job row is reused when the same job runs again."""


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
    planned_at: datetime | None = None,
) -> dict[str, str]:
    """Record each job of ``step`` as queued (reusing the row of an earlier job with the same fingerprint),
    with the step's version and parameters, which its artifacts will record; job ids by spec id. Set-wise:
    one look-up per chunk of subjects, then one insert and one update for all. ``planned_at`` (default:
    now), when the planner began reading what the jobs were made from, is recorded as their submission time:
    their artifacts count the changes after it (:func:`record_finished`).

    With ``claim`` (a :func:`new_claim` token), the jobs recorded here are claimed for that submission as they
    are recorded (:func:`claimed_jobs` answers which), all but those of a subject that another submitter is at
    work on: one with a job in flight (this one, or of another step: it would read or replace what that job
    reads or replaces), or whose outputs were recorded after ``planned_at`` (the job was planned from what
    they replaced, or is done already). Those are left as they are (a job not recorded: its spec's id).
    Each job is claimed by one submitter only, however many try at once: claims are taken one submission at
    a time (:func:`~panopipe.catalog.locks.hold_write_lock`), and the insert skips rows another transaction inserted."""
    now = utcnow()
    values = {
        "params_hash": step.params_hash,
        "step_version": step.version,
        "status": "queued",
        "executor": executor,
        "external_id": claim,
        "error": None,
        "log": None,
        "submitted_at": planned_at or now,
        "started_at": None,
        "finished_at": None,
    }
    ids: dict[str, str] = {}
    with catalog.transaction() as conn:
        busy: set[str] = set()
        if claim is not None:
            hold_write_lock(conn, _CLAIM_LOCK)
            busy = _busy_subjects(conn, sorted({spec.subject for spec in specs}), now, planned_at or now)
        existing = _job_ids(conn, specs)
        fresh: list[JobSpec] = []
        fresh_reasons: list[str] = []
        updates: list[dict[str, Any]] = []
        for spec, reason in zip(specs, reasons, strict=True):
            key = (spec.step, spec.subject, spec.fingerprint)
            job_id = existing.get(key)
            if spec.subject in busy:
                ids[spec.id] = job_id or spec.id
                continue
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
            statement = jobs.update().where(jobs.c.id == sa.bindparam("job_id"), ~in_flight_condition(now))
            conn.execute(statement.values(reason=sa.bindparam("why"), **values), updates)
    return ids


_CLAIM_LOCK = 0x70616E6F_636C6169
"""The PostgreSQL advisory lock (a constant of panopipe's: 'panoclai') that a submission holds while it claims
its jobs."""


def _busy_subjects(conn: sa.Connection, subjects: Sequence[str], now: datetime, since: datetime) -> set[str]:
    """The subjects among ``subjects`` with a job in flight, or an output recorded after ``since``. Both looked
    up through the (step, subject) keys of the jobs and artifacts, every step at once."""
    steps = sorted(STEP_TYPES)
    busy: set[str] = set()
    for chunk in batched(subjects, CHUNK):
        flying = sa.select(jobs.c.subject).where(
            jobs.c.step.in_(steps), jobs.c.subject.in_(chunk), in_flight_condition(now)
        )
        recorded = sa.select(artifacts.c.subject).where(
            artifacts.c.step.in_(steps), artifacts.c.subject.in_(chunk), artifacts.c.created_at > since
        )
        busy.update(conn.execute(sa.union(flying, recorded)).scalars())
    return busy


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


def record_finished(
    catalog: Catalog,
    job_id: str,
    step: Step,
    subject: Subject,
    fingerprint: str,
    state: JobState,
    *,
    planned_at: datetime | None = None,
) -> dict[str, str | None]:
    """Record how job ``job_id`` of ``step`` over ``subject`` ended, and its artifacts if it succeeded, made
    with the version and parameters the job was submitted with (:func:`record_submitted`), whatever the
    configuration is now; the output URIs that no artifact records any more (superseded objects), each with
    the SHA-256 recorded of it: those of the artifacts they replaced, or the job's own when the subject's
    artifacts come from a job submitted after it (a late result of a retried or reclaimed job is recorded as
    a job, never over newer outputs).

    The artifacts are seen up to date as of ``planned_at`` (default: the job's submission time), when the
    planner began reading what the job was made from, not when it ended: an edit made while it ran, whose
    values the job did not get, leaves them stale."""
    outcome = state.outcome
    if outcome is None:  # cancelled before it started
        record_cancelled(catalog, [job_id])
        return {}
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
            .returning(jobs.c.step_version, jobs.c.params_hash, jobs.c.submitted_at)
        ).first()
        if outcome.status != "succeeded":
            return {}
        version, params_hash = (
            (made.step_version, made.params_hash)
            if made is not None and made.params_hash is not None
            else (step.version, step.params_hash)
        )
        c = artifacts.c
        mine = (c.step == step.name, c.subject == subject.id)
        query = sa.select(c.output_uri, c.output_hash).where(*mine)
        replaced: dict[str, str | None] = {uri: sha256 for uri, sha256 in conn.execute(query)}
        submitted = sa.select(jobs.c.submitted_at).where(jobs.c.id == job_id).scalar_subquery()
        newer = (
            sa.select(c.id).join(jobs, jobs.c.id == c.job_id).where(*mine, jobs.c.submitted_at > submitted)
        )
        if conn.execute(newer.limit(1)).first() is not None:
            return dict(sorted((o.uri, o.hash) for o in outcome.outputs if o.uri not in replaced))
        conn.execute(artifacts.delete().where(*mine))
        now = utcnow()
        seen = planned_at or (made.submitted_at if made is not None else now)
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
                    "checked_at": min(seen, now),
                }
                for output in outcome.outputs
            ],
        )
        for output in outcome.outputs:
            replaced.pop(output.uri, None)
        if replaced:  # a URI another step or subject records (a publish name taken over) is not superseded
            for uri in conn.execute(
                sa.select(c.output_uri).where(c.output_uri.in_(sorted(replaced)))
            ).scalars():
                replaced.pop(uri, None)
    return dict(sorted(replaced.items()))


def record_running(catalog: Catalog, job_ids: Sequence[str]) -> None:
    """Mark the queued jobs of ``job_ids`` ``running``: their executor says they run (AWS Batch)."""
    if not job_ids:
        return
    with catalog.transaction() as conn:
        for chunk in batched(job_ids, CHUNK):
            conn.execute(
                jobs.update().where(jobs.c.id.in_(chunk), jobs.c.status == "queued").values(status="running")
            )


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


def forget_vanished_shots(catalog: Catalog) -> list[str]:
    """Delete the artifacts, and the jobs that ended, of shots that no image belongs to any more, not even a
    deleted or excluded one (their frames form other shots now: a reel's folder renamed and ingested again,
    shots regrouped by an edit of capture times); the output URIs they recorded, superseded by those of the
    shots the frames form now, for the caller to delete. ``status`` and the report had counted those jobs, and
    their failures, for ever. A shot whose frames were deleted keeps its outputs."""
    c = artifacts.c
    vanished = sa.and_(c.subject.startswith("shot:"), ~sa.exists().where(images.c.shot == c.shot))
    ended = sa.and_(_of_vanished_shots(), jobs.c.status.in_([*FINISHED, "stale"]))
    with catalog.transaction() as conn:
        uris = list(conn.execute(sa.select(c.output_uri).where(vanished)).scalars())
        conn.execute(artifacts.delete().where(vanished))
        conn.execute(jobs.delete().where(ended))
    return uris


def drop_vanished_jobs(catalog: Catalog) -> int:
    """Delete the jobs not submitted yet (queued for the dispatcher, no claim) of shots that no image belongs
    to any more (their frames form other shots now, as a reel's upload regroups them): nothing would submit
    them, and ``status`` counted them ``queued`` for ever. The number deleted."""
    vanished = sa.and_(_of_vanished_shots(), jobs.c.status == "queued", jobs.c.external_id.is_(None))
    with catalog.transaction() as conn:
        return conn.execute(jobs.delete().where(vanished)).rowcount or 0


def _of_vanished_shots() -> sa.ColumnElement[bool]:
    """Whether a job is one of a shot that no image belongs to any more."""
    shot = sa.func.substr(jobs.c.subject, len("shot:") + 1)
    return sa.and_(jobs.c.subject.startswith("shot:"), ~sa.exists().where(images.c.shot == shot))


__all__ = [
    "drop_vanished_jobs",
    "forget_vanished_shots",
    "orphan_artifacts",
    "put_job",
    "record_cancelled",
    "record_external_ids",
    "record_finished",
    "record_running",
    "record_submitted",
    "taken_outputs",
]
