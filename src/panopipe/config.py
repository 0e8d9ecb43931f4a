"""Settings: one object, read from a project config file, the environment and the catalog.

Precedence, highest first: explicit arguments (command-line options), environment variables, the project
config file (``panopipe.toml`` in the current folder, or the file named by ``PANOPIPE_CONFIG``), defaults.

The *project-wide* part (``[panopipe] project``, ``[ingest]``, ``[steps.*]``: what decides the outputs) comes
from the catalog once a version was pushed there (``panopipe config push``): :func:`apply_project_config` is the
one place that decides it, and a local file that differs is reported, never used. The rest (catalog, AWS,
executor) is the machine's own.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panopipe.errors import ConfigError
from panopipe.executors.factory import check_executor
from panopipe.locations import url_scheme

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, ConfigVersion

ENV_CATALOG = "PANOPIPE_CATALOG"
ENV_CONFIG = "PANOPIPE_CONFIG"
ENV_S3_ENDPOINT_URL = "PANOPIPE_S3_ENDPOINT_URL"
ENV_AWS_REGION = "AWS_REGION"
ENV_AWS_PROFILE = "AWS_PROFILE"
ENV_OUTPUT_PREFIX = "PANOPIPE_OUTPUT_PREFIX"
ENV_BUCKETS = "PANOPIPE_BUCKETS"
ENV_EXECUTOR = "PANOPIPE_EXECUTOR"
ENV_BATCH_JOB_QUEUE = "PANOPIPE_BATCH_JOB_QUEUE"
ENV_BATCH_JOB_DEFINITION = "PANOPIPE_BATCH_JOB_DEFINITION"
ENV_BATCH_CHUNK_JOBS = "PANOPIPE_BATCH_CHUNK_JOBS"
ENV_BATCH_POLL_S = "PANOPIPE_BATCH_POLL_S"
ENV_MANIFEST = "PANOPIPE_MANIFEST"
"""The manifest a worker job runs a chunk of (set by the ``batch`` executor when it submits)."""
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"

DEFAULT_CATALOG = "panopipe.db"
DEFAULT_CONFIG_FILE = "panopipe.toml"
SECTIONS = ("panopipe", "ingest", "steps", "qc")
"""The tables of the project config file."""
DEFAULT_BATCH_SIZE = 50_000
"""Rows per ``COPY`` and commit when a catalog moves to PostgreSQL (here, so the CLI reads it without psycopg)."""
PROJECT_SECTIONS = ("ingest", "steps", "qc")
"""The tables of the project-wide configuration stored in the catalog, besides ``[panopipe] project``."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of a config table: its default and meaning (the configuration reference is made of these).

    ``default_text`` says what a computed default is (e.g. "beside the catalog") where ``default`` is ``None``.
    """

    name: str
    default: Any
    help: str
    default_text: str | None = None


def config_key(default: Any, help: str, default_text: str | None = None) -> Any:
    """A dataclass field with ``default`` whose metadata holds its help (for :func:`declared_keys`)."""
    return field(default=default, metadata={"help": help, "default_text": default_text})


def declared_keys(cls: type) -> tuple[ConfigKey, ...]:
    """The keys of the dataclass ``cls`` that have help (its config keys), with their defaults."""
    return tuple(
        ConfigKey(f.name, f.default, f.metadata["help"], f.metadata["default_text"])
        for f in fields(cls)
        if "help" in f.metadata
    )


@dataclass(frozen=True)
class IngestRules:
    """How reel, frame, camera index and shot are derived from where a file lives.

    ``path_pattern`` is a regular expression matched (with ``re.search``) against the file's path relative to
    the ingested folder, with ``/`` separators. Its named groups ``reel``, ``frame`` and ``camera`` fill those
    fields. Frames of one reel captured by different cameras within ``shot_tolerance_s`` seconds of each other
    form one shot.
    """

    path_pattern: str = config_key(
        r"(?:^|/)(?P<reel>[^/]+)/(?:cam(?:era)?[_-]?(?P<camera>\d+)/)?[^/]*?(?P<frame>\d+)\.(?i:jpe?g)$",
        "Regular expression searched in each file's path (relative, `/` separators); its named groups "
        "`reel`, `frame` and `camera` fill those fields.",
    )
    shot_tolerance_s: float = config_key(
        0.05, "Frames of one reel from different cameras within this many seconds form one shot."
    )


@dataclass(frozen=True)
class Settings:
    """Every setting panopipe reads. Build it with :func:`load_settings`."""

    catalog: str = config_key(DEFAULT_CATALOG, "The catalog: a SQLite file path or a postgresql:// URL.")
    s3_endpoint_url: str | None = config_key(
        None,
        "S3 endpoint for MinIO or moto's server: `http://HOST:PORT`, no path.",
        "AWS's endpoint for the region",
    )
    aws_region: str | None = config_key(None, "AWS region.", "boto3's default (profile, environment)")
    aws_profile: str | None = config_key(None, "AWS profile of ~/.aws/config.", "boto3's default")
    project: str = config_key(
        "panopipe",
        "Project name, written into outputs and publish names.",
    )
    output_prefix: str | None = config_key(
        None,
        "Storage URI where pipeline outputs go when `[steps.pipeline] output` is not set; events under it are "
        "ignored.",
        "see `[steps.pipeline] output`",
    )
    buckets: tuple[str, ...] = config_key(
        (),
        "The buckets whose events the event handler accepts (a list, or comma-separated in the environment).",
        "every bucket",
    )
    executor: str | None = config_key(
        None,
        "Where jobs run: `local` (a process pool), `inline` (in this process), `batch` (AWS Batch) or `none` (plan only).",
        "`local` for `panopipe run`, `inline` for the event handler",
    )
    batch_job_queue: str | None = config_key(
        None, "The AWS Batch job queue of the `batch` executor (the stack's `JobQueueArn` output)."
    )
    batch_job_definition: str | None = config_key(
        None, "The worker job definition of the `batch` executor (the stack's `JobDefinitionArn` output)."
    )
    batch_chunk_jobs: int = config_key(
        200, "Jobs per array child of the `batch` executor: a few minutes of work."
    )
    batch_poll_s: float = config_key(
        15.0, "Seconds between two looks at AWS Batch while `panopipe run --wait` follows."
    )
    ingest: IngestRules = field(default_factory=IngestRules)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    qc: dict[str, Any] = field(default_factory=dict)
    """The ``[qc]`` table: thresholds of ``panopipe qc``, checked and defaulted by :mod:`panopipe.qc.settings`."""
    config_file: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)
    """Where each ``[panopipe]`` key set here came from (``file``, ``environment``, ``option``); others: default."""
    local_project: dict[str, Any] | None = None
    """The project-wide part of the config file as written (see :func:`project_content`), ``None``: no file."""
    config_version: int | None = None
    """The catalog's version of the project configuration that ``project``, ``ingest`` and ``steps`` hold."""
    config_resolved: bool = False
    """Whether these settings were resolved against the catalog's project configuration (``config_version``
    ``None``: the catalog had none), so that planners use them as they are, without reading it again."""


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
    except UnicodeDecodeError as exc:  # tomllib reads UTF-8 only; an editor may have saved UTF-16
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from None


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
    for name, value in data.items():
        if name not in SECTIONS and not isinstance(value, dict):
            raise ConfigError(_outside_sections(name))
    check_names(data, SECTIONS)
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name} must be a table: write [{name}] on a line of its own, then its keys")


