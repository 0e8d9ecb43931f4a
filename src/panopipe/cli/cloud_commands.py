"""``panopipe cloud``: build what the AWS deployment runs, and deploy, inspect and delete the stack."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.aws.package import PLATFORMS, build_lambda_zip
from panopipe.cli import render
from panopipe.cli.options import JsonOption, output_option
from panopipe.errors import ConfigError

if TYPE_CHECKING:
    from panopipe.aws.deploy import Change, StackEvent, StackReport

app = typer.Typer(help="Build, deploy and inspect the AWS stack.", no_args_is_help=True)

LAMBDA_PYTHONS = ("3.12", "3.13", "3.14")
StackOption = Annotated[str, typer.Option("--stack", help="Name of the CloudFormation stack.")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="A stack parameter as KEY=VALUE (repeat it); see `cloud template`."),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
]


@app.command("package-lambda")
def package_lambda(
    arch: Annotated[str, typer.Option(help=f"Lambda architecture: {' or '.join(PLATFORMS)}.")] = "x86_64",
    python: Annotated[
        str,
        typer.Option(
            help=f"Python of the Lambda runtime: {', '.join(LAMBDA_PYTHONS)} (stack: LambdaRuntime)."
        ),
    ] = "3.12",
    output: Annotated[Path, output_option("--output", help="The zip to write.", stdout=False)] = Path(
        "panopipe-lambda.zip"
    ),
    as_json: JsonOption = False,
) -> None:
    """Build the Lambda deployment zip (handler panopipe.aws.lambda_handler.handler).

    Example: panopipe cloud package-lambda --arch arm64 --python 3.12 --output panopipe-lambda-arm64.zip
    """
    if python not in LAMBDA_PYTHONS:
        raise ConfigError(f"unknown Lambda Python {python!r}: choose one of {', '.join(LAMBDA_PYTHONS)}")
    package = build_lambda_zip(output, arch=arch, python_version=python)
    if not package.bytecode:
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        render.warn(
            f"no bytecode in the zip: only Python {python} writes it, and this is {running}; each cold start "
            f"compiles the modules it imports. Build with Python {python} to ship it"
        )
    render.print_fields(package.to_dict(), as_json=as_json)


@app.command()
def template(param: ParamOption = None) -> None:
    """Print the CloudFormation template (JSON); --param values become the parameters' defaults.

    Example: panopipe cloud template --param Egress=nat > panopipe-stack.json
    """
    from panopipe.aws.deploy import parse_parameters, template_json

    sys.stdout.write(template_json(parse_parameters(param or [])))


def _needs_yes(yes: bool, command: str) -> None:
    if not yes and not sys.stdin.isatty():
        raise ConfigError(
            f"`cloud {command}` asks for confirmation on a terminal: pass --yes to run it without one"
        )


def _show_event(event: StackEvent) -> None:
    reason = f"  {event.reason}" if event.reason else ""
    render.stderr.print(f"{event.status:<20} {event.type:<36} {event.resource}{reason}")


def _show_report(report: StackReport, *, as_json: bool) -> None:
    if as_json:
        render.print_json(report.to_dict())
        return
    fields = {"stack": report.name, "status": report.status, "reason": report.reason}
    render.print_fields(fields, as_json=False)
    if report.failed:
        rows = [{**vars(e), "reason": e.reason} for e in report.failed]
        render.print_rows(rows, ["resource", "type", "status", "reason"], as_json=False, title="Failed")
    render.print_fields(report.outputs, as_json=False)


@app.command()
def deploy(
    stack: StackOption,
    param: ParamOption = None,
    yes: YesOption = False,
    allow_replacement: Annotated[
        bool,
        typer.Option(
            "--allow-replacement",
            help="Apply a change set that replaces the database (a new, empty one) or the bucket; refused"
            " without it, --yes or not.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or update the stack: show the change set, ask, execute it, wait, print the outputs and the
    catalog URL to use (cloudformation://STACK). --json prints the changes once applied: it needs --yes.

    Example: panopipe cloud deploy --stack panopipe --param BucketName=survey-images
    --param LambdaCodeBucket=my-artifacts --param LambdaCodeKey=panopipe-lambda.zip
    --param WorkerImage=123456789012.dkr.ecr.eu-west-1.amazonaws.com/panopipe:0.1.0
    """
    from panopipe.aws import deploy as stack_deploy
    from panopipe.catalog.stack_url import stack_catalog_url

    # Before the stack is read: pairs of parameters are checked among those given (deploy checks them all).
    given = stack_deploy.parse_parameters(param or [])
    values = stack_deploy.validate_parameters(given, require_all=False, current={})
    _needs_yes(yes, "deploy")
    if as_json and not yes:
        raise ConfigError("`cloud deploy --json` shows the changes once applied: pass --yes with it")

    def confirm(changes: list[Change]) -> bool:
        if not as_json:
            rows = [vars(change) for change in changes]
            render.print_rows(
                rows, ["resource", "type", "action", "replacement"], as_json=False, title="Changes"
            )
        if yes:
            return True
        try:
            return typer.confirm(f"Apply these {len(changes)} changes to {stack}?", default=False)
        except typer.Abort:  # click's answer to Ctrl-C (or end of input) at the question
            raise KeyboardInterrupt from None

    result = stack_deploy.deploy(
        stack, values, confirm=confirm, on_event=_show_event, allow_replacement=allow_replacement
    )
    if result.report is None:
        render.warn("nothing changed: the change set was deleted")
        return
    catalog = stack_catalog_url(stack)
    if as_json:
        changes = [vars(c) for c in result.changes]
        render.print_json({"changes": changes, **result.report.to_dict(), "catalog": catalog})
        return
    if not result.changes:
        render.success(f"stack {stack} is up to date")
    _show_report(result.report, as_json=False)
    render.success(f"the catalog, for every command: export PANOPIPE_CATALOG={catalog}")


@app.command()
def status(stack: StackOption, as_json: JsonOption = False) -> None:
    """The stack's status, why its resources failed (from its events), and its outputs.

    Example: panopipe cloud status --stack panopipe --json
    """
    from panopipe.aws.deploy import status as stack_status

    _show_report(stack_status(stack), as_json=as_json)


@app.command()
def destroy(stack: StackOption, yes: YesOption = False) -> None:
    """Delete the stack. The bucket is kept with its images, and the database leaves a final snapshot.

    Example: panopipe cloud destroy --stack panopipe --yes
    """
    from panopipe.aws.deploy import destroy as destroy_stack

    _needs_yes(yes, "destroy")

    def confirm(retained: list[str]) -> bool:
        for line in retained:
            render.warn(line)
        return yes or typer.confirm(f"Delete stack {stack}?", default=False)

    result = destroy_stack(stack, confirm=confirm, on_event=_show_event)
    if result.deleted:
        render.success(f"stack {stack} deleted")
    else:
        render.warn(f"stack {stack} left as it is")


__all__ = [
    "LAMBDA_PYTHONS",
    "ParamOption",
    "StackOption",
    "YesOption",
    "app",
    "deploy",
    "destroy",
    "package_lambda",
    "status",
    "template",
]
