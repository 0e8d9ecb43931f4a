"""``panopipe worker run``: a SIGTERM mid-chunk (a Spot reclaim) and manifests that are missing or malformed.

The worker runs as a subprocess against moto's server (see :mod:`tests.pipeline.batch_world` for what moto
ignores: no container runs, so the test starts the worker the job definition would start).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication
from tests.conftest import free_port
from tests.pipeline.batch_world import BUCKET, World, manifest_of, to_s3
from tests.pipeline.captures import Project, add_rig_shots
from tests.processes import wait_for
from tests.relay import Relay
from tests.storage.conftest import list_only_user

from panopipe.cli import main
from panopipe.config import Settings
from panopipe.errors import ManifestError, StepError, StorageError
from panopipe.executors.manifest import Submission
from panopipe.executors.worker import STOPPED_EXIT, UNAVAILABLE_EXIT, run_chunk
from panopipe.pipeline import run
from panopipe.steps.base import JobSpec

SHOTS = 4


def worker(manifest: str, *options: str, endpoint: str | None = None) -> subprocess.Popen[str]:
    """``panopipe worker run`` of chunk 0 of ``manifest``, reaching AWS at ``endpoint`` if given."""
    command = "from panopipe.cli import run; run()"
    endpoints = {"AWS_ENDPOINT_URL": endpoint, "PANOPIPE_S3_ENDPOINT_URL": endpoint} if endpoint else {}
    return subprocess.Popen(
        [sys.executable, "-c", command, "worker", "run", "--manifest", manifest, "--index", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **endpoints},
    )


def submitted(project: Project, world: World, tmp_path: Path, slow_s: float) -> tuple[str, list[str]]:
    """Submit stitch for the project's shots in one chunk, the third job to run taking ``slow_s`` seconds;
    the manifest and the job ids in the order the worker runs them."""
    started = tmp_path / "started"
    started.mkdir()
    slow = (
        "import os, shutil, sys, time; d = sys.argv[3]; n = len(os.listdir(d)); "
        f"open(os.path.join(d, str(n)), 'w').close(); time.sleep({slow_s} if n == 2 else 0); "
        "shutil.copy(sys.argv[1], sys.argv[2])"
    )
    command = f'{sys.executable} -c "{slow}" {{input0}} {{output}} {started}'
    steps = project.with_steps(
        pipeline={"output": f"s3://{BUCKET}/out", "backoff_s": 0.01},
        stitch={"stitcher": "external", "params": {"command": command}},
    ).steps
    settings = Settings(
        project="demo",
        steps=steps,
        executor="batch",
        batch_job_queue=world.queue,
        batch_job_definition=world.definition,
        batch_chunk_jobs=SHOTS,
    )
    report = run(project.catalog, settings=settings, steps=["stitch"], wait=False)
    assert report.counts == {"stitch": {"submitted": SHOTS}}
    manifest = manifest_of(world.arrays()[0])
    submission = Submission.at(manifest)
    return manifest, [spec.id for spec in submission.chunk(submission.manifest(), 0)]


def results(manifest: str) -> set[str]:
    return Submission.at(manifest).result_ids()


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("slow_s", "grace", "finished"),
    [(60.0, "2", 2), (3.0, "15", 3)],
    ids=["abandons-the-running-job", "finishes-the-running-job"],
)
def test_sigterm_mid_chunk_exits_143_and_the_retry_runs_only_the_rest(
    project: Project, world: World, tmp_path: Path, slow_s: float, grace: str, finished: int
):
    add_rig_shots(project.catalog, project.root, SHOTS)
    to_s3(project.catalog, project.root)
    manifest, order = submitted(project, world, tmp_path, slow_s)
    process = worker(manifest, "--workers", "1", "--grace", grace)
    wait_for(lambda: len(results(manifest)) == 2)
    time.sleep(0.5)  # the third job has started

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == STOPPED_EXIT, stderr
    assert time.monotonic() - signalled < 25
    assert results(manifest) == set(order[:finished])  # the running job ended in time, or has no result
    assert json.loads(stdout)["stopped"] is True

    again = run_chunk(manifest, 0, workers=1)  # Batch's retry of the child: only the rest

    assert (again.skipped, again.succeeded, again.stopped) == (finished, SHOTS - finished, False)
    assert results(manifest) == set(order)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_s3_lost_mid_chunk_exits_75_and_the_retry_runs_only_the_jobs_without_a_result(
    project: Project, world: World, tmp_path: Path
):
    """The worker exited 4 and Batch's retry strategy does not retry 4: the child failed for good on a blip,
    and the dispatcher never resubmits a failed job. Now it starts no more jobs, gives the job that found S3
    gone no result, and exits 75, which the job definition retries (tests/aws/test_stack.py)."""
    add_rig_shots(project.catalog, project.root, SHOTS)
    to_s3(project.catalog, project.root)
    manifest, order = submitted(project, world, tmp_path, 3.0)
    with Relay(world.endpoint) as relay:
        process = worker(manifest, "--workers", "1", endpoint=relay.endpoint)
        wait_for(lambda: len(results(manifest)) == 2)
        relay.cut()  # while the third job runs: its output cannot be written
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == UNAVAILABLE_EXIT, stderr
    [line] = stderr.splitlines()
    assert line.startswith("error: cannot access s3://"), line
    assert line.endswith("; the jobs without a result are left to the next attempt"), line
    report = json.loads(stdout)
    assert (report["succeeded"], report["failed"], report["stopped"]) == (2, 0, False)
    assert report["unavailable"] in line
    assert results(manifest) == set(order[:2])

    again = run_chunk(manifest, 0, workers=1)  # Batch's retry of the child, S3 back: only the rest

    assert (again.skipped, again.succeeded, again.unavailable, again.exit_code) == (2, SHOTS - 2, None, 0)
    assert results(manifest) == set(order)


def test_a_manifest_on_an_s3_endpoint_that_cannot_be_reached_exits_75(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("PANOPIPE_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")

    code = main(["worker", "run", "--manifest", "s3://work/sub/manifest.json", "--index", "0"])

    out, err = capsys.readouterr()
    assert code == UNAVAILABLE_EXIT
    assert json.loads(out)["unavailable"].startswith("cannot access s3://work/sub/manifest.json: ")
    [line] = err.splitlines()
    assert line.startswith("error: cannot access s3://work/sub/manifest.json: Could not connect"), line
    assert "check that the S3 endpoint is up and reachable; the jobs without a result are left" in line


def test_a_missing_or_malformed_manifest_fails_the_child_with_a_clear_reason(tmp_path: Path):
    missing = tmp_path / "gone" / "manifest.json"
    with pytest.raises(ManifestError, match=f"manifest {missing} does not exist"):
        run_chunk(str(missing), 0)

    folder = tmp_path / "submission"
    jobs = [JobSpec(f"j{n}", "derive", f"image:{n}", "f", {}) for n in range(3)]
    written = Submission.at(str(folder) + "/").write("derive", jobs, 2)
    assert [spec.id for spec in Submission.at(str(folder) + "/").chunk(written, 1)] == ["j2"]
    # the manifest, or its folder with or without the slash: one submission
    for given in (folder / "manifest.json", folder, f"{folder}/"):
        assert Submission.at(str(given)).manifest() == written, given
    with pytest.raises(
        ManifestError, match=r"m\.json is not a manifest: a submission's is named manifest\.json"
    ):
        run_chunk(str(folder / "m.json"), 0)
    with pytest.raises(ManifestError, match=r"chunks\.jsonl\.gz is not a manifest"):  # a file, not a folder
        run_chunk(str(folder / "chunks.jsonl.gz"), 0)
    with pytest.raises(ManifestError, match="has chunks 0 to 1, not 3"):
        run_chunk(str(folder / "manifest.json"), 3)
    body = folder / "chunks.jsonl.gz"
    good = body.read_bytes()
    # Chunk 1 malformed (chunk 0 still reads), then not gzip, then the body cut short, then gone.
    bad = gzip.compress(b'{"format": 1, "kind": "job"}\n')
    body.write_bytes(good[: written.offsets[1]] + bad)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(
        json.dumps({**manifest, "offsets": [0, written.offsets[1], len(good[: written.offsets[1]] + bad)]})
    )
    with pytest.raises(ManifestError, match=r"chunk 1 of .*chunks\.jsonl\.gz: job: missing field"):
        run_chunk(str(folder / "manifest.json"), 1)
    assert len(Submission.at(str(folder) + "/").chunk(Submission.at(str(folder) + "/").manifest(), 0)) == 2
    body.write_bytes(good[: written.offsets[1]] + b"not gzip" * 10)
    with pytest.raises(ManifestError, match=r"chunk 1 of .*chunks\.jsonl\.gz is not gzip data"):
        run_chunk(str(folder / "manifest.json"), 1)
    body.write_bytes(good[: written.offsets[1] + 3])
    with pytest.raises(
        ManifestError, match=r"chunk 1 of .*: the body ends at byte .*, before the chunk's end"
    ):
        run_chunk(str(folder / "manifest.json"), 1)
    body.unlink()
    with pytest.raises(ManifestError, match=r"chunks\.jsonl\.gz does not exist"):
        run_chunk(str(folder / "manifest.json"), 0)
    # A manifest of the layout before (one object per chunk) is refused with its reason, not misread.
    old = {key: manifest[key] for key in ("step", "jobs", "chunks", "chunk_jobs")}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "kind": "manifest", **old}))
    with pytest.raises(ManifestError, match="is not a format 3 manifest"):
        run_chunk(str(folder / "manifest.json"), 0)
    (folder / "manifest.json").write_text("[1, 2")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        run_chunk(str(folder / "manifest.json"), 0)

    # Through the command line: one line on stderr, exit code 10 (Batch's retry strategy does not retry it).
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from panopipe.cli import run; run()",
            "worker",
            "run",
            "--manifest",
            str(missing),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": "0"},
    )
    assert (done.returncode, done.stdout) == (ManifestError.exit_code, "")
    assert done.stderr.strip().splitlines() == [f"error: manifest {missing} does not exist"]


def test_payload_fields_all_jobs_share_are_written_once_and_read_back_into_every_job(tmp_path: Path):
    rig = {"name": "ring", "cameras": [{"index": i, "hfov_deg": 110.0} for i in range(6)]}
    params = {"stitcher": "calibrated", "quality": 92, "rig": rig}
    payloads = [{"params": params, "inputs": [f"s3://b/{n}.jpg"], "problem": None} for n in range(3)]
    payloads.append({"params": params, "inputs": ["s3://b/3.jpg"], "problem": "shot 3 is missing a frame"})
    jobs = [JobSpec(f"j{n}", "stitch", f"shot:{n}", "f", payload) for n, payload in enumerate(payloads)]
    folder = tmp_path / "submission"

    written = Submission.at(str(folder) + "/").write("stitch", jobs, 2)

    document = json.loads((folder / "manifest.json").read_text())
    assert document["shared"] == {"params": params}  # "problem" differs in one job: it stays in the lines
    lines = gzip.decompress((folder / "chunks.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(line)["payload"] for line in lines] == [
        {key: value for key, value in payload.items() if key != "params"} for payload in payloads
    ]
    assert '"rig"' not in "".join(lines)
    read = Submission.at(str(folder) + "/")
    manifest = read.manifest()
    assert manifest.shared == written.shared == {"params": params}
    assert [spec.payload for index in (0, 1) for spec in read.chunk(manifest, index)] == payloads

    # Equal parameters that are not the one object of the step are not looked into: each line keeps its own.
    copies = [
        JobSpec(s.id, s.step, s.subject, s.fingerprint, {**s.payload, "params": dict(params)}) for s in jobs
    ]
    assert Submission.at(str(tmp_path / "copies") + "/").write("stitch", copies, 2).shared == {}


def test_a_shared_payload_field_that_is_not_json_fails_the_write_before_anything_is_stored(tmp_path: Path):
    odd = {"cameras": {0, 1}}  # a set: not JSON
    jobs = [JobSpec(f"j{n}", "stitch", f"shot:{n}", "f", {"params": odd}) for n in range(2)]
    folder = tmp_path / "submission"

    with pytest.raises(StepError, match="cannot be encoded as JSON"):
        Submission.at(str(folder) + "/").write("stitch", jobs, 2)

    assert not folder.exists() or not any(folder.iterdir())


def test_a_manifest_in_a_bucket_that_does_not_exist_is_missing_and_one_it_may_not_read_is_storage(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # moto checks IAM policies only inside enable_iam_authentication(), as AWS always does.
    with mock_aws():
        code = main(["worker", "run", "--manifest", "s3://nosuch-bkt/manifest.json", "--index", "0"])
        assert (code, capsys.readouterr().err.splitlines()) == (
            ManifestError.exit_code,
            [
                "error: manifest s3://nosuch-bkt/manifest.json does not exist: S3 bucket 'nosuch-bkt' does not "
                "exist (accessing s3://nosuch-bkt/manifest.json): check the bucket name and region (client "
                "region: us-east-1)"
            ],
        )

        boto3.client("s3").create_bucket(Bucket="work")
        Submission.at("s3://work/sub/").write("derive", [JobSpec("j", "derive", "image:1", "f", {})], 1)
        key_id, secret = list_only_user("worker")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.delenv("AWS_SESSION_TOKEN")
        monkeypatch.delenv("AWS_SECURITY_TOKEN")
        with enable_iam_authentication():
            code = main(["worker", "run", "--manifest", "s3://work/sub/manifest.json", "--index", "0"])

    assert code == StorageError.exit_code
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: access denied to s3://work/sub/manifest.json")
