"""``panopipe dev``: the AWS wiring on this machine (moto's server for S3 and SQS)."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from panopipe.cli import ctrl_c_stops, render

app = typer.Typer(help="Local parity with the AWS deployment.", no_args_is_help=True)


@app.command("up")
def up(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port for moto's server (0: a free one).")] = 0,
    bucket: Annotated[str, typer.Option(help="The input bucket.")] = "panopipe-dev",
    input_prefix: Annotated[str, typer.Option(help="Keys that notify the queue.")] = "incoming/",
    output_prefix: Annotated[str, typer.Option(help="Where outputs go (never notifies).")] = "panopipe-out/",
    max_receive_count: Annotated[
        int,
        typer.Option(min=1, max=1000, help="Receives before a message goes to the DLQ (SQS allows 1-1000)."),
    ] = 5,
) -> None:
    """Start S3 and SQS locally: bucket, queue with dead-letter queue, bucket notification; Ctrl-C stops it
    (exit 0). Needs moto's server: pip install 'panopipe[dev]'.

    Prints the endpoint and the environment variables to export for `panopipe worker events` and uploads,
    then a line per request on stderr (none with -q).

    Example: panopipe dev up --port 5000
    """
    from panopipe.dev import create_stack, start_moto_server

    server, endpoint = start_moto_server(port, log_requests=not render.stderr.quiet)
    with ctrl_c_stops():  # a second Ctrl-C does not cut the server's stop short
        try:
            stack = create_stack(
                endpoint,
                bucket=bucket,
                input_prefix=input_prefix,
                output_prefix=output_prefix,
                max_receive_count=max_receive_count,
            )
            render.success(f"S3 and SQS at {endpoint}; queue {stack.queue_url}")
            typer.echo("\n".join(f"export {name}={value}" for name, value in stack.environment().items()))
            typer.echo(
                "# then, with these exports: panopipe db upgrade --catalog survey.db && panopipe worker events "
                f"--queue-url {stack.queue_url} --catalog survey.db --config PROJECT/panopipe.toml (its rig "
                "profile)"
            )
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


__all__ = ["app", "up"]
