"""``panopipe config``: the project configuration stored in the catalog, pushed, shown and its history."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.catalog.values import INT32_MAX
from panopipe.cli import render
from panopipe.cli.options import DryRunOption, JsonOption, uses_catalog
from panopipe.errors import ConfigError

if TYPE_CHECKING:
    from panopipe.catalog import Catalog
    from panopipe.config import Settings

app = typer.Typer(
    help="The project configuration (steps, parameters, rig, publish, ingest rules) stored in the catalog.",
    no_args_is_help=True,
)
HISTORY_COLUMNS = ("version", "created_at", "author", "reason", "content_hash")


@app.command()
@uses_catalog
def push(
    catalog: Catalog,
    settings: Settings,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (kept in `config history`). Default: the file and this host."),
    ] = None,
    dry_run: DryRunOption = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
    ] = False,
) -> None:
    """Store the config file's steps, parameters, rig, publish and ingest rules in the catalog as its next
    version, which every planner (CLI, Lambda, workers) then uses; shows the changes first, then how many
    jobs are due with it (the dispatcher does not start them: `panopipe run` does).

    Example: panopipe config push --reason "rig recalibrated 2026-12-01" --dry-run
    """
    from panopipe.catalog.edits import current_author
    from panopipe.project_config import plan_push

    plan = plan_push(catalog, settings)
    against = f"catalog version {plan.current.version}" if plan.current else "the catalog (no version yet)"
    if not plan.changes and plan.current is not None:
        render.success(f"nothing to push: {plan.source} is the same as {against}")
        return
    render.stderr.print(f"{plan.source} against {against}:")
    for change in plan.changes:
        render.stdout.print(change.line())
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "`config push` asks for confirmation on a terminal: pass --yes to push without one"
            )
        if not typer.confirm(f"Push {len(plan.changes)} change(s) to {catalog.location}?", default=False):
            render.warn("nothing pushed")
            return
    why = reason or f"{plan.source} from {socket.gethostname()}"
    stored = catalog.push_project_config(plan.content, author=current_author(), reason=why)
    render.success(f"pushed version {stored.version} ({stored.content_hash[:12]}) to {catalog.location}")
    _report_due(catalog, settings)


def _report_due(catalog: Catalog, settings: Settings) -> None:
    """Say how many jobs are due with the version just pushed, and how to run them: the dispatcher does not."""
    from panopipe.pipeline import plan

    due = {step: n for step, n in plan(catalog, settings=settings).counts().items() if n}
    if not due:
        render.stderr.print("no job is due: every output is up to date with this version")
        return
    listed = ", ".join(f"{step} {n}" for step, n in due.items())
    render.stderr.print(
        f"{sum(due.values())} jobs are due with this version ({listed}); the dispatcher does not start them. "
        "To reprocess: `panopipe run --estimate`, then `panopipe run --executor batch` (or `panopipe run` "
        "on this machine)",
        soft_wrap=True,
    )


@app.command()
@uses_catalog
def show(
    catalog: Catalog,
    settings: Settings,
    version: Annotated[
        int | None,
        typer.Option("--version", max=INT32_MAX, help="Show this catalog version instead of the newest."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the effective configuration and where each value comes from: default, catalog version N, file,
    environment or option.

    Example: panopipe config show --json
    """
    from panopipe.project_config import effective

    config = effective(catalog, settings, version)
    render.print_rows([v.to_dict() for v in config.values], ("key", "value", "origin"), as_json=as_json)
    if not as_json:
        render.stderr.print(config.source(), soft_wrap=True)


@app.command()
@uses_catalog
def history(catalog: Catalog, settings: Settings, as_json: JsonOption = False) -> None:
    """List the pushed versions of the project configuration: who, when and why.

    Example: panopipe config history
    """
    rows = [v.to_dict() for v in catalog.project_config_history()]
    if not as_json:
        rows = [{**row, "content_hash": row["content_hash"][:12]} for row in rows]
    render.print_rows(rows, (*HISTORY_COLUMNS, *(("content",) if as_json else ())), as_json=as_json)
    if not rows and not as_json:
        render.stderr.print("no version pushed: planners use the local config file (`panopipe config push`)")


__all__ = ["HISTORY_COLUMNS", "app", "history", "push", "show"]
