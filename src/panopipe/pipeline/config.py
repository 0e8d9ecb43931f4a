"""The pipeline's configuration: the ``[steps.*]`` tables, with defaults, from the catalog's version of the
project configuration when one was pushed, else from the project config file (see
:func:`panopipe.config.apply_project_config`).

``[steps.pipeline]`` holds what all steps share (:data:`PIPELINE_KEYS`). Each step has its own table,
``[steps.<name>]``, with ``enabled`` and the step's :attr:`~panopipe.steps.base.Step.parameters`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.config import ConfigKey, Settings, check_names, project_settings, settings_or_loaded
from panopipe.errors import ConfigError
from panopipe.steps.base import PipelineContext, Step
from panopipe.steps.registry import STEP_TYPES, build_steps
from panopipe.storage import open_storage

PIPELINE_TABLE = "pipeline"
DEFAULT_OUTPUT_FOLDER = "panopipe-out"
PIPELINE_KEYS = (
    ConfigKey(
        "output",
        None,
        "Storage URI (folder or s3://bucket/prefix) the steps write their outputs under: not the survey's folder "
        "nor one above it (ingest refuses a source there, exit code 2); a subfolder of the survey is fine.",
        "`[panopipe] output_prefix`, else a folder `panopipe-out` beside a SQLite catalog (or in the current "
        "folder for a database server)",
    ),
    ConfigKey("retries", 2, "Retries of a job after a transient error (busy, timed out, throttled)."),
    ConfigKey("backoff_s", 0.5, "Seconds before the first retry; doubled at each retry."),
)
"""The keys of ``[steps.pipeline]``."""


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


def pipeline_output(catalog: Catalog, settings: Settings) -> str:
    """Where outputs go: ``[steps.pipeline] output``, else ``[panopipe] output_prefix``, else :func:`default_output`."""
    output = settings.steps.get(PIPELINE_TABLE, {}).get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise ConfigError(
            f"[steps.{PIPELINE_TABLE}]: output must be a folder or an s3://BUCKET/PREFIX, got {output!r}"
        )
    return output or settings.output_prefix or default_output(catalog)


def load_pipeline(
    catalog: Catalog, settings: Settings | None = None, steps: list[str] | None = None
) -> Pipeline:
    """The pipeline configured for ``catalog`` (:func:`resolved_settings`), limited to ``steps`` if given."""
    return build_pipeline(catalog, resolved_settings(catalog, settings), steps)


def resolved_settings(catalog: Catalog, settings: Settings | None = None) -> Settings:
    """``settings`` (default: :func:`~panopipe.config.settings_or_loaded`) with the catalog's project
    configuration when one was pushed. Settings already resolved against it (``config_resolved``, as the event
    handler does once per batch) are used as they are: no second read."""
    settings = settings_or_loaded(settings)
    return settings if settings.config_resolved else project_settings(catalog, settings)


def build_pipeline(catalog: Catalog, settings: Settings, steps: list[str] | None = None) -> Pipeline:
    """The pipeline ``settings`` configure as they are (e.g. to check a file before ``config push``); planners
    use :func:`load_pipeline`."""
    tables = dict(settings.steps)
    shared = tables.pop(PIPELINE_TABLE, {})
    check_names(
        (f"steps.{name}" for name in tables), (f"steps.{name}" for name in (*STEP_TYPES, PIPELINE_TABLE))
    )
    check_names(shared, (key.name for key in PIPELINE_KEYS), section=f"steps.{PIPELINE_TABLE}")
    defaults = {key.name: key.default for key in PIPELINE_KEYS}
    retries, backoff_s = (
        shared.get("retries", defaults["retries"]),
        shared.get("backoff_s", defaults["backoff_s"]),
    )
    if type(retries) is not int or retries < 0:
        raise ConfigError(f"[steps.{PIPELINE_TABLE}]: retries must be a whole number >= 0, got {retries!r}")
    if not isinstance(backoff_s, int | float) or backoff_s < 0:
        raise ConfigError(f"[steps.{PIPELINE_TABLE}]: backoff_s must be a number >= 0, got {backoff_s!r}")
    context = PipelineContext(settings.project, pipeline_output(catalog, settings), tables, settings.qc)
    return Pipeline(context, tuple(build_steps(tables, context, steps)), retries, float(backoff_s))


def output_prefixes(pipeline: Pipeline, settings: Settings) -> tuple[str, ...]:
    """The URI prefixes panopipe writes outputs under, each ending in ``/``: the pipeline's output root and its
    steps' (publish), and the deployment's ``output_prefix`` (a project configuration may send the outputs
    elsewhere). What is there is panopipe's own output, never a survey image: ingest and the event handler
    skip it."""
    return tuple(sorted(_named_output_prefixes(pipeline, settings)))


def refuse_sources_in_outputs(sources: Iterable[str | Path], pipeline: Pipeline, settings: Settings) -> None:
    """:class:`ConfigError` if one of ``sources`` (folders, files or ``s3://`` prefixes to ingest) is one of
    :func:`output_prefixes` or lies inside one: ingest would read none of its files, taken for panopipe's own
    outputs (an output root set over the survey). An output root inside a source (``survey/panopipe-out`` of
    ``survey``) is a usual layout: its files are set apart, the others read."""
    named = _named_output_prefixes(pipeline, settings)
    for source in sources:
        uri = open_storage(source, settings).root_uri.rstrip("/") + "/"
        root = next((prefix for prefix in sorted(named) if uri.startswith(prefix)), None)
        if root is not None:
            raise ConfigError(
                f"{source} is {'' if uri == root else 'inside '}the output root {root.rstrip('/')} ({named[root]}): "
                "ingest reads no file there (panopipe's own outputs); if survey images are there, set "
                f"{named[root]} to a folder that holds none, such as a subfolder panopipe-out of the survey"
            )


def _named_output_prefixes(pipeline: Pipeline, settings: Settings) -> dict[str, str]:
    """Each of :func:`output_prefixes` and the setting that puts outputs there (``output_prefix`` where the
    pipeline's output is that too)."""
    roots = [(f"[steps.{PIPELINE_TABLE}] output", pipeline.context.output_uri)]
    roots += [(f"[steps.{step.name}] root", root) for step in pipeline.steps for root in step.output_roots()]
    roots += [("[panopipe] output_prefix", settings.output_prefix)] if settings.output_prefix else []
    return {open_storage(root, settings).root_uri.rstrip("/") + "/": name for name, root in roots}


__all__ = [
    "DEFAULT_OUTPUT_FOLDER",
    "PIPELINE_KEYS",
    "PIPELINE_TABLE",
    "Pipeline",
    "build_pipeline",
    "default_output",
    "load_pipeline",
    "output_prefixes",
    "pipeline_output",
    "refuse_sources_in_outputs",
    "resolved_settings",
]
