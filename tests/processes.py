"""Processes as Linux shows them in /proc: whose children they are, whether they still live, waiting for them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name))[1:2] == [str(pid)]:
            found.add(int(entry.name))
    return found


def running(*args: str) -> set[int]:
    """The processes that run (see :func:`alive`) with ``args`` as their command line."""
    wanted = "\0".join(args).encode() + b"\0"
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == wanted:
                found.add(int(entry.name))
        except OSError:  # it ended
            continue
    return alive(found)


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that run (neither ended nor a zombie waiting for its parent)."""
    return {pid for pid in pids if _stat(pid)[:1] not in ([], ["Z"])}


def _stat(pid: int) -> list[str]:
    """The fields of /proc/``pid``/stat after the command name (state, parent, ...); none once it ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def wait_for(
    condition: Callable[[], bool], still: Callable[[], bool] = lambda: True, timeout: float = 60
) -> None:
    """Wait until ``condition()``, failing the test once ``still()`` is false or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert still() and time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
