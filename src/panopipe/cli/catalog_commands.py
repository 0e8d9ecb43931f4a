"""Commands that read and edit the catalog: ls, show, export, edit, history, undo."""

from __future__ import annotations

import contextlib
import csv
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.catalog.values import parse_value
from panopipe.cli import render
from panopipe.cli.options import DryRunOption, JsonOption, uses_catalog, uses_selection, writable_file
from panopipe.errors import ConfigError
from panopipe.export import LISTED_FIELDS, image_row, write_csv, write_geojson

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, FieldChange, Selection
    from panopipe.config import Settings

TABLE_FIELDS = (
    "id",
    "reel",
    "frame",
    "camera_index",
    "shot",
    "captured_at",
    "lat",
    "lon",
    "alt",
    "heading",
    "status",
)


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()] if text else []


def _fields(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from panopipe.config import did_you_mean

    fields = tuple(_names(text)) or default
    for name in fields:
        if name not in LISTED_FIELDS:
            raise ConfigError(f"unknown field {name!r} in --fields; {did_you_mean(name, LISTED_FIELDS)}")
    return fields


@uses_selection
@uses_catalog
def ls(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    as_json: JsonOption = False,
    limit: Annotated[int | None, typer.Option(min=0, help="Show at most this many images.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many images first.")] = 0,
    sort: Annotated[
        str | None,
        typer.Option(help="Order by these fields, comma-separated; -field descending.", show_default=False),
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option(help="Show these fields, comma-separated (e.g. id,uri,alt).", show_default=False),
    ] = None,
) -> None:
    """List images with their effective metadata.

    Example: panopipe ls --reel R001 --since 2024-05-01T00:00:00Z --bbox 11.0,48.0,11.1,48.1 --json

    Example: panopipe ls --sort=-captured_at --limit 20 --fields id,uri,captured_at,alt
    """
    columns = _fields(fields, LISTED_FIELDS if as_json else TABLE_FIELDS)
    images = catalog.images(selection, limit=limit, offset=offset, sort=_names(sort))
    rows = [image_row(image) for image in images]
    render.print_rows(rows, columns, as_json=as_json)
    if not as_json:
        render.stderr.print(f"{len(rows)} image(s)")


@uses_catalog
def show(
    catalog: Catalog,
    settings: Settings,
    image_id: Annotated[str, typer.Argument(help="Image id or a unique prefix of it.")],
    as_json: JsonOption = False,
) -> None:
    """Show everything the catalog holds for one image (edited fields are marked).

    Example: panopipe show 0190f3a2
    """
    image = catalog.get(image_id)
    render.print_fields(image.to_dict(), as_json=as_json, marked=image.edited_fields)


@uses_selection
@uses_catalog
def export(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    export_format: Annotated[str, typer.Option("--format", help="csv or geojson.")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: stdout).", callback=writable_file),
    ] = None,
) -> None:
    """Export effective metadata as CSV or GeoJSON for QGIS or ArcGIS.

    Example: panopipe export --format geojson --reel R001 -o r001.geojson
    """
    writers = {"csv": write_csv, "geojson": write_geojson}
    if export_format not in writers:
        raise ConfigError(f"unknown --format {export_format!r}: use csv or geojson")
    target = output.open("w", encoding="utf-8", newline="") if output else contextlib.nullcontext(sys.stdout)
    with target as out:
        count = writers[export_format](catalog.images(selection), out)
    render.stderr.print(f"exported {count} image(s)" + (f" to {output}" if output else ""))


def _assignments(values: list[str]) -> dict[str, object]:
    assigned: dict[str, object] = {}
    for text in values:
        field, sep, value = text.partition("=")
        if not sep:
            raise ConfigError(f"invalid --set {text!r}: expected FIELD=VALUE, e.g. alt=12.5")
        assigned[field.strip()] = parse_value(field.strip(), value.strip())
    return assigned


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * units[unit]
            except ValueError:
                break
    raise ConfigError(f"invalid --shift-time {text!r}: expected e.g. +2s, -1.5s, 250ms, +1h")


