"""docs/aws.md's local parity flow, run as written (issue 12, item 7): the shell commands of its code blocks, in
order, through the real `panopipe` command and the AWS CLI. Only the port differs (a free one instead of 5000,
which another program may hold), `pip install` is left out (the suite runs installed), and the exports are the
ones `dev up` printed, as the page says. The uploaded rig shot must come out stitched."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from tests.aws.s3_events import render_shot
from tests.conftest import free_port, require

from panopipe.catalog import Catalog
from panopipe.dev import create_stack, spawn_moto_server

DOCS = Path(__file__).parents[2] / "docs" / "aws.md"
ARCHITECTURE = DOCS.with_name("architecture.md")
SRC = Path(__file__).parents[2] / "src"
SECTION = "## Local parity: `panopipe dev up` and `panopipe worker events`"


def documented_commands(title: str = SECTION, page: Path = DOCS) -> list[str]:
    """The commands of the ``sh`` blocks of the section ``title`` of ``page``, continuation lines joined and
    comments dropped."""
    text = page.read_text(encoding="utf-8")
    section = text[text.index(title) :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


@pytest.fixture
def shell(tmp_path: Path) -> dict[str, str]:
    """An environment whose `panopipe` is this checkout's, run from ``tmp_path``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "panopipe"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from panopipe.cli import run; run()" "$@"\n')
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PANOPIPE_"))}
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "PYTHONPATH": str(SRC),
        "HOME": str(tmp_path),
    }


