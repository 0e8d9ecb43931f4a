"""Status and verification: job counts, the latest jobs, durations, and the recorded outputs that ``verify``
and the exports check (and that no export or report may replace)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import artifacts, images, jobs
from panopipe.catalog.subjects import CHUNK, Selected, SubjectKind
from panopipe.catalog.types import utcnow
from panopipe.iterutil import batched
from panopipe.pipeline.store.recording import put_job
from panopipe.pipeline.store.shared import reads_images, subject_key
from panopipe.steps.base import Step


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One recorded output, as ``verify`` checks it; ``outdated`` when its step reads the images of its subject
    and one of them changed (an edit, a changed file) after it was made or last found up to date, so that a run
    makes it again (the planner's rule, :func:`~panopipe.pipeline.store.shared.reads_images`)."""

    step: str
    subject: str
    name: str
    fingerprint: str
    uri: str
    hash: str | None
    size: int | None
    outdated: bool = False


def withdrawn_outputs(conn: sa.Connection, selection: Selection) -> list[tuple[str, StoredOutput]]:
    """The recorded outputs whose subject left processing, each with why, left where they were published:
    ``excluded``, of the selected images an edit excluded (``qc --fix`` thinning) and of shots any frame of which
    it excluded (a shot is processed whole or not at all); ``deleted``, of the selected images whose files were
    removed and of shots whose every frame's was. No longer subjects, so nothing reruns or removes them."""
    c, i = artifacts.c, images.c
    found: list[tuple[str, StoredOutput]] = []
    for why, column, among, left_out in (
        ("excluded", i.excluded, selection, sa.func.max(sa.case((i.excluded == sa.true(), 1), else_=0)) == 1),
        (
            "deleted",
            i.deleted,
            replace(selection, include_deleted=True),
            sa.func.sum(sa.case((i.deleted == sa.true(), 0), else_=1)) == 0,
        ),
    ):
        chosen = sa.select(i.id).where(column == sa.true(), *among.where())
        shots = sa.select(i.shot).where(i.shot.is_not(None), *among.where()).group_by(i.shot).having(left_out)
        query = (
            sa.select(c.step, c.subject, c.name, c.fingerprint, c.output_uri, c.output_hash, c.output_size)
            .where(sa.or_(c.image_id.in_(chosen), c.shot.in_(shots)))
            .order_by(c.subject, c.step, c.name)
        )
        found += [(why, StoredOutput(*row)) for row in conn.execute(query)]
    return found


FAILED = ("failed", "stale")
"""The statuses of a latest job that ``status`` lists as failures."""


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
            .where(current.c.status.in_(FAILED))
            .order_by(current.c.step, current.c.subject)
            .limit(failures_limit)
        ).all()
    return counts, made, list(failed)


def failure_messages(catalog: Catalog) -> list[tuple[str, str, str, str]]:
    """Every latest job that failed or was marked stale, by step and subject: (step, status, subject, message),
    the message being its error, or why it was marked stale."""
    c = (
        _latest_jobs(sa.select(jobs.c.step, jobs.c.subject, jobs.c.status, jobs.c.error, jobs.c.reason))
        .subquery()
        .c
    )
    query = (
        sa.select(c.step, c.status, c.subject, sa.func.coalesce(c.error, c.reason, ""))
        .where(c.status.in_(FAILED))
        .order_by(c.step, c.subject)
    )
    with catalog.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def failed_subjects(catalog: Catalog) -> set[str]:
    """The subjects whose latest job of some step failed or was marked stale."""
    current = _latest_jobs(sa.select(jobs.c.step, jobs.c.subject, jobs.c.status)).subquery()
    query = sa.select(current.c.subject).where(current.c.status.in_(FAILED)).distinct()
    with catalog.connect() as conn:
        return set(conn.execute(query).scalars())


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


