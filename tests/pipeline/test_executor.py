"""The local executor: retries of transient errors, per-item failures, Ctrl-C leaving the catalog consistent."""

from __future__ import annotations

import errno
import multiprocessing
import os
import resource
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from tests.conftest import free_port
from tests.pipeline.captures import Project, add_rig_shots, jpeg, record
from tests.processes import children, wait_for

from panopipe.catalog.schema import artifacts, jobs
from panopipe.errors import EndpointUnreachableError, StepError, StorageError
from panopipe.executors import InlineExecutor, LocalExecutor
from panopipe.executors.local import start_worker_process
from panopipe.pipeline import RunReport, plan, run, status
from panopipe.steps.base import JobSpec
from panopipe.steps.registry import is_transient, run_with_retries
from panopipe.stitching import synthetic_panorama
from panopipe.storage import resolve_uri


def flaky(failures: list[BaseException]):
    def work(log):
        if failures:
            raise failures.pop(0)
        log("done")
        return ["output"]

    return work


def test_transient_errors_are_retried_with_backoff():
    errors = [
        OSError(errno.EAGAIN, "Resource temporarily unavailable"),
        StorageError("slow down", transient=True),
    ]

    outcome = run_with_retries(flaky(errors), retries=2, backoff_s=0.001)

    assert (outcome.status, outcome.attempts, outcome.outputs) == ("succeeded", 3, ("output",))
    assert outcome.log.count("transient error, retrying") == 2


def test_permanent_errors_and_exhausted_retries_fail_the_item():
    assert run_with_retries(flaky([StepError("bad frame")]), retries=3, backoff_s=0).attempts == 1
    again = [OSError(errno.EAGAIN, "again") for _ in range(3)]
    outcome = run_with_retries(flaky(again), retries=2, backoff_s=0.001)
    assert (outcome.status, outcome.attempts, outcome.error) == ("failed", 3, "[Errno 11] again")


def test_unexpected_exceptions_fail_only_the_item():
    outcome = run_with_retries(flaky([ZeroDivisionError("boom")]), retries=2, backoff_s=0)
    assert outcome.status == "failed" and "ZeroDivisionError: boom" in outcome.error
    assert "Traceback" in outcome.log


def test_transient_detection_follows_the_cause():
    try:
        try:
            raise OSError(errno.EBUSY, "busy")
        except OSError as exc:
            raise StorageError("cannot write x") from exc
    except StorageError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(StorageError("permission denied"))


def test_a_second_run_at_once_leaves_the_first_the_jobs_it_holds(project: Project):
    """A `panopipe run` started while another is at work on the same catalog (here: when the first has
    finished one of its 4 stitches, the other 3 still running or queued in its pool) does none of them."""
    add_rig_shots(project.catalog, project.root, 4)
    slow_copy = "import shutil, sys, time; time.sleep(0.2); shutil.copy(sys.argv[1], sys.argv[2])"
    command = f'{sys.executable} -c "{slow_copy}" {{input0}} {{output}}'
    settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})
    second: list[RunReport] = []

    def start_second(step: str, done: int, total: int) -> None:
        if not second:
            second.append(
                run(project.catalog, settings=settings, steps=["stitch"], executor=InlineExecutor())
            )

    first = run(project.catalog, settings=settings, steps=["stitch"], workers=1, progress=start_second)

    assert first.counts == {"stitch": {"succeeded": 4}} and first.left_in_flight == 0
    assert second[0].counts == {} and second[0].left_in_flight == 3
    with project.catalog.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.status)).scalars().all() == ["succeeded"] * 4
    assert plan(project.catalog, steps=["stitch"], settings=settings).counts() == {"stitch": 0}


