"""``panopipe db migrate``: move the catalog to PostgreSQL / Amazon RDS."""

from __future__ import annotations

from typing import Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import (
    CatalogOption,
    ConfigOption,
    DryRunOption,
    JsonOption,
    config_of_the_command,
    open_settings,
)
from panopipe.config import DEFAULT_BATCH_SIZE

ToOption = Annotated[
    str,
    typer.Option(
        "--to",
        help="Target: a postgresql:// URL (may use ?secret_arn= or ?iam=true) or a deployed stack's "
        "cloudformation://STACK; see docs/rds.md.",
    ),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Rows per COPY and commit.", min=1)]
NoVerifyOption = Annotated[
    bool, typer.Option("--no-verify", help="Skip comparing row counts and checksums afterwards.")
]


def migrate(
    to: ToOption,
    catalog_location: CatalogOption = None,
    config: ConfigOption = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    dry_run: DryRunOption = False,
    no_verify: NoVerifyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Copy the catalog into an empty PostgreSQL database and verify the copy; run again to resume.

    Example: panopipe db migrate --catalog survey.db --to 'postgresql://panopipe@db.example.org/survey'
    """
    from panopipe.catalog.transfer import migrate_catalog

    settings = open_settings(catalog_location, config)
    # A bar per table and phase: a table is verified while the next ones are copied.
    with config_of_the_command(config), render.staged_progress() as bar:
        report = migrate_catalog(
            settings.catalog,
            to,
            batch_size=batch_size,
            dry_run=dry_run,
            verify=not no_verify,
            settings=settings,
            progress=lambda update: bar(
                f"{update.phase} {update.table}", update.rows_done, update.rows_total
            ),
        )
    checks = {check.table: "ok" if check.ok else "MISMATCH" for check in report.checks}
    rows = [
        {
            "table": t.table,
            "source rows": t.source_rows,
            "already there": t.present_rows,
            "copied": t.copied_rows,
            "verified": checks.get(t.table, "-"),
        }
        for t in report.tables
    ]
    if as_json:
        render.print_json(report.to_dict())
    else:
        title = f"{report.source} -> {report.target}{' (dry run)' if dry_run else ''}"
        render.print_rows(rows, list(rows[0]), as_json=False, title=title)
    if report.note:
        render.warn(report.note)
    report.raise_for_mismatch()
    if report.already_complete and dry_run:
        render.success(
            f"nothing to copy: {report.target} holds as many rows as {report.source} in every table, a finished "
            "move; run without --dry-run to verify the copy"
        )
    elif report.already_complete:
        render.success(f"nothing to copy: {report.target} is a complete copy of {report.source}, verified")
    elif dry_run:
        pending = sum(t.source_rows - t.present_rows for t in report.tables)
        render.success(f"would copy {pending:,} rows{' (resuming)' if report.resumed else ''}")
    else:
        render.success(f"copied {report.rows_copied:,} rows in {report.seconds:.1f} s")


__all__ = ["BatchSizeOption", "NoVerifyOption", "ToOption", "migrate"]
