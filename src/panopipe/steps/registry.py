"""The known steps, in the order they run, and the worker entry point that executes one job."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from panopipe.catalog.types import utcnow
from panopipe.config import did_you_mean
from panopipe.errors import ConfigError, EndpointUnreachableError, PanopipeError, is_transient_os_error
from panopipe.steps.apply_metadata import ApplyMetadataStep
from panopipe.steps.base import JobOutcome, JobSpec, PipelineContext, Step
from panopipe.steps.derive import DeriveStep
from panopipe.steps.nadir import NadirStep
from panopipe.steps.publish import PublishStep
from panopipe.steps.stitch import StitchStep

STEP_TYPES: dict[str, type[Step]] = {
    step.name: step for step in (StitchStep, NadirStep, ApplyMetadataStep, DeriveStep, PublishStep)
}
"""Every step by name, in the order they run (each reads only steps before it)."""


def build_steps(
    tables: Mapping[str, Mapping[str, Any]], context: PipelineContext, names: list[str] | None = None
) -> list[Step]:
    """The configured steps, in run order: ``names`` if given, else those not ``enabled = false``."""
    for name in names or ():
        if name not in STEP_TYPES:
            raise ConfigError(f"unknown step {name!r}; {did_you_mean(name, STEP_TYPES)}")
    steps = []
    for name, step_type in STEP_TYPES.items():
        enabled = step_type.enabled_in(tables)  # checks every step's table, named or not
        if (name in names) if names else enabled:
            steps.append(step_type(tables.get(name, {}), context))
    return steps


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is worth retrying: flagged ``transient`` where it arose (storage
    errors) or an OSError of step code that is (busy, interrupted, timed out, reset)."""
    return any(
        getattr(cause, "transient", False) or (isinstance(cause, OSError) and is_transient_os_error(cause))
        for cause in _causes(error)
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what caused it, in turn."""
    current: BaseException | None = error
    while current is not None:
        yield current
        current = current.__cause__


def execute_job(spec: JobSpec, *, retries: int = 2, backoff_s: float = 0.5) -> JobOutcome:
    """Run one job, retrying transient errors with exponential backoff; never raises for a failed item."""
    return run_with_retries(
        lambda log: STEP_TYPES[spec.step].execute(spec.payload, log), retries=retries, backoff_s=backoff_s
    )


def run_with_retries(
    work: Callable[[Callable[[str], None]], list[Any]], *, retries: int, backoff_s: float
) -> JobOutcome:
    """Call ``work(log)`` until it succeeds, fails for good, or ``retries`` retries of transient errors ran out."""
    lines: list[str] = []
    started = utcnow()
    attempt = 0
    while True:
        attempt += 1
        try:
            outputs = work(lines.append)
        except (PanopipeError, OSError) as exc:
            error = str(exc) or type(exc).__name__
            log = getattr(exc, "log", None)  # e.g. an external tool's output
            if log:
                lines.append(log)
            if is_transient(exc) and attempt <= retries:
                lines.append(f"attempt {attempt}: transient error, retrying: {error}")
                time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            failure: Exception = exc
        except Exception as exc:  # noqa: BLE001 - the worker boundary: one bad item must not fail the batch
            error = f"unexpected {type(exc).__name__}: {exc}"
            lines.append(traceback.format_exc())
            failure = exc
        else:
            return JobOutcome("succeeded", tuple(outputs), None, "\n".join(lines), attempt, started, utcnow())
        unreachable = any(isinstance(cause, EndpointUnreachableError) for cause in _causes(failure))
        return JobOutcome("failed", (), error, "\n".join(lines), attempt, started, utcnow(), unreachable)


__all__ = ["STEP_TYPES", "build_steps", "execute_job", "is_transient", "run_with_retries"]
