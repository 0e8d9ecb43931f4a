"""Small geodesy helpers on the WGS 84 sphere approximation (good to well under 1 % at survey distances)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import fmean

EARTH_RADIUS_M = 6_371_008.8


def signed_angle(degrees: float) -> float:
    """``degrees`` as the same angle in (-180, 180]; one already there is returned as it is (normalising it
    anyway adds float noise: 180 - (180 - 1.2) is 1.2000000000000028)."""
    return degrees if -180.0 < degrees <= 180.0 else 180.0 - (180.0 - degrees) % 360.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points in decimal degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bbox_around(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """``(min_lon, min_lat, max_lon, max_lat)`` of the smallest box holding the circle of ``radius_m`` around a
    point: ``min_lon > max_lon`` when it crosses the antimeridian (as a GeoJSON bbox), every longitude when it
    holds a pole."""
    angle = radius_m / EARTH_RADIUS_M
    dlat = math.degrees(angle)
    south, north = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    if lat + dlat >= 90 or lat - dlat <= -90:
        return -180.0, south, 180.0, north
    # The meridians that touch the circle: sin(dlon) = sin(angle) / cos(lat), wider than angle / cos(lat).
    dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(lat)))))
    west, east = lon - dlon, lon + dlon
    return west + 360 if west < -180 else west, south, east - 360 if east > 180 else east, north


def destination(lat: float, lon: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` from a point along ``bearing_deg`` (clockwise from north)."""
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    d = distance_m / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def mean_longitude(longitudes: Iterable[float]) -> float:
    """The mean of ``longitudes`` the short way round: frames either side of the antimeridian (179.99999 and
    -179.99999) average to 180, not 0. Longitudes within half the world of each other average as numbers."""
    values = list(longitudes)
    if max(values) - min(values) <= 180:
        return fmean(values)
    east = fmean(lon + 360 if lon < 0 else lon for lon in values)  # all on 0-360, where they are together
    return east - 360 if east > 180 else east


__all__ = ["EARTH_RADIUS_M", "bbox_around", "destination", "haversine_m", "mean_longitude", "signed_angle"]