def _outside_sections(name: str) -> str:
    """The error for a key ``name`` written before any table, naming the tables that have such a key."""
    from panopipe.config_reference import tables  # every table's keys; it imports the steps, so only here

    homes = [f"[{table}]" for table, keys in tables().items() if name in {key.name for key in keys}]
    where = f" (a key of {', '.join(homes)})" if homes else ""
    sections = ", ".join(f"[{section}]" for section in sorted(SECTIONS))
    return f"key {name!r} outside any section{where}; expected the sections {sections}"


ENVIRONMENT = {
    "catalog": ENV_CATALOG,
    "s3_endpoint_url": ENV_S3_ENDPOINT_URL,
    "aws_region": ENV_AWS_REGION,
    "aws_profile": ENV_AWS_PROFILE,
    "output_prefix": ENV_OUTPUT_PREFIX,
    "buckets": ENV_BUCKETS,
    "executor": ENV_EXECUTOR,
    "batch_job_queue": ENV_BATCH_JOB_QUEUE,
    "batch_job_definition": ENV_BATCH_JOB_DEFINITION,
    "batch_chunk_jobs": ENV_BATCH_CHUNK_JOBS,
    "batch_poll_s": ENV_BATCH_POLL_S,
}
"""The environment variable of each ``[panopipe]`` key that has one."""


