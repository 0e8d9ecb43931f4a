"""Projections and bearings with pyproj (the optional extra ``qc``): each reel is checked in metres, in a
transverse Mercator projection centred on the reel, where distances are true to well under 0.1 % for tens of
kilometres around the centre."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from panopipe.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from pyproj import Transformer

INSTALL = "pip install 'panopipe[qc]'"


def _pyproj() -> Any:
    try:
        import pyproj
    except ImportError:
        raise ConfigError(f"panopipe qc needs pyproj and shapely: {INSTALL}") from None
    return pyproj


def shapely_module() -> Any:
    """The shapely module; a :class:`ConfigError` naming the extra to install when it is missing."""
    try:
        import shapely
    except ImportError:
        raise ConfigError(f"panopipe route needs shapely and pyproj: {INSTALL}") from None
    return shapely


def local_projection(lat: float, lon: float) -> Transformer:
    """A transformer from WGS 84 (lon, lat in degrees) to metres east and north of ``(lat, lon)``; its
    ``direction="INVERSE"`` goes back."""
    # A PROJ pipeline (degrees in, metres out) builds in under a millisecond; from_crs looks the CRS up in
    # PROJ's database, about 50 ms per reel.
    steps = f"+proj=tmerc +lat_0={lat:.9f} +lon_0={lon:.9f} +k=1 +x_0=0 +y_0=0 +ellps=WGS84"
    return _pyproj().Transformer.from_pipeline(
        f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {steps}"
    )


def to_metres(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, Transformer]:
    """``(x, y)`` in metres of the points ``lat``/``lon`` (degrees) in the projection centred on their median,
    and that projection."""
    import numpy as np

    transformer = local_projection(float(np.median(lat)), float(np.median(lon)))
    x, y = transformer.transform(lon, lat)
    return np.asarray(x), np.asarray(y), transformer


def to_degrees(transformer: Transformer, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` in degrees of metres ``x``/``y`` in ``transformer``'s projection."""
    import numpy as np

    lon, lat = transformer.transform(x, y, direction="INVERSE")
    return np.asarray(lat), np.asarray(lon)


def bearings(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """The geodesic bearing (degrees clockwise from true north, 0 to 360) from each point 1 to its point 2."""
    import numpy as np

    azimuth, _, _ = _pyproj().Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    return np.mod(np.asarray(azimuth), 360.0)


__all__ = ["INSTALL", "bearings", "local_projection", "shapely_module", "to_degrees", "to_metres"]
