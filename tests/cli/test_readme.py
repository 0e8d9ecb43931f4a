"""The README's examples run as written on the demo catalog.

The quick start's demo is run in a temporary folder, then every command of "Using it" in order, in-process
through the CLI's entry point, each of which must exit 0 without a traceback. Only what cannot run here is
substituted, each for the reason given in SUBSTITUTED (and the README says so next to the placeholder ids):
PostgreSQL URLs get the test server's, ``s3://`` commands run against moto's server, placeholder ids get the
demo's own. The project configuration the README shows is the one the demo writes.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from tests.conftest import _postgres_reachable

from panopipe.cli import main

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEMO = "panopipe-demo"
SKIPPED = {
    "pip install -e .": "the test runs from the tree it tests",
    "bash .ci/run": "that is the suite this test is part of",
}
SUBSTITUTED = {
    "panopipe demo": "--shots 2 (the demo's small size) keeps the test quick; --json reads the edit batch",
    "2b7c5d1e": "the README's id is one of its own catalog: the short id of the demo's first image",
    "BATCH": "a placeholder: the batch id of the demo's edit",
    "postgresql://": "the test's PostgreSQL server (an empty schema of its own); skipped where there is none",
    "s3://": "moto's S3 server, with a bucket named as in the README, through PANOPIPE_S3_ENDPOINT_URL",
}


def section(title: str) -> str:
    """The README's text under the heading ``title``, up to the next heading."""
    start = README.index(f"{title}\n")
    following = re.search(r"^##+ ", README[start + len(title) :], re.M)
    return README[start : start + len(title) + (following.start() if following else len(README))]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> Iterator[list[str]]:
    """Each command of a shell block, as words: comments dropped, ``a && b`` split in two."""
    for line in block.splitlines():
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                command.append(word)
            elif command:
                yield command
                command = []


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("PANOPIPE_S3_ENDPOINT_URL", url)
    yield url
    server.stop()


class Shell:
    """Runs the README's commands in-process with the working folder and environment they set."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, folder: Path
    ) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch
        monkeypatch.chdir(folder)
        for name in ("PANOPIPE_CATALOG", "PANOPIPE_CONFIG", "PANOPIPE_EXECUTOR"):
            monkeypatch.delenv(name, raising=False)

    def __call__(self, words: list[str]) -> str:
        if words[0] == "cd":
            self.monkeypatch.chdir(words[1])
            return ""
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.monkeypatch.setenv(name, value)
            return ""
        assert words[0] == "panopipe", words
        code = main(words[1:])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err, (words, err)
        assert code == 0, (words, code, err)
        return out


def test_readme_examples_run_as_written_on_the_demo(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    s3_endpoint: str,
    request: pytest.FixtureRequest,
) -> None:
    shell = Shell(capsys, monkeypatch, tmp_path)
    quick_start = [words for block in blocks(section("## Quick start"), "bash") for words in commands(block)]
    assert [" ".join(w) for w in quick_start] == [
        "pip install -e .",
        f"panopipe demo --folder {DEMO}",
        "bash .ci/run",
    ]
    demo = json.loads(shell([*quick_start[1], "--shots", "2", "--json"]))
    assert demo["first_run"]["failures"] == [] and demo["jobs_left"] == 0

    postgres = [request.getfixturevalue("postgres_url") for _ in range(2)] if _postgres_reachable() else []
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="survey-bucket")
    (using_it,) = blocks(section("## Using it"), "bash")
    ran, skipped = [], []
    examples = list(commands(using_it))
    for words in examples:
        if any(word.startswith("postgresql://") for word in words):
            if not postgres:
                skipped.append(words)  # no PostgreSQL server here: SUBSTITUTED["postgresql://"]
                continue
            words = [postgres.pop() if word.startswith("postgresql://") else word for word in words]
        if "2b7c5d1e" in words:
            first_id = json.loads(shell(["panopipe", "ls", "--json"]))[0]["id"]
            short_id = json.loads(shell(["panopipe", "show", first_id, "--json"]))["short_id"]
            words = [short_id if word == "2b7c5d1e" else word for word in words]
        if "BATCH" in words:
            words = [demo["edit"]["batch"] if word == "BATCH" else word for word in words]
        shell(words)
        ran.append(words[:2])
    assert len(ran) == len(examples) - len(skipped) and len(skipped) in (0, 2) and len(examples) > 20

    folder = tmp_path / DEMO
    page = (folder / "report.html").read_text()
    thumbnails = re.findall(r'<img src="([^"]+)"', page)
    assert len(thumbnails) == 2 and all((folder / link).is_file() for link in thumbnails)


def test_readme_project_configuration_is_the_demos(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from panopipe.demo import write_project_config

    folder = tmp_path / DEMO
    folder.mkdir()
    written = write_project_config(folder, str(folder.resolve() / "panopipe.db"), (640, 480)).read_text()
    (shown,) = blocks(section("### Project configuration"), "toml")
    assert shown == written.replace(str(folder.resolve()), f"/path/to/{DEMO}")


def test_every_skip_and_substitution_is_explained() -> None:
    quick_start = "\n".join(blocks(section("## Quick start"), "bash"))
    for command in SKIPPED:
        assert command in quick_start
    using_it = "\n".join(blocks(section("## Using it"), "bash"))
    for placeholder in ("2b7c5d1e", "BATCH", "postgresql://", "s3://"):
        assert placeholder in using_it and placeholder in SUBSTITUTED
