"""The executor interface is enough for a remote executor: jobs travel as JSON and come back as states."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots

from panopipe.catalog.schema import jobs
from panopipe.executors import Executor, JobState, decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.pipeline import plan, run
from panopipe.steps import JobSpec, execute_job


class InlineExecutor(Executor):
    """Runs each job at submit time from its wire form and reads its outcome back from its own, as a
    Lambda-style executor would."""

    name = "inline"

    def __init__(self) -> None:
        self.states: dict[str, JobState] = {}
        self.submitted: list[str] = []

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        for job in jobs:
            answer = encode_outcome(execute_job(decode_job(encode_job(job)), retries=0))
            outcome = decode_outcome(answer)
            self.states[job.id] = JobState(job.id, outcome.status, outcome, external_id=f"inline-{job.id}")
            self.submitted.append(job.step)
        return [job.id for job in jobs]

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        return [self.states[handle] for handle in handles]

    def cancel(self, handles: Sequence[str]) -> None:
        pass


def test_a_run_through_an_executor_that_only_sees_json(project: Project):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    executor = InlineExecutor()

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.ok and len(executor.submitted) == 1 + 2 + 2 + 2
    assert len(plan(project.catalog, settings=project.settings)) == 0
    with project.catalog.engine.connect() as conn:
        recorded = conn.execute(sa.select(jobs.c.executor, jobs.c.external_id, jobs.c.attempts)).all()
    assert {(row.executor, row.external_id.startswith("inline-"), row.attempts) for row in recorded} == {
        ("inline", True, 1)
    }
