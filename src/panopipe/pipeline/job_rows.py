"""Job rows: one per step, subject and fingerprint, reused when the same job runs or is marked again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.schema import jobs
from panopipe.catalog.types import new_id


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
    new id) and ``on_insert`` when there is none; the job's id."""
    key = (jobs.c.step == step, jobs.c.subject == subject, jobs.c.fingerprint == fingerprint)
    existing = conn.execute(sa.select(jobs.c.id).where(*key)).scalar()
    if existing is not None:
        conn.execute(jobs.update().where(jobs.c.id == existing).values(**values))
        return existing
    job_id = job_id or new_id()
    conn.execute(
        jobs.insert().values(
            id=job_id, step=step, subject=subject, fingerprint=fingerprint, **(on_insert or {}), **values
        )
    )
    return job_id


__all__ = ["put_job"]
