"""The local executor: a pool of processes over all cores. Jobs and outcomes cross to and from the worker
processes in their JSON form (:mod:`panopipe.executors.codec`), as they would to any remote worker."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from functools import partial
from typing import Any

from panopipe.catalog.types import utcnow
from panopipe.errors import ConfigError, Terminated
from panopipe.executors.base import Executor, JobState
from panopipe.executors.codec import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.parent_watch import PARENT_POLL_S, exit_with_parent
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
_job_running = threading.Event()
_row: tuple[Any, int] | None = None  # this worker process's row of its pool's _Started


class _Started:
    """Which job each process of one pool started last, for the pool's parent to read once a process died:
    a row per process, its pid and 1 + the number of the job it started last, negated once it ended (0: none
    yet). A process claims a row when it starts; it writes its job's number without a lock (one aligned
    8-byte store), so that a process killed at any moment never leaves a lock held."""

    def __init__(self, workers: int) -> None:
        self.rows = multiprocessing.Array("q", 2 * workers)

    def claim(self) -> None:
        global _row
        with self.rows.get_lock():
            rows: Any = self.rows.get_obj()
            index = next((i for i in range(0, len(rows), 2) if rows[i] == 0), None)
            if index is not None:
                rows[index] = os.getpid()
                _row = (rows, index)

    def last_jobs(self) -> dict[int, int]:
        """The number of the job each process started last, by pid."""
        rows: Any = self.rows.get_obj()
        return {rows[i]: abs(rows[i + 1]) - 1 for i in range(0, len(rows), 2) if rows[i] and rows[i + 1]}

    def running(self, pids: Collection[int | None]) -> bool:
        """Whether one of the processes ``pids`` runs a job."""
        rows: Any = self.rows.get_obj()
        return any(rows[i] in pids and rows[i + 1] > 0 for i in range(0, len(rows), 2))


def start_worker_process(started: _Started | None = None) -> None:
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

    ``started`` (the local executor's) is told which job the process starts, each time.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(STOP_SIGNAL, _stop_job)
    exit_with_parent(_stop_before_exit)
    if started is not None:
        started.claim()
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _KEPT_BLOCK)
    mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE)


def _stop_job(signum: int, frame: object) -> None:
    if _job_running.is_set():
        raise Terminated


def _stop_before_exit() -> None:
    """Stop the job this process runs, and give it the time to remove its temporary files."""
    os.kill(os.getpid(), STOP_SIGNAL)
    time.sleep(PARENT_POLL_S)


def _execute_encoded(job: str, number: int, *, retries: int, backoff_s: float) -> str:
    """The worker side: run the encoded job (``number`` in its pool's :class:`_Started`), answer the encoded
    outcome."""
    rows, index = _row or ([0, 0], 0)  # no row: a process started without one (not by LocalExecutor)
    rows[index + 1] = number + 1
    _job_running.set()
    try:
        return encode_outcome(execute_job(decode_job(job), retries=retries, backoff_s=backoff_s))
    finally:
        _job_running.clear()
        rows[index + 1] = -number - 1


class LocalExecutor(Executor):
    """Run jobs in ``workers`` processes (default: one per core), retrying transient errors in the worker.

    A worker process that dies (killed, out of memory) breaks the pool: a new one runs the jobs that had not
    finished. The job whose outcome died with the process is charged an attempt (of ``retries + 1``; it fails
    "worker died" once it has none left); the others, never started or stopped by the breakage, are not.
    A pool that broke with no job's outcome lost (a process killed while idle, during a run or between two, or
    one that could not start) is started again too, up to ``retries`` times in a row with no job ending: then
    its jobs that had not finished fail "worker died" (a process that cannot start would otherwise break pool
    after pool).
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, retries: int = 2, backoff_s: float = 0.5) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.workers = workers or os.cpu_count() or 1
        self.retries, self.backoff_s = retries, backoff_s
        self._pool: ProcessPoolExecutor | None = None
        self._started: _Started | None = None
        self._futures: dict[str, Future[str]] = {}
        self._jobs: dict[str, tuple[int, str]] = {}  # by handle: its number and encoded job, to run it again
        self._handles: list[str] = []  # by number
        self._deaths: dict[str, list[str]] = {}  # by handle: how each worker process that ran it died
        self._ended: list[str] = []  # handles of the jobs that ended since finished() last reported them
        self._broken: list[str] = []  # handles of the jobs whose pool broke before they ended
        self._idle_breaks = 0  # breakages that lost no job's outcome
        self._ending = threading.Condition()

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        for job in jobs:
            self._jobs[job.id] = (len(self._handles), encode_job(job))
            self._handles.append(job.id)
        self._start([job.id for job in jobs])
        return [job.id for job in jobs]

    def _start(self, handles: Sequence[str]) -> None:
        if not handles:
            return
        if self._pool is None:
            self._started = _Started(self.workers)
            self._pool = ProcessPoolExecutor(
                self.workers, initializer=start_worker_process, initargs=(self._started,)
            )
        for handle in handles:
            number, job = self._jobs[handle]
            future: Future[str]
            try:
                future = self._pool.submit(
                    _execute_encoded,
                    job,
                    number,
                    retries=self.retries - len(self._deaths.get(handle, ())),
                    backoff_s=self.backoff_s,
                )
            except BrokenProcessPool as broken:  # it broke while idle: mended as if it had broken running it
                future = Future()
                future.set_exception(broken)
            self._futures[handle] = future
            future.add_done_callback(partial(self._end, handle))

    def _end(self, handle: str, future: Future[str]) -> None:
        broken = not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
        with self._ending:
            (self._broken if broken else self._ended).append(handle)
            if not future.cancelled() and future.exception() is None:
                self._idle_breaks = 0  # its processes can start and run jobs
            self._ending.notify_all()

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        self._mend()
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
        deaths = self._deaths.get(handle, [])
        retried = "".join(f"attempt {n}: worker died ({how}), retrying\n" for n, how in enumerate(deaths, 1))
        if error is not None:  # its worker process died (killed, out of memory) as often as it may
            now = utcnow()
            reason = f"worker died: {deaths[-1]}" if deaths else f"worker died: {error}"
            return JobState(
                handle, "failed", JobOutcome("failed", (), reason, retried, max(len(deaths), 1), now, now)
            )
        outcome = decode_outcome(future.result())
        if deaths:
            outcome = replace(outcome, log=retried + outcome.log, attempts=outcome.attempts + len(deaths))
        return JobState(handle, outcome.status, outcome)

    def _mend(self) -> None:
        """If the pool broke: charge an attempt to the jobs whose outcome died with a worker process, and run
        the jobs that had not finished on a new pool (see the class)."""
        with self._ending:
            if not self._broken or self._pool is None or self._started is None:
                return
        pool, started = self._pool, self._started
        processes = list((pool._processes or {}).values())
        # the jobs left running are stopped (their outcomes would be lost), their temporary files removed
        self._stop_jobs(lambda: not started.running({p.pid for p in processes if p.exitcode is None}))
        died = {p.pid: p.exitcode for p in processes if p.exitcode not in (None, 0)}
        # what the broken pool's manager waits for: since Python 3.12 it sends SIGTERM only, which they ignore
        self._signal_workers(signal.SIGKILL)
        pool.shutdown(wait=True)  # once its manager has failed every job it held
        self._pool, last_jobs = None, started.last_jobs()
        with self._ending:
            broken, self._broken = self._broken, []
        lost = {self._handles[last_jobs[pid]]: code for pid, code in died.items() if pid in last_jobs}
        charged = [handle for handle in broken if handle in lost]
        for handle in charged:
            self._deaths.setdefault(handle, []).append(_how_it_died(lost[handle]))
        self._idle_breaks += not charged
        restart = bool(charged) or self._idle_breaks <= self.retries
        again = [h for h in broken if restart and len(self._deaths.get(h, ())) <= self.retries]
        self._start(again)
        with self._ending:
            self._ended += [handle for handle in broken if handle not in again]
            self._ending.notify_all()

    def finished(self, handles: Collection[str]) -> list[JobState]:
        """The jobs among ``handles`` that ended since the last call, each reported once: only the jobs that
        ended are looked at (describing every unfinished handle at each end made a run of n jobs cost about
        n² / 2 looks: 22 s of the parent's CPU for 8,000 jobs)."""
        self._mend()
        with self._ending:
            ended = [handle for handle in self._ended if handle in handles]
            if ended:
                self._ended = [handle for handle in self._ended if handle not in handles]
        return [self._state(handle) for handle in ended]

    def wait(self, handles: Collection[str]) -> None:
        """Return as soon as one of ``handles`` has ended unreported (a sleeping poll would leave the last
        job's end unseen for up to ``poll_interval_s``), at most after ``poll_interval_s``."""
        with self._ending:
            self._ending.wait_for(
                lambda: self._broken or any(h in handles for h in self._ended), self.poll_interval_s
            )

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
        if self._pool is not None and not self._stop_jobs(
            lambda: all(f.done() for f in self._futures.values())
        ):
            self._signal_workers(signal.SIGKILL)
        self._release()

    def _stop_jobs(self, stopped: Callable[[], bool]) -> bool:
        """Stop the jobs of the pool's processes with :data:`STOP_SIGNAL` until ``stopped()``; False if that took
        longer than :data:`STOP_GRACE_S`."""
        deadline = time.monotonic() + STOP_GRACE_S
        while not stopped():
            if time.monotonic() > deadline:
                return False
            # again and again: a worker may take a job queued in the pipe to it after the signal
            self._signal_workers(STOP_SIGNAL)
            with self._ending:
                self._ending.wait(self.poll_interval_s)
        return True

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
        self._jobs.clear()
        self._handles.clear()
        self._deaths.clear()
        self._ended.clear()
        self._broken.clear()


def _how_it_died(exitcode: int) -> str:
    if exitcode == -signal.SIGKILL:
        return "killed by SIGKILL: out of memory?"
    return f"killed by signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"


__all__ = ["STOP_GRACE_S", "STOP_SIGNAL", "LocalExecutor", "start_worker_process"]
