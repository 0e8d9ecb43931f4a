"""Render what each camera of a rig sees of an equirectangular panorama (the inverse of stitching)."""

from __future__ import annotations

import cv2
import numpy as np

from panopipe.stitching.projection import camera_rotation, camera_to_directions, directions_to_equirect
from panopipe.stitching.rig import RigCamera, RigProfile

_PAD = 4  # pixels of wrapped/replicated border so interpolation near the seam and the poles stays valid


def render_views(
    panorama: np.ndarray, rig: RigProfile, interpolation: int = cv2.INTER_CUBIC
) -> list[np.ndarray]:
    """One image per camera of ``rig`` (in index order), sampled from the equirectangular ``panorama``."""
    height, width = panorama.shape[:2]
    padded = np.pad(panorama, ((0, 0), (_PAD, _PAD)) + ((0, 0),) * (panorama.ndim - 2), mode="wrap")
    padded = cv2.copyMakeBorder(padded, _PAD, _PAD, 0, 0, cv2.BORDER_REPLICATE)
    return [_render(padded, width, height, camera, interpolation) for camera in rig.cameras]


def _render(padded: np.ndarray, width: int, height: int, camera: RigCamera, interpolation: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    directions = camera_to_directions(camera, u, v) @ camera_rotation(camera).T
    map_x, map_y = directions_to_equirect(directions, width, height)
    return cv2.remap(
        padded,
        (map_x + _PAD).astype(np.float32),
        (map_y + _PAD).astype(np.float32),
        interpolation,
        borderMode=cv2.BORDER_REPLICATE,
    )


__all__ = ["render_views"]
