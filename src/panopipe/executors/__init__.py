"""Where jobs run: the narrow executor interface and the local process pool."""

from panopipe.executors.base import Executor, JobState, JobStatus
from panopipe.executors.local import LocalExecutor

__all__ = ["Executor", "JobState", "JobStatus", "LocalExecutor"]