def latest_submissions(catalog: Catalog) -> dict[str, tuple[datetime, list[str], list[float]]]:
    """Per step, its latest submission (the jobs a run submitted at once for it): when, the subjects of its
    jobs, and the seconds from start to finish of those that have finished (succeeded or failed)."""
    c = jobs.c
    latest = sa.select(c.step, sa.func.max(c.submitted_at).label("at")).group_by(c.step).subquery()
    query = sa.select(c.step, c.subject, c.submitted_at, c.status, c.started_at, c.finished_at).join(
        latest, sa.and_(latest.c.step == c.step, latest.c.at == c.submitted_at)
    )
    found: dict[str, tuple[datetime, list[str], list[float]]] = {}
    with catalog.connect() as conn:
        for row in conn.execute(query):
            _, subjects, seconds = found.setdefault(row.step, (row.submitted_at, [], []))
            subjects.append(row.subject)
            if row.status in ("succeeded", "failed") and row.started_at and row.finished_at:
                seconds.append((row.finished_at - row.started_at).total_seconds())
    return found


def stored_outputs(
    conn: sa.Connection, kind: SubjectKind, selected: Selected, steps: Sequence[Step]
) -> dict[Any, list[StoredOutput]]:
    """The recorded outputs of ``steps`` for the selected subjects of ``kind``, by subject key, ordered by step
    and name."""
    following = {step.name for step in steps if reads_images(step, kind)}
    table = selected[kind]
    c = artifacts.c
    key = subject_key(artifacts, kind)
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
            (table.c.changed > sa.func.coalesce(c.checked_at, c.created_at)).label("outdated"),
        )
        .join(table, table.c.key == key)
        .where(c.subject.startswith(f"{kind}:"), c.step.in_([step.name for step in steps]))
        .order_by(key, c.step, c.name)
    )
    by_key: dict[Any, list[StoredOutput]] = {}
    for row in conn.execute(query, selected.params):
        output = StoredOutput(
            row.step,
            row.subject,
            row.name,
            row.fingerprint,
            row.output_uri,
            row.output_hash,
            row.output_size,
            outdated=bool(row.outdated) and row.step in following,
        )
        by_key.setdefault(row.key, []).append(output)
    return by_key


def named_outputs(conn: sa.Connection, name: str, steps: Sequence[str], limit: int) -> dict[str, str]:
    """The URI of output ``name`` by subject id, for up to ``limit`` subjects in id order for which the first
    of ``steps`` recorded one; where a later one of ``steps`` recorded one too, the last one's."""
    c = artifacts.c
    subjects = sa.select(c.subject).where(c.step == steps[0], c.name == name).order_by(c.subject).limit(limit)
    query = sa.select(c.subject, c.step, c.output_uri).where(
        c.name == name, c.step.in_(steps), c.subject.in_(subjects.scalar_subquery())
    )
    rank = {step: i for i, step in enumerate(steps)}
    found: dict[str, tuple[int, str]] = {}
    for row in conn.execute(query):
        if row.subject not in found or rank[row.step] > found[row.subject][0]:
            found[row.subject] = (rank[row.step], row.output_uri)
    return {subject: found[subject][1] for subject in sorted(found)}


def outputs_at(catalog: Catalog, uris: Collection[str]) -> dict[str, tuple[str, str]]:
    """The step and subject that recorded each of ``uris`` that is a recorded output (of an image or shot
    removed since, too), by URI."""
    c = artifacts.c
    found: dict[str, tuple[str, str]] = {}
    with catalog.connect() as conn:
        for chunk in batched(sorted(uris), CHUNK):
            query = sa.select(c.output_uri, c.step, c.subject).where(c.output_uri.in_(chunk))
            found.update((uri, (step, subject)) for uri, step, subject in conn.execute(query))
    return found


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
    "FAILED",
    "StoredOutput",
    "failed_subjects",
    "failure_messages",
    "job_seconds",
    "job_status",
    "latest_job_states",
    "latest_submissions",
    "mark_stale",
    "named_outputs",
    "outputs_at",
    "stored_outputs",
    "withdrawn_outputs",
]
