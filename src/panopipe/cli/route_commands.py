"""``panopipe route``: load centerlines and locate images along them (route, milepost, offset)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import (
    DryRunOption,
    JsonOption,
    uses_catalog,
    uses_selection,
    warn_if_nothing_selected,
)

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, Selection
    from panopipe.config import Settings

app = typer.Typer(help="Routes: measured centerlines, and images located along them.", no_args_is_help=True)

LOCATE_FIELDS = (
    "reel",
    "images",
    "located",
    "off_route",
    "no_position",
    "first_measure",
    "last_measure",
    "messages",
)


@app.command("add")
@uses_catalog
def add(
    catalog: Catalog,
    settings: Settings,
    name: Annotated[
        str,
        typer.Argument(help="The route's name, e.g. US-101: letters, digits, -, _ and . (used in {route})."),
    ],
    file: Annotated[
        Path,
        typer.Argument(
            help="GeoJSON or GeoPackage holding one line: a LineString, or a MultiLineString that joins."
        ),
    ],
    start_measure: Annotated[
        float | None,
        typer.Option(
            "--start-measure", help="Measure at the line's start, for a line without M values only."
        ),
    ] = None,
    unit: Annotated[str, typer.Option("--unit", help="Unit of measure: mi or km.")] = "mi",
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Replace the route's centerline; its images must be located again."),
    ] = False,
) -> None:
    """Load a centerline. Its measures are the positions' M values, or --start-measure plus the length along
    the line.

    Example: panopipe route add US-101 us101.geojson --start-measure 12.4 --unit mi
    """
    from panopipe.routes import read_route

    cleared = catalog.add_route(
        read_route(file, name, start_measure=start_measure, unit=unit), replace=replace
    )
    render.success(f"route {name} stored" + (f"; {cleared} image(s) to locate again" if cleared else ""))


@app.command("locate")
@uses_selection
@uses_catalog
def locate(
    catalog: Catalog,
    settings: Settings,
    selection: Selection,
    route: Annotated[
        str | None,
        typer.Option("--route", help="The route (needed when there are several).", show_default=False),
    ] = None,
    max_offset: Annotated[
        float,
        typer.Option(
            "--max-offset", min=0, max=100_000, help="Metres: images farther are flagged off-route."
        ),
    ] = 50.0,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Store for each selected image the route, its measure (milepost) and offset from the line; usable in
    publish templates as {route} and {mp:.3f}.

    Example: panopipe route locate --reel R001 --route US-101 --max-offset 30
    """
    from panopipe.routes import locate_images

    report = locate_images(catalog, selection, route, max_offset_m=max_offset, dry_run=dry_run)
    warn_if_nothing_selected(catalog, selection)
    rows = [reel.to_dict() for reel in report.reels]
    if as_json:
        images = list(report.images)
        render.print_json(
            {"route": report.route, "unit": report.unit, "dry_run": dry_run, "reels": rows, "images": images}
        )
        return
    for row in rows:
        row["messages"] = "; ".join(row["messages"])
    title = f"route {report.route} ({report.unit})" + (" (dry run: nothing stored)" if dry_run else "")
    render.print_rows(rows, LOCATE_FIELDS, as_json=False, title=title)


__all__ = ["LOCATE_FIELDS", "add", "app", "locate"]
