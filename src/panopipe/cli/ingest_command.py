"""``panopipe ingest``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import MAX_WORKERS, JsonOption, uses_catalog

if TYPE_CHECKING:
    from panopipe.catalog import Catalog
    from panopipe.config import Settings


@uses_catalog(create=True)
def ingest(
    catalog: Catalog,
    settings: Settings,
    sources: Annotated[list[str], typer.Argument(help="Folders, JPEG files or s3://bucket/prefix URIs.")],
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_WORKERS, help="Parallel readers (default: all cores).", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Catalog the JPEGs under SOURCES; running it again adds nothing, changed files are noticed.

    Reel, frame and camera come from the path_pattern of the ingest section of panopipe.toml; frames of one rig
    captured within shot_tolerance_s form a shot. A file moved (with its folder, or uploaded to S3) keeps its
    image and edits, and a copy of a deleted image's file brings it back; a file whose content the catalog
    holds already elsewhere (a copy, or a folder since synced to S3) is a duplicate: reported, not added, and
    not read again while it is unchanged. An S3 object uploaded by another tool (aws s3 cp: no SHA-256 with
    it) that has the size of a catalogued file is read whole to tell. The summary counts each file once: added,
    updated, unchanged or failed (an unreadable file is catalogued with its reason, and counted failed alone).
    The files under panopipe's own output roots (the pipeline's output, the publish root, output_prefix) are
    not read, only counted: a bucket or folder that holds them can be ingested whole; a source that is such a
    root or lies inside one is refused, exit code 2 (set that root elsewhere: a subfolder of the survey is
    fine). Stopped part-way (Ctrl-C, a crash, a lost connection), it keeps the files it catalogued (it writes
    them 5,000 at a time) and marks nothing deleted: run it again to read the rest. A folder or link it cannot
    look into (a camera's folder linked in from a disk not mounted) gets a warning, and the images catalogued
    under it are kept, not marked deleted. Exit code 1 when any file failed or a folder could not be looked
    into.

    Example: panopipe ingest /data/survey-2024-05-01 s3://survey-bucket/2024-05-02/
    """
    from panopipe.ingest import ingest as ingest_sources

    with render.progress_bar("reading") as progress:
        report = ingest_sources(catalog, sources, settings, workers=workers, progress=progress)
    if as_json:
        render.print_json(report.to_dict())
    else:
        copies = report.unchanged_copies
        of_them = f" ({copies} of them copies of images elsewhere)" if copies else ""
        render.stdout.print(
            f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}{of_them}, "
            f"deleted {report.deleted}, failed {len(report.failed)} in {report.seconds:.1f} s"
        )
        if report.not_jpeg:
            kinds = ", ".join(
                f"{suffix or 'no extension'} {n}" for suffix, n in sorted(report.not_jpeg.items())
            )
            render.stderr.print(
                f"not read: {sum(report.not_jpeg.values())} file(s) that are not JPEG ({kinds})",
                soft_wrap=True,
            )
        if report.own_outputs:
            roots = ", ".join(f"{root} {n}" for root, n in sorted(report.own_outputs.items()))
            render.stderr.print(
                f"not read: {sum(report.own_outputs.values())} file(s) under panopipe's own output roots "
                f"({roots}): its outputs are no survey images",
                soft_wrap=True,
            )
        for source in report.empty_sources:
            render.warn(f"nothing to ingest in {source}: it holds no file (check the path or prefix)")
        if report.duplicates:
            first = report.duplicates[0]
            render.warn(
                f"not added: {len(report.duplicates)} duplicate(s), files whose content the catalog holds "
                f"already, such as {first.uri} (the same as {first.original_uri}); --json lists them all"
            )
        for unlisted in report.unlisted:
            kept = (
                f"kept the {unlisted.kept} image(s) catalogued under it (not marked deleted)"
                if unlisted.kept
                else "no image under it is catalogued"
            )
            render.warn(f"not read: {unlisted.uri}: {unlisted.reason}; {kept}")
        for failure in report.failed:  # one line each, even for a name with a newline (render escapes it)
            render.error(f"{failure.uri}: {failure.reason}")
    if not report.ok:
        raise typer.Exit(1)


__all__ = ["ingest"]
