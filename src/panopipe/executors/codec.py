"""The wire format of jobs and their outcomes: versioned JSON, for every executor that sends a job across a
process or machine boundary (the local process pool today, a container or a queue next).

A job is ``{"format": 1, "kind": "job", "id", "step", "subject", "fingerprint", "payload"}``; an outcome is
``{"format": 1, "kind": "outcome", "status", "outputs": [{"name", "uri", "hash", "size"}], "error", "log",
"attempts", "started_at", "finished_at"}`` with ISO 8601 times that keep their UTC offset, and ``"unreachable":
true`` when the storage's endpoint could not be reached (absent otherwise, as in outcomes written before it
existed). Text that is not such a document, or of another format version, raises
:class:`~panopipe.errors.StepError` saying what is wrong.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from panopipe.errors import StepError
from panopipe.steps.base import JobOutcome, JobSpec, Output

FORMAT = 1
"""The version of the format written; decoding accepts this one only."""

_JOB_FIELDS = {"id": str, "step": str, "subject": str, "fingerprint": str, "payload": dict}
_OUTCOME_FIELDS = {
    "status": str,
    "outputs": list,
    "error": (str, type(None)),
    "log": str,
    "attempts": int,
    "started_at": str,
    "finished_at": str,
    "unreachable": bool,
}
_OUTPUT_FIELDS = {"name": str, "uri": str, "hash": str, "size": int}
_STATUSES = ("succeeded", "failed")


def encode_job(spec: JobSpec) -> str:
    """``spec`` as one line of JSON; :class:`StepError` if its payload is not JSON (a set, a NaN, an object)."""
    return _dumps(
        "job",
        {
            "id": spec.id,
            "step": spec.step,
            "subject": spec.subject,
            "fingerprint": spec.fingerprint,
            "payload": spec.payload,
        },
    )


def decode_job(text: str | bytes) -> JobSpec:
    """The job :func:`encode_job` wrote."""
    return JobSpec(**_fields(_loads(text, "job"), _JOB_FIELDS, "job"))


def encode_outcome(outcome: JobOutcome) -> str:
    """``outcome`` as one line of JSON."""
    return _dumps(
        "outcome",
        {
            "status": outcome.status,
            "outputs": [
                {"name": o.name, "uri": o.uri, "hash": o.hash, "size": o.size} for o in outcome.outputs
            ],
            "error": outcome.error,
            "log": outcome.log,
            "attempts": outcome.attempts,
            "started_at": _iso(outcome.started_at, "started_at"),
            "finished_at": _iso(outcome.finished_at, "finished_at"),
            **({"unreachable": True} if outcome.unreachable else {}),
        },
    )


def decode_outcome(text: str | bytes) -> JobOutcome:
    """The outcome :func:`encode_outcome` wrote."""
    data = _loads(text, "outcome")
    data.setdefault("unreachable", False)
    data = _fields(data, _OUTCOME_FIELDS, "job outcome")
    if data["status"] not in _STATUSES:
        raise StepError(f"job outcome: status must be one of {', '.join(_STATUSES)}, got {data['status']!r}")
    outputs = tuple(
        Output(**_fields(item, _OUTPUT_FIELDS, f"job outcome: output {number}"))
        for number, item in enumerate(data["outputs"], start=1)
    )
    return JobOutcome(
        data["status"],
        outputs,
        data["error"],
        data["log"],
        data["attempts"],
        _time(data["started_at"], "started_at"),
        _time(data["finished_at"], "finished_at"),
        data["unreachable"],
    )


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""Made once, not per job as ``json.dumps`` with options does (an encoder keeps no state between calls)."""


def _dumps(kind: str, fields: dict[str, Any]) -> str:
    try:
        return _ENCODER.encode({"format": FORMAT, "kind": kind, **fields})
    except (TypeError, ValueError) as exc:
        raise StepError(f"{kind} cannot be encoded as JSON: {exc}") from None


def _loads(text: str | bytes, kind: str) -> dict[str, Any]:
    what = "job" if kind == "job" else "job outcome"
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise StepError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StepError(f"{what} must be a JSON object, got {type(data).__name__}")
    version = data.pop("format", None)
    if version != FORMAT:
        raise StepError(f"{what} has format {version!r}; this panopipe reads format {FORMAT} only")
    found = data.pop("kind", None)
    if found != kind:
        raise StepError(f"{what}: kind must be {kind!r}, got {found!r}")
    return data


def _fields(data: Any, types: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` checked to have exactly the fields ``types`` names, each of its type."""
    if not isinstance(data, dict):
        raise StepError(f"{what} must be a JSON object, got {type(data).__name__}")
    missing, unknown = sorted(set(types) - set(data)), sorted(set(data) - set(types))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing field(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)}")
        raise StepError(f"{what}: {'; '.join(problems)}")
    for name, expected in types.items():
        value = data[name]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is int):
            raise StepError(f"{what}: field {name!r} has the wrong type ({type(value).__name__})")
    return data


def _iso(value: datetime, name: str) -> str:
    if value.utcoffset() is None:
        raise StepError(f"job outcome: {name} has no UTC offset: {value}")
    return value.isoformat()


def _time(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise StepError(f"job outcome: {name} is not an ISO 8601 time: {text!r}") from None
    if value.utcoffset() is None:
        raise StepError(f"job outcome: {name} has no UTC offset: {text!r}")
    return value


__all__ = ["FORMAT", "decode_job", "decode_outcome", "encode_job", "encode_outcome"]
