"""A nadir cap: the bottom of an equirectangular panorama, where a rig sees its own vehicle, covered by a disc
as a viewer looking straight down sees it.

The disc is drawn in the view of a virtual rectilinear camera looking straight down (image up is forward, image
right is right, :mod:`panopipe.stitching.projection`'s frames), ``2 * angle_deg`` wide, so that a logo reads
upright and undistorted to a viewer facing forward and looking down. That view is mapped back onto the rows of
the panorama below ``-90 + angle_deg`` of latitude; the rows above are not touched. What fills the disc: the
panorama's own colours there, blurred (``blur``: the vehicle is gone, the ground's tone stays), or one colour;
a logo (with transparency, or without) is drawn over it in its own proportions (:func:`fit_logo`). A blurred
disc fades into the panorama over its outer quarter; a coloured disc or a logo has a sharp, anti-aliased edge.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from panopipe.stitching.rig import RigCamera

if TYPE_CHECKING:  # numpy is imported where pixels are made: planning validates a fill without loading it
    import numpy as np

BLUR = "blur"
"""The fill that blurs the panorama's own colours under the disc."""
_BLUR_VIEW = 256
"""Pixels across the down view that a blurred fill samples (the blur leaves no detail finer than this)."""
_BLUR_FEATHER = 0.25
"""The part of the disc's radius over which a blurred disc fades into the panorama."""
_ROWS_AT_ONCE = 256
"""Rows of the panorama whose maps are computed at once (in float64: tens of MB per array at 12288 wide)."""

Colour = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class CapGeometry:
    """Where the cap of a ``width x height`` panorama lies and how its pixels map to the down view.

    ``top`` is the first row the cap touches; ``band_x``/``band_y`` give, for each pixel of the rows from
    ``top``, its coordinates in the down view of ``view`` pixels across; ``band_angle`` its angle from straight
    down in degrees. ``blur_x``/``blur_y`` give, for each pixel of a ``_BLUR_VIEW`` down view, its
    coordinates in the panorama.
    """

    top: int
    view: int
    band_x: np.ndarray
    band_y: np.ndarray
    band_angle: np.ndarray
    blur_x: np.ndarray
    blur_y: np.ndarray


def down_camera(angle_deg: float, size: int) -> RigCamera:
    """The virtual camera looking straight down whose ``size x size`` image spans ``angle_deg`` either side."""
    return RigCamera(-1, 0.0, -90.0, 0.0, "rectilinear", 2 * angle_deg, size, size)


@functools.lru_cache(maxsize=2)  # a worker's panoramas share a size: the maps are made once
def cap_geometry(width: int, height: int, angle_deg: float) -> CapGeometry:
    """The cap of ``angle_deg`` (from straight down) on a ``width x height`` equirectangular panorama."""
    import numpy as np

    from panopipe.stitching.projection import (
        camera_pixels,
        camera_rotation,
        camera_to_directions,
        directions_to_equirect,
        equirect_to_directions,
    )

    top = min(height - 1, math.floor(height * (180 - angle_deg) / 180))
    view = max(64, round(width / math.pi))  # the disc's rim as many pixels round as the panorama is wide
    camera = down_camera(angle_deg, view)
    rotation = camera_rotation(camera)
    band_x, band_y, band_angle = (np.empty((height - top, width), np.float32) for _ in range(3))
    columns = np.arange(width, dtype=np.float64)
    for start in range(top, height, _ROWS_AT_ONCE):
        rows = slice(start - top, min(height, start + _ROWS_AT_ONCE) - top)
        u, v = np.meshgrid(columns, np.arange(start, min(height, start + _ROWS_AT_ONCE), dtype=np.float64))
        x, y, z = np.moveaxis(equirect_to_directions(u, v, width, height) @ rotation, -1, 0)  # camera frame
        band_x[rows], band_y[rows], _ = camera_pixels(camera, x, y, z)
        band_angle[rows] = np.degrees(np.arccos(np.clip(x, -1.0, 1.0)))
    small = down_camera(angle_deg, _BLUR_VIEW)
    grid = np.arange(_BLUR_VIEW, dtype=np.float64)
    rig = camera_to_directions(small, *np.meshgrid(grid, grid)) @ rotation.T  # camera frame -> rig frame
    blur_x, blur_y = directions_to_equirect(rig, width, height)
    return CapGeometry(
        top, view, band_x, band_y, band_angle, (blur_x % width).astype(np.float32), blur_y.astype(np.float32)
    )


