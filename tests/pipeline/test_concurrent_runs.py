"""Two `panopipe run`s at once on one catalog share the work, on SQLite and PostgreSQL: each job runs once, and
neither fails because of the other. The runs are driven step by step in threads: an executor whose jobs wait,
claimed (in flight in the catalog), until the test lets them go."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tests.pipeline.captures import Project, add_rig_shots

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.subjects import Subject
from panopipe.catalog.types import new_id, utcnow
from panopipe.executors import InlineExecutor
from panopipe.executors.base import JobState
from panopipe.pipeline import RunReport, load_pipeline, plan, run, verify
from panopipe.pipeline.store import claimed_jobs, new_claim, record_finished, record_submitted
from panopipe.steps.base import JobOutcome, JobSpec, Output

WAIT_S = 60
S0, S1 = "shot:R001-000000", "shot:R001-000001"


def waited(event: threading.Event) -> None:
    assert event.wait(WAIT_S), "the other run never got there"


class Gate(InlineExecutor):
    """The inline executor, but the jobs of the steps in ``held`` wait in :meth:`submit` (claimed: in flight in
    the catalog) until the test lets them go: ``reached[step]`` is set when they get there, ``go[step]``
    lets them run."""

    def __init__(self, *held: str) -> None:
        super().__init__(retries=0, backoff_s=0)
        self.reached = {step: threading.Event() for step in held}
        self.go = {step: threading.Event() for step in held}

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        step = jobs[0].step
        if step in self.reached:
            self.reached[step].set()
            waited(self.go[step])
        return super().submit(jobs)


@dataclass
class Run:
    """A run in a thread of its own, on an engine of its own (another process's, as far as the catalog can tell)."""

    url: str
    project: Project
    executor: Gate
    selection: Selection = field(default_factory=Selection)
    progress: Callable[[str, int, int], None] | None = None
    report: RunReport | None = None
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            with Catalog.open(self.url) as catalog:
                self.report = run(
                    catalog,
                    self.selection,
                    settings=self.project.settings,
                    executor=self.executor,
                    progress=self.progress,
                )
        except BaseException as exc:  # noqa: BLE001 - asserted in the test's thread
            self.error = exc

    def result(self, thread: threading.Thread) -> RunReport:
        thread.join(WAIT_S)
        assert not thread.is_alive() and self.error is None, self.error
        assert self.report is not None
        return self.report


def test_a_run_leaves_a_shot_alone_while_another_run_has_any_job_of_it_in_flight(
    project: Project, catalog_url: str
):
    """Run B started when nothing was in flight; run A then began the derive of shot S1, which B plans after
    its own apply-metadata. B had taken the jobs in flight once, at its start: it planned S1's publish from the
    thumbnail A's derive was replacing, which A deleted when its derive ended, and B's publish failed ('the
    derive thumbnail it publishes is missing'), while A could not publish S1 (B held it). Now B leaves S1 to A
    from the moment A has a job of it in flight, whatever the step."""
    add_rig_shots(project.catalog, project.root, 2)
    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok
    changes = project.catalog.plan_edit(Selection(reels=("R001",)), assign={"lat": 47.0})
    project.catalog.apply_edit(changes, reason="GPS", author="t")
    due = {"stitch": 0, "apply-metadata": 2, "derive": 2, "publish": 2}
    assert plan(project.catalog, settings=project.settings).counts() == due

    between, resume = threading.Event(), threading.Event()

    def pause_after_apply_metadata(step: str, done: int, total: int) -> None:
        if step == "apply-metadata":
            between.set()
            waited(resume)

    a = Run(catalog_url, project, Gate("derive"), Selection(shots=(S1.partition(":")[2],)))
    a.progress = pause_after_apply_metadata
    b = Run(catalog_url, project, Gate("apply-metadata", "publish"))
    a_thread = a.start()
    waited(between)  # A made S1's tags, and has nothing in flight
    b_thread = b.start()
    waited(b.executor.reached["apply-metadata"])  # B planned every step with nothing of A's in flight
    resume.set()
    waited(a.executor.reached["derive"])  # A's derive of S1 is in flight
    b.executor.go["apply-metadata"].set()
    waited(b.executor.reached["publish"])  # B made S0's tags and thumbnails, and is publishing
    a.executor.go["derive"].set()
    first = a.result(a_thread)
    b.executor.go["publish"].set()
    second = b.result(b_thread)

    assert first.ok and second.ok, (first.failures, second.failures)
    assert first.counts == {step: {"succeeded": 1} for step in ("apply-metadata", "derive", "publish")}
    assert second.counts == first.counts and (first.left_in_flight, first.held_back) == (0, 0)
    assert (second.left_in_flight, second.held_back) == (1, 1)  # S1's derive, in flight in A; its publish
    assert len(plan(project.catalog, settings=project.settings)) == 0
    assert verify(project.catalog, settings=project.settings) == []


def test_a_claim_leaves_the_jobs_of_a_subject_another_submitter_is_at_work_on(project: Project):
    """A submission claims no job of a subject that has another job in flight (of any step: it would read or
    replace what that job reads or replaces), nor of one whose outputs another submitter recorded after this
    one planned (the same job, finished meanwhile: it had been claimed again and run twice)."""
    add_rig_shots(project.catalog, project.root, 2)
    steps = {step.name: step for step in load_pipeline(project.catalog, project.settings).steps}

    def submit(step: str, subjects: Sequence[str], planned_at: datetime | None = None) -> dict[str, str]:
        """The jobs of ``step`` over ``subjects`` that a new claim got, their ids by subject."""
        token = new_claim()
        specs = [JobSpec(new_id(), step, subject, f"{step}-{subject}") for subject in subjects]
        reasons = ["new input"] * len(specs)
        ids = record_submitted(
            project.catalog, steps[step], specs, reasons, "inline", claim=token, planned_at=planned_at
        )
        claimed = claimed_jobs(project.catalog, token)
        return {spec.subject: ids[spec.id] for spec in specs if ids[spec.id] in claimed}

    planned = utcnow()
    derive = submit("derive", [S1])[S1]
    assert submit("publish", [S0, S1], planned).keys() == {S0}  # S1's derive is in flight
    now = utcnow()
    made = Output("thumbnail", str(project.out / "t.jpg"), "0" * 64, 1)
    state = JobState(derive, "succeeded", JobOutcome("succeeded", (made,), None, "", 1, now, now))
    record_finished(project.catalog, derive, steps["derive"], Subject(S1, ()), f"derive-{S1}", state)

    assert submit("derive", [S1], planned) == {}  # another run did it since this one planned it
    assert submit("derive", [S1], utcnow()).keys() == {S1}  # planned since (forced, say): it runs again
