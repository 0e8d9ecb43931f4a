"""``panopipe events``: see what panopipe makes of an S3 event."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import uses_catalog

if TYPE_CHECKING:
    from panopipe.catalog import Catalog
    from panopipe.config import Settings

app = typer.Typer(
    help="S3 events: parse and handle saved events the way the Lambda handler does.", no_args_is_help=True
)


@app.command("parse")
def parse(
    event_file: Annotated[
        Path, typer.Argument(help="A saved event (S3, SQS, SNS or EventBridge envelope).", exists=True)
    ],
) -> None:
    """Print the normalized object events of a saved event as a JSON list.

    Example: panopipe events parse tests/data/events/powertools-python/s3SqsEvent.json
    """
    from panopipe.events import object_events

    render.print_json([event.to_dict() for event in object_events(event_file.read_bytes())])


@app.command("handle")
@uses_catalog
def handle(
    event_file: Annotated[
        Path, typer.Argument(help="A saved event or SQS batch, as Lambda receives it.", exists=True)
    ],
    *,
    catalog: Catalog,
    settings: Settings,
) -> None:
    """Handle a saved event exactly as the Lambda handler does, and print the report as JSON.

    Example: panopipe events handle batch.json --catalog survey.db
    """
    from panopipe.events.handler import EventHandler

    handler = EventHandler.from_settings(catalog, settings)
    try:
        render.print_json(handler.handle(event_file.read_bytes()).to_dict())
    finally:
        handler.close()


worker_app = typer.Typer(help="Workers that feed queued events to the handler.", no_args_is_help=True)


@worker_app.command("events")
@uses_catalog
def worker_events(
    queue_url: Annotated[str, typer.Option("--queue-url", help="The SQS queue the bucket notifies.")],
    max_polls: Annotated[
        int | None, typer.Option(help="Stop after this many polls (default: run on).")
    ] = None,
    wait: Annotated[int, typer.Option(help="Long-polling wait per poll, in seconds.")] = 20,
    *,
    catalog: Catalog,
    settings: Settings,
) -> None:
    """Poll an SQS queue in batches of 10 and handle each batch as Lambda would; Ctrl-C stops.

    Acknowledged messages are deleted; failed ones come back after the visibility timeout.

    Example: panopipe worker events --queue-url http://127.0.0.1:5000/123456789012/panopipe-dev-events
    """
    from panopipe.dev import run_worker
    from panopipe.events.handler import EventHandler

    handler = EventHandler.from_settings(catalog, settings)
    try:
        report = run_worker(handler, queue_url, max_polls=max_polls, wait_s=wait)
    except KeyboardInterrupt:
        return
    finally:
        handler.close()
    render.print_json(report.to_dict())


__all__ = ["app", "handle", "parse", "worker_app", "worker_events"]
