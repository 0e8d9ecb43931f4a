"""What the store's modules share: which artifact of a step is its primary one, the key column of a subject
kind, and which steps a change of the images makes stale."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.schema import artifacts
from panopipe.catalog.subjects import SubjectKind
from panopipe.steps.base import Step
from panopipe.steps.registry import STEP_TYPES


@functools.lru_cache(maxsize=256)
def primary_conditions(
    step: str, params_hash: str | None = None, table: sa.Table | sa.Alias = artifacts
) -> tuple[sa.ColumnElement[bool], ...]:
    """Conditions for the primary artifact of ``step`` (made with ``params_hash``, when given) in ``table``;
    built once (SQL expressions are immutable), as every plan asks for the same ones."""
    conditions = [table.c.step == step, table.c.name == STEP_TYPES[step].outputs[0]]
    if params_hash is not None:
        conditions.append(table.c.params_hash == params_hash)
    return tuple(conditions)


def subject_key(table: sa.Table | sa.Alias, kind: SubjectKind) -> sa.ColumnElement[Any]:
    """The column of ``table`` (artifacts, or an alias of it) that holds a subject's key: shot or image id."""
    return table.c.shot if kind == "shot" else table.c.image_id


def reads_images(step: Step, kind: SubjectKind) -> bool:
    """Whether ``step`` reads the images of a subject of ``kind`` (their metadata, or their files when it has no
    upstream step), so that their change (an edit, a new file) since its output was made or last found up to
    date makes it a candidate (:func:`~panopipe.pipeline.store.candidates`) and the output outdated
    (:func:`~panopipe.pipeline.store.stored_outputs`); the other steps follow their upstream's output only."""
    return bool(step.reads) or step.upstream(kind) is None


__all__ = ["primary_conditions", "reads_images", "subject_key"]
