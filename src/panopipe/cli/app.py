"""The ``panopipe`` command: one Typer app; each command lives in the module of its topic."""

from __future__ import annotations

from typing import Annotated

import typer

from panopipe import __version__
from panopipe.cli import (
    catalog_commands,
    cloud_commands,
    config_commands,
    db,
    demo_command,
    dev_commands,
    events_commands,
    ingest_command,
    qc_commands,
    render,
    route_commands,
    sync_command,
    worker_command,
)
from panopipe.cli import pipeline as pipeline_commands

app = typer.Typer(
    name="panopipe",
    help="Catalog and reprocess geotagged 360° imagery, on a laptop and in AWS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help, as Click writes it: rich's help formatter costs more start-up time than everything else.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        render.stdout.print(f"panopipe {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show debug log lines and more detail on stderr.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress bars or info lines: only warnings, errors and the data output."
        ),
    ] = False,
) -> None:
    """Catalog and reprocess geotagged 360° imagery, on a laptop and in AWS."""
    render.configure(verbose=verbose, quiet=quiet)


app.add_typer(db.app, name="db")
app.add_typer(events_commands.app, name="events")
events_commands.worker_app.command("run")(worker_command.worker_run)
app.add_typer(events_commands.worker_app, name="worker")
app.add_typer(dev_commands.app, name="dev")
app.add_typer(cloud_commands.app, name="cloud")
app.add_typer(config_commands.app, name="config")
app.add_typer(route_commands.app, name="route")
app.command()(sync_command.sync)
app.command()(demo_command.demo)
app.command()(ingest_command.ingest)
app.command()(qc_commands.qc)
for command in (
    catalog_commands.ls,
    catalog_commands.show,
    catalog_commands.export,
    catalog_commands.edit,
    catalog_commands.history,
    catalog_commands.undo,
):
    app.command()(command)
for command in (
    pipeline_commands.plan,
    pipeline_commands.run,
    pipeline_commands.status,
    pipeline_commands.dispatch,
    pipeline_commands.verify,
    pipeline_commands.report,
):
    app.command()(command)


__all__ = ["app", "options"]