def cover_nadir(
    pixels: np.ndarray, angle_deg: float, fill: Colour | str, logo: np.ndarray | None = None
) -> None:
    """Cover the nadir of ``pixels`` (an equirectangular panorama, BGR) in place with a disc of ``angle_deg``
    from straight down, filled with :data:`BLUR` or a BGR colour, and ``logo`` (BGRA, any size) drawn over it
    as :func:`fit_logo` fits it to the disc (at :attr:`CapGeometry.view` pixels square, it is drawn as it is)."""
    import cv2
    import numpy as np

    height, width = pixels.shape[:2]
    geometry = cap_geometry(width, height, angle_deg)
    size = geometry.view
    if fill == BLUR:
        sampled = cv2.remap(
            pixels, geometry.blur_x, geometry.blur_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
        )
        sampled = cv2.GaussianBlur(sampled, (0, 0), _BLUR_VIEW / 16)
        view = cv2.resize(sampled, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    else:
        view = np.empty((size, size, 3), np.float32)
        view[...] = fill
    if logo is not None:
        drawn = fit_logo(logo, size).astype(np.float32)
        alpha = drawn[..., 3:] / 255.0
        view = view * (1.0 - alpha) + drawn[..., :3] * alpha
    cap = cv2.remap(view, geometry.band_x, geometry.band_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    feathered = fill == BLUR and logo is None
    edge = angle_deg * _BLUR_FEATHER if feathered else 180 / height  # else anti-aliased over about a pixel
    weight = np.clip((angle_deg - geometry.band_angle) / edge, 0.0, 1.0)[..., None]
    band = pixels[geometry.top :]
    band[...] = np.rint(band * (1.0 - weight) + cap * weight).astype(np.uint8)


def fit_logo(logo: np.ndarray, size: int) -> np.ndarray:
    """``logo`` (BGRA) fitted to the disc's square of ``size`` pixels (a down view's, :func:`down_camera`): its
    proportions kept, its longer side across the whole square (a square logo fills it), centred, transparent
    around it, so the fill shows above and below a wide logo and beside a tall one. The disc's rim trims the
    corners of the square, and so those of a logo that reaches them (a 4:1 logo's corners lie 3% of the radius
    past it). A logo of ``size`` square already is returned as it is."""
    import cv2
    import numpy as np

    height, width = logo.shape[:2]
    if (height, width) == (size, size):
        return logo
    scale = size / max(height, width)
    fitted_width, fitted_height = (max(1, round(side * scale)) for side in (width, height))
    resized = cv2.resize(logo, (fitted_width, fitted_height), interpolation=cv2.INTER_AREA)
    fitted = np.zeros((size, size, 4), np.uint8)
    top, left = (size - fitted_height) // 2, (size - fitted_width) // 2
    fitted[top : top + fitted_height, left : left + fitted_width] = resized
    return fitted


def parse_fill(text: str) -> Colour | str:
    """:data:`BLUR`, or ``#RRGGBB`` as a BGR colour; :class:`ValueError` otherwise."""
    if text == BLUR:
        return BLUR
    digits = text[1:] if len(text) == 7 and text[0] == "#" else ""
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"expected {BLUR!r} or a colour #RRGGBB, got {text!r}")
    red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return blue, green, red


__all__ = [
    "BLUR",
    "CapGeometry",
    "Colour",
    "cap_geometry",
    "cover_nadir",
    "down_camera",
    "fit_logo",
    "parse_fill",
]
