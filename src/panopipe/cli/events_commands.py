"""``panopipe events``: see what panopipe makes of an S3 event."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import ctrl_c_stops, render
from panopipe.cli.options import JsonOption, uses_catalog
from panopipe.dev import GIVE_UP_S

if TYPE_CHECKING:
    from panopipe.catalog import Catalog
    from panopipe.config import Settings
    from panopipe.events.handler import HandleReport

app = typer.Typer(
    help="S3 events: parse and handle saved events the way the Lambda handler does.", no_args_is_help=True
)


@app.command("parse")
def parse(
    event_file: Annotated[
        Path,
        typer.Argument(
            help="A saved event (S3, SQS, SNS or EventBridge envelope), or what `aws sqs receive-message` printed.",
            exists=True,
            dir_okay=False,
        ),
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
        Path,
        typer.Argument(
            help="A saved event or SQS batch, as Lambda receives it, or what `aws sqs receive-message` printed "
            "(e.g. of the dead-letter queue).",
            exists=True,
            dir_okay=False,
        ),
    ],
    *,
    catalog: Catalog,
    settings: Settings,
) -> None:
    """Handle a saved event exactly as the Lambda handler does, and print the report as JSON.

    Exit code 7 when a message failed (Lambda would list it in batchItemFailures for redelivery).

    Example: panopipe events handle batch.json --catalog survey.db
    """
    from panopipe.errors import EventError
    from panopipe.events.handler import EventHandler

    handler = EventHandler.from_settings(catalog, settings)
    try:
        report = handler.handle(event_file.read_bytes())
    finally:
        handler.close()
    render.print_json(report.to_dict())
    if report.failed_messages:
        ids = ", ".join(str(m) for m in report.failed_messages if m)  # an event given directly has no id
        raise EventError(
            f"{len(report.failed_messages)} message(s) failed{f' ({ids})' if ids else ''}: see the reasons above"
        )


worker_app = typer.Typer(help="Workers that feed queued events to the handler.", no_args_is_help=True)


@worker_app.command("events")
@uses_catalog
def worker_events(
    queue_url: Annotated[str, typer.Option("--queue-url", help="The SQS queue the bucket notifies.")],
    max_polls: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many polls (default: run on).", show_default=False),
    ] = None,
    wait: Annotated[
        int, typer.Option(min=0, max=20, help="Long-polling wait per poll, in seconds (SQS allows 0-20).")
    ] = 20,
    give_up_after: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds SQS may stay unreachable (or failing on its side) before the worker stops with exit "
            "code 4; meanwhile it polls again after 1 s, doubling up to 30 s. 0: never stop.",
        ),
    ] = GIVE_UP_S,
    as_json: JsonOption = False,
    *,
    catalog: Catalog,
    settings: Settings,
) -> None:
    """Poll an SQS queue in batches of 10 and handle each batch as Lambda would, with the project
    configuration (--config, ./panopipe.toml: the rig profile, the steps); Ctrl-C stops it (exit 0, a second
    Ctrl-C while it stops is ignored).

    Prints a start line, one line per batch (with a warning per reason its events were refused: an unsafe
    key, a bucket not handled, a name not a JPEG's; their objects never reach the catalog) and, when it
    stops, a summary (JSON with --json). Acknowledged
    messages are deleted; failed ones come back after the visibility timeout. An SQS endpoint that cannot be
    reached is polled again (a warning each time) until --give-up-after, then exit code 4; a queue that does
    not exist, or another refusal, stops it at once with exit code 7.

    Example: panopipe worker events --queue-url http://127.0.0.1:5000/123456789012/panopipe-dev-events
    --config panopipe.toml
    """
    from panopipe.dev import run_worker
    from panopipe.events.handler import EventHandler
    from panopipe.iterutil import examples

    handler = EventHandler.from_settings(catalog, settings)

    def started(endpoint: str) -> None:
        executor = handler.executor.name if handler.executor is not None else "none (plan only)"
        render.stderr.print(
            f"worker: polling {queue_url} at {endpoint} into catalog {catalog.url}; executor {executor}; "
            "Ctrl-C stops",
            soft_wrap=True,
        )

    def handled(messages: int, batch: HandleReport) -> None:
        actions = ", ".join(f"{name} {n}" for name, n in batch.actions().items() if n or name != "unchanged")
        jobs = "; ".join(
            f"{step} " + ", ".join(f"{s} {n}" for s, n in c.items()) for step, c in batch.jobs.items()
        )
        render.stderr.print(
            f"batch: {messages} message(s): {actions}; jobs: {jobs or 'none'}", soft_wrap=True
        )
        for reason, uris in batch.refusals().items():
            render.warn(
                f"skipped {len(uris)} event(s), not catalogued: {reason} ({examples(uris, len(uris))})"
            )

    def retrying(error: str, wait_s: float) -> None:
        render.warn(f"{error}; polling again in {wait_s:.0f} s")

    with ctrl_c_stops():
        try:
            report = run_worker(
                handler,
                queue_url,
                max_polls=max_polls,
                wait_s=wait,
                give_up_s=give_up_after or None,
                on_start=started,
                on_batch=handled,
                on_retry=retrying,
            )
        finally:
            handler.close()
        if as_json:
            render.print_json(report.to_dict())
        else:
            counts = ", ".join(f"{name} {n}" for name, n in report.counts.items())
            render.stdout.print(
                f"{'stopped' if report.interrupted or report.failure else 'done'} after {report.polls} poll(s): {report.batches} "
                f"batch(es), {report.received} message(s) received, {report.acknowledged} acknowledged, "
                f"{report.left} left for redelivery; events {counts}"
            )
    if report.failure is not None:
        raise report.failure


__all__ = ["app", "handle", "parse", "worker_app", "worker_events"]
