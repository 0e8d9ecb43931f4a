"""Where jobs run: the narrow executor interface, the executors, the one factory that picks one by name, and
the versioned JSON form jobs and their outcomes travel in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.executors.factory import (
    EVENT_EXECUTOR,
    EXECUTORS,
    RUN_EXECUTOR,
    ExecutorOptions,
    build_executor,
    check_executor,
)
from panopipe.lazy import lazy_attributes

# Names load their module on first use (PEP 562): settings check executor names through the factory without
# loading the steps that the executors run.
_MODULES = {
    "Executor": "base",
    "InlineExecutor": "inline",
    "JobState": "base",
    "JobStatus": "base",
    "LocalExecutor": "local",
    "decode_job": "codec",
    "decode_outcome": "codec",
    "encode_job": "codec",
    "encode_outcome": "codec",
}

if TYPE_CHECKING:
    from panopipe.executors.base import Executor, JobState, JobStatus
    from panopipe.executors.codec import decode_job, decode_outcome, encode_job, encode_outcome
    from panopipe.executors.inline import InlineExecutor
    from panopipe.executors.local import LocalExecutor


__getattr__ = lazy_attributes(__name__, _MODULES)


__all__ = [
    "EVENT_EXECUTOR",
    "EXECUTORS",
    "RUN_EXECUTOR",
    "Executor",
    "ExecutorOptions",
    "InlineExecutor",
    "JobState",
    "JobStatus",
    "LocalExecutor",
    "build_executor",
    "check_executor",
    "decode_job",
    "decode_outcome",
    "encode_job",
    "encode_outcome",
]
