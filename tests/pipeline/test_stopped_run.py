"""A `panopipe run` stopped from outside, as a real process tree: SIGTERM (``timeout``, systemd, ``docker stop``,
a CI job cancelled) takes Ctrl-C's path, and the pool's workers of a run killed with SIGKILL exit instead of
living on; the jobs such a run holds are named in flight by ``plan`` and ``run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import require
from tests.processes import alive, children, wait_for

from panopipe.catalog import Catalog
from panopipe.catalog.schema import artifacts, jobs

SHOTS = 4
CLI = [sys.executable, "-c", "from panopipe.cli import run; run()"]


@dataclass
class Survey:
    """The demo survey, run once through the whole pipeline with a quick external stitcher."""

    folder: Path
    catalog: str
    config: Path

    def stitch_taking(self, seconds: float) -> None:
        """Make the external stitcher take ``seconds`` (a change of stitch's parameters)."""
        copy = f"import shutil, sys, time; time.sleep({seconds}); shutil.copy(sys.argv[1], sys.argv[2])"
        text = self.config.read_text(encoding="utf-8")
        head, _, tail = text.partition("[steps.stitch]\n")
        _, _, rest = tail.partition("\n[steps.stitch.rig]")
        command = f'{sys.executable} -c "{copy}" {{input0}} {{output}}'
        stitch = f"stitcher = \"external\"\nparams = {{ command = '{command}' }}\n"
        self.config.write_text(f"{head}[steps.stitch]\n{stitch}\n[steps.stitch.rig]{rest}", encoding="utf-8")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args, "--catalog", self.catalog, "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def start_run(self) -> subprocess.Popen[bytes]:
        """`panopipe run --workers 2`, once both workers run a stitch (its external tool has started); its
        stderr goes to :attr:`errors` (a pipe would stay open as long as a worker lives on)."""
        with self.errors.open("wb") as errors:
            process = subprocess.Popen(
                [*CLI, "run", "--workers", "2", "--catalog", self.catalog, "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        wait_for(lambda: len(tools(process.pid)) == 2, lambda: process.poll() is None)
        return process

    @property
    def errors(self) -> Path:
        return self.folder / "run.err"

    def job_states(self) -> dict[str, int]:
        with Catalog.open(self.catalog) as catalog, catalog.engine.connect() as conn:
            query = (
                sa.select(jobs.c.status, sa.func.count())
                .where(jobs.c.step == "stitch")
                .group_by(jobs.c.status)
            )
            return {status: count for status, count in conn.execute(query).all()}


def tools(pid: int) -> set[int]:
    """The external stitchers the workers of the run ``pid`` run."""
    return {tool for worker in children(pid) for tool in children(worker)}


def outputs(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@pytest.fixture
def survey(tmp_path: Path, catalog_url: str) -> Iterator[Survey]:
    require(Path("/proc/self/stat").exists(), "/proc (Linux)")
    folder = tmp_path / "demo"
    subprocess.run(
        [*CLI, "demo", "--folder", str(folder), "--shots", str(SHOTS), "--catalog", catalog_url],
        check=True,
        capture_output=True,
    )
    survey = Survey(folder, catalog_url, folder / "panopipe.toml")
    survey.stitch_taking(0)
    done = survey.cli("run", "--workers", "2")
    assert done.returncode == 0, done.stderr
    survey.stitch_taking(3)
    yield survey


@pytest.fixture
def started(survey: Survey) -> Iterator[tuple[subprocess.Popen[bytes], set[int], set[int]]]:
    """A run of the survey's changed stitch, its workers and their external stitchers, once both run a job;
    whatever of them is left at the end is killed."""
    process = survey.start_run()
    workers, running = children(process.pid), tools(process.pid)
    yield process, workers, running
    for pid in alive({process.pid, *workers, *running}):
        os.kill(pid, signal.SIGKILL)
    process.wait()


def test_sigterm_cancels_the_run_as_ctrl_c_does_and_leaves_no_process(survey: Survey, started):
    process, workers, running = started

    process.send_signal(signal.SIGTERM)  # the run's process alone, as `docker stop` sends it
    process.wait(timeout=30)
    written = outputs(survey.folder / "panopipe-out")

    assert (process.returncode, survey.errors.read_text().splitlines()) == (143, ["error: terminated"])
    assert not alive(workers | running), "the pool's workers and their tools end with the run"
    states = survey.job_states()
    assert set(states) == {"succeeded", "cancelled"} and states["cancelled"] == SHOTS, states
    planned = json.loads(survey.cli("plan", "--steps", "stitch", "--json").stdout)
    assert [row["reason"] for row in planned] == ["parameters changed"] * SHOTS, "due again, held by nobody"
    time.sleep(4)  # longer than a stitch takes: nothing that still ran writes its output now
    assert outputs(survey.folder / "panopipe-out") == written
    with Catalog.open(survey.catalog) as catalog, catalog.engine.connect() as conn:
        recorded = set(conn.execute(sa.select(artifacts.c.output_uri)).scalars())
    assert {str(path) for path in written if "/stitch/" in str(path)} <= recorded


def test_the_workers_of_a_killed_run_exit(started):
    process, workers, running = started

    process.kill()
    process.wait(timeout=30)

    wait_for(lambda: not alive(workers | running), timeout=5)


def test_plan_and_run_name_the_jobs_a_killed_run_holds(survey: Survey, started):
    process, _, _ = started
    process.kill()
    process.wait(timeout=30)

    planned = json.loads(survey.cli("plan", "--json").stdout)
    again = survey.cli("-q", "run")

    stitches = [row for row in planned if row["step"] == "stitch"]
    assert len(stitches) == SHOTS
    assert all(row["reason"].startswith("in flight on local") for row in stitches), stitches
    assert again.returncode == 0 and again.stdout == ""
    [warning] = again.stderr.splitlines()
    left = f"warning: left {SHOTS} job(s) in flight (on AWS Batch or in another run); held back"
    assert warning.startswith(f"{left} {len(planned) - SHOTS} job(s) whose image or shot"), again.stderr
