"""The external-command stitcher, driven by a small Python script standing in for Hugin, PTGui and co."""

from __future__ import annotations

import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.processes import running, wait_for

from panopipe.errors import ConfigError, StepError
from panopipe.stitching.external import ExternalStitcher, ExternalStitchError, command_args

TOOL = f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).with_name('fake_stitcher.py')))}"


@pytest.fixture
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]


def test_command_output_is_read_back_with_its_alpha(frames: list[np.ndarray]) -> None:
    params = {
        "command": f"{TOOL} concat {{output}} {{inputs}}",
        "input_format": "png",
        "output_name": "out.png",
    }
    result = ExternalStitcher().stitch(frames, params)
    assert np.array_equal(result.panorama, np.hstack(frames)), (
        "PNG hand-over and read-back are lossless, RGB kept"
    )
    assert result.coverage[:, :32].sum() == 0 and result.coverage[:, 32:].all()
    assert result.views_used == 3
    assert "fake-stitcher: concat with 3 inputs" in result.log and "out.png" in result.log


def test_single_input_placeholders(frames: list[np.ndarray]) -> None:
    params = {
        "command": f"{TOOL} concat {{output}} {{input2}} {{input0}}",
        "input_format": "png",
        "output_name": "o.png",
    }
    result = ExternalStitcher().stitch(frames, params)
    assert np.array_equal(result.panorama, np.hstack([frames[2], frames[0]]))


def test_hanging_command_is_killed_after_the_timeout(frames: list[np.ndarray]) -> None:
    started = time.monotonic()
    with pytest.raises(ExternalStitchError, match=r"timed out after 1 s and was killed") as caught:
        ExternalStitcher().stitch(frames, {"command": f"{TOOL} hang {{output}} {{inputs}}", "timeout_s": 1})
    assert time.monotonic() - started < 10
    assert "fake-stitcher: hang with 3 inputs" in caught.value.log


@pytest.mark.parametrize("ending", ["sleep 100", "echo cannot stitch; exit 3"])
def test_the_timeout_holds_and_nothing_the_tool_started_outlives_its_job(
    frames: list[np.ndarray], ending: str
) -> None:
    """A helper the tool left running in a session of its own, holding the tool's output open (a licence
    daemon, a GPU server), had kept the job waiting until it ended, past the timeout, for ever if never."""
    seconds = f"{random.uniform(20, 30):.6f}"  # names this test's helper among the machine's processes
    command = f"bash -c '(setsid sleep {seconds} &); {ending}'"
    started = time.monotonic()
    with pytest.raises(ExternalStitchError, match=r"timed out after 1 s|exited with code 3") as caught:
        ExternalStitcher().stitch(frames, {"command": command, "timeout_s": 1})
    assert time.monotonic() - started < 3
    wait_for(lambda: not running("sleep", seconds), timeout=2)  # killed, not yet ended
    assert ("cannot stitch" in caught.value.log) == ending.startswith("echo")


def test_failing_command_reports_exit_code_and_log(frames: list[np.ndarray]) -> None:
    with pytest.raises(StepError, match=r"(?s)exited with code 3:\n.*control points missing") as caught:
        ExternalStitcher().stitch(frames, {"command": f"{TOOL} fail {{output}} {{inputs}}"})
    assert isinstance(caught.value, ExternalStitchError)
    assert caught.value.returncode == 3
    assert "fake-stitcher: fail with 3 inputs" in caught.value.log


def test_missing_output_and_missing_program(frames: list[np.ndarray]) -> None:
    quiet = f"{shlex.quote(sys.executable)} -c 'print(\"nothing written\")'"
    with pytest.raises(ExternalStitchError, match=r"did not write panorama.jpg:\nnothing written"):
        ExternalStitcher().stitch(frames, {"command": quiet})
    with pytest.raises(ExternalStitchError, match=r"cannot run 'no-such-stitcher-here'"):
        ExternalStitcher().stitch(frames, {"command": "no-such-stitcher-here {inputs}"})
    with pytest.raises(StepError, match=r"uses \{input7\} but the shot has 3 frames"):
        ExternalStitcher().stitch(frames, {"command": f"{TOOL} concat {{output}} {{input7}}"})


def test_paths_with_spaces_stay_single_arguments(tmp_path: Path) -> None:
    folder = tmp_path / "my shots"
    args = command_args(
        "stitch -o {output} {inputs}", [folder / "a 1.jpg", folder / "b.jpg"], folder / "o.tif", folder
    )
    assert args == ["stitch", "-o", str(folder / "o.tif"), str(folder / "a 1.jpg"), str(folder / "b.jpg")]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "command is required"),
        ({"command": "tool {input}"}, r"unknown placeholder \{input\}"),
        ({"command": "tool 'unclosed {inputs}"}, "cannot parse command"),
        ({"command": "tool {inputs}", "timeout_s": 0}, "timeout_s must be a positive number"),
        ({"command": "tool {inputs}", "output_name": "../x.jpg"}, "output_name must be a plain file name"),
    ],
)
def test_bad_params_are_config_errors(frames: list[np.ndarray], params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExternalStitcher().stitch(frames, params)
