"""Commands that read and edit the catalog: ls, show, export, edit, history, undo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from panopipe.catalog.values import INT32_MAX, parse_value
from panopipe.cli import render
from panopipe.cli.options import (
    DryRunOption,
    JsonOption,
    output_option,
    uses_catalog,
    uses_selection,
    warn_if_nothing_selected,
)
from panopipe.csv_files import read_csv
from panopipe.errors import ConfigError
from panopipe.export import LISTED_FIELDS, image_row

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
    limit: Annotated[
        int | None, typer.Option(min=0, max=INT32_MAX, help="Show at most this many images.")
    ] = None,
    offset: Annotated[int, typer.Option(min=0, max=INT32_MAX, help="Skip this many images first.")] = 0,
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
    if not as_json and "id" in columns:  # people read and type short ids; scripts get full ones
        shown = catalog.short_ids([row["id"] for row in rows])
        rows = [{**row, "id": shown[row["id"]]} for row in rows]
    render.print_rows(rows, columns, as_json=as_json)
    if not as_json:
        render.stderr.print(f"{len(rows)} image(s)")
    for name in catalog.unknown_names(selection):  # a mistyped reel or shot, whatever the others select
        render.warn(name.describe())
    if not rows and (hint := catalog.swapped_hint(selection)):  # coordinates the other way round
        render.warn(hint)


@uses_catalog
def show(
    catalog: Catalog,
    settings: Settings,
    image_id: Annotated[
        str, typer.Argument(help="Image id (the full id or the short id `ls` shows), or a rig shot's id.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show everything the catalog holds for one image (edited fields are marked), with each `panopipe qc`
    flag's measured value and what it means (--json: objects with flag, value, detail, qc_version, run); or,
    given a rig shot's id, its panorama (position, time, status, published files) and its frames.

    Example: panopipe show 2b7c5d1e

    Example: panopipe show R001-000042
    """
    from panopipe.catalog import Selection

    image = catalog.shot_or_image(image_id)
    if isinstance(image, Selection):
        _show_shot(catalog, settings, image, as_json=as_json)
        return
    fields = {"id": image.id, "short_id": catalog.short_ids([image.id])[image.id], **image.to_dict()}
    found = catalog.flags_of(image.id)
    fields["flags"] = (
        [{k: v for k, v in flag.to_dict().items() if k != "image_id"} for flag in found]
        if as_json
        else [flag.describe() for flag in found]
    )
    render.print_fields(fields, as_json=as_json, marked=image.edited_fields)


def _show_shot(catalog: Catalog, settings: Settings, shot: Selection, *, as_json: bool) -> None:
    from panopipe.export import load_panoramas

    found = load_panoramas(catalog, shot, settings)
    fields = found[0].row() if found else {"id": shot.shots[0], "kind": "shot"}
    frames = list(catalog.images(shot))
    # people read and type short ids; scripts get full ones
    shown = {f.id: f.id for f in frames} if as_json else catalog.short_ids([f.id for f in frames])
    rows = [{"camera_index": f.camera_index, "id": shown[f.id], "uri": f.uri} for f in frames]
    if as_json:
        render.print_fields(fields | {"frames": rows}, as_json=True)
        return
    render.print_fields(fields, as_json=False)
    render.print_rows(rows, ("camera_index", "id", "uri"), as_json=False, title="frames")
    if not found and not frames:
        render.warn(
            "no panorama is made of this shot: its frames' files were removed (`panopipe verify` lists the "
            "outputs left)"
        )
    elif not found:
        render.warn("no panorama is made of this shot: an edit excluded its frames (`qc --fix` thinning)")


