"""Commands of the reprocessing engine: plan, run, status, verify, report."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from panopipe.catalog.values import INT32_MAX
from panopipe.cli import render
from panopipe.cli.options import (
    MAX_WORKERS,
    JsonOption,
    output_option,
    uses_catalog,
    uses_selection,
    warn_if_nothing_selected,
)
from panopipe.config import ENV_EXECUTOR
from panopipe.errors import ConfigError, StepError
from panopipe.executors.factory import RUN_EXECUTOR
from panopipe.iterutil import examples

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, Selection
    from panopipe.config import Settings
    from panopipe.pipeline import Status

StepsOption = Annotated[
    str | None,
    typer.Option(
        "--steps", help="Only these steps, comma-separated, e.g. apply-metadata,publish.", show_default=False
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Rerun every selected job, stale or not.")]


def _steps(steps: str | None) -> list[str] | None:
    return [name.strip() for name in steps.split(",") if name.strip()] if steps else None


@uses_selection
@uses_catalog
def plan(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    steps: StepsOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show what `panopipe run` would do and why (new input, parameters changed, metadata edited...).

    Example: panopipe plan --reel R001 --steps apply-metadata,publish
    """
    from panopipe import pipeline

    none_selected = warn_if_nothing_selected(catalog, selection)
    result = pipeline.plan(catalog, selection, _steps(steps), settings, force=force)
    columns = ("step", "subject", "reason", *(("problem", "conditional") if as_json else ()))
    render.print_rows([item.to_dict() for item in result], columns, as_json=as_json)
    if not as_json:
        render.warn_each(((i.step, i.subject, i.problem) for i in result if i.problem), "will fail")
        counts = ", ".join(f"{step} {count}" for step, count in result.counts().items())
        up_to_date = "" if none_selected else ": everything is up to date"
        conditional = sum(item.conditional for item in result)
        only_if = f" ({conditional} only if the job they follow changes its output)" if conditional else ""
        render.stderr.print(
            f"{len(result)} job(s): {counts}{only_if}" if result else f"nothing to do{up_to_date}"
        )


