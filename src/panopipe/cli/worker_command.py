"""``panopipe worker run``: the command of an AWS Batch worker job (one chunk of a manifest)."""

from __future__ import annotations

from typing import Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import MAX_WORKERS, ConfigOption, config_of_the_command, open_settings
from panopipe.config import ENV_MANIFEST


def worker_run(
    manifest: Annotated[
        str,
        typer.Option(
            "--manifest",
            envvar=ENV_MANIFEST,
            help=f"The manifest.json of the submission (default: ${ENV_MANIFEST}).",
        ),
    ],
    index: Annotated[
        int | None,
        typer.Option(
            "--index",
            help="The chunk to run (default: $AWS_BATCH_JOB_ARRAY_INDEX, else 0).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="Worker processes (default: one per core).",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, max=3600, help="Seconds running jobs get to finish after SIGTERM."),
    ] = 20.0,
    config: ConfigOption = None,
) -> int:
    """Run one chunk of a batch submission on all cores, one result object per job, and print a JSON report.

    Jobs that already have a result are skipped. On SIGTERM, running jobs get --grace seconds, the rest is
    left to the next attempt, and the exit code is 143. A storage endpoint that cannot be reached (or fails
    past its retries) starts no more jobs and exits with code 75: the jobs without a result are left to the
    next attempt. AWS Batch retries both; a missing or malformed manifest exits with code 10, not retried.
    Example: panopipe worker run --manifest s3://bucket/out/_batch/panopipe-stitch-20240501T100000Z-0a1b2c/manifest.json --index 3
    """
    from panopipe.executors.worker import run_chunk

    settings = open_settings(None, config)
    with config_of_the_command(config):
        report = run_chunk(manifest, index, workers=workers, grace_s=grace, settings=settings)
    render.print_json(report.to_dict())
    if report.unavailable:
        render.error(f"{report.unavailable}; the jobs without a result are left to the next attempt")
    return report.exit_code


__all__ = ["worker_run"]