@uses_selection
@uses_catalog
def export(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    export_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv, geojson, gpkg (GeoPackage) or oid (ArcGIS Oriented Imagery). Default: what the --output "
            "file's extension names (.csv, .geojson or .json, .gpkg); csv on stdout.",
        ),
    ] = None,
    of: Annotated[
        str | None,
        typer.Option(
            "--of",
            help="images (default); panoramas: shots and 360° images with their outputs; sequences: a line "
            "per run of capture.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        output_option("--output", "-o", help="File to write (default, or -: stdout)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="URL the publish root is served under (https://...).")
    ] = None,
    camera_height: Annotated[
        float | None,
        typer.Option(
            "--camera-height", min=0, max=1000, help="oid: camera metres above ground (default: rig mount)."
        ),
    ] = None,
) -> None:
    """Export images, panoramas with their published files, or sequences as lines, for QGIS or ArcGIS
    (docs/exports.md).

    Example: panopipe export --reel R001 -o r001.geojson

    Example: panopipe export --of sequences -o coverage.gpkg

    Example: panopipe export --of panoramas -o panoramas.gpkg

    Example: panopipe export --format oid --base-url https://cdn.example.com/survey -o oid.csv
    """
    from panopipe.export import ExportOptions, write_export

    options = ExportOptions(of, export_format, base_url, camera_height)
    # a typo is an error: the file it would have replaced with an empty one is left as it was
    warn_if_nothing_selected(catalog, selection, mistakes_stop="nothing exported")
    result = write_export(catalog, options, sys.stdout, output=output, selection=selection, settings=settings)
    skipped = f", {result.left_out} left out (no position or image yet)" if result.left_out else ""
    where = f" to {', '.join(map(str, result.files))}" if result.files else ""
    kept = f" (its other layers kept: {', '.join(result.kept)})" if result.kept else ""
    render.stderr.print(
        f"exported {result.count} {result.subject[:-1]}(s){where}{kept}{skipped}", soft_wrap=True
    )


