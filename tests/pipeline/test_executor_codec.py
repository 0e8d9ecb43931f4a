"""The wire format of jobs and outcomes: every field round-trips exactly, bad text gets a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panopipe.errors import StepError
from panopipe.executors import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec, Output

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
jobs = st.builds(
    JobSpec,
    id=st.text(),
    step=st.text(),
    subject=st.text(),
    fingerprint=st.text(),
    payload=st.dictionaries(st.text(), json_values, max_size=5),
)
aware_times = st.datetimes(timezones=st.timezones())
outcomes = st.builds(
    JobOutcome,
    status=st.sampled_from(["succeeded", "failed"]),
    outputs=st.lists(
        st.builds(Output, name=st.text(), uri=st.text(), hash=st.text(), size=st.integers(0, 2**63)),
        max_size=3,
    ).map(tuple),
    error=st.none() | st.text(),
    log=st.text(),
    attempts=st.integers(1, 100),
    started_at=aware_times,
    finished_at=aware_times,
    unreachable=st.booleans(),
)


@given(jobs)
def test_a_job_round_trips(job: JobSpec) -> None:
    assert decode_job(encode_job(job)) == job


@given(outcomes)
def test_an_outcome_round_trips_with_its_times_and_their_offsets(outcome: JobOutcome) -> None:
    decoded = decode_outcome(encode_outcome(outcome).encode())

    assert decoded == outcome
    for time, original in (
        (decoded.started_at, outcome.started_at),
        (decoded.finished_at, outcome.finished_at),
    ):
        assert (time.replace(tzinfo=None), time.utcoffset()) == (
            original.replace(tzinfo=None),
            original.utcoffset(),
        )


def test_the_text_is_versioned_json() -> None:
    data = json.loads(encode_job(JobSpec("j1", "derive", "image:1", "f" * 64, {"inputs": ["/a.jpg"]})))
    assert data == {
        "format": 1,
        "kind": "job",
        "id": "j1",
        "step": "derive",
        "subject": "image:1",
        "fingerprint": "f" * 64,
        "payload": {"inputs": ["/a.jpg"]},
    }


def _job_text(**changes: object) -> str:
    data = json.loads(encode_job(JobSpec("j1", "derive", "image:1", "f", {})))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "job is not valid JSON"),
        ("[1, 2]", "job must be a JSON object, got list"),
        (_job_text(format=2), "job has format 2; this panopipe reads format 1 only"),
        (_job_text(format=...), "job has format None"),
        (_job_text(kind="outcome"), "job: kind must be 'job', got 'outcome'"),
        (_job_text(step=..., extra=1), "job: missing field(s) step; unknown field(s) extra"),
        (_job_text(payload=[]), "job: field 'payload' has the wrong type (list)"),
    ],
)
def test_malformed_job_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(StepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_job(text)


def test_malformed_outcomes_say_what_is_wrong() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    good = json.loads(
        encode_outcome(
            JobOutcome("succeeded", (Output("thumbnail", "/t.jpg", "ab", 3),), None, "", 1, now, now)
        )
    )
    for changes, message in [
        ({"status": "running"}, "status must be one of succeeded, failed, got 'running'"),
        ({"attempts": True}, "field 'attempts' has the wrong type (bool)"),
        ({"started_at": "yesterday"}, "started_at is not an ISO 8601 time: 'yesterday'"),
        ({"finished_at": "2026-12-03T12:00:00"}, "finished_at has no UTC offset"),
        ({"outputs": [{"name": "t", "uri": "/t.jpg", "hash": "ab"}]}, "output 1: missing field(s) size"),
    ]:
        with pytest.raises(StepError) as error:
            decode_outcome(json.dumps({**good, **changes}))
        assert message in str(error.value)
    with pytest.raises(StepError, match="kind must be 'outcome', got 'job'"):
        decode_outcome(_job_text())


def test_an_unreachable_endpoint_is_written_only_when_so_and_read_from_outcomes_without_it() -> None:
    """Outcomes that did not meet one read as before (those of a worker of an earlier version too)."""
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    reached = JobOutcome("failed", (), "no such file", "", 1, now, now)
    unreachable = JobOutcome("failed", (), "cannot access s3://b/a.jpg", "", 1, now, now, unreachable=True)

    assert "unreachable" not in json.loads(encode_outcome(reached))
    assert json.loads(encode_outcome(unreachable))["unreachable"] is True
    assert decode_outcome(encode_outcome(reached)) == reached
    assert decode_outcome(encode_outcome(unreachable)).unreachable
    with pytest.raises(StepError, match="field 'unreachable' has the wrong type"):
        decode_outcome(json.dumps({**json.loads(encode_outcome(reached)), "unreachable": "yes"}))


def test_what_json_cannot_carry_is_refused_when_encoding() -> None:
    with pytest.raises(StepError, match="job cannot be encoded as JSON"):
        encode_job(JobSpec("j1", "derive", "image:1", "f", {"params": {1.5, 2.5}}))
    with pytest.raises(StepError, match="job cannot be encoded as JSON: Out of range float"):
        encode_job(JobSpec("j1", "derive", "image:1", "f", {"gamma": float("nan")}))
    naive = datetime(2026, 12, 3, 12, 0)
    with pytest.raises(StepError, match="started_at has no UTC offset"):
        encode_outcome(JobOutcome("failed", (), "x", "", 1, naive, naive))