def stored_form(project: Mapping[str, Any]) -> dict[str, Any]:
    """A project configuration as the catalog stores it (JSON): what a pushed version is compared with, value
    by value (``20`` is ``20.0``, as ``config push`` finds it)."""
    return dict(json.loads(json.dumps(project, ensure_ascii=False, sort_keys=True, default=str)))


def project_content(data: dict[str, Any]) -> dict[str, Any]:
    """The project-wide part of a config file's ``data``: ``[panopipe] project``, ``[ingest]``, ``[steps.*]``."""
    content = {name: data[name] for name in PROJECT_SECTIONS if data.get(name)}
    if "project" in data.get("panopipe", {}):
        content["panopipe"] = {"project": data["panopipe"]["project"]}
    return content


def _check_types(section: str, table: dict[str, Any], cls: type) -> None:
    """A :class:`ConfigError` for a value of ``table`` (a config table as TOML gives it) that is not of the
    type ``cls`` declares for its key: text where text is expected, a number of 0 or more for a float."""
    for key in fields(cls):
        if key.name not in table:
            continue
        value, kind = table[key.name], str(key.type)
        if kind in ("str", "str | None") and (not isinstance(value, str) or not value):
            raise ConfigError(f"[{section}]: {key.name} must be text, not empty, got {value!r}")
        if kind == "float" and (
            isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
        ):
            raise ConfigError(f"[{section}]: {key.name} must be a number, 0 or more, got {value!r}")


PATH_KEYS = (
    ("panopipe", "catalog"),
    ("panopipe", "output_prefix"),
    ("steps", "pipeline", "output"),
    ("steps", "publish", "root"),
    ("steps", "nadir", "logo"),
)
"""The keys of a config file whose value may be a path: a relative one is relative to the file's folder."""


def _resolve_paths(data: dict[str, Any], folder: Path) -> None:
    """Make the relative paths of :data:`PATH_KEYS` in ``data`` (a config file's) relative to ``folder``
    instead of the current folder; URLs, absolute paths and values that are not text stay as they are."""
    for *tables, key in PATH_KEYS:
        table = data
        for name in tables:
            nested = table.get(name)
            table = nested if isinstance(nested, dict) else {}
        value = table.get(key)
        if isinstance(value, str) and value and value != ":memory:" and url_scheme(value) is None:
            table[key] = os.path.normpath(os.path.join(folder.absolute(), os.path.expanduser(value)))


