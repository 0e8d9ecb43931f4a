"""The pipeline's configuration: the ``[steps.*]`` tables of the project config file, with defaults.

``[steps.pipeline]`` holds what all steps share: ``output`` (the storage URI outputs go to; default a folder
``panopipe-out`` beside a SQLite catalog, or in the current folder for a database server), ``retries`` and
``backoff_s`` (for transient errors). Each step has its own table, ``[steps.<name>]``, with ``enabled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.config import Settings, check_names
from panopipe.errors import ConfigError
from panopipe.steps.base import PipelineContext, Step
from panopipe.steps.registry import STEP_TYPES, build_steps

PIPELINE_TABLE = "pipeline"
DEFAULT_OUTPUT_FOLDER = "panopipe-out"
_PIPELINE_KEYS = frozenset({"output", "retries", "backoff_s"})


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The configured steps, in run order, and how jobs are retried."""

    context: PipelineContext
    steps: tuple[Step, ...]
    retries: int = 2
    backoff_s: float = 0.5

    def output_roots(self) -> tuple[str, ...]:
        """The roots panopipe writes under: the pipeline's output and those of its steps (e.g. publish)."""
        return (self.context.output_uri, *(root for step in self.steps for root in step.output_roots()))


def default_output(catalog: Catalog) -> str:
    """``panopipe-out`` beside a SQLite catalog's file, else in the current folder."""
    return str((catalog.folder or Path.cwd()) / DEFAULT_OUTPUT_FOLDER)


def load_pipeline(
    catalog: Catalog, settings: Settings | None = None, steps: list[str] | None = None
) -> Pipeline:
    """The pipeline configured by ``settings`` (default: empty settings), limited to ``steps`` if given."""
    settings = settings or Settings()
    tables = dict(settings.steps)
    shared = tables.pop(PIPELINE_TABLE, {})
    check_names(
        (f"steps.{name}" for name in tables), (f"steps.{name}" for name in (*STEP_TYPES, PIPELINE_TABLE))
    )
    check_names(shared, _PIPELINE_KEYS, section=f"steps.{PIPELINE_TABLE}")
    retries, backoff_s = shared.get("retries", 2), shared.get("backoff_s", 0.5)
    if type(retries) is not int or retries < 0:
        raise ConfigError(f"[steps.{PIPELINE_TABLE}]: retries must be a whole number >= 0, got {retries!r}")
    if not isinstance(backoff_s, int | float) or backoff_s < 0:
        raise ConfigError(f"[steps.{PIPELINE_TABLE}]: backoff_s must be a number >= 0, got {backoff_s!r}")
    context = PipelineContext(settings.project, str(shared.get("output") or default_output(catalog)), tables)
    return Pipeline(context, tuple(build_steps(tables, context, steps)), retries, float(backoff_s))


__all__ = ["DEFAULT_OUTPUT_FOLDER", "PIPELINE_TABLE", "Pipeline", "default_output", "load_pipeline"]
