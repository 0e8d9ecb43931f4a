"""Linear referencing: centerlines (routes) with measures, and where images lie along them (milepost and
offset). Needs the optional extra ``qc`` (pyproj, shapely): ``pip install 'panopipe[qc]'``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.lazy import lazy_attributes

_MODULES = {
    "LocateReport": "locate",
    "locate_images": "locate",
    "measure_points": "locate",
    "read_route": "files",
}

if TYPE_CHECKING:
    from panopipe.routes.files import read_route
    from panopipe.routes.locate import LocateReport, locate_images, measure_points

__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = ["LocateReport", "locate_images", "measure_points", "read_route"]
