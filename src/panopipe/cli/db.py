"""``panopipe db``: the catalog's schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from panopipe.cli import render
from panopipe.cli.db_migrate import migrate
from panopipe.cli.options import (
    CatalogOption,
    ConfigOption,
    JsonOption,
    config_of_the_command,
    open_settings,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

app = typer.Typer(
    help="The catalog database: schema version, upgrades, and moving it to PostgreSQL/RDS.",
    no_args_is_help=True,
)
app.command("migrate")(migrate)


@contextlib.contextmanager
def _engine(catalog_location: str | None, config: Path | None) -> Iterator[sa.Engine]:
    """An engine for the command's catalog (a stack's looked up with its settings), disposed at the end; what
    loads settings of its own meanwhile (an RDS IAM token's profile) reads --config too."""
    from panopipe.catalog import create_catalog_engine

    settings = open_settings(catalog_location, config)
    with config_of_the_command(config):
        engine = create_catalog_engine(settings.catalog, settings)
        try:
            yield engine
        finally:
            engine.dispose()


@app.command("upgrade")
def upgrade_command(catalog_location: CatalogOption = None, config: ConfigOption = None) -> None:
    """Bring the catalog's schema up to this panopipe's version (safe to run again).

    Example: panopipe db upgrade --catalog postgresql://panopipe@db.example.org/survey
    """
    from panopipe.catalog import catalog_location as shown
    from panopipe.catalog import current_revision, upgrade

    with _engine(catalog_location, config) as engine:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    render.success(f"{shown(engine.url)}: schema {before or 'none'} -> {after}")


@app.command("current")
def current_command(
    catalog_location: CatalogOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show the catalog's schema version and the one this panopipe needs (the catalog must exist).

    Example: panopipe db current --json
    """
    from panopipe.catalog import catalog_location as shown
    from panopipe.catalog import current_revision, head_revision

    with _engine(catalog_location, config) as engine:
        current, head = current_revision(engine, missing_ok=False), head_revision()
    state = {"catalog": shown(engine.url), "current": current, "head": head, "up_to_date": current == head}
    render.print_fields(state, as_json=as_json)


__all__ = ["app", "current_command", "upgrade_command"]
