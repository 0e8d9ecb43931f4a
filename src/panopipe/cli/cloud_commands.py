"""``panopipe cloud``: build what the AWS deployment runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from panopipe.aws.package import PLATFORMS, build_lambda_zip
from panopipe.cli import render

app = typer.Typer(help="Build deployment artifacts for AWS.", no_args_is_help=True)


@app.command("package-lambda")
def package_lambda(
    arch: Annotated[str, typer.Option(help=f"Lambda architecture: {' or '.join(PLATFORMS)}.")] = "x86_64",
    output: Annotated[Path, typer.Option(help="The zip to write.")] = Path("panopipe-lambda.zip"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build the Lambda deployment zip (handler panopipe.aws.lambda_handler.handler, Python 3.11).

    Example: panopipe cloud package-lambda --arch arm64 --output dist/panopipe-lambda.zip
    """
    package = build_lambda_zip(output, arch=arch)
    render.print_fields(package.to_dict(), as_json=as_json)


__all__ = ["app", "package_lambda"]
