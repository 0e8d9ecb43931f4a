"""The local executor: a pool of processes over all cores. Jobs and outcomes cross to and from the worker
processes in their JSON form (:mod:`panopipe.executors.codec`), as they would to any remote worker."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial

from panopipe.catalog.types import utcnow
from panopipe.errors import ConfigError, Terminated
from panopipe.executors.base import Executor, JobState
from panopipe.executors.codec import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.steps.registry import execute_job

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_KEPT_BLOCK = 32 << 20  # glibc's largest mmap threshold on 64-bit systems
_KEPT_FREE = 64 << 20
STOP_SIGNAL = signal.SIGUSR1
"""What stops the job a worker process runs (it ends cancelled, its temporary files removed); ignored between
jobs."""
STOP_GRACE_S = 5.0
"""Seconds the jobs still running get to stop when the pool closes, before their processes are killed."""
PARENT_POLL_S = 0.5
"""How often a worker process looks whether the process that started it is still there."""
_job_running = threading.Event()


def start_worker_process() -> None:
    """Prepare the process that runs jobs: what each of the pool's processes does first.

    Ctrl-C and SIGTERM reach the whole process group (a terminal, ``timeout``, systemd): they are ignored,
    the parent decides what to cancel and stops the running jobs with :data:`STOP_SIGNAL`. Once the process
    that started it is gone (the run, or under the forkserver start method the server, which ends with the
    run: killed, nothing would record an outcome), the worker stops its job and exits within about a second.
    The run's own pid is not compared: under forkserver (Python 3.14's default on Linux) it is not the
    worker's parent.

    Freed memory of up to 32 MiB per block, 64 MiB in all, is kept for the next job: by default glibc
    maps each block above 128 KiB afresh and returns it when freed, so a step that allocates the same
    multi-megabyte arrays job after job (a decoded image, a filter's float planes) faults every page in
    again each time, about 1,300 page faults and 3.5 ms of a 25 ms thumbnail (``bench/README.md``, issue
    15). Larger arrays (a stitched panorama) are still mapped and returned. Without glibc's ``mallopt``
    (macOS) memory is left as it is; musl's ``mallopt`` does nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(STOP_SIGNAL, _stop_job)
    threading.Thread(target=_exit_without, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _KEPT_BLOCK)
    mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE)


def _stop_job(signum: int, frame: object) -> None:
    if _job_running.is_set():
        raise Terminated


def _exit_without(parent: int) -> None:
    """Wait until the process ``parent`` is gone (this process then has another parent), then stop the job
    and exit."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), STOP_SIGNAL)
    time.sleep(PARENT_POLL_S)  # for the job to remove its temporary files
    os._exit(1)


def _execute_encoded(job: str, *, retries: int, backoff_s: float) -> str:
    """The worker side: run the encoded job, answer the encoded outcome."""
    _job_running.set()
    try:
        return encode_outcome(execute_job(decode_job(job), retries=retries, backoff_s=backoff_s))
    finally:
        _job_running.clear()


class LocalExecutor(Executor):
    """Run jobs in ``workers`` processes (default: one per core), retrying transient errors in the worker."""

    name = "local"

    def __init__(self, workers: int | None = None, *, retries: int = 2, backoff_s: float = 0.5) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.workers = workers or os.cpu_count() or 1
        self._run = partial(_execute_encoded, retries=retries, backoff_s=backoff_s)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[str, Future[str]] = {}
        self._ended: list[str] = []  # handles of the jobs that ended since finished() last reported them
        self._ending = threading.Condition()

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, initializer=start_worker_process)
        for job in jobs:
            future = self._pool.submit(self._run, encode_job(job))
            self._futures[job.id] = future
            future.add_done_callback(partial(self._end, job.id))
        return [job.id for job in jobs]

    def _end(self, handle: str, future: Future[str]) -> None:
        with self._ending:
            self._ended.append(handle)
            self._ending.notify_all()

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        return [self._state(handle) for handle in handles]

    def _state(self, handle: str) -> JobState:
        future = self._futures[handle]
        if future.cancelled():
            return JobState(handle, "cancelled")
        if not future.done():
            return JobState(handle, "running" if future.running() else "queued")
        error = future.exception()
        if isinstance(error, Terminated):  # stopped by STOP_SIGNAL
            return JobState(handle, "cancelled")
        if error is not None:  # the worker process died (killed, out of memory): the job did not finish
            now = utcnow()
            return JobState(
                handle, "failed", JobOutcome("failed", (), f"worker died: {error}", "", 1, now, now)
            )
        outcome = decode_outcome(future.result())
        return JobState(handle, outcome.status, outcome)

    def finished(self, handles: Collection[str]) -> list[JobState]:
        """The jobs among ``handles`` that ended since the last call, each reported once: only the jobs that
        ended are looked at (describing every unfinished handle at each end made a run of n jobs cost about
        n² / 2 looks: 22 s of the parent's CPU for 8,000 jobs)."""
        with self._ending:
            ended = [handle for handle in self._ended if handle in handles]
            if ended:
                self._ended = [handle for handle in self._ended if handle not in handles]
        return [self._state(handle) for handle in ended]

    def wait(self, handles: Collection[str]) -> None:
        """Return as soon as one of ``handles`` has ended unreported (a sleeping poll would leave the last
        job's end unseen for up to ``poll_interval_s``), at most after ``poll_interval_s``."""
        with self._ending:
            self._ending.wait_for(lambda: any(h in handles for h in self._ended), self.poll_interval_s)

    def cancel(self, handles: Sequence[str]) -> None:
        for handle in handles:
            self._futures[handle].cancel()

    def abandon(self) -> None:
        """Stop the worker processes now: jobs still running end without an outcome (a worker stopped by
        SIGTERM leaves them to its next attempt)."""
        self._signal_workers(signal.SIGKILL)  # not SIGTERM: workers ignore it
        self._release()

    def close(self) -> None:
        """Stop the jobs still running (:data:`STOP_SIGNAL`, then SIGKILL after :data:`STOP_GRACE_S`: nothing
        would record their outcomes), then the worker processes."""
        for future in self._futures.values():
            future.cancel()
        deadline = time.monotonic() + STOP_GRACE_S
        while self._pool is not None and not all(f.done() for f in self._futures.values()):
            if time.monotonic() > deadline:
                self._signal_workers(signal.SIGKILL)
                break
            # again and again: a worker may take a job queued in the pipe to it after the signal
            self._signal_workers(STOP_SIGNAL)
            with self._ending:
                self._ending.wait(self.poll_interval_s)
        self._release()

    def _signal_workers(self, signum: int) -> None:
        if self._pool is not None:
            # ProcessPoolExecutor has no public way to reach its processes (kill_workers: Python 3.14).
            for process in list((self._pool._processes or {}).values()):
                if process.pid is not None and process.exitcode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signum)

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()
        self._ended.clear()


__all__ = ["PARENT_POLL_S", "STOP_GRACE_S", "STOP_SIGNAL", "LocalExecutor", "start_worker_process"]
