"""The project configuration in the catalog: what a push would change, pushing it, and the effective values
with where each came from (``panopipe config push|show|history``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from panopipe.catalog import Catalog, ConfigVersion, mask_location
from panopipe.config import (
    IngestRules,
    Settings,
    apply_project_config,
    check_names,
    declared_keys,
    stored_form,
)
from panopipe.errors import ConfigError
from panopipe.pipeline.config import PIPELINE_KEYS, PIPELINE_TABLE, build_pipeline, pipeline_output
from panopipe.qc.settings import QcSettings
from panopipe.steps.registry import STEP_TYPES

PROJECT_WIDE = frozenset({"project"})
"""The ``[panopipe]`` keys that are project-wide (stored in the catalog); the others are the machine's own."""


@dataclass(frozen=True, slots=True)
class Change:
    """One key a push changes: its value in the catalog's current version and in the file (``None``: absent)."""

    key: str
    old: Any
    new: Any

    def line(self) -> str:
        """``+ key = new``, ``- key = old`` or ``~ key: old -> new``."""
        if self.old is None:
            return f"+ {self.key} = {_text(self.new)}"
        if self.new is None:
            return f"- {self.key} = {_text(self.old)}"
        return f"~ {self.key}: {_text(self.old)} -> {_text(self.new)}"


@dataclass(frozen=True, slots=True)
class PushPlan:
    """What ``config push`` would store: the file's project configuration and how it differs from ``current``."""

    source: str
    content: dict[str, Any]
    current: ConfigVersion | None
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """One effective setting, as ``section.key``, and where its value came from."""

    key: str
    value: Any
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "origin": self.origin}


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def flatten(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of ``document``; a list of tables or lists (a rig's cameras) is
    flattened by index (``cameras[0]``, ``cameras[4].pitch_deg``), a list of values is a leaf."""
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(item, Mapping | list) for item in value):
            for index, item in enumerate(value):
                yield from flatten({f"{key}[{index}]": item}, prefix)
        else:
            yield f"{prefix}{key}", value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    """The keys whose values differ between ``old`` and ``new``, sorted."""
    before, after = dict(flatten(old)), dict(flatten(new))
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return tuple(Change(k, before.get(k), after.get(k)) for k in keys)


def check_config_file(settings: Settings) -> None:
    """:class:`~panopipe.errors.ConfigError` for the first unknown table or key of the ``[steps.*]`` and
    ``[qc]`` tables of ``settings``' config file, or a ``[qc]`` value out of range: a typo there would
    otherwise show only when a command reads the table, and ``config show`` would list the default as
    applying."""
    content = settings.local_project or {}
    steps = content.get("steps", {})
    known = {PIPELINE_TABLE: [key.name for key in PIPELINE_KEYS]}
    known |= {name: [*step.config_keys, "enabled"] for name, step in STEP_TYPES.items()}
    try:
        check_names((f"steps.{name}" for name in steps), (f"steps.{name}" for name in known))
        for name, table in steps.items():
            if isinstance(table, Mapping):
                check_names(table, known[name], section=f"steps.{name}")
        QcSettings.from_config(content.get("qc", {}))
    except ConfigError as exc:
        raise ConfigError(f"{settings.config_file}: {exc}") from None


def plan_push(catalog: Catalog, settings: Settings) -> PushPlan:
    """What pushing the project configuration of ``settings``' file would change; the file is checked first
    (a :class:`~panopipe.errors.ConfigError` names what is wrong, and nothing is stored)."""
    if settings.config_file is None or settings.local_project is None:
        raise ConfigError("no project config file to push: create ./panopipe.toml or give --config FILE")
    build_pipeline(catalog, replace(settings, config_version=None))
    QcSettings.from_config(settings.qc)  # what `qc`, `config show` and `export` read from the pushed version
    current = catalog.project_config()
    content = stored_form(settings.local_project)
    changes = diff(current.content if current else {}, content)
    return PushPlan(str(settings.config_file), content, current, changes)


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """The settings that apply, and the catalog's version they hold (``None``: no version, the file applies)."""

    stored: ConfigVersion | None
    values: list[ConfigValue]

    def source(self) -> str:
        """One line: where the project-wide values come from."""
        if self.stored is None:
            return "no version in the catalog: project-wide values come from the local file (`panopipe config push`)"
        v = self.stored
        return f"project-wide values: catalog version {v.version}, pushed by {v.author} at {v.created_at:%Y-%m-%d %H:%M} UTC: {v.reason}"


def effective(catalog: Catalog, settings: Settings, version: int | None = None) -> EffectiveConfig:
    """Every setting that applies to ``catalog`` (with catalog version ``version`` instead of the newest) and
    where its value came from: ``default``, ``catalog version N``, ``file``, ``environment`` or ``option``.
    A password in the catalog's URL is shown as ``***``."""
    stored = catalog.project_config(version)
    applied = apply_project_config(settings, stored, report=version is None)
    source = f"catalog version {stored.version}" if stored else "file"
    content = stored.content if stored else (settings.local_project or {})

    def project_origin(*path: str) -> str:
        table: Any = content
        for part in path:
            if not isinstance(table, Mapping) or part not in table:
                return "default"
            table = table[part]
        return source

    values = [
        ConfigValue(
            f"panopipe.{key.name}",
            mask_location(applied.catalog) if key.name == "catalog" else getattr(applied, key.name),
            project_origin("panopipe", key.name)
            if key.name in PROJECT_WIDE
            else applied.origins.get(key.name, "default"),
        )
        for key in declared_keys(Settings)
    ]
    values += [
        ConfigValue(
            f"ingest.{key.name}", getattr(applied.ingest, key.name), project_origin("ingest", key.name)
        )
        for key in declared_keys(IngestRules)
    ]
    qc = QcSettings.from_config(applied.qc)
    values += [
        ConfigValue(f"qc.{key.name}", getattr(qc, key.name), project_origin("qc", key.name))
        for key in declared_keys(QcSettings)
    ]
    tables = applied.steps
    steps = ((n, (s.enabled_key(), *s.parameters)) for n, s in STEP_TYPES.items())
    for table, keys in ((PIPELINE_TABLE, PIPELINE_KEYS), *steps):
        given = tables.get(table, {})
        values += [
            ConfigValue(
                f"steps.{table}.{key.name}",
                given.get(key.name, key.default),
                project_origin("steps", table, key.name),
            )
            for key in keys
        ]
    output = next(v for v in values if v.key == f"steps.{PIPELINE_TABLE}.output")
    if output.value is None:  # the output that applies, from [panopipe] output_prefix or beside the catalog
        values[values.index(output)] = ConfigValue(
            output.key, pipeline_output(catalog, applied), applied.origins.get("output_prefix", "default")
        )
    flat = [
        ConfigValue(key, leaf, value.origin)
        for value in values
        for key, leaf in (flatten({value.key: value.value}) if value.value else [(value.key, value.value)])
    ]
    return EffectiveConfig(stored, flat)


__all__ = [
    "PROJECT_WIDE",
    "Change",
    "ConfigValue",
    "EffectiveConfig",
    "PushPlan",
    "check_config_file",
    "diff",
    "effective",
    "flatten",
    "plan_push",
]
