"""``panopipe events``: see what panopipe makes of an S3 event."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from panopipe.cli import render
from panopipe.events import object_events

app = typer.Typer(help="S3 events: parse saved events the way the Lambda handler does.", no_args_is_help=True)


@app.command("parse")
def parse(
    event_file: Annotated[
        Path, typer.Argument(help="A saved event (S3, SQS, SNS or EventBridge envelope).", exists=True)
    ],
) -> None:
    """Print the normalized object events of a saved event as a JSON list.

    Example: panopipe events parse tests/data/events/powertools-python/s3SqsEvent.json
    """
    render.print_json([event.to_dict() for event in object_events(event_file.read_bytes())])