def test_ctrl_c_cancels_the_rest_and_keeps_the_catalog_consistent(project: Project):
    add_rig_shots(project.catalog, project.root, 5)
    slow_copy = "import shutil, sys, time; time.sleep(0.2); shutil.copy(sys.argv[1], sys.argv[2])"
    command = f'{sys.executable} -c "{slow_copy}" {{input0}} {{output}}'
    settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})

    def interrupt(step: str, done: int, total: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run(project.catalog, settings=settings, steps=["stitch"], workers=1, progress=interrupt)

    with project.catalog.engine.connect() as conn:
        states = dict(conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all())
        made = conn.execute(sa.select(artifacts)).all()
    assert states.get("cancelled", 0) > 0 and set(states) <= {"succeeded", "cancelled"}
    assert len(made) == states.get("succeeded", 0)
    for artifact in made:  # recorded only once complete
        storage, key = resolve_uri(artifact.output_uri)
        assert len(storage.get(key)) == artifact.output_size
    remaining = plan(project.catalog, steps=["stitch"], settings=settings)
    assert {i.reason for i in remaining} == {"cancelled before, not finished"}
    assert len(remaining) == states["cancelled"]
    report = run(project.catalog, settings=settings, steps=["stitch"], workers=2)
    assert report.counts == {"stitch": {"succeeded": states["cancelled"]}}


def test_ctrl_c_in_an_inline_run_cancels_the_jobs_it_had_not_recorded(project: Project, tmp_path: Path):
    # The inline executor runs the jobs as they are submitted: Ctrl-C lands before any is recorded. The
    # external stitcher's second job sends it (SIGINT to the process running the jobs, as a terminal does).
    add_rig_shots(project.catalog, project.root, 4)
    marker = tmp_path / "first-done"
    second_interrupts = (
        "import os, shutil, signal, sys; shutil.copy(sys.argv[1], sys.argv[2]); m = sys.argv[3]; "
        "os.kill(os.getppid(), signal.SIGINT) if os.path.exists(m) else open(m, 'w').close()"
    )
    command = f'{sys.executable} -c "{second_interrupts}" {{input0}} {{output}} {marker}'
    settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})

    with pytest.raises(KeyboardInterrupt):
        run(project.catalog, settings=settings, steps=["stitch"], executor=InlineExecutor())

    with project.catalog.engine.connect() as conn:
        states = dict(conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all())
    assert states == {"cancelled": 4}  # none left queued, as if something still ran them
    assert {i.reason for i in plan(project.catalog, steps=["stitch"], settings=settings)} == {
        "cancelled before, not finished"
    }


WORKER_KILLER = """
import hashlib, os, shutil, signal, sys, time
frame, output, marks = sys.argv[1:]
shot = hashlib.sha256(open(frame, "rb").read()).hexdigest()

def claim(name):  # the first shot to ask has it, for good
    try:
        mark = os.open(os.path.join(marks, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(mark, shot.encode())
    os.close(mark)
    return True

def die():
    os.kill(os.getppid(), signal.SIGKILL)  # the worker process, as the out-of-memory killer would

if claim("always") or open(os.path.join(marks, "always")).read() == shot:
    time.sleep(0.3)  # while another shot runs
    die()
if claim("once"):
    die()
shutil.copy(frame, output)
"""


