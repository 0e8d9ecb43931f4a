"""Worker processes that end with the process that started them: one killed (``kill -9``, the out-of-memory
killer) leaves no worker behind, reading files or holding gigabytes, that nothing would ever ask for a result."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

PARENT_POLL_S = 0.5
"""How often a worker process looks whether the process that started it is still there."""


def exit_with_parent(before_exit: Callable[[], None] | None = None) -> None:
    """Exit this process within about :data:`PARENT_POLL_S` of the process that started it being gone (this
    process then has another parent), after ``before_exit``: call it first in a worker process (a
    ``ProcessPoolExecutor`` initializer). Only the parent is compared: under the forkserver start method the
    process that made the pool is not the worker's parent, the server is, and it ends with that process."""
    parent = os.getppid()
    threading.Thread(
        target=_exit_without, args=(parent, before_exit), name="parent-watch", daemon=True
    ).start()


def _exit_without(parent: int, before_exit: Callable[[], None] | None) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    if before_exit is not None:
        before_exit()
    os._exit(1)


__all__ = ["PARENT_POLL_S", "exit_with_parent"]
