"""The batch executor end to end on moto's server: ``run --executor batch`` submits one array job per step over
manifests in S3, ``panopipe worker run`` runs each child's chunk, ``status`` and ``run --wait`` record how
they ended, failed children fail their jobs with Batch's reason and ``run`` retries only those.

What moto ignores is listed in :mod:`tests.pipeline.batch_world` (containers, which :class:`Containers`
stands in for; array indexes in ListJobs).
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest
from tests.pipeline.batch_world import BUCKET, Containers, World, manifest_of, to_s3
from tests.pipeline.captures import RIG, add_panoramas, add_rig_shots
from typer.testing import CliRunner

from panopipe.catalog import Catalog
from panopipe.cli import main
from panopipe.cli.app import app
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.pipeline import plan, run, status
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.remote import refresh
from panopipe.pipeline.store import recorded

CHUNK = 2
SHOTS = 5
STEPS = ("apply-metadata", "derive", "publish")


@pytest.fixture
def project(catalog_url: str, tmp_path: Path, world: World) -> tuple[str, Path]:
    """A catalog of 5 panoramas and a config file for the batch executor; (catalog, config file)."""
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", SHOTS)
        to_s3(catalog, tmp_path / "captures")
    config = tmp_path / "panopipe.toml"
    config.write_text(
        f'[panopipe]\nproject = "demo"\nbatch_job_queue = "{world.queue}"\n'
        f'batch_job_definition = "{world.definition}"\nbatch_chunk_jobs = {CHUNK}\nbatch_poll_s = 0.05\n\n'
        f'[steps.pipeline]\noutput = "s3://{BUCKET}/out"\nbackoff_s = 0.01\n\n'
        "[steps.derive]\nthumbnail = 64\npreview = 0\n",
        encoding="utf-8",
    )
    return catalog_url, config


def cli(project: tuple[str, Path], *args: str) -> tuple[int, object]:
    """Run ``panopipe ARGS --catalog ... --config ... --json``; the exit code and the JSON it printed."""
    location, config = project
    result = CliRunner().invoke(
        app, [*args, "--catalog", location, "--config", str(config), "--json"], standalone_mode=False
    )
    assert result.exception is None, result.exception
    return result.return_value or 0, json.loads(result.stdout) if result.stdout.strip() else None


def run_waiting(project: tuple[str, Path], containers: Containers, *args: str) -> tuple[int, object]:
    """``panopipe run --executor batch --wait ARGS`` while a thread plays Batch's side (containers start as
    the run waits); the exit code and the JSON it printed."""
    stop = threading.Event()

    def play() -> None:
        try:
            while not stop.is_set():
                containers.run()
                stop.wait(0.05)
        except BaseException as exc:  # end every child, so that the run stops waiting and the test fails
            containers.run(die={i: (f"test container failed: {exc!r}", 1) for i in range(100)})
            raise

    player = threading.Thread(target=play)
    player.start()
    try:
        return cli(project, "run", "--executor", "batch", "--wait", *args)
    finally:
        stop.set()
        player.join()


def test_run_submits_one_array_job_per_step_and_status_records_the_results(project, world: World):
    # moto runs no container and would mark every job SUCCEEDED at once: jobs stay RUNNING, Containers runs
    # `panopipe worker run` for each child and then ends it in moto's model.
    containers = Containers(world)

    code, report = cli(project, "run", "--executor", "batch")

    # Only the first step can be planned now: the others read its outputs.
    assert code == 0 and report["counts"] == {"apply-metadata": {"submitted": SHOTS}}
    [array] = world.arrays()
    children = math.ceil(SHOTS / CHUNK)
    assert array["arrayProperties"]["size"] == children
    prefix = manifest_of(array).removeprefix(f"s3://{BUCKET}/").removesuffix("manifest.json")
    # One body holds every child's chunk (a ranged GET each): two objects, whatever the number of children.
    assert sorted(world.s3_keys(prefix)) == [f"{prefix}chunks.jsonl.gz", f"{prefix}manifest.json"]
    assert cli(project, "status", "--offline")[1]["jobs"] == {"apply-metadata": {"queued": SHOTS}}
    # asked, AWS says the children run (they stay RUNNING on this moto): status tells them from queued ones
    assert cli(project, "status")[1]["jobs"] == {"apply-metadata": {"running": SHOTS}}
    planned = cli(project, "plan", "--steps", "apply-metadata")[1]
    assert {row["reason"] for row in planned} == {
        f"in flight on batch ({array['jobId']}:{i})" for i in range(children)
    }

    # Jobs in flight are never submitted again, nor the next steps of their subjects: counted as plan lists them
    again = cli(project, "run", "--executor", "batch")[1]
    assert again["counts"] == {} and (again["left_in_flight"], again["held_back"]) == (SHOTS, 2 * SHOTS)
    assert len(cli(project, "plan")[1]) == 3 * SHOTS
    assert len(world.arrays()) == 1

    assert containers.run() == children
    assert len(world.s3_keys(f"{prefix}results/")) == SHOTS
    status = cli(project, "status")[1]
    assert status["jobs"] == {"apply-metadata": {"succeeded": SHOTS}}
    assert status["artifacts"] == {"apply-metadata": SHOTS}

    # The next steps, one run each (each reads the step before).
    for step in STEPS[1:]:
        assert cli(project, "run", "--executor", "batch")[1]["counts"] == {step: {"submitted": SHOTS}}
        containers.run()
    status = cli(project, "status")[1]
    assert status["jobs"] == {step: {"succeeded": SHOTS} for step in STEPS}
    assert len(world.arrays()) == len(STEPS)
    assert cli(project, "plan")[1] == []
    published = world.s3_keys("out/publish/")
    assert len(published) == 2 * SHOTS  # each panorama and its thumbnail


def test_run_wait_follows_every_step_to_the_end(project, world: World):
    # moto starts no container: a thread plays Batch's side while the run waits, as in the test above.
    code, report = run_waiting(project, Containers(world), "--steps", "apply-metadata,derive")

    assert code == 0 and report["counts"] == {step: {"succeeded": SHOTS} for step in STEPS[:2]}
    assert len(world.arrays()) == 2
    assert cli(project, "plan", "--steps", "apply-metadata,derive")[1] == []


def test_children_that_die_fail_their_jobs_with_batchs_reason_and_run_retries_only_them(project, world):
    # moto reclaims no Spot host and kills no container: the children's end (FAILED with Batch's status
    # reason and exit code, or SUCCEEDED without having run) is set in moto's job model; moto's ListJobs
    # gives no arrayProperties.index (the executor reads it from the child's id).
    containers = Containers(world)
    cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")
    spot = "Host EC2 (instance i-0123456789abcdef0) terminated."

    containers.run(die={1: (spot, 143)}, no_result={2})

    status = cli(project, "status")[1]
    assert status["jobs"] == {"apply-metadata": {"failed": 3, "succeeded": 2}}
    reasons = sorted(f["error"] for f in status["failures"])
    array_id = world.arrays()[0]["jobId"]
    assert reasons[:2] == [f"AWS Batch job {array_id}:1 failed: {spot}; exit code 143"] * 2
    assert reasons[2] == f"AWS Batch job {array_id}:2 ended without a result for this job"

    code, report = cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")

    assert code == 0 and report["counts"] == {"apply-metadata": {"submitted": 3}}
    retry = world.arrays()[-1]
    assert retry["arrayProperties"]["size"] == 2  # ceil(3 / 2): only the failed jobs
    containers.run()
    assert cli(project, "status")[1]["jobs"] == {"apply-metadata": {"succeeded": SHOTS}}


def test_a_run_that_sees_jobs_fail_says_so_with_their_reasons_and_exit_code_6(project, world: World):
    """`run --executor batch` records how the jobs in flight ended before it submits: the failures it saw
    were counted in `ended` alone, exit 0, and the run's only output was 'submitted'."""
    containers = Containers(world)
    cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")
    containers.run(die={1: ("Host EC2 terminated.", 143)})

    code, report = cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")

    assert code == 6 and report["ended"] == {"apply-metadata": {"failed": 2, "succeeded": 3}}
    array_id = world.arrays()[0]["jobId"]
    assert [f["error"] for f in report["failures"]] == 2 * [
        f"AWS Batch job {array_id}:1 failed: Host EC2 terminated.; exit code 143"
    ]
    assert report["counts"] == {"apply-metadata": {"submitted": 2}}  # and retried


