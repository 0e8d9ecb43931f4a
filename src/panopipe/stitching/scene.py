"""A deterministic synthetic 360° scene to render rig views from and to check stitching against."""

from __future__ import annotations

import math

import cv2
import numpy as np


def synthetic_panorama(width: int = 2048, height: int = 1024, seed: int = 0) -> np.ndarray:
    """An equirectangular RGB ``uint8`` image (``height x width x 3``) of a textured outdoor scene.

    Sky with a gradient and clouds, a tiled ground plane fading with distance, a ring of coloured buildings
    with window grids, and multi-scale noise everywhere, so misplaced pixels at any scale lower PSNR. The
    same arguments always give the same image; the left and right edges join seamlessly.
    """
    rng = np.random.default_rng(seed)
    lon = ((np.arange(width, dtype=np.float32) + 0.5) / width - 0.5) * np.float32(2 * math.pi)
    lat = (0.5 - (np.arange(height, dtype=np.float32) + 0.5) / height) * np.float32(math.pi)
    horizon_row = int(np.count_nonzero(lat > 0))  # rows above it are sky, rows from it on are ground

    image = np.empty((height, width, 3), np.float32)
    zenith, horizon = np.array([40, 90, 190], np.float32), np.array([185, 215, 240], np.float32)
    t = np.clip(lat[:horizon_row] / (math.pi / 2), 0, 1)[:, None] ** 0.6
    sky = (horizon + (zenith - horizon) * t)[:, None, :]
    clouds = np.clip(_noise(rng, width, height, (8, 16, 32, 64))[:horizon_row] * 2.2 - 0.6, 0, 1)[..., None]
    image[:horizon_row] = sky + (250 - sky) * clouds

    distance = 1.0 / np.tan(np.maximum(-lat[horizon_row:], 1e-3))  # on a plane one unit below the camera
    gx = distance[:, None] * np.cos(lon)[None, :]
    gy = distance[:, None] * np.sin(lon)[None, :]
    tiles = (np.floor(gx / 0.8 + 0.3) + np.floor(gy / 0.8 + 0.3)) % 2  # no tile edge along the seam
    cobbles = (np.floor(gx / 0.2 + 0.3) + np.floor(gy / 0.2 + 0.3)) % 2
    detail = (0.6 * tiles + 0.4 * cobbles) * np.exp(-distance / 12)[:, None]  # fades before it aliases
    dark, light = np.array([70, 65, 55], np.float32), np.array([165, 150, 120], np.float32)
    image[horizon_row:] = dark + (light - dark) * (0.35 + 0.5 * detail[..., None])

    _draw_buildings(image[:horizon_row], rng, lon, lat[:horizon_row])
    grain = _noise(rng, width, height, (4, 8, 16, 32, 64, 128, 256, 512)) - 0.5
    grain *= 90 * np.cos(lat)[:, None]  # fades towards the poles, where equirect pixels shrink to nothing
    image += grain[..., None] * np.array([1.0, 0.9, 0.8], np.float32)
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _draw_buildings(image: np.ndarray, rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray) -> None:
    """Paint a ring of blocks standing on the horizon into the sky rows; a column has at most one block."""
    width = lon.size
    top = np.full(width, -1.0, np.float32)
    colour = np.zeros((width, 3), np.float32)
    window_cols = np.zeros(width, bool)
    start = 0.05  # keep block edges off the 180° seam
    while start < 2 * math.pi - 0.3:
        span = rng.uniform(0.15, 0.5)
        columns = (lon + math.pi >= start) & (lon + math.pi < min(start + span, 2 * math.pi - 0.05))
        top[columns] = rng.uniform(0.08, 0.7)
        colour[columns] = rng.uniform(40, 230, 3)
        pitch = rng.uniform(0.015, 0.04)
        window_cols |= columns & ((lon + math.pi - start) % pitch < pitch * 0.55)
        start += span + rng.uniform(0.02, 0.25)
    first_row = int(np.count_nonzero(lat >= top.max()))  # rows above every block
    lat, image = lat[first_row:], image[first_row:]
    window_rows = (lat % 0.035) < 0.02
    body = lat[:, None] < top[None, :]
    shade = np.where(window_rows[:, None] & window_cols[None, :], np.float32(0.45), np.float32(1.0))
    np.copyto(image, colour[None, :, :] * shade[..., None], where=body[..., None])


def _noise(rng: np.random.Generator, width: int, height: int, periods: tuple[int, ...]) -> np.ndarray:
    """Sum of smooth random octaves (``periods`` in pixels, amplitude proportional to the period) in [0, 1]."""
    total = np.zeros((height, width), np.float32)
    weight = 0.0
    for period in periods:
        cells_x, cells_y = max(1, round(width / period)), max(1, round(height / period))
        cells = rng.random((cells_y, cells_x), dtype=np.float32)
        padded = np.pad(cells, ((2, 2), (0, 0)), mode="reflect" if cells_y > 2 else "edge")
        padded = np.pad(padded, ((0, 0), (2, 2)), mode="wrap")  # longitude wraps around
        fx, fy = width / cells_x, height / cells_y
        smooth = cv2.resize(padded, None, fx=fx, fy=fy, interpolation=cv2.INTER_CUBIC)
        x0, y0 = round(2 * fx), round(2 * fy)
        total += smooth[y0 : y0 + height, x0 : x0 + width] * period
        weight += period
    return total / weight


__all__ = ["synthetic_panorama"]
