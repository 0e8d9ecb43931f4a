"""No hidden rig: without [steps.stitch.rig] each rig shot fails with a profile derived from its frames; pasting
that profile makes the shots stitch; a profile of the wrong frame size names the camera and the setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.cli.test_cli import run

from panopipe.demo import generate_survey


@pytest.fixture
def project(tmp_path: Path, catalog_url: str) -> Path:
    """A config file naming the catalog and the output, and no rig; a 2-shot survey of 160x120 frames ingested."""
    generate_survey(tmp_path / "survey", shots=2, camera_size=(160, 120))
    config = tmp_path / "panopipe.toml"
    config.write_text(
        f"[panopipe]\ncatalog = {json.dumps(catalog_url)}\n\n"
        f"[steps.pipeline]\noutput = {json.dumps(str(tmp_path / 'out'))}\nbackoff_s = 0.01\n"
    )
    return config


def test_without_a_rig_each_shot_fails_with_a_profile_to_paste(capsys, project: Path) -> None:
    cfg = ("--config", str(project))
    assert run(capsys, "ingest", str(project.parent / "survey" / "R001"), *cfg)[0] == 0

    code, _, err = run(capsys, "plan", *cfg)
    assert code == 0
    # the same problem of both shots: one line, naming them
    will_fail = [line for line in err.splitlines() if line.startswith("warning: stitch ")]
    assert len(will_fail) == 1 and will_fail[0].startswith("warning: stitch will fail for 2 subjects: ")
    assert will_fail[0].endswith(" (shot:R001-000001, shot:R001-000002)")
    assert "no rig profile: the calibrated stitcher needs [steps.stitch.rig]" in will_fail[0]
    assert "6 frames, camera indexes 0-5, each 160x120" in will_fail[0]
    assert err.count("[steps.stitch.rig]\n# A GUESS") == 1  # the profile once, not once per job
    code, out, _ = run(capsys, "plan", *cfg, "--json")
    problems = [item["problem"] for item in json.loads(out) if item["step"] == "stitch"]
    assert len(problems) == 2 and all("\nname = " in problem for problem in problems)

    code, _, err = run(capsys, "run", *cfg)
    assert code == 6 and "Traceback" not in err
    assert len(re.findall(r"^warning: stitch failed for 2 subjects: no rig profile", err, re.M)) == 1
    profile = err[err.index("[steps.stitch.rig]\n# A GUESS") :].split("\n]\n")[0] + "\n]\n"
    assert "GUESS" in profile and "width = 160, height = 120" in profile

    code, out, _ = run(capsys, "status", *cfg)
    assert code == 0 and out.count("no rig profile") == 1 and out.count("[steps.stitch.rig]\n# A GUESS") == 1
    assert "shot:R001-000001, shot:R001-000002" in out  # a row per reason, naming its shots

    project.write_text(project.read_text() + "\n" + profile)  # pasted as shown
    code, _, err = run(capsys, "run", *cfg)
    assert code == 0, err
    code, out, _ = run(capsys, "status", *cfg, "--json")
    assert json.loads(out)["failures"] == []


def test_a_profile_of_the_wrong_size_names_the_camera_and_the_setting(capsys, project: Path) -> None:
    cfg = ("--config", str(project))
    assert run(capsys, "ingest", str(project.parent / "survey" / "R001"), *cfg)[0] == 0
    project.write_text(
        project.read_text()
        + '\n[steps.stitch.rig]\nname = "van"\nversion = 1\nmount_height_m = 2.4\n'
        + 'defaults = { lens = "rectilinear", hfov_deg = 110, width = 160, height = 120 }\n'
        + "cameras = [[0, 0, 0], [90, 0, 0], [180, 0, 0], [270, 0, 0], { pitch_deg = 90, height = 160 }, [0, -90, 0]]\n"
    )
    expected = (
        "camera 4 of rig 'van' has height = 160 but its frame is 160x120: set height = 120 for camera 4"
    )
    code, _, err = run(capsys, "plan", *cfg, "--steps", "stitch")
    assert code == 0 and f"stitch will fail for 2 subjects: {expected}" in err
    code, _, err = run(capsys, "run", *cfg, "--steps", "stitch")
    assert code == 6 and err.count(f"stitch failed for 2 subjects: {expected}") == 1
