"""``panopipe demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from panopipe.catalog import Catalog, Selection
from panopipe.cli import render
from panopipe.cli.options import CatalogOption, ConfigOption, JsonOption, open_settings
from panopipe.demo import run_demo
from panopipe.export import image_row

SHOT_FIELDS = ("shot", "frames", "captured_at", "lat", "lon", "alt", "heading")


def demo(
    folder: Annotated[Path, typer.Option(help="Where to write the survey.")] = Path("panopipe-demo"),
    shots: Annotated[int, typer.Option(min=1, max=500, help="Rig shots to generate.")] = 8,
    catalog_location: CatalogOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a small rig survey along a GPS track, ingest it, and show what the catalog holds.

    The catalog defaults to FOLDER/panopipe.db, so the demo never touches your own catalog.

    Example: panopipe demo --folder /tmp/demo --shots 4
    """
    settings = open_settings(catalog_location or str(folder / "panopipe.db"), config)
    folder.mkdir(parents=True, exist_ok=True)
    with Catalog.open(settings.catalog) as catalog:
        with render.progress_bar("rendering rig shots") as progress:
            result = run_demo(folder, catalog, settings, shots=shots, progress=progress)
        rows = _shots(catalog)
    if as_json:
        render.print_json(
            {"folder": str(folder), "catalog": settings.catalog, **result.ingest.to_dict(), "shots": rows}
        )
        return
    report = result.ingest
    render.stdout.print(
        f"wrote {len(result.survey.files)} frames of a {len(result.survey.rig.cameras)}-camera rig to {folder}; "
        f"catalog {settings.catalog}: added {report.added}, unchanged {report.unchanged}, failed {len(report.failed)}"
    )
    render.print_rows(rows, SHOT_FIELDS, as_json=False, title="shots in the catalog")
    render.stdout.print(f"next: panopipe ls --catalog {settings.catalog} --json | head")


def _shots(catalog: Catalog) -> list[dict[str, object]]:
    shots: dict[str, dict[str, object]] = {}
    for image in catalog.images(Selection()):
        row = shots.setdefault(image.shot or "-", {**image_row(image), "frames": 0})
        row["frames"] = int(row["frames"]) + 1  # type: ignore[call-overload]
    return list(shots.values())
