"""A self-contained HTML page of where processing stands: counts, failures and a map of image positions."""

from __future__ import annotations

from html import escape
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.pipeline.status import Status, status

MAX_POINTS = 20_000
_SIZE = (720, 480)


def write_html_report(
    catalog: Catalog, path: str | Path, *, title: str = "panopipe processing report"
) -> Path:
    """Write the report to ``path`` (one file, no external resources); the path written."""
    current = status(catalog)
    failed = {f.subject for f in current.failures}
    points, failed_points = catalog.positions(failed, limit=MAX_POINTS)
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}th{{background:#f3f3f3}}
pre{{white-space:pre-wrap;max-width:60rem;font-size:.8rem;margin:0}}.failed{{color:#b00}}</style></head>
<body><h1>{escape(title)}</h1>
<h2>Jobs</h2>{_counts_table(current)}
<h2>Failures ({len(current.failures)})</h2>{_failures_table(current)}
<h2>Image positions</h2>
<p>{len(points)} images{f", <span class='failed'>{len(failed_points)} in failed jobs</span>" if failed_points else ""}.</p>
{_svg(points, failed_points)}
</body></html>
"""
    target = Path(path)
    target.write_text(html, encoding="utf-8")
    return target


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
    if not current.failures:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td>{escape(f.step)}</td><td>{escape(f.subject)}</td><td>{escape(f.status)}</td>"
        f"<td>{escape(f.error or f.reason or '')}</td><td>{f.attempts}</td>"
        f"<td><pre>{escape((f.log or '')[-2000:])}</pre></td></tr>"
        for f in current.failures
    )
    return f"<table><tr><th>step</th><th>subject</th><th>status</th><th>reason</th><th>attempts</th><th>log (end)</th></tr>{rows}</table>"


def _svg(points: list[tuple[float, float]], flagged: list[tuple[float, float]]) -> str:
    width, height = _SIZE
    everything = points + flagged
    if not everything:
        return "<p>No image has a position.</p>"
    lons = [p[0] for p in everything]
    lats = [p[1] for p in everything]
    min_lon, max_lon, min_lat, max_lat = min(lons), max(lons), min(lats), max(lats)
    span = max(max_lon - min_lon, max_lat - min_lat, 1e-9)
    pad = 10

    def circles(positions: list[tuple[float, float]], radius: float) -> str:
        return "".join(
            f'<circle cx="{pad + (lon - min_lon) / span * (width - 2 * pad):.1f}" '
            f'cy="{height - pad - (lat - min_lat) / span * (height - 2 * pad):.1f}" r="{radius}"/>'
            for lon, lat in positions
        )

    dots, bad = circles(points, 1.5), circles(flagged, 3)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="image positions">'
        f'<rect width="100%" height="100%" fill="#fafafa" stroke="#ccc"/>'
        f'<g fill="#3366aa">{dots}</g><g fill="#cc2222">{bad}</g></svg>'
    )


__all__ = ["MAX_POINTS", "write_html_report"]