def _positive(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` (a number, or the text of one from the environment) as a ``kind`` above zero."""
    try:
        number = kind(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number <= 0 or (kind is int and isinstance(value, float)):
        raise ConfigError(f"{name} must be a {'whole ' if kind is int else ''}number above 0, got {value!r}")
    return number


def config_path(config_file: str | Path | None = None) -> Path:
    """The config file that applies: ``config_file``, else the one ``$PANOPIPE_CONFIG`` names, else
    ``./panopipe.toml`` (which may not exist)."""
    return Path(config_file or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_FILE)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (or the default file if present), the environment and ``overrides``.

    ``overrides`` whose value is ``None`` are ignored, so command-line options can be passed straight through.
    """
    path = config_path(config_file)
    explicit = config_file is not None or ENV_CONFIG in os.environ
    data = _from_file(path) if explicit or path.exists() else {}
    try:
        _check_tables(data)
        panopipe_section = data.get("panopipe", {})
        check_names(
            panopipe_section,
            {key.name for key in declared_keys(Settings)},
            section="panopipe",
        )
        check_names(data.get("ingest", {}), {k.name for k in declared_keys(IngestRules)}, section="ingest")
        _check_types("panopipe", panopipe_section, Settings)
        _check_types("ingest", data.get("ingest", {}), IngestRules)
        _resolve_paths(data, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    values: dict[str, Any] = dict(panopipe_section)
    origins = dict.fromkeys(panopipe_section, "file")
    if "ingest" in data:
        values["ingest"] = IngestRules(**data["ingest"])
    for table in ("steps", "qc"):
        if table in data:
            values[table] = data[table]
    env = {key: os.environ.get(name) for key, name in ENVIRONMENT.items()}
    for origin, given in (("environment", {k: v for k, v in env.items() if v}), ("option", overrides)):
        given = {k: v for k, v in given.items() if v is not None}
        values.update(given)
        origins.update(dict.fromkeys(given, origin))
    if isinstance(values.get("buckets"), str | list):
        names = values["buckets"].split(",") if isinstance(values["buckets"], str) else values["buckets"]
        values["buckets"] = tuple(name.strip() for name in names if name.strip())
    if values.get("executor") is not None:
        check_executor(values["executor"])
    for name, kind in (("batch_chunk_jobs", int), ("batch_poll_s", float)):
        if name in values:
            values[name] = _positive(name, values[name], kind)
    local = project_content(data) if data else None
    settings = Settings(config_file=path if data else None, origins=origins, local_project=local)
    return replace(settings, **values)


def settings_or_loaded(settings: Settings | None) -> Settings:
    """``settings`` when given, else :func:`load_settings` (the environment, and ``$PANOPIPE_CONFIG`` or
    ``./panopipe.toml``, as a command without ``--config`` reads them): what a library call given no settings
    uses, the one fallback."""
    return settings if settings is not None else load_settings()


_reported: set[tuple[str, ...]] = set()
"""The differences already reported (catalog, file, version): once per process, not at every planning."""


def apply_project_config(
    settings: Settings, stored: ConfigVersion | None, *, report: bool = True
) -> Settings:
    """The one decision of which project configuration applies: the catalog's version ``stored`` when there is
    one, else ``settings`` as loaded (the local file and defaults).

    A local file whose project-wide part differs from ``stored`` is reported once (with ``report``: a warning
    logged on ``panopipe.config``), and not used.
    """
    if stored is None:
        return settings if settings.config_resolved else replace(settings, config_resolved=True)
    if stored.version == settings.config_version:
        return settings
    local = settings.local_project
    where = str(settings.config_file or "the local configuration")
    seen = (settings.catalog, where, str(stored.version))
    if report and local and stored_form(local) != stored.content and seen not in _reported:
        _reported.add(seen)
        log.warning(
            "%s differs from the project configuration in the catalog (version %d), which applies: "
            "`panopipe config show` shows it, `panopipe config push` stores the file's",
            where,
            stored.version,
        )
    content = stored.content
    try:  # pushed by a newer panopipe, say: name the version
        check_names(content, (*PROJECT_SECTIONS, "panopipe"))
        check_names(content.get("ingest", {}), {k.name for k in declared_keys(IngestRules)}, section="ingest")
        _check_types("panopipe", content.get("panopipe", {}), Settings)
        _check_types("ingest", content.get("ingest", {}), IngestRules)
    except ConfigError as exc:
        raise ConfigError(f"project configuration version {stored.version} in the catalog: {exc}") from None
    return replace(
        settings,
        project=content.get("panopipe", {}).get("project", Settings.project),
        ingest=IngestRules(**content.get("ingest", {})),
        steps=content.get("steps", {}),
        qc=content.get("qc", {}),
        config_version=stored.version,
        config_resolved=True,
    )


def project_settings(catalog: Catalog, settings: Settings) -> Settings:
    """``settings`` with the project configuration that applies to ``catalog`` (see :func:`apply_project_config`)."""
    applied = apply_project_config(settings, catalog.project_config())
    source = f"catalog version {applied.config_version}" if applied.config_version else "the local file"
    log.debug("project configuration from %s", source)
    return applied


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CATALOG",
    "DEFAULT_CONFIG_FILE",
    "ENVIRONMENT",
    "ENV_AWS_PROFILE",
    "ENV_AWS_REGION",
    "ENV_BATCH_CHUNK_JOBS",
    "ENV_BATCH_JOB_DEFINITION",
    "ENV_BATCH_JOB_QUEUE",
    "ENV_BATCH_POLL_S",
    "ENV_BUCKETS",
    "ENV_CATALOG",
    "ENV_CONFIG",
    "ENV_EXECUTOR",
    "ENV_LAMBDA_FUNCTION_NAME",
    "ENV_MANIFEST",
    "ENV_OUTPUT_PREFIX",
    "ENV_S3_ENDPOINT_URL",
    "PATH_KEYS",
    "PROJECT_SECTIONS",
    "SECTIONS",
    "ConfigKey",
    "IngestRules",
    "Settings",
    "apply_project_config",
    "check_names",
    "config_key",
    "config_path",
    "declared_keys",
    "did_you_mean",
    "load_settings",
    "project_content",
    "project_settings",
    "settings_or_loaded",
    "stored_form",
]