def _assignments(values: list[str]) -> dict[str, object]:
    assigned: dict[str, object] = {}
    for text in values:
        field, sep, value = text.partition("=")
        if not sep:
            raise ConfigError(f"invalid --set {text!r}: expected FIELD=VALUE, e.g. alt=12.5")
        value = parse_value(field.strip(), value.strip())
        if assigned.get(field.strip(), value) != value:
            raise ConfigError(f"--set gives {field.strip()} two values: give one")
        assigned[field.strip()] = value
    return assigned


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
        list[str] | None,
        typer.Option("--set", help="FIELD=VALUE on every selected image (repeatable); FIELD= clears it."),
    ] = None,
    shift_time: Annotated[
        str | None, typer.Option("--shift-time", help="Move capture times, e.g. +2s.")
    ] = None,
    positions: Annotated[
        Path | None,
        typer.Option(
            "--positions",
            help="CSV: reel,frame (every camera of the frame; or add camera_index), id or uri, then fields "
            "(a blank cell sets nothing).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    track: Annotated[
        Path | None,
        typer.Option(
            "--track",
            help="GPX, or CSV with columns time,lat,lon[,alt,gps_accuracy_m,heading]: each selected image "
            "placed on it by its capture time (after --shift-time).",
        ),
    ] = None,
    max_gap: Annotated[
        float,
        typer.Option(
            "--max-gap", min=0, max=86400, help="With --track: seconds between track points not bridged."
        ),
    ] = 10.0,
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

    Example: panopipe edit --reel R001 --track ppk.gpx --shift-time -1.5s --reason "PPK track, clock fix"
    """
    from panopipe.catalog.edits import NOTHING_TO_CHANGE, current_author
    from panopipe.geotag import parse_time_shift

    shift_time_s = parse_time_shift(shift_time) if shift_time else None
    per_image, not_placed = None, None
    if track is not None and (positions is not None or assign):
        raise ConfigError("--track places images by time: make --positions or --set an edit of its own")
    if positions is not None:
        per_image = catalog.resolve_keys(read_csv(positions)[1])
    elif selection.selects_all and not (every or dry_run):
        _confirm_every_image()
    if track is not None:
        per_image, not_placed = _placed_on_track(catalog, settings, selection, track, max_gap, shift_time_s)
        shift_time_s = None  # the track edit carries the moved times
    changes = catalog.plan_edit(
        selection, assign=_assignments(assign or []), shift_time_s=shift_time_s, per_image=per_image
    )
    rows = change_rows(changes)
    placed = {"not_placed": not_placed} if track else {}
    if not changes and not dry_run:  # an edit run again is no error: nothing to store
        render.warn(NOTHING_TO_CHANGE)
        if as_json:
            render.print_json({"batch": None, "dry_run": False, "changes": []} | placed)
        return
    if dry_run:
        if as_json:  # the shape of the edit's own output, no batch made
            render.print_json({"batch": None, "dry_run": True, "changes": rows} | placed)
        else:
            render.print_rows(rows, CHANGE_FIELDS, as_json=False, title="would change (dry run)")
            render.stderr.print(f"dry run: would make {_counted(changes)}; nothing stored")
        return
    with render.progress_bar("editing") as progress:
        batch = catalog.apply_edit(
            changes,
            reason=reason,
            author=current_author(),
            progress=progress,
            shot_tolerance_s=settings.ingest.shot_tolerance_s,
        )
    if as_json:
        render.print_json({"batch": batch, "dry_run": False, "changes": rows} | placed)
    else:
        render.success(f"edit {batch}: {_counted(changes)}")


def _counted(changes: list[FieldChange]) -> str:
    return f"{len(changes)} change(s) on {len({c.image_id for c in changes})} image(s)"


def _placed_on_track(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    path: Path,
    max_gap_s: float,
    shift_time_s: float | None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``edit --track``: values per image, and the images the track cannot place (warned about here, with the
    placement's other warnings)."""
    from panopipe.geotag import camera_yaws, read_track, track_edit

    track = read_track(path)
    if track.skipped:
        render.warn(
            f"{track.skipped} point(s) of {path} left out: without a time or a position, or at the time of "
            "an earlier point"
        )
    yaws = camera_yaws(catalog, settings) if "heading" in track.values else {}
    placed = track_edit(
        catalog, selection, track, max_gap_s=max_gap_s, shift_time_s=shift_time_s or 0, camera_yaws=yaws
    )
    for message in placed.warnings():
        render.warn(message)
    return placed.per_image, [item.to_dict() for item in placed.not_placed]


def _confirm_every_image() -> None:
    question = "No filter selects images: edit every image in the catalog?"
    if not (sys.stdin.isatty() and typer.confirm(question)):
        raise ConfigError(
            "no filter selects images (--id, --reel, --shot, --since, --bbox...): "
            "pass --all to edit every image, or --dry-run to see what would change"
        )


BATCH_FIELDS = ("batch", "created_at", "author", "reason", "images", "fields", "changes", "undone_at")
DETAIL_FIELDS = (
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


@uses_catalog
def history(
    catalog: Catalog,
    settings: Settings,
    image_id: Annotated[
        str | None, typer.Argument(help="Only edits of this image (full or short id).")
    ] = None,
    batch: Annotated[str | None, typer.Option(help="Only this edit batch (full or short id).")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="One row per image and field changed.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the edit batches, oldest first: one line each with who, when, why, and how many images and
    fields; `panopipe undo BATCH` takes the batch shown.

    Example: panopipe history --detail --batch 2b7c5d1e
    """
    if detail or batch is not None:
        rows = [e.to_dict() for e in catalog.history(image_id=image_id, batch=batch)]
        columns: tuple[str, ...] = DETAIL_FIELDS
    else:
        rows = [b.to_dict() for b in catalog.edit_batches(image_id=image_id)]
        columns = BATCH_FIELDS
    if not as_json:
        batches = catalog.short_batch_ids([row["batch"] for row in rows])
        images = catalog.short_ids([row["image_id"] for row in rows]) if detail or batch else {}
        rows = [{**row, "batch": batches[row["batch"]]} | _short_image(row, images) for row in rows]
    render.print_rows(rows, columns, as_json=as_json)
    if not rows and not as_json:
        render.stderr.print(
            "no edits" + (" of this image" if image_id else "") + ": `panopipe edit` makes one"
        )


def _short_image(row: dict[str, object], shown: dict[str, str]) -> dict[str, object]:
    return {"image_id": shown[str(row["image_id"])]} if "image_id" in row else {}


@uses_catalog
def undo(
    catalog: Catalog,
    settings: Settings,
    batch: Annotated[str, typer.Argument(help="The edit batch to revert: as `panopipe history` shows it.")],
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Revert one edit batch; later edits of the same fields stay in force.

    Example: panopipe undo 9f3c04e1 --dry-run
    """
    from panopipe.catalog.edits import current_author

    with render.progress_bar("undoing") as progress:
        changes = catalog.undo(
            batch,
            author=current_author(),
            dry_run=dry_run,
            progress=progress,
            shot_tolerance_s=settings.ingest.shot_tolerance_s,
        )
    rows = change_rows(changes)
    if as_json:  # one shape with or without --dry-run: the batch undone, and what it restores
        render.print_json({"batch": batch, "dry_run": dry_run, "changes": rows})
    elif dry_run:
        render.print_rows(rows, CHANGE_FIELDS, as_json=False, title="would restore (dry run)")
        render.stderr.print(f"dry run: would restore {len(changes)} value(s); nothing stored")
    else:
        render.success(f"undid edit {batch}: {len(changes)} value(s) restored")


__all__ = [
    "BATCH_FIELDS",
    "CHANGE_FIELDS",
    "DETAIL_FIELDS",
    "TABLE_FIELDS",
    "change_rows",
    "edit",
    "export",
    "history",
    "ls",
    "show",
    "undo",
]