@pytest.fixture
def dead_endpoint(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """An S3 endpoint nothing answers at, as the steps of this process and of its pool's workers read it."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PANOPIPE_S3_ENDPOINT_URL", endpoint)
    return endpoint


@pytest.mark.parametrize("pooled", [False, True], ids=["inline", "local pool"])
def test_a_storage_endpoint_that_does_not_answer_stops_the_run_its_jobs_left_due(
    project: Project, dead_endpoint: str, pooled: bool
):
    """Every job would wait to connect (a second when refused, about 7 s when no answer comes) and fail alike:
    the first job that finds the endpoint down stops the run, one error; no job is recorded failed, each is
    due for the next."""
    records = [
        record(
            project.root / f"pano_{n}.jpg",
            jpeg(synthetic_panorama(64, 32, seed=n)),
            n,
            uri=f"s3://captures/P001/pano_{n:06d}.jpg",  # ingested from the bucket
            reel="P001",
            projection="equirectangular",
        )
        for n in range(4)
    ]
    project.catalog.upsert_images(records)
    executor = LocalExecutor(2, backoff_s=0.01) if pooled else InlineExecutor(backoff_s=0.01)

    try:
        with pytest.raises(EndpointUnreachableError) as stopped:
            run(project.catalog, settings=project.settings, steps=["apply-metadata"], executor=executor)
    finally:
        executor.close()

    message = str(stopped.value)
    assert message.startswith("cannot access s3://captures/P001/pano_00000")
    assert message.endswith("the run stopped: run again once it is, its jobs not run are due")
    with project.catalog.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.status)).scalars().all() == ["cancelled"] * 4
    assert status(project.catalog).failures == ()
    again = plan(project.catalog, steps=["apply-metadata"], settings=project.settings)
    assert [i.reason for i in again] == ["cancelled before, not finished"] * 4


def test_the_inline_executor_runs_no_job_after_one_found_the_endpoint_unreachable(
    dead_endpoint: str, tmp_path: Path
):
    def job(n: int, uri: str) -> JobSpec:
        return JobSpec(f"j{n}", "derive", f"image:{n}", "f", {"params": {}, "inputs": [uri], "outputs": {}})

    executor = InlineExecutor()
    handles = executor.submit([job(1, "s3://captures/a.jpg"), job(2, str(tmp_path / "missing.jpg"))])

    first, second = executor.describe(handles)
    assert first.status == "failed" and first.outcome is not None and first.outcome.unreachable
    assert (second.status, second.outcome) == ("cancelled", None)  # run, it would have failed at once


def test_a_killed_worker_fails_only_its_job_once_it_has_no_attempts_left(project: Project, tmp_path: Path):
    """The first shot to start kills its worker process each time, the second at once the first time: the
    pool breaks, and the jobs not finished run again on a new one, charged an attempt only if their outcome
    died with the process (not if never started, or stopped when the pool broke)."""
    add_rig_shots(project.catalog, project.root, 6)
    (tmp_path / "killer.py").write_text(WORKER_KILLER)
    command = f"{sys.executable} {tmp_path / 'killer.py'} {{input0}} {{output}} {tmp_path}"
    settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})

    report = run(project.catalog, settings=settings, steps=["stitch"], workers=2)

    assert report.counts == {"stitch": {"succeeded": 5, "failed": 1}}
    with project.catalog.engine.connect() as conn:
        ended = conn.execute(sa.select(jobs.c.status, jobs.c.attempts, jobs.c.error, jobs.c.log)).all()
    assert sorted((job.status, job.attempts) for job in ended) == [
        ("failed", 3),  # retries = 2
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 2),
    ]
    died = "worker died (killed by SIGKILL: out of memory?), retrying"
    for job in ended:
        if job.status == "failed":
            assert job.error == "worker died: killed by SIGKILL: out of memory?"
            assert job.log.splitlines() == [f"attempt {n}: {died}" for n in (1, 2, 3)]
        elif job.attempts == 2:
            assert job.log.startswith(f"attempt 1: {died}\n")
    assert not list(project.out.rglob("*tmp*"))


IDLE_KILLER = """
import os, shutil, signal, sys, time
frame, output, marks = sys.argv[1:]
worker = os.getppid()
run = int(open(f"/proc/{worker}/stat").read().rpartition(")")[2].split()[1])
command = open(f"/proc/{worker}/cmdline", "rb").read()
spared = {int(pid) for pid in open(os.path.join(marks, "spared")).read().split()}  # other pools' processes
try:  # the first job to start kills the other, idle, worker process once, and waits for the pool to break
    os.close(os.open(os.path.join(marks, "killed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    shutil.copy(frame, output)
    sys.exit(0)
for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != worker):
    try:
        parent = int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
        same = open(f"/proc/{pid}/cmdline", "rb").read() == command
    except OSError:
        continue
    if parent == run and same and pid not in spared:
        os.kill(pid, signal.SIGKILL)
time.sleep(30)
"""


def test_a_worker_killed_while_idle_costs_no_job_an_attempt(project: Project, tmp_path: Path):
    """The pool broke when an idle worker process was killed, and the job the other one ran failed "worker
    died", never tried again, though its own process was fine."""
    add_rig_shots(project.catalog, project.root, 1)
    (tmp_path / "killer.py").write_text(IDLE_KILLER)
    (tmp_path / "spared").write_text(" ".join(map(str, children(os.getpid()))))
    command = f"{sys.executable} {tmp_path / 'killer.py'} {{input0}} {{output}} {tmp_path}"
    settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})

    report = run(project.catalog, settings=settings, steps=["stitch"], workers=2)

    assert (tmp_path / "killed").exists()
    assert report.counts == {"stitch": {"succeeded": 1}}
    with project.catalog.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.attempts)).scalars().all() == [1]