def test_the_documented_local_flow_stitches_an_uploaded_shot(shell: dict[str, str], tmp_path: Path):
    require(shutil.which("aws") is not None, "the AWS CLI")
    port = free_port()
    commands = [c.replace("5000", str(port)) for c in documented_commands()]
    assert commands[0].startswith("pip install -e '.[dev]'")
    demo, dev_up, exports, upgrade, worker, upload, ls, status, *pushing = commands[1:]
    assert dev_up.startswith("panopipe dev up") and worker.startswith("panopipe worker events")
    env = dict(shell)

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
        return result

    def start(command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    sh(demo)
    server = start(dev_up)
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline()]
        while printed[-1] and not printed[-1].startswith("# then"):  # "": dev up ended
            printed.append(server.stdout.readline())
        assert printed[-1].startswith("# then"), server.communicate()
        exported = dict(
            line.removeprefix("export ").strip().split("=", 1)
            for line in printed
            if line.startswith("export ")
        )
        # The page shows the same variables dev up printed.
        assert set(exported) == {m for m in re.findall(r"(\w+)=", exports)}
        env.update(exported)
        sh(upgrade)
        worker_process = start(worker.replace(" --queue-url ", " --wait 1 --queue-url ", 1))
        try:
            sh(upload)
            deadline = time.monotonic() + 180
            jobs: dict[str, dict[str, int]] = {}
            while time.monotonic() < deadline and jobs.get("publish", {}).get("succeeded", 0) < 1:
                time.sleep(1)
                jobs = json.loads(sh(f"{status} --json").stdout)["jobs"]
        finally:
            worker_process.send_signal(signal.SIGINT)
            out, err = worker_process.communicate(timeout=60)
        assert worker_process.returncode == 0 and "Traceback" not in err, err
        assert {step: counts.get("succeeded") for step, counts in jobs.items()} == {
            "stitch": 1,
            "apply-metadata": 1,
            "derive": 1,
            "publish": 1,
        }
        assert err.startswith(f"worker: polling http://127.0.0.1:{port}/")
        start_line = err.splitlines()[0]
        assert f"at http://127.0.0.1:{port} into catalog sqlite:///" in start_line
        assert "survey.db; executor inline;" in start_line
        batches = [line for line in err.splitlines() if line.startswith("batch: ")]
        assert batches and sum(int(re.search(r"added (\d+)", b)[1]) for b in batches) == 6  # type: ignore[index]
        assert any("stitch succeeded 1" in b for b in batches)
        assert re.match(r"stopped after \d+ poll\(s\): \d+ batch\(es\), \d+ message\(s\) received", out), out
        listed = sh(ls).stdout
        assert listed.count(" R001-000001 ") == 5  # --limit 5 of the shot's six frames
        # Then the page pushes the project configuration into the catalog and shows it.
        assert [c.split()[:3] for c in pushing] == [
            ["panopipe", "db", "upgrade"],
            ["panopipe", "config", "push"],
            ["panopipe", "config", "show"],
        ]
        for command in pushing:
            sh(command)
        assert "catalog version 1" in sh(pushing[-1]).stdout
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_dev_up_without_moto_says_which_extra_to_install(shell: dict[str, str], tmp_path: Path):
    blocker = tmp_path / "no_moto"
    (blocker / "moto").mkdir(parents=True)
    (blocker / "moto" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'moto'\")\n")
    env = shell | {"PYTHONPATH": f"{blocker}{os.pathsep}{SRC}"}
    result = subprocess.run(
        ["bash", "-c", "panopipe dev up --port 0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: moto's server is not installed (No module named 'moto'): "
        "pip install 'panopipe[dev]' (or 'moto[server]')"
    ]


def test_every_regional_call_of_the_manual_setup_names_the_region():
    # sts and iam are global, and `aws s3` finds a bucket's region itself; the others go to $REGION.
    calls = []
    for command in documented_commands("## Set it up by hand with the AWS CLI"):
        calls += [re.sub(r"\$\([^()]*\)", "$(...)", command), *re.findall(r"\$\(([^()]*)\)", command)]
    regional = [call for call in calls if re.match(r"(\w+=)?aws (sqs|lambda|logs|s3api) ", call)]

    assert len(regional) >= 10 and [c for c in regional if "--region $REGION" not in c] == []


def test_the_documented_dead_letter_replay_reads_what_receive_message_saved(
    shell: dict[str, str], tmp_path: Path
):
    """docs/architecture.md's replay of the dead-letter queue, run as written against `dev up`'s queues: only the
    queue's URL is dev up's (the page reads the stack's output) and the AWS CLI is given moto's endpoint. Both
    panopipe commands had refused the file `aws sqs receive-message` saved (`unrecognised event shape`, exit 7)."""
    require(shutil.which("aws") is not None, "the AWS CLI")
    find_queue, receive, parse, handle, find_arn, move = documented_commands("## Troubleshoot", ARCHITECTURE)
    assert find_queue.startswith("DLQ_URL=$(panopipe cloud status --stack panopipe --json")
    assert move == 'aws sqs start-message-move-task --source-arn "$DLQ_ARN"'  # moto has no move tasks
    frames, _ = render_shot(tmp_path / "shot")
    process, endpoint = spawn_moto_server()
    try:
        stack = create_stack(endpoint, bucket="survey-in")
        env = shell | stack.environment() | {"DLQ_URL": stack.dead_letter_queue_url}
        env |= {"PANOPIPE_CATALOG": str(tmp_path / "survey.db"), "PANOPIPE_EXECUTOR": "none"}
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        session = boto3.Session(region_name=stack.region, **credentials)
        sqs = session.client("sqs", endpoint_url=endpoint)
        sqs.purge_queue(QueueUrl=stack.queue_url)  # S3's test event
        key = f"{stack.input_prefix}R001/cam0/{frames[0].name}"
        session.client("s3", endpoint_url=endpoint).put_object(
            Bucket=stack.bucket, Key=key, Body=frames[0].read_bytes()
        )
        (notified,) = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=5)["Messages"]
        sqs.send_message(QueueUrl=stack.dead_letter_queue_url, MessageBody=notified["Body"])  # failed 5 times

        def sh(command: str) -> subprocess.CompletedProcess[str]:
            command = command.replace("aws sqs ", f"aws --endpoint-url {endpoint} sqs ")
            return subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )

        assert sh("panopipe db upgrade").returncode == 0
        assert sh(receive).returncode == 0 and '"Messages"' in (tmp_path / "dead.json").read_text()
        parsed = sh(parse)
        assert parsed.returncode == 0, parsed.stderr
        assert [event["key"] for event in json.loads(parsed.stdout)] == [key]
        handled = sh(handle)
        assert (handled.returncode, handled.stderr) == (0, "")
        assert json.loads(handled.stdout)["outcomes"][0]["action"] == "added"
        with Catalog.open(env["PANOPIPE_CATALOG"]) as catalog:
            assert [image.uri for image in catalog.images()] == [f"s3://{stack.bucket}/{key}"]
        arn = sh(f'{find_arn} && echo "$DLQ_ARN"')
        assert arn.stdout.strip() == f"arn:aws:sqs:{stack.region}:123456789012:{stack.bucket}-events-dlq"
        # The message is hidden for 30 s now: receive-message prints nothing, which panopipe names.
        assert sh(receive).returncode == 0 and (tmp_path / "dead.json").read_text() == ""
        empty = sh(parse)
        assert empty.returncode == 7 and empty.stderr.splitlines() == [
            "error: 1 of 1 message(s) could not be understood: event: empty: no event (`aws sqs receive-message` "
            "prints nothing when no message is there)"
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