CHANGE_FIELDS = ("id", "field", "old", "new")


def change_rows(changes: list[FieldChange]) -> list[dict[str, object]]:
    """Field changes as rows of :data:`CHANGE_FIELDS`."""
    return [{"id": c.image_id, "field": c.field, "old": c.old, "new": c.new} for c in changes]


@uses_selection
@uses_catalog
def edit(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the edit history.")],
    assign: Annotated[
        list[str] | None, typer.Option("--set", help="FIELD=VALUE on every selected image (repeatable).")
    ] = None,
    shift_time: Annotated[
        str | None, typer.Option("--shift-time", help="Move capture times, e.g. +2s.")
    ] = None,
    positions: Annotated[
        Path | None,
        typer.Option("--positions", help="CSV naming images by id, uri or reel+frame, with fields."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Edit every image: needed when no filter selects images.")
    ] = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Override metadata without touching the files; undo with `panopipe undo BATCH`.

    Without a filter (--reel, --id...) or --positions, an edit changes every image: pass --all (or confirm on
    a terminal).

    Example: panopipe edit --reel R001 --set alt=12.5 --reason "RTK altitude" --dry-run

    Example: panopipe edit --positions fixed.csv --reason "post-processed GNSS"
    """
    per_image = None
    if positions is not None:
        with positions.open(newline="", encoding="utf-8-sig") as handle:
            per_image = catalog.resolve_keys(csv.DictReader(handle))
    elif selection.selects_all and not (every or dry_run):
        _confirm_every_image()
    changes = catalog.plan_edit(
        selection,
        assign=_assignments(assign or []),
        shift_time_s=_seconds(shift_time) if shift_time else None,
        per_image=per_image,
    )
    rows = change_rows(changes)
    if dry_run:
        render.print_rows(rows, CHANGE_FIELDS, as_json=as_json, title="would change (dry run)")
        return
    batch = catalog.apply_edit(changes, reason=reason, author=getpass.getuser())
    if as_json:
        render.print_json({"batch": batch, "changes": rows})
    else:
        render.success(
            f"edit {batch}: {len(changes)} change(s) on {len({c.image_id for c in changes})} image(s)"
        )


def _confirm_every_image() -> None:
    question = "No filter selects images: edit every image in the catalog?"
    if not (sys.stdin.isatty() and typer.confirm(question)):
        raise ConfigError(
            "no filter selects images (--id, --reel, --shot, --since, --bbox...): "
            "pass --all to edit every image, or --dry-run to see what would change"
        )


@uses_catalog
def history(
    catalog: Catalog,
    settings: Settings,
    image_id: Annotated[str | None, typer.Argument(help="Only this image (id or prefix).")] = None,
    batch: Annotated[str | None, typer.Option(help="Only this edit batch.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show recorded edits, oldest first.

    Example: panopipe history 0190f3a2
    """
    rows = [e.to_dict() for e in catalog.history(image_id=image_id, batch=batch)]
    columns = (
        "batch",
        "image_id",
        "field",
        "old_value",
        "new_value",
        "author",
        "reason",
        "created_at",
        "undone_at",
    )
    render.print_rows(rows, columns, as_json=as_json)


@uses_catalog
def undo(
    catalog: Catalog,
    settings: Settings,
    batch: Annotated[str, typer.Argument(help="The edit batch to revert (see `panopipe history`).")],
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Revert one edit batch; later edits of the same fields stay in force.

    Example: panopipe undo 0190f3a2-7c1e-7a31-9f00-2b7c5d1e4f11 --dry-run
    """
    changes = catalog.undo(batch, author=getpass.getuser(), dry_run=dry_run)
    rows = change_rows(changes)
    if dry_run:
        render.print_rows(rows, CHANGE_FIELDS, as_json=as_json, title="would restore (dry run)")
    elif as_json:
        render.print_json({"batch": batch, "changes": rows})
    else:
        render.success(f"undid edit {batch}: {len(changes)} value(s) restored")


__all__ = ["CHANGE_FIELDS", "TABLE_FIELDS", "change_rows", "edit", "export", "history", "ls", "show", "undo"]
