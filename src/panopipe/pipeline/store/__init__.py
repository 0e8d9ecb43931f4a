"""The job store: the owner of the ``jobs`` and ``artifacts`` tables; every read and write of them is here.

Statements run on a connection of the catalog's (``Catalog.transaction()``), so that a plan reads the
selected subjects (the catalog's ``FromClause``) and the artifacts in one unit of work. Functions that are a
unit of work of their own take the catalog and open the transaction themselves.

- ``planning``: the candidates of each step and the jobs that did not finish, set-wise over the selected
  subjects, and the artifacts the planner compares;
- ``recording``: jobs recorded as they are submitted and finish, artifacts on success;
- ``claims``: a submitter's claims on the queued jobs it submits, and the jobs in flight;
- ``status``: job counts, the latest jobs, durations, the recorded outputs ``verify`` checks, and which
  step made a file;
- ``shared``: the SQL pieces they share.
"""

from __future__ import annotations

from panopipe.pipeline.store.claims import (
    CLAIM_PREFIX,
    CLAIM_TTL_S,
    InFlight,
    claimed_jobs,
    fail_claim,
    in_flight,
    is_claim,
    new_claim,
    release_claim,
    renew_claim,
)
from panopipe.pipeline.store.planning import (
    RERUN_STATUSES,
    Recorded,
    candidates,
    failed_jobs,
    mark_checked,
    recorded,
    recorded_outputs,
)
from panopipe.pipeline.store.recording import (
    drop_vanished_jobs,
    forget_vanished_shots,
    orphan_artifacts,
    put_job,
    record_cancelled,
    record_external_ids,
    record_finished,
    record_running,
    record_submitted,
    taken_outputs,
)
from panopipe.pipeline.store.status import (
    FAILED,
    StoredOutput,
    failed_subjects,
    failure_messages,
    job_seconds,
    job_status,
    latest_job_states,
    latest_submissions,
    mark_stale,
    named_outputs,
    outputs_at,
    stored_outputs,
    withdrawn_outputs,
)

__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_TTL_S",
    "FAILED",
    "RERUN_STATUSES",
    "InFlight",
    "Recorded",
    "StoredOutput",
    "candidates",
    "claimed_jobs",
    "drop_vanished_jobs",
    "fail_claim",
    "failed_jobs",
    "failed_subjects",
    "failure_messages",
    "forget_vanished_shots",
    "in_flight",
    "is_claim",
    "job_seconds",
    "job_status",
    "latest_job_states",
    "latest_submissions",
    "mark_checked",
    "mark_stale",
    "named_outputs",
    "new_claim",
    "orphan_artifacts",
    "outputs_at",
    "put_job",
    "record_cancelled",
    "record_external_ids",
    "record_finished",
    "record_running",
    "record_submitted",
    "recorded",
    "recorded_outputs",
    "release_claim",
    "renew_claim",
    "stored_outputs",
    "taken_outputs",
    "withdrawn_outputs",
]
