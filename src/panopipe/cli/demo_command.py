"""``panopipe demo``."""

from __future__ import annotations

import os
import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import JsonOption
from panopipe.config import ENV_CATALOG, ENV_CONFIG

if TYPE_CHECKING:
    from panopipe.demo import DemoResult

SHOT_FIELDS = ("shot", "frames", "captured_at", "lat", "lon", "alt", "heading")
DemoCatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        "-c",
        help=(
            "The demo's catalog, which must hold no image: a SQLite path or a postgresql:// URL. "
            f"Default: FOLDER/panopipe.db (${ENV_CATALOG} and config files are not read)."
        ),
        show_default=False,
    ),
]


def demo(
    folder: Annotated[
        Path, typer.Option(help="Where to write the survey, its outputs and its config.")
    ] = Path("panopipe-demo"),
    shots: Annotated[int, typer.Option(min=1, max=500, help="Rig shots to generate.")] = 8,
    catalog_location: DemoCatalogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Render a small rig survey along a GPS track, ingest it, stitch, tag, derive and publish it, then
    correct the reel's altitude from RTK (its GNSS read high) and show that only what the edit touched runs
    again: the tags, thumbnails and publication, not the stitching.

    The catalog defaults to FOLDER/panopipe.db and FOLDER/panopipe.toml holds the survey's rig, so later
    commands run there (cd FOLDER) use the same settings and never touch your own catalog. $PANOPIPE_CATALOG
    and $PANOPIPE_CONFIG override that file: with either set, the demo warns and its next commands name its
    catalog and config.

    Example: panopipe demo --folder /tmp/demo --shots 4
    """
    from panopipe.catalog import catalog_url, mask_location
    from panopipe.demo import run_demo

    location = catalog_location or str(folder / "panopipe.db")
    url = catalog_url(location)  # a bad URL fails before the survey is rendered
    if url.get_backend_name() == "sqlite":  # FOLDER/panopipe.toml names it: relative, it would be FOLDER's
        location = str(url.database)
    folder.mkdir(parents=True, exist_ok=True)
    with render.staged_progress() as progress:
        result = run_demo(folder, location, shots=shots, progress=progress)
    shown = mask_location(location)
    options = _options_overriding_the_environment(shown, result.config_file.resolve())
    if as_json:
        render.print_json(_summary(result, shown))
        return
    _print(result, shown, options)


def _options_overriding_the_environment(location: str, config: Path) -> str:
    """The options commands run in the demo's folder need to use its catalog and config: none, unless
    $PANOPIPE_CATALOG or $PANOPIPE_CONFIG is set, which overrides its panopipe.toml (a warning says so)."""
    options = {
        ENV_CATALOG: f"--catalog {shlex.quote(location)}",
        ENV_CONFIG: f"--config {shlex.quote(str(config))}",
    }
    set_here = [name for name in options if os.environ.get(name)]
    if not set_here:
        return ""
    names = " and ".join(f"${name}" for name in set_here)
    verb = "overrides" if len(set_here) == 1 else "override"
    given = " ".join(options[name] for name in set_here)
    render.warn(
        f"{names} set in this shell {verb} {config}: commands run in {config.parent} would use yours, "
        f"not the demo's, unless given {given}"
    )
    return f" {given}"


def _summary(result: DemoResult, location: str) -> dict[str, object]:
    return {
        "folder": str(result.survey.folder),
        "catalog": location,
        "config": str(result.config_file),
        "ingest": result.ingest.to_dict(),
        "shots": result.ingested_shots,
        "first_run": result.first_run.to_dict(),
        "edit": {"batch": result.edit_batch, "reason": result.edit_reason, "images": result.edited_images},
        "plan_after_edit": result.plan_after_edit.to_dict(),
        "second_run": result.second_run.to_dict(),
        "jobs_left": len(result.plan_at_end),
        "report": str(result.report),
    }


def _print(result: DemoResult, location: str, options: str) -> None:
    survey, ingested = result.survey, result.ingest
    out = render.stdout.print
    out(
        f"1. rendered {len(survey.files)} frames of a {len(survey.rig.cameras)}-camera rig to {survey.folder}"
    )
    out(f"2. ingested into {location}: added {ingested.added}, failed {len(ingested.failed)}")
    render.print_rows(result.ingested_shots, SHOT_FIELDS, as_json=False, title="shots as ingested")
    out(f"3. ran the pipeline in {result.first_run.seconds:.1f} s: {_counts(result.first_run.counts)}")
    out(
        f"4. edited the altitude of reel {survey.reel} ({result.edited_images} images): "
        f"{result.edit_reason!r}; plan then listed:"
    )
    jobs = Counter((item.step, item.reason) for item in result.plan_after_edit)
    rows = [{"step": step, "jobs": count, "reason": reason} for (step, reason), count in jobs.items()]
    render.print_rows(rows, ("step", "jobs", "reason"), as_json=False)
    out(
        f"5. reran only that (no stitching): {_counts(result.second_run.counts)}; jobs left: {len(result.plan_at_end)}"
    )
    out(f"report: {result.report}   config: {result.config_file}")
    out(f"next: cd {shlex.quote(str(survey.folder))} && panopipe ls{options} && panopipe status{options}")
    failures = (*result.first_run.failures, *result.second_run.failures)
    render.warn_each(((f.step, f.subject, f.error) for f in failures), "failed")


def _counts(counts: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{step} {sum(by_status.values())}" for step, by_status in counts.items()) or "nothing"


__all__ = ["SHOT_FIELDS", "DemoCatalogOption", "demo"]