def test_a_run_that_retries_jobs_seen_to_fail_runs_the_steps_after_them(project, world: World):
    """The failures a run sees end before it plans are retried, and the steps after them follow in the same
    run: only a job that fails in the run itself holds its subject's later steps back."""
    containers = Containers(world)
    cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")
    containers.run(die={1: ("Host EC2 terminated.", 143)})

    code, report = run_waiting(project, containers, "--steps", "apply-metadata,derive")

    assert code == 6 and len(report["failures"]) == 2  # the failures seen to end, reported
    assert report["counts"] == {"apply-metadata": {"succeeded": 2}, "derive": {"succeeded": SHOTS}}


def test_a_run_says_which_due_jobs_it_held_back_for_a_job_of_their_subject_in_flight(project, world, capsys):
    """A failed apply-metadata is due again (`plan` lists it), but its panorama has a derive in flight: the
    run holds it back until that ends. It said `nothing to do`, exit 0, and --json counted nothing."""
    containers = Containers(world)
    cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")
    containers.run(die={1: ("Essential container in task exited", 1)})
    cli(project, "run", "--executor", "batch", "--steps", "derive")  # records the 2 failures
    steps = ("--steps", "apply-metadata,derive")

    planned = [(row["step"], row["reason"][:13]) for row in cli(project, "plan", *steps)[1]]
    code, report = cli(project, "run", "--executor", "batch", *steps)

    assert sorted(planned) == 2 * [("apply-metadata", "failed before")] + SHOTS * [
        ("derive", "in flight on ")
    ]
    assert code == 0 and report["counts"] == {}
    assert (report["left_in_flight"], report["held_back"]) == (SHOTS, 2)
    location, config = project
    assert main(["run", "--executor", "batch", *steps, "--catalog", location, "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" not in err
    assert "left 5 job(s) in flight (on AWS Batch or in another run)" in err
    assert "held back 2 job(s) whose image or shot has another job in flight" in err
    containers.run()  # the derives end: the failed jobs are submitted
    code, report = cli(project, "run", "--executor", "batch", *steps)
    assert report["counts"] == {"apply-metadata": {"submitted": 2}} and report["held_back"] == 0


def test_a_result_recorded_after_a_config_push_keeps_the_parameters_its_job_was_submitted_with(
    catalog_url: str, tmp_path: Path, world: World
):
    steps = {
        "pipeline": {"output": f"s3://{BUCKET}/out"},
        "stitch": {"rig": RIG.to_dict(), "params": {"width": 256, "height": 128}, "quality": 90},
    }
    settings = Settings(
        project="demo", executor="batch", batch_job_queue=world.queue, batch_job_definition=world.definition
    )
    with Catalog.open(catalog_url) as catalog:
        add_rig_shots(catalog, tmp_path / "captures", 1)
        to_s3(catalog, tmp_path / "captures")
        catalog.push_project_config({"steps": steps}, author="test", reason="quality 90")
        submitted_with = load_pipeline(catalog, settings, ["stitch"]).steps[0].params_hash
        [item] = plan(catalog, steps=["stitch"], settings=settings)
        assert run(catalog, steps=["stitch"], settings=settings, wait=False).counts == {
            "stitch": {"submitted": 1}
        }
        assert Containers(world).run() == 1  # the stitch ran with quality 90

        # The configuration changes while the job's result waits to be recorded.
        changed = {**steps, "stitch": {**steps["stitch"], "quality": 80}}
        catalog.push_project_config({"steps": changed}, author="test", reason="quality 80")
        assert refresh(catalog, settings).ended == {"stitch": {"succeeded": 1}}

        with catalog.connect() as conn:
            [artifact] = recorded(conn, ["stitch"], [item.subject])["stitch"].values()
        assert artifact.params_hash == submitted_with
        assert [(i.subject, i.reason) for i in plan(catalog, steps=["stitch"], settings=settings)] == [
            (item.subject, "parameters changed")
        ]


def test_status_and_a_local_run_follow_jobs_in_flight_without_the_batch_settings(project, world, tmp_path):
    # Asking how jobs ended is DescribeJobs (and the results under each job's own manifest): it needs neither
    # the job queue nor the job definition, nor an S3 output for the run that asks.
    containers = Containers(world)
    cli(project, "run", "--executor", "batch", "--steps", "apply-metadata")
    containers.run()
    location, _ = project
    bare = tmp_path / "bare.toml"
    bare.write_text(
        f'[panopipe]\nproject = "demo"\n\n[steps.pipeline]\noutput = "{tmp_path / "out"}"\nbackoff_s = 0.01\n\n'
        "[steps.derive]\nthumbnail = 64\npreview = 0\n",
        encoding="utf-8",
    )
    assert cli((location, bare), "status")[1]["jobs"] == {"apply-metadata": {"succeeded": SHOTS}}

    cli(project, "run", "--executor", "batch", "--steps", "derive")
    code, report = cli((location, bare), "run", "--executor", "inline", "--steps", "derive")

    assert code == 0 and report["counts"] == {}, "the derive jobs are still in flight on Batch"
    containers.run()
    code, report = cli((location, bare), "run", "--executor", "inline", "--steps", "derive")
    assert code == 0 and report["ended"] == {"derive": {"succeeded": SHOTS}} and report["counts"] == {}


def test_jobs_whose_inputs_are_local_files_are_refused_before_anything_is_submitted(
    catalog_url: str, tmp_path: Path, world: World, capsys
):
    # The captures stay in a local folder: a worker on Fargate could not read them.
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 2)
    config = tmp_path / "panopipe.toml"
    config.write_text(
        f'[panopipe]\nbatch_job_queue = "{world.queue}"\nbatch_job_definition = "{world.definition}"\n\n'
        f'[steps.pipeline]\noutput = "s3://{BUCKET}/out"\n',
        encoding="utf-8",
    )

    code = main(["run", "--executor", "batch", "--catalog", catalog_url, "--config", str(config)])

    out, err = capsys.readouterr()
    assert (code, out) == (ConfigError.exit_code, "")
    [line] = err.splitlines()
    assert line.startswith("error: the batch executor's workers read only s3:// inputs, and the ")
    assert f"reads '{tmp_path / 'captures' / 'P001'}{os.sep}pano_00000" in line
    assert "(and 1 more local inputs): `panopipe sync` the captures to S3 and ingest from there" in line
    assert world.arrays() == [] and world.s3_keys() == []  # no manifest written, no job submitted
    with Catalog.open(catalog_url) as catalog:
        assert status(catalog, Settings()).jobs == {}  # nor recorded: nothing is left for the dispatcher