RECORD_WORKER = """
import os, shutil, sys
shutil.copy(sys.argv[1], sys.argv[2])
with open(sys.argv[3], "a") as workers:
    workers.write(f"{os.getppid()}\\n")
"""


def kill_until_reaped(pids: set[int]) -> None:
    """Kill the pool's processes ``pids``: reaped once the pool's manager saw them die and marked it broken."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids))


def test_a_pool_whose_processes_died_between_runs_runs_the_next_run(project: Project, tmp_path: Path):
    """An executor kept from run to run (a test session's, a service's) whose processes were all killed while
    no run used it (out of memory, an operator) failed the next run at once: its broken pool refused the jobs.
    More such breaks than ``retries``: each run whose jobs end shows that new processes start."""
    add_rig_shots(project.catalog, project.root, 2)
    (tmp_path / "record.py").write_text(RECORD_WORKER)
    workers = tmp_path / "workers"
    executor = LocalExecutor(2, retries=1, backoff_s=0.01)
    try:
        for attempt in range(3):
            command = f"{sys.executable} {tmp_path / 'record.py'} {{input0}} {{output}} {workers} {attempt}"
            settings = project.with_steps(stitch={"stitcher": "external", "params": {"command": command}})

            report = run(project.catalog, settings=settings, steps=["stitch"], executor=executor)

            assert report.counts == {"stitch": {"succeeded": 2}}
            with project.catalog.engine.connect() as conn:
                assert set(conn.execute(sa.select(jobs.c.attempts)).scalars()) == {1}
            kill_until_reaped({int(pid) for pid in workers.read_text().split()})
            workers.unlink()
    finally:
        executor.close()


def test_the_local_executor_wakes_its_poller_when_a_job_ends(tmp_path):
    executor = LocalExecutor(1, retries=0)
    executor.poll_interval_s = 60.0  # a sleeping poll would wait this long
    try:
        payload = {"params": {}, "inputs": [str(tmp_path / "missing.jpg")], "outputs": {}}
        handles = executor.submit([JobSpec("j1", "derive", "image:x", "f", payload)])
        started = time.monotonic()
        executor.wait(handles)
        assert time.monotonic() - started < 30
        assert [state.status for state in executor.describe(handles)] == ["failed"]
    finally:
        executor.close()


def test_the_local_executor_reports_each_finished_job_once_and_only_when_asked(tmp_path):
    executor = LocalExecutor(2, retries=0)

    def collect(wanted: set[str]) -> list[str]:
        reported: list[str] = []
        deadline = time.monotonic() + 60
        while len(reported) < len(wanted) and time.monotonic() < deadline:
            states = executor.finished(wanted - set(reported))
            assert {state.status for state in states} <= {"failed"}
            reported += [state.handle for state in states]
            if not states:
                executor.wait(wanted - set(reported))
        return reported

    try:
        payload = {"params": {}, "inputs": [str(tmp_path / "missing.jpg")], "outputs": {}}
        handles = executor.submit([JobSpec(f"j{i}", "derive", "image:x", "f", payload) for i in range(20)])
        first, later = set(handles[::2]), set(handles[1::2])
        assert sorted(collect(first)) == sorted(first)  # each once, and none of the others
        assert sorted(collect(later)) == sorted(later)  # kept until asked for
        assert executor.finished(set(handles)) == []
    finally:
        executor.close()


def _faults_of_repeated_arrays() -> int:
    """The minor page faults of five jobs that each fill and free arrays of 3, 2 and 4 MiB, after one such job."""

    def job() -> None:
        arrays = [np.ones(3 << 20, np.uint8), np.ones(2 << 20, np.uint8), np.ones(1 << 20, np.float32)]
        del arrays

    job()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        job()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_worker_processes_reuse_freed_memory_instead_of_faulting_it_in_again():
    # fresh interpreters (spawn), so that no earlier allocation of this process has moved glibc's thresholds
    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(1, spawn) as plain,
        ProcessPoolExecutor(1, spawn, initializer=start_worker_process) as prepared,
    ):
        untuned, tuned = plain.submit(_faults_of_repeated_arrays), prepared.submit(_faults_of_repeated_arrays)
        assert untuned.result() > 5 * 1000  # each job's 9 MiB mapped afresh: about 2,300 pages a job
        assert tuned.result() < 50
