"""Which executor runs jobs: the one place that turns an executor's name into an executor.

``Settings.executor`` (``PANOPIPE_EXECUTOR``, ``[panopipe] executor``, ``panopipe run --executor``) names
one of :data:`EXECUTORS`; the runner, the event handler and the CLI all build it through
:func:`build_executor`. A new executor (AWS Batch) is one more entry in the registry. This module imports
no executor until one is built, so settings can check a name cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from panopipe.errors import ConfigError

if TYPE_CHECKING:
    from panopipe.config import Settings
    from panopipe.executors.base import Executor


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    """How jobs are retried (transient errors); for a process pool, how many workers run them; for a remote
    executor, its settings and the storage URI where it keeps manifests and results (``work_uri``), or
    ``follow``: only to follow jobs submitted earlier (:meth:`~panopipe.executors.base.Executor.attach`,
    ``describe``), which needs neither where to submit nor a work root."""

    retries: int = 2
    backoff_s: float = 0.5
    workers: int | None = None
    settings: Settings | None = None
    work_uri: str | None = None
    follow: bool = False


def _local(options: ExecutorOptions) -> Executor:
    from panopipe.executors.local import LocalExecutor

    return LocalExecutor(options.workers, retries=options.retries, backoff_s=options.backoff_s)


def _inline(options: ExecutorOptions) -> Executor:
    from panopipe.executors.inline import InlineExecutor

    return InlineExecutor(retries=options.retries, backoff_s=options.backoff_s)


def _batch(options: ExecutorOptions) -> Executor:
    from panopipe.config import ENV_BATCH_JOB_DEFINITION, ENV_BATCH_JOB_QUEUE, settings_or_loaded
    from panopipe.executors.batch import BatchExecutor
    from panopipe.storage import local_path

    settings = settings_or_loaded(options.settings)
    if options.follow:  # DescribeJobs and each job's own manifest: no queue, definition or work root
        return BatchExecutor(None, None, None, settings=settings)
    queue, definition = settings.batch_job_queue, settings.batch_job_definition
    for name, env, value in (
        ("batch_job_queue", ENV_BATCH_JOB_QUEUE, queue),
        ("batch_job_definition", ENV_BATCH_JOB_DEFINITION, definition),
    ):
        if not value:
            raise ConfigError(
                f"the batch executor needs {name} ([panopipe] {name} or ${env}; `panopipe cloud status` shows "
                "the stack's JobQueueArn and JobDefinitionArn)"
            )
    work_uri = options.work_uri or ""
    if local_path(work_uri) is not None:
        raise ConfigError(
            "the batch executor's workers write to S3: set [steps.pipeline] output to an s3:// URI, not "
            f"{work_uri.removesuffix('/_batch/')!r}"
        )
    return BatchExecutor(
        queue,
        definition,
        work_uri,
        chunk_jobs=settings.batch_chunk_jobs,
        poll_interval_s=settings.batch_poll_s,
        settings=settings,
    )


def _none(options: ExecutorOptions) -> None:
    return None


_BUILDERS: dict[str, Callable[[ExecutorOptions], Executor | None]] = {
    "local": _local,
    "inline": _inline,
    "batch": _batch,
    "none": _none,
}

_WITHOUT_POOL = {
    "inline": "the inline executor runs one job at a time in this process",
    "batch": "the batch executor's containers each run a pool over their own vCPUs",
    "none": "the none executor runs no job",
}

EXECUTORS: tuple[str, ...] = tuple(_BUILDERS)
"""The executor names: ``local`` (a process pool over all cores), ``inline`` (in the calling process, one job
after the other), ``batch`` (AWS Batch array jobs; the run returns once they are submitted), ``none`` (plan
only: jobs are listed, not run)."""


def check_executor(name: str) -> str:
    """``name`` if it names an executor, else :class:`ConfigError` listing the names."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return name


RUN_EXECUTOR = "local"
"""The executor of a pipeline run when the settings name none: many jobs, a process pool over all cores."""
EVENT_EXECUTOR = "inline"
"""The executor of the event handler when the settings name none: an event's few jobs, in its process."""


def build_executor(
    name: str | None,
    *,
    default: str = RUN_EXECUTOR,
    retries: int = 2,
    backoff_s: float = 0.5,
    workers: int | None = None,
    settings: Settings | None = None,
    work_uri: str | None = None,
    follow: bool = False,
) -> Executor | None:
    """The executor ``name`` (else ``default``) names, retrying transient errors ``retries`` times from
    ``backoff_s`` seconds; ``None`` for ``none``. ``workers`` sizes the local process pool (default: one per
    core); ``settings`` configure the ``batch`` executor, which keeps manifests and results under the S3 URI
    ``work_uri``. With ``follow`` the executor only follows jobs submitted earlier (``attach``, ``describe``):
    the ``batch`` executor then needs credentials and a region, not its queue, job definition or S3 output."""
    name = check_executor(name or default)
    if workers is not None and name != "local":
        raise ConfigError(
            f"workers size the local executor's process pool; {_WITHOUT_POOL[name]}: drop --workers"
        )
    options = ExecutorOptions(retries, backoff_s, workers, settings, work_uri, follow)
    return _BUILDERS[name](options)


__all__ = [
    "EVENT_EXECUTOR",
    "EXECUTORS",
    "RUN_EXECUTOR",
    "ExecutorOptions",
    "build_executor",
    "check_executor",
]
