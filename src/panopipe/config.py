"""Settings: one object, read from a project config file and the environment.

Precedence, highest first: explicit arguments (command-line options), environment variables, the project
config file (``panopipe.toml`` in the current folder, or the file named by ``PANOPIPE_CONFIG``), defaults.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from panopipe.errors import ConfigError
from panopipe.executors.factory import check_executor

ENV_CATALOG = "PANOPIPE_CATALOG"
ENV_CONFIG = "PANOPIPE_CONFIG"
ENV_S3_ENDPOINT_URL = "PANOPIPE_S3_ENDPOINT_URL"
ENV_AWS_REGION = "AWS_REGION"
ENV_AWS_PROFILE = "AWS_PROFILE"
ENV_OUTPUT_PREFIX = "PANOPIPE_OUTPUT_PREFIX"
ENV_BUCKETS = "PANOPIPE_BUCKETS"
ENV_EXECUTOR = "PANOPIPE_EXECUTOR"
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"

DEFAULT_CATALOG = "panopipe.db"
DEFAULT_CONFIG_FILE = "panopipe.toml"
SECTIONS = ("panopipe", "ingest", "steps", "qc")
"""The tables of the project config file."""
DEFAULT_BATCH_SIZE = 50_000
"""Rows per ``COPY`` and commit when a catalog moves to PostgreSQL (here, so the CLI reads it without psycopg)."""


@dataclass(frozen=True)
class IngestRules:
    """How reel, frame, camera index and shot are derived from where a file lives.

    ``path_pattern`` is a regular expression matched (with ``re.search``) against the file's path relative to
    the ingested folder, with ``/`` separators. Its named groups ``reel``, ``frame`` and ``camera`` fill those
    fields. Frames of one reel captured by different cameras within ``shot_tolerance_s`` seconds of each other
    form one shot.
    """

    path_pattern: str = (
        r"(?:^|/)(?P<reel>[^/]+)/(?:cam(?:era)?[_-]?(?P<camera>\d+)/)?[^/]*?(?P<frame>\d+)\.jpe?g$"
    )
    shot_tolerance_s: float = 0.05


@dataclass(frozen=True)
class Settings:
    """Every setting panopipe reads. Build it with :func:`load_settings`."""

    catalog: str = DEFAULT_CATALOG
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_profile: str | None = None
    project: str = "panopipe"
    output_prefix: str | None = None
    """Storage URI where pipeline outputs go (``[steps.pipeline] output`` wins); events under it are ignored."""
    buckets: tuple[str, ...] = ()
    """The buckets whose events the handler accepts; empty accepts every bucket."""
    executor: str | None = None
    """Where jobs run (:data:`~panopipe.executors.EXECUTORS`: ``local`` process pool, ``inline``, ``none`` to
    plan only); unset: ``local`` for ``panopipe run``, ``inline`` for the event handler."""
    ingest: IngestRules = field(default_factory=IngestRules)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    qc: dict[str, Any] = field(default_factory=dict)
    """The ``[qc]`` table: thresholds of ``panopipe qc``, checked and defaulted by :mod:`panopipe.qc.settings`."""
    config_file: Path | None = None


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def check_names(names: Iterable[str], known: Iterable[str], *, section: str | None = None) -> None:
    """Raise :class:`ConfigError` for the first of ``names`` that is not ``known``, suggesting the closest known
    one: keys of the table ``[section]``, or table names when ``section`` is ``None``."""
    choices = sorted(known)
    show = (lambda n: f"[{n}]") if section is None else repr
    what = "section" if section is None else f"key in [{section}]"
    for name in sorted(set(names) - set(choices)):
        raise ConfigError(f"unknown {what}: {show(name)}; {did_you_mean(name, choices, show)}")


def did_you_mean(name: str, choices: Iterable[str], show: Callable[[str], str] = repr) -> str:
    """``did you mean X?`` with the choice closest to ``name`` (difflib), else the list of choices."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {show(close[0])}?" if close else f"expected {', '.join(map(show, choices))}"


def _check_tables(data: dict[str, Any]) -> None:
    check_names(data, SECTIONS)
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name} must be a table: write [{name}] on a line of its own, then its keys")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (or the default file if present), the environment and ``overrides``.

    ``overrides`` whose value is ``None`` are ignored, so command-line options can be passed straight through.
    """
    path = Path(config_file or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_FILE)
    explicit = config_file is not None or ENV_CONFIG in os.environ
    data = _from_file(path) if explicit or path.exists() else {}
    try:
        _check_tables(data)
        panopipe_section = data.get("panopipe", {})
        check_names(
            panopipe_section,
            {f.name for f in fields(Settings)} - {"ingest", "steps", "qc", "config_file"},
            section="panopipe",
        )
        check_names(data.get("ingest", {}), {f.name for f in fields(IngestRules)}, section="ingest")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    values: dict[str, Any] = dict(panopipe_section)
    if "ingest" in data:
        values["ingest"] = IngestRules(**data["ingest"])
    for table in ("steps", "qc"):
        if table in data:
            values[table] = data[table]
    env = {
        "catalog": os.environ.get(ENV_CATALOG),
        "s3_endpoint_url": os.environ.get(ENV_S3_ENDPOINT_URL),
        "aws_region": os.environ.get(ENV_AWS_REGION),
        "aws_profile": os.environ.get(ENV_AWS_PROFILE),
        "output_prefix": os.environ.get(ENV_OUTPUT_PREFIX),
        "buckets": os.environ.get(ENV_BUCKETS),
        "executor": os.environ.get(ENV_EXECUTOR),
    }
    values.update({k: v for k, v in env.items() if v})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("buckets"), str | list):
        names = values["buckets"].split(",") if isinstance(values["buckets"], str) else values["buckets"]
        values["buckets"] = tuple(name.strip() for name in names if name.strip())
    if values.get("executor") is not None:
        check_executor(values["executor"])
    settings = Settings(config_file=path if data else None)
    return replace(settings, **values)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CATALOG",
    "DEFAULT_CONFIG_FILE",
    "ENV_AWS_PROFILE",
    "ENV_AWS_REGION",
    "ENV_BUCKETS",
    "ENV_CATALOG",
    "ENV_CONFIG",
    "ENV_EXECUTOR",
    "ENV_LAMBDA_FUNCTION_NAME",
    "ENV_OUTPUT_PREFIX",
    "ENV_S3_ENDPOINT_URL",
    "SECTIONS",
    "IngestRules",
    "Settings",
    "check_names",
    "did_you_mean",
    "load_settings",
]
