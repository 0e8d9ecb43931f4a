"""The ``qc`` command: check reel tracks, flag what is wrong, propose fixes as one edit batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.catalog_commands import CHANGE_FIELDS, change_rows
from panopipe.cli.options import (
    DryRunOption,
    JsonOption,
    uses_catalog,
    uses_selection,
    warn_if_nothing_selected,
)

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, Selection
    from panopipe.config import Settings

SUMMARY_FIELDS = (
    "reel",
    "frames",
    "gps-outlier",
    "duplicate",
    "stationary",
    "sequence-break",
    "null-island",
    "time-backwards",
    "no-position",
    "poor-accuracy",
    "time_mode",
    "messages",
)


@uses_selection
@uses_catalog
def qc(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix", help="Also move outliers onto the track and thin time-mode reels: one edit batch."
        ),
    ] = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Check each reel's GPS track and flag outliers, near-duplicates, stationary runs, sequence breaks,
    positions near 0,0 and clocks going backwards (thresholds: [qc] in panopipe.toml, see docs/qc.md).

    A rerun replaces the flags of the images it checks. List flagged images with `panopipe ls --flag NAME`.

    Example: panopipe qc --reel R001

    Example: panopipe qc --fix --dry-run --json
    """
    from panopipe.catalog.edits import current_author
    from panopipe.config import project_settings
    from panopipe.qc import QcSettings, run_qc

    warn_if_nothing_selected(catalog, selection)
    with render.progress_bar("qc") as progress:
        report = run_qc(
            catalog,
            selection,
            QcSettings.from_config(project_settings(catalog, settings).qc),
            fix=fix,
            dry_run=dry_run,
            author=current_author(),
            progress=progress,
        )
    reels = [summary.to_dict() for summary in report.reels]
    changes = change_rows(list(report.changes))
    if as_json:
        render.print_json({"reels": reels, "batch": report.batch, "dry_run": dry_run, "changes": changes})
        return
    for row in reels:
        row["messages"] = "; ".join(row["messages"])
    render.print_rows(
        reels, SUMMARY_FIELDS, as_json=False, title="qc (dry run: nothing stored)" if dry_run else "qc"
    )
    if fix and not changes:
        render.stderr.print("nothing to fix")
    elif fix:
        title = "would change (dry run)" if dry_run else f"edit {report.batch}: undo with `panopipe undo`"
        render.print_rows(changes, CHANGE_FIELDS, as_json=False, title=title)
    if not dry_run:
        render.success(f"stored {len(report.flags)} flag(s) on {len(reels)} reel(s)")


__all__ = ["SUMMARY_FIELDS", "qc"]