@uses_selection
@uses_catalog
def run(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    steps: StepsOption = None,
    force: ForceOption = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=MAX_WORKERS, help="Worker processes (default: one per core)."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="Where jobs run: local (a pool of --workers processes), inline (one after the other in "
            "this process) or batch (AWS Batch array jobs; the command returns once they are submitted). "
            f"Default: ${ENV_EXECUTOR}, the config file, local.",
            show_default=False,
        ),
    ] = None,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Submit nothing: print the jobs per step, vCPU-seconds, AWS Batch Fargate and Fargate Spot "
            "dollars, S3 request dollars and the wall time at --max-vcpus.",
        ),
    ] = False,
    max_vcpus: Annotated[
        int | None,
        typer.Option(
            "--max-vcpus", min=1, help="With --estimate: vCPUs Batch runs at once (default: the stack's, 16)."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="With --executor batch: follow the jobs until they end, step by step."),
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Run the stale jobs of the pipeline; failed items do not stop the others.

    With --executor batch, jobs go to AWS Batch and the command returns: `panopipe status` follows them, and
    `run` again retries what failed and submits the next steps (never a job still in flight, and another job of
    its image or shot only once it has ended: the run says how many it held back).
    Exits with code 6 when a job failed (see `panopipe status`); stops with code 4 once a job finds the
    storage's endpoint unreachable (the jobs not run stay due, none is recorded failed for it).
    Example: panopipe run --reel R001 --workers 4; panopipe run --executor batch --wait;
    panopipe run --estimate --max-vcpus 64
    """
    if executor is not None:
        settings = replace(settings, executor=executor)
    _refuse_ignored_options(settings, estimate=estimate, max_vcpus=max_vcpus, wait=wait, workers=workers)
    warn_if_nothing_selected(catalog, selection)
    if estimate:
        from panopipe.pipeline.estimate import estimate as estimate_cost

        cost = estimate_cost(catalog, selection, _steps(steps), settings, force=force, max_vcpus=max_vcpus)
        _print_estimate(cost.to_dict(), as_json=as_json)
        return 0
    from panopipe import pipeline

    with render.progress_bar("processing") as bar:
        report = pipeline.run(
            catalog,
            selection,
            _steps(steps),
            settings,
            force=force,
            workers=workers,
            progress=lambda step, done, total: bar(done, total),
            wait=wait,
        )
    if as_json:
        render.print_json(report.to_dict())
    else:
        rows = [{"step": step, **counts} for step, counts in report.counts.items()]
        submitted = any("submitted" in counts for counts in report.counts.values())
        columns = ("step", "succeeded", "failed", "cancelled", *(("submitted",) if submitted else ()))
        render.print_rows(rows, columns, as_json=False)
        render.warn_each(((f.step, f.subject, f.error) for f in report.failures), "failed")
        if report.removed:
            render.stderr.print(
                f"removed {report.removed} output(s) of shots no image belongs to any more (their frames "
                "form other shots now)"
            )
        if report.left_in_flight or report.held_back:  # a warning, shown with -q too: not done here
            render.warn(_left_behind(report.left_in_flight, report.held_back))
        if submitted:
            render.stderr.print(
                "submitted: follow with `panopipe status`, then `panopipe run` for the next steps"
            )
        if report.counts:
            render.stderr.print(f"done in {report.seconds:.1f} s")
        elif not (report.left_in_flight or report.held_back):
            render.stderr.print("nothing to do")
    return 0 if report.ok else StepError.exit_code


def _left_behind(in_flight: int, held_back: int) -> str:
    """What a run left of the jobs the plan lists: those in flight elsewhere, those held back for them."""
    said = [f"left {in_flight} job(s) in flight (on AWS Batch or in another run)"] if in_flight else []
    if held_back:
        said.append(
            f"held back {held_back} job(s) whose image or shot has another job in flight, until it ends"
        )
    then = "; `panopipe run` again makes those held back once it has ended" if held_back else ""
    return (
        f"{'; '.join(said)}: `panopipe plan` lists them{then} (a run that was killed holds its jobs for up to "
        "15 minutes)"
    )


def _refuse_ignored_options(
    settings: Settings, *, estimate: bool, max_vcpus: int | None, wait: bool, workers: int | None
) -> None:
    """:class:`ConfigError` for an option of ``run`` that the others make meaningless (``--executor inline
    --workers 4`` is the executor factory's to refuse): it would be ignored without a word."""
    if max_vcpus is not None and not estimate:
        raise ConfigError(
            "--max-vcpus goes with --estimate: a run uses the vCPUs of the stack's compute environment"
        )
    if estimate and (wait or workers is not None):
        raise ConfigError(f"--estimate runs no job: drop {'--wait' if wait else '--workers'}")
    executor = settings.executor or RUN_EXECUTOR
    if wait and executor != "batch":
        raise ConfigError(
            f"--wait follows AWS Batch jobs: the {executor} executor runs its jobs to the end anyway"
        )


def _print_estimate(cost: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        render.print_json(cost)
        return
    columns = ("step", "jobs", "seconds_per_job", "basis", "vcpu_seconds", "fargate_usd", "fargate_spot_usd")
    render.print_rows([_figures(row) for row in cost["steps"]], columns, as_json=False)
    prices = cost["prices"]
    render.print_fields(
        {
            "jobs": cost["jobs"],
            "vCPU-seconds": _number(cost["vcpu_seconds"]),
            "Fargate": f"{_usd(cost['fargate_usd'])} USD",
            "Fargate Spot": f"{_usd(cost['fargate_spot_usd'])} USD (at {prices['spot_discount']:.0%} off)",
            "S3 requests": f"{_usd(cost['s3_usd'])} USD",
            "wall time": f"{_number(cost['wall_seconds'])} s at {cost['max_vcpus']} vCPUs",
            "prices": f"{prices['region']}, as of {prices['as_of']}",
        },
        as_json=False,
    )


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its floats readable: dollars to the 1/10,000 cent, others as :func:`_number`."""
    return {
        key: (_usd(value) if key.endswith("usd") else _number(value)) if isinstance(value, float) else value
        for key, value in row.items()
    }


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def _usd(value: float) -> str:
    return f"{value:,.6f}"


@uses_catalog
def status(
    catalog: Catalog,
    settings: Settings,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Do not ask AWS Batch about jobs in flight; show the catalog only."),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=INT32_MAX,
            help="List at most this many failures with --json (failures_total counts them all, "
            "failures_truncated is true when some are left out), and show at most this many reasons in the "
            "table (default: 1000).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show job counts per step and status, and the failures grouped by step and reason (--json: one each).

    Jobs in flight on AWS Batch are asked about first: those that ended are recorded, failures with Batch's
    reason. Example: panopipe status --json --limit 100000
    """
    from panopipe import pipeline

    current = pipeline.status(catalog, settings, refresh=not offline, failures_limit=limit)
    if as_json:
        render.print_json(current.to_dict())
        return
    statuses = sorted({s for counts in current.jobs.values() for s in counts})
    rows = [
        {"step": step, **counts, "outputs": current.artifacts.get(step, 0)}
        for step, counts in current.jobs.items()
    ]
    render.print_rows(rows, ("step", *statuses, "outputs"), as_json=False)
    if not rows:
        render.stderr.print("no jobs yet: `panopipe plan` shows what `panopipe run` would do")
    costs = current.to_dict()["costs"]
    if costs:
        columns = ("estimate_vcpu_seconds", "actual_vcpu_seconds", "estimate_fargate_spot_usd")
        render.print_rows(
            [_figures(row) for row in costs],
            ("step", "jobs", "finished", *columns, "actual_fargate_spot_usd", "basis"),
            as_json=False,
            title="latest run: estimate vs actual",
        )
    _print_failure_groups(current)


def _print_failure_groups(current: Status) -> None:
    """The failures of ``current`` a row per step, status and reason, with a few of their subjects; below, the
    further lines of each reason that has some (a configuration to paste, a tool's output) under its row's
    step, status and subjects; a line on stderr when some are left out."""
    groups = current.failure_groups
    rows = [
        {
            "step": group.step,
            "status": group.status,
            "failures": group.count,
            "reason": render.first_line(group.message),
            "subjects": examples(group.subjects, group.count),
        }
        for group in groups
    ]
    render.print_rows(
        rows, ("step", "status", "failures", "reason", "subjects"), as_json=False, title="failures"
    )
    for group in groups:
        details = group.message.partition("\n")[2]
        if details:  # under the words of its row, which the table shows with its first line
            subjects = examples(group.subjects, group.count)
            render.stdout.print(f"{group.step} {group.status} ({subjects}):\n{details}", soft_wrap=True)
    shown = sum(group.count for group in groups)
    if shown < current.failures_total:
        render.stderr.print(
            f"{shown} of {current.failures_total} failures shown, in the {len(groups)} most common reasons: "
            "--limit shows more, `--json --limit N` lists each"
        )


@uses_catalog
def dispatch(
    catalog: Catalog,
    settings: Settings,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Ask AWS nothing, submit nothing: show what is due now."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """One dispatcher tick: record the AWS Batch jobs that ended, then submit what is due (jobs queued by
    uploads, the steps after jobs that ended) as one array job per step. Never what a configuration change
    or an edit made stale, nor jobs that failed: `panopipe run` reprocesses those.

    The stack runs it every minute; run it by hand to move work on at once. Needs the batch executor's
    settings (see `panopipe run --executor batch`). Exits with code 4 when AWS Batch or the storage cannot
    be reached (the jobs stay queued for the next tick). Example: panopipe dispatch --dry-run
    """
    from panopipe.pipeline.dispatch import dispatch as dispatch_tick

    report = dispatch_tick(catalog, settings, dry_run=dry_run)
    if as_json:
        render.print_json(report.to_dict())
        return
    verb = "due" if dry_run else "submitted"
    rows = [{"step": step, verb: count} for step, count in report.submitted.items()]
    render.print_rows(rows, ("step", verb), as_json=False)
    jobs = sum(report.submitted.values())
    if dry_run:
        render.stderr.print(f"dry run: {jobs} job(s) due; nothing submitted")
        return
    ended = ", ".join(
        f"{step} {status} {n}" for step, counts in report.ended.items() for status, n in counts.items()
    )
    render.stderr.print(f"submitted {jobs} job(s); ended since the last tick: {ended or 'none'}")


@uses_selection
@uses_catalog
def verify(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    repair: Annotated[
        bool, typer.Option("--repair", help="Mark drifted outputs stale so `run` rewrites them.")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Check output files against the catalog: missing, changed, or tags that differ from effective metadata;
    outputs of images an edit excluded (qc --fix thinning) or whose files were removed are listed as `excluded`
    or `deleted`, left in place. Tags that differ because of an edit not run yet are listed as `outdated`: not
    drift, `run` rewrites them.

    Exits with code 6 when something drifted. Example: panopipe verify --reel R001 --repair
    """
    from panopipe import pipeline

    # the outputs of deleted images are checked too: a shot whose frames were all removed is no typo
    warn_if_nothing_selected(catalog, replace(selection, include_deleted=True))
    with render.progress_bar("verifying") as bar:
        found = pipeline.verify(catalog, selection, settings, repair=repair, progress=bar)
    rows = [drift.to_dict() for drift in found]
    render.print_rows(rows, ("step", "subject", "name", "problem", "details", "uri"), as_json=as_json)
    drifts = [drift for drift in found if drift.is_drift]
    if not as_json:
        done = " and marked stale for the next run" if repair and drifts else ""
        outdated = len(found) - len(drifts)
        later = f"; {outdated} outdated by the catalog, which `panopipe run` rewrites" if outdated else ""
        render.stderr.print(f"{len(drifts)} drifted output(s){done}{later}")
    return StepError.exit_code if drifts else 0


@uses_catalog
def report(
    catalog: Catalog,
    settings: Settings,
    html: Annotated[Path | None, output_option("--html", help="The HTML file to write (-: stdout).")],
) -> None:
    """Write one HTML page, no script and nothing external: job counts, failures and a map of image positions
    with the first 200 shots' thumbnails, linked relative to the page (copy them with it).

    Example: panopipe report --html report.html
    """
    from panopipe import pipeline

    written = pipeline.write_html_report(catalog, html, sys.stdout)
    render.success(f"wrote {written or 'the report to stdout'}")


__all__ = ["ForceOption", "StepsOption", "dispatch", "plan", "report", "run", "status", "verify"]
