"""The report's map: image positions on a tiles-free background with latitude/longitude ticks, a scale bar, and
each shot marked by a numbered dot that shows its thumbnail (and a strip of the thumbnails below the map).

The projection is equirectangular around the middle latitude (x scaled by its cosine), so distances read off
the scale bar hold in every direction over a corridor's extent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from panopipe.geo import EARTH_RADIUS_M

SIZE = (720, 480)
_MARGIN = (72, 10, 10, 28)  # left (latitude labels), top, right, bottom (longitude labels)
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180
_MIN_SPAN_M = 50.0
_THUMB = (96, 48)
CSS = (
    ".map text{font-size:11px;fill:#555}.shot image{display:none}"
    ".shot:hover image{display:inline}.shot text{fill:#fff;font-size:9px;font-weight:bold}"
    ".shots{display:flex;flex-wrap:wrap;gap:.5rem}.shots figure{margin:0;font-size:.8rem}"
)


@dataclass(frozen=True, slots=True)
class ShotMark:
    """A shot (or single 360° image) on the map: its label, position and thumbnail link (``None``: none)."""

    label: str
    lon: float
    lat: float
    thumbnail: str | None


def survey_map(
    points: Sequence[tuple[float, float]], flagged: Sequence[tuple[float, float]], shots: Sequence[ShotMark]
) -> str:
    """An inline SVG of ``(lon, lat)`` ``points``, ``flagged`` ones (in failed jobs) in red, and ``shots``."""
    everything = [*points, *flagged, *((s.lon, s.lat) for s in shots)]
    if not everything:
        return "<p>No image has a position.</p>"
    view = _View.fit(everything)
    width, height = SIZE
    dots = "".join(_circle(view, lon, lat, 1.5) for lon, lat in points)
    bad = "".join(_circle(view, lon, lat, 3) for lon, lat in flagged)
    marks = "".join(_shot(view, number, shot) for number, shot in enumerate(shots, 1))
    return (
        f'<svg class="map" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="image positions">'
        f'<rect width="100%" height="100%" fill="#fafafa" stroke="#ccc"/>{view.axes()}'
        f'<g fill="#3366aa">{dots}</g><g fill="#cc2222">{bad}</g>{marks}{view.scale_bar()}</svg>'
    )


def thumbnail_strip(shots: Sequence[ShotMark]) -> str:
    """The shots' thumbnails in a row, numbered as on the map."""
    figures = "".join(
        f'<figure><img src="{escape(shot.thumbnail)}" width="{_THUMB[0] * 2}" loading="lazy" alt="">'
        f"<figcaption>{number} · {escape(shot.label)}</figcaption></figure>"
        for number, shot in enumerate(shots, 1)
        if shot.thumbnail
    )
    return f'<div class="shots">{figures}</div>' if figures else ""


