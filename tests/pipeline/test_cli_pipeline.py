"""The pipeline commands, through a Typer app that registers them as the main app will."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from tests.pipeline.captures import panorama_project
from typer.testing import CliRunner

from panopipe.catalog import Catalog, Selection
from panopipe.cli import pipeline as commands

app = typer.Typer()
for command in (commands.plan, commands.run, commands.status, commands.verify, commands.report):
    app.command()(command)


@pytest.fixture
def project_files(tmp_path: Path) -> tuple[str, Path, Path]:
    location = str(tmp_path / "catalog.db")
    return location, panorama_project(location, tmp_path), tmp_path / "out"


def invoke(*args: str) -> tuple[int, str]:
    """The exit code as ``panopipe.cli.main`` makes it (a command may return one) and stdout."""
    result = CliRunner().invoke(app, list(args), standalone_mode=False)
    assert result.exception is None, result.exception
    return result.return_value or 0, result.stdout


def test_plan_run_status_verify_report(project_files, tmp_path: Path):
    location, config, out = project_files
    common = ("--catalog", location, "--config", str(config))

    code, text = invoke("plan", *common, "--json")
    planned = json.loads(text)
    assert (
        code == 0
        and len(planned) == 9
        and {row["reason"] for row in planned} == {"new input", "after apply-metadata"}
    )

    code, text = invoke("run", *common, "--json", "--workers", "2")
    assert code == 0 and json.loads(text)["counts"]["derive"] == {"succeeded": 3}
    assert json.loads(invoke("plan", *common, "--json")[1]) == []

    code, text = invoke("status", *common, "--json")
    assert json.loads(text)["jobs"]["publish"] == {"succeeded": 3}

    next(out.glob("derive/**/thumbnail-*.jpg")).unlink()
    code, text = invoke("verify", *common, "--json", "--repair")
    assert code == 6 and [row["problem"] for row in json.loads(text)] == ["missing"]
    # publish copies derive's outputs: listed after it, it runs only if they come out other than before
    planned = json.loads(invoke("plan", *common, "--json")[1])
    assert [(row["step"], row["reason"], row["conditional"]) for row in planned] == [
        ("derive", "output missing", False),
        ("publish", "after derive", True),
    ]
    assert invoke("run", *common, "--steps", "derive")[0] == 0
    assert invoke("verify", *common)[0] == 0
    assert json.loads(invoke("plan", *common, "--json")[1]) == []  # the same thumbnail: nothing to publish
    # an edit not run yet: its outputs are outdated, listed, and not drift (exit 0)
    with Catalog.open(location) as catalog:
        catalog.apply_edit(catalog.plan_edit(Selection(), assign={"alt": 1.5}), reason="RTK", author="t")
    code, text = invoke("verify", *common, "--json")
    assert code == 0 and {row["problem"] for row in json.loads(text)} == {"outdated"}

    code, _ = invoke("report", *common, "--html", str(tmp_path / "report.html"))
    assert code == 0 and "<svg" in (tmp_path / "report.html").read_text()
