"""One HTML page of where processing stands: counts, failures and a map of image positions, with no script and
no external resource; the thumbnails it shows are linked relative to it (:func:`write_html_report`)."""

from __future__ import annotations

import os
import sys
from html import escape
from pathlib import Path
from typing import TextIO, overload
from urllib.parse import quote

from panopipe.catalog import Catalog, MapPositions
from panopipe.catalog.subjects import KINDS, load_subjects
from panopipe.iterutil import examples
from panopipe.pipeline.overwrite import refuse_overwrite
from panopipe.pipeline.report_map import CSS, ShotMark, survey_map, thumbnail_strip
from panopipe.pipeline.status import Status, status
from panopipe.pipeline.store import failed_subjects, named_outputs
from panopipe.storage import write_atomic

MAX_POINTS = 20_000
MAX_SHOTS = 200


@overload
def write_html_report(
    catalog: Catalog, path: str | Path, out: TextIO | None = None, *, title: str = ...
) -> Path: ...
@overload
def write_html_report(
    catalog: Catalog, path: None, out: TextIO | None = None, *, title: str = ...
) -> None: ...
def write_html_report(
    catalog: Catalog,
    path: str | Path | None,
    out: TextIO | None = None,
    *,
    title: str = "panopipe processing report",
) -> Path | None:
    """Write the report to ``path`` (one file; the thumbnails it shows are linked relative to it, so it works
    where it was written), or to ``out`` (default stdout) when there is none, linked relative to the current
    folder; the path written. :class:`~panopipe.errors.ConfigError` when ``path`` is a file the project works from
    (:func:`~panopipe.pipeline.overwrite.refuse_overwrite`)."""
    target = None if path is None else Path(path)
    if target is not None:
        refuse_overwrite(catalog, target)
    current = status(catalog)
    positions = catalog.positions(failed_subjects(catalog), limit=MAX_POINTS)
    shots, more = _shots(catalog, Path() if target is None else target.parent)
    numbered = (
        f"the first {MAX_SHOTS:,} shots with a thumbnail (more are not shown)"
        if more
        else "shots with a thumbnail"
    )
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}th{{background:#f3f3f3}}
pre{{white-space:pre-wrap;max-width:60rem;font-size:.8rem;margin:0}}.failed{{color:#b00}}{CSS}</style></head>
<body><h1>{escape(title)}</h1>
<h2>Jobs</h2>{_counts_table(current)}
<h2>Failures ({_listed(sum(g.count for g in current.failure_groups), current.failures_total)})</h2>{_failures_table(current)}
<h2>Image positions</h2>
<p>{_positions_line(positions)}; numbered: {numbered} (point at one to see it).</p>
{survey_map(positions.points, positions.flagged, shots)}
{thumbnail_strip(shots)}
</body></html>
"""
    if target is None:
        (out or sys.stdout).write(html)
    else:
        write_atomic(target, html.encode())
    return target


def _listed(shown: int, total: int) -> str:
    return f"{total:,}" if shown == total else f"{total:,}, the first {shown:,} listed"


def _positions_line(positions: MapPositions) -> str:
    """How many images the map shows, and of how many when it shows a sample."""
    shown = len(positions.points) + len(positions.flagged)
    line = f"{shown:,} of {positions.total:,} images shown" if positions.sampled else f"{shown:,} images"
    if not positions.flagged_total:
        return line
    failed = positions.flagged_total
    drawn = "" if len(positions.flagged) == failed else f" ({len(positions.flagged):,} of them shown)"
    return f"{line}, <span class='failed'>{failed:,} in failed jobs{drawn}</span>"


def _counts_table(current: Status) -> str:
    statuses = sorted({s for counts in current.jobs.values() for s in counts})
    header = "".join(f"<th>{escape(s)}</th>" for s in statuses)
    rows = "".join(
        f"<tr><td>{escape(step)}</td>"
        + "".join(f"<td>{counts.get(s, 0)}</td>" for s in statuses)
        + f"<td>{current.artifacts.get(step, 0)}</td></tr>"
        for step, counts in current.jobs.items()
    )
    return f"<table><tr><th>step</th>{header}<th>subjects with outputs</th></tr>{rows}</table>"


def _failures_table(current: Status) -> str:
    """A row per step, status and reason (as ``status`` prints them: a thousand shots failing for one reason
    are one row), with how many, the first few subjects and the end of the first one's log."""
    if not current.failure_groups:
        return "<p>None.</p>"
    logs = {(f.step, f.subject): f.log or "" for f in current.failures}
    rows = "".join(
        f"<tr><td>{escape(g.step)}</td><td>{escape(g.status)}</td><td>{g.count}</td>"
        f"<td><pre>{escape(g.message)}</pre></td><td>{escape(examples(g.subjects, g.count))}</td>"
        f"<td><pre>{escape(logs.get((g.step, g.subjects[0]), '')[-2000:])}</pre></td></tr>"
        for g in current.failure_groups
    )
    return (
        "<table><tr><th>step</th><th>status</th><th>failures</th><th>reason</th><th>subjects</th>"
        f"<th>log of the first (end)</th></tr>{rows}</table>"
    )


def _shots(catalog: Catalog, folder: Path) -> tuple[list[ShotMark], bool]:
    """Up to :data:`MAX_SHOTS` subjects with a thumbnail, at their first frame, linked relative to ``folder``
    (so the page works when opened from there) as URLs (``#``, ``%`` and spaces quoted); thumbnails in object
    storage are not linked. With whether more subjects have one."""
    with catalog.connect() as conn:
        # the published copy where there is one: derive's own is replaced by the next run that changes it
        thumbnails = named_outputs(conn, "thumbnail", ("derive", "publish"), MAX_SHOTS + 1)
        more = len(thumbnails) > MAX_SHOTS
        thumbnails = dict(sorted(thumbnails.items())[:MAX_SHOTS])  # in id order, as the query took them
        subjects = [
            subject
            for kind in KINDS
            for subject in load_subjects(
                conn, kind, [s.partition(":")[2] for s in thumbnails if s.startswith(f"{kind}:")]
            )
        ]
    marks = []
    for subject in subjects:
        uri = thumbnails[subject.id]
        link = None if "://" in uri else quote(Path(os.path.relpath(uri, folder)).as_posix())
        for frame in subject.frames:
            if frame.lat is not None and frame.lon is not None:
                marks.append(ShotMark(subject.key, frame.lon, frame.lat, link))
                break
    return marks, more


__all__ = ["MAX_POINTS", "MAX_SHOTS", "write_html_report"]
