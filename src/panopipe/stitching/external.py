"""Run an external stitching tool (Mosaic Processor, MistikaVR, Hugin, PTGui batch…) once per shot.

The command is a template. Placeholders are replaced by shell-quoted paths, then the command is split with
:func:`shlex.split` and run without a shell:

* ``{inputs}``: every frame, space-separated; ``{input0}``, ``{input1}``…: one frame each
* ``{output}``: the file the tool must write (``output_name`` inside the work directory)
* ``{workdir}``: the temporary work directory (also the tool's current directory)

Write literal braces as ``{{`` and ``}}``. Example: ``hugin_executor --stitching --prefix={workdir}/pano
{workdir}/rig.pto`` or ``python my_stitch.py -o {output} {inputs}``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import string
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from panopipe.errors import ConfigError, StepError
from panopipe.stitching.base import Stitcher, StitchResult, check_frames, require

_LOG_TAIL_LINES = 20
_PLACEHOLDER = re.compile(r"inputs|input\d+|output|workdir")
_JOB_VARIABLE = "PANOPIPE_STITCH_JOB"
"""Set in the tool's environment to a token of its job, which the processes it starts inherit: how they are
found at the end of the job."""
_KILL_ROUNDS = 10


class ExternalStitchError(StepError):
    """An external stitching command failed; ``log`` holds its combined stdout and stderr."""

    def __init__(self, message: str, log: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.log = log
        self.returncode = returncode


@dataclass(frozen=True, slots=True)
class ExternalParams:
    """The command template, how long it may run, how frames are handed over and the file it writes."""

    command: str = ""
    timeout_s: float = 600.0
    input_format: Literal["jpg", "png", "tif"] = "jpg"
    output_name: str = "panorama.jpg"

    def __post_init__(self) -> None:
        require(bool(self.command.strip()), "external stitcher: command is required")
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(self.command) if name is not None]
            shlex.split(self.command)
        except ValueError as error:
            raise ConfigError(f"external stitcher: cannot parse command {self.command!r}: {error}") from error
        for name in names:
            require(
                _PLACEHOLDER.fullmatch(name) is not None,
                f"external stitcher: unknown placeholder {{{name}}} in command; "
                "use {inputs}, {input0}, {input1}…, {output}, {workdir} (and {{ }} for literal braces)",
            )
        require(
            type(self.timeout_s) in (int, float) and self.timeout_s > 0,
            f"external stitcher: timeout_s must be a positive number, got {self.timeout_s!r}",
        )
        require(
            self.input_format in ("jpg", "png", "tif"),
            f"external stitcher: input_format must be jpg, png or tif, got {self.input_format!r}",
        )
        require(
            bool(self.output_name) and Path(self.output_name).name == self.output_name,
            f"external stitcher: output_name must be a plain file name, got {self.output_name!r}",
        )


class ExternalStitcher(Stitcher[ExternalParams]):
    """Write the frames to a temporary directory, run the command template, read the panorama it wrote.

    ``coverage`` is the output's alpha channel when it has one (Hugin's TIFFs do), else every pixel;
    ``views_used`` is the number of frames handed to the tool.
    """

    name = "external"
    version = 1
    params_type = ExternalParams

    def stitch(
        self, frames: Sequence[np.ndarray], params: Mapping[str, Any] | ExternalParams | None = None
    ) -> StitchResult:
        """Run the tool on ``frames``; raise :class:`ExternalStitchError` (a :class:`StepError`) on failure."""
        options = self.parse_params(params)
        check_frames(frames, self.name)
        with tempfile.TemporaryDirectory(prefix="panopipe-stitch-") as tmp:
            workdir = Path(tmp)
            inputs = [workdir / f"frame_{i:02d}.{options.input_format}" for i in range(len(frames))]
            for path, frame in zip(inputs, frames, strict=True):
                if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                    raise StepError(f"external stitcher: could not write {path.name}")
            output = workdir / options.output_name
            args = command_args(options.command, inputs, output, workdir)
            log = _run(args, workdir, options.timeout_s)
            panorama, coverage = _read_output(output, log)
        return StitchResult(panorama, coverage, log, len(frames))


def command_args(template: str, inputs: Sequence[Path], output: Path, workdir: Path) -> list[str]:
    """The argument list for ``template`` (see the module docstring) with these paths filled in.

    Raises :class:`StepError` when the template names a frame the shot does not have (``{input5}`` for 3).
    """
    values = {f"input{i}": shlex.quote(str(path)) for i, path in enumerate(inputs)}
    values |= {
        "inputs": " ".join(shlex.quote(str(path)) for path in inputs),
        "output": shlex.quote(str(output)),
        "workdir": shlex.quote(str(workdir)),
    }
    try:
        return shlex.split(template.format_map(values))
    except KeyError as error:
        raise StepError(
            f"external stitcher: the command uses {{{error.args[0]}}} but the shot has {len(inputs)} frames"
        ) from error


def _run(args: list[str], workdir: Path, timeout_s: float) -> str:
    """Run ``args`` in ``workdir`` for at most ``timeout_s`` seconds; its combined output. Whether it ends, times
    out or the job is stopped, every process it started is killed (:func:`_kill_all`). Its output goes to a
    file, not a pipe, so a helper that holds it open cannot keep the job waiting."""
    token = uuid.uuid4().hex
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                args,
                cwd=workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, _JOB_VARIABLE: token},
            )
        except OSError as error:
            raise ExternalStitchError(
                f"external stitcher: cannot run {args[0]!r}: {error.strerror}", ""
            ) from error
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # also when the job was stopped (its run cancelled): the tool goes with it
            _kill_all(process.pid, token)
            process.wait()
        output.seek(0)
        log = output.read().decode(errors="replace")
    name = Path(args[0]).name
    if timed_out:
        raise ExternalStitchError(
            f"external stitcher: {name} timed out after {timeout_s:g} s and was killed{_tail(log, workdir)}",
            log,
        )
    if process.returncode != 0:
        raise ExternalStitchError(
            f"external stitcher: {name} exited with code {process.returncode}{_tail(log, workdir)}",
            log,
            process.returncode,
        )
    return log


def _kill_all(group: int, token: str) -> None:
    """Kill process group ``group`` (the tool's) and, where ``/proc`` shows processes' environments (Linux),
    every process whose environment has ``token`` in :data:`_JOB_VARIABLE`: the helpers the tool started in
    sessions of their own too (a licence daemon, a GPU server), which no signal to its group reaches."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    marked = f"{_JOB_VARIABLE}={token}".encode()
    for _ in range(_KILL_ROUNDS):  # again while some are found: one may have started another meanwhile
        found = [pid for pid in _process_ids() if marked in _environment(pid)]
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not found:
            return


def _process_ids() -> list[int]:
    """The processes ``/proc`` lists (none where there is no ``/proc``)."""
    with contextlib.suppress(OSError):
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return []


def _environment(pid: int) -> list[bytes]:
    """The ``NAME=value`` entries of process ``pid``'s environment; none once it ended or is not ours."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read().split(b"\0")
    except OSError:
        return []


def _read_output(path: Path, log: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ExternalStitchError(
            f"external stitcher: the command succeeded but did not write {path.name}{_tail(log, path.parent)}",
            log,
            0,
        )
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ExternalStitchError(f"external stitcher: cannot decode its output {path.name}", log, 0)
    if image.dtype == np.uint16:
        image = (image // 256).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), np.ones(image.shape, bool)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), image[..., 3] > 0
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.ones(image.shape[:2], bool)


def _tail(log: str, workdir: Path) -> str:
    """The end of ``log`` to add to a failure's reason, the work directory in it written ``{workdir}``: it was
    removed with the job, and one shot's reason is then another's, so that a thousand shots failing for one
    reason are one line in ``status`` (the job's log keeps the output as the tool wrote it)."""
    for path in sorted({os.path.realpath(workdir), str(workdir)}, key=len, reverse=True):  # /private/tmp/…
        log = log.replace(path, "{workdir}")
    lines = log.strip().splitlines()[-_LOG_TAIL_LINES:]
    return ":\n" + "\n".join(lines) if lines else " (no output)"


__all__ = ["ExternalParams", "ExternalStitchError", "ExternalStitcher", "command_args"]
