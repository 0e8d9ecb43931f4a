"""``panopipe sync``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from panopipe.cli import render
from panopipe.cli.options import MAX_WORKERS, DryRunOption, JsonOption, uses_catalog

if TYPE_CHECKING:
    from panopipe.catalog import Catalog
    from panopipe.config import Settings
    from panopipe.sync import SyncProgress


@uses_catalog
def sync(
    catalog: Catalog,
    settings: Settings,
    folder: Annotated[Path, typer.Argument(help="The local capture folder.", exists=True, file_okay=False)],
    destination: Annotated[str, typer.Argument(help="Where to upload: s3://bucket/prefix (or a folder).")],
    workers: Annotated[int, typer.Option(min=1, max=MAX_WORKERS, help="Parallel uploads.")] = 8,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Upload a capture folder: parallel, resumable, skipping files already stored (by SHA-256).

    Images the catalog knows are pointed at their new S3 URIs. A destination where ingest would read other
    reels, frames or cameras (the path_pattern) is refused before any upload, saying where to sync instead,
    and so is a destination folder inside the capture folder or holding it. A file that cannot be read or
    stored, or whose name a storage key cannot hold (a backslash, a control character), fails alone with its
    reason, as --dry-run says. Exit code 1 when any file failed.

    Example: panopipe sync /data/2024-05-01 s3://survey-bucket/2024-05-01 --dry-run
    """
    from panopipe.storage import open_storage
    from panopipe.sync import sync_capture

    storage = open_storage(destination, settings)
    with render.progress_bar("uploading", in_bytes=True) as bar:

        def progress(p: SyncProgress) -> None:
            bar(p.bytes_done, p.bytes_total)

        report = sync_capture(
            catalog, folder, storage, settings, dry_run=dry_run, workers=workers, progress=progress
        )
    mb_per_s = round(report.bytes_uploaded / 1e6 / report.seconds, 2) if report.seconds else 0.0
    summary = {
        "uploaded": len(report.uploaded),
        "skipped": len(report.skipped),
        "failed": dict(report.failed),
        "bytes_uploaded": report.bytes_uploaded,
        "seconds": round(report.seconds, 3),
        "mb_per_s": mb_per_s,
        "dry_run": report.dry_run,
        "not_repointed": list(report.not_repointed),
    }
    if as_json:
        render.print_json({**summary, "uploaded_uris": list(report.uploaded)})
    else:
        verb = "would upload" if dry_run else "uploaded"
        rate = "" if dry_run else f" at {mb_per_s} MB/s"  # a dry run reads the files but sends nothing
        render.stdout.print(
            f"{verb} {summary['uploaded']}, skipped {summary['skipped']}, failed {len(report.failed)}"
            f" ({report.bytes_uploaded / 1e6:.1f} MB{rate})"
        )
        if report.not_repointed:
            render.warn(
                f"not repointed: {len(report.not_repointed)} catalogued image(s), such as "
                f"{report.not_repointed[0]}: other images have their new URIs already (copies uploaded there "
                "by another tool and catalogued)"
            )
        for key, reason in report.failed.items():
            render.error(f"{key}: {reason}")
    if not report.ok:
        raise typer.Exit(1)


__all__ = ["sync"]