@dataclass(frozen=True, slots=True)
class _View:
    """Degrees to pixels: the plot area's lower-left corner in degrees, and pixels per degree on each axis."""

    lon0: float
    lat0: float
    x_scale: float
    y_scale: float

    @classmethod
    def fit(cls, positions: Sequence[tuple[float, float]]) -> _View:
        lons, lats = [p[0] for p in positions], [p[1] for p in positions]
        mid_lat = (min(lats) + max(lats)) / 2
        x_m = _M_PER_DEG * math.cos(math.radians(mid_lat))
        span_x, span_y = max(lons) - min(lons), max(lats) - min(lats)
        plot_w, plot_h = _plot_size()
        inner = 0.9  # a margin inside the plot area, so no dot sits on an axis
        px_per_m = inner * min(
            plot_w / max(span_x * x_m, _MIN_SPAN_M), plot_h / max(span_y * _M_PER_DEG, _MIN_SPAN_M)
        )
        x_scale, y_scale = px_per_m * x_m, px_per_m * _M_PER_DEG
        lon0 = (min(lons) + max(lons)) / 2 - plot_w / 2 / x_scale
        lat0 = mid_lat - plot_h / 2 / y_scale
        return cls(lon0, lat0, x_scale, y_scale)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        left, _, _, bottom = _MARGIN
        return left + (lon - self.lon0) * self.x_scale, SIZE[1] - bottom - (lat - self.lat0) * self.y_scale

    def axes(self) -> str:
        """Grid lines and labelled ticks at round degree values on the left and bottom edges."""
        left, top = _MARGIN[:2]
        plot_w, plot_h = _plot_size()
        parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#bbb"/>']
        for lon in _ticks(self.lon0, self.lon0 + plot_w / self.x_scale):
            x = self.xy(lon, self.lat0)[0]
            parts.append(f'<line stroke="#e4e4e4" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}"/>')
            label = _degrees(lon, plot_w / self.x_scale, "E", "W")
            parts.append(f'<text x="{x:.1f}" y="{SIZE[1] - 10}" text-anchor="middle">{label}</text>')
        for lat in _ticks(self.lat0, self.lat0 + plot_h / self.y_scale):
            y = self.xy(self.lon0, lat)[1]
            parts.append(
                f'<line stroke="#e4e4e4" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>'
            )
            label = _degrees(lat, plot_h / self.y_scale, "N", "S")
            parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        return "".join(parts)

    def scale_bar(self) -> str:
        """A bar of a round length, about a fifth of the plot's width, in its lower right corner."""
        plot_w, _ = _plot_size()
        px_per_m = self.y_scale / _M_PER_DEG
        metres = _nice(plot_w / px_per_m / 5)
        length = metres * px_per_m
        x1 = SIZE[0] - _MARGIN[2] - 12
        x0, y = x1 - length, SIZE[1] - _MARGIN[3] - 12
        label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
        return (
            f'<g class="scale" stroke="#222" stroke-width="2"><line x1="{x0:.1f}" y1="{y}" x2="{x1}" y2="{y}"/>'
            f'<line x1="{x0:.1f}" y1="{y - 5}" x2="{x0:.1f}" y2="{y}"/><line x1="{x1}" y1="{y - 5}" x2="{x1}" y2="{y}"/>'
            f'</g><text x="{(x0 + x1) / 2:.1f}" y="{y - 6}" text-anchor="middle">{label}</text>'
        )


def _plot_size() -> tuple[int, int]:
    left, top, right, bottom = _MARGIN
    return SIZE[0] - left - right, SIZE[1] - top - bottom


def _circle(view: _View, lon: float, lat: float, radius: float) -> str:
    x, y = view.xy(lon, lat)
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}"/>'


def _shot(view: _View, number: int, shot: ShotMark) -> str:
    x, y = view.xy(shot.lon, shot.lat)
    thumb_w, thumb_h = _THUMB
    image = (
        f'<image href="{escape(shot.thumbnail)}" x="{min(x + 8, SIZE[0] - thumb_w):.1f}" '
        f'y="{max(y - thumb_h - 8, 0):.1f}" width="{thumb_w}" height="{thumb_h}"/>'
        if shot.thumbnail
        else ""
    )
    return (
        f'<g class="shot"><title>{number}: {escape(shot.label)}</title>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="#e07b00" stroke="#fff"/>'
        f'<text x="{x:.1f}" y="{y + 3:.1f}" text-anchor="middle">{number}</text>{image}</g>'
    )


def _nice(value: float) -> float:
    """The largest of 1, 2 and 5 times a power of ten that is at most ``value``."""
    power = 10 ** math.floor(math.log10(value))
    return max(step * power for step in (1, 2, 5) if step * power <= value)


def _ticks(low: float, high: float) -> list[float]:
    """Round values between ``low`` and ``high``, about four to ten of them."""
    step = _nice((high - low) / 4)
    first = math.ceil(low / step)
    return [n * step for n in range(first, math.floor(high / step) + 1)]


def _degrees(value: float, span: float, positive: str, negative: str) -> str:
    """``48.1375°N``: as many decimals as the ticks' step needs."""
    decimals = max(0, -math.floor(math.log10(_nice(span / 4))))
    return f"{abs(value):.{decimals}f}°{positive if value >= 0 else negative}"


__all__ = ["CSS", "SIZE", "ShotMark", "survey_map", "thumbnail_strip"]
