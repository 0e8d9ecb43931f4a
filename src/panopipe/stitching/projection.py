"""Vectorised projection maths between equirectangular panoramas, unit directions and camera pixels.

Frames and angles (the GPano ``PoseHeadingDegrees``/``PosePitchDegrees``/``PoseRollDegrees`` convention):

* The rig frame is right-handed: ``x`` forward, ``y`` right, ``z`` down. A camera's own frame is the same with
  ``x`` along its optical axis, ``y`` to the right of its image and ``z`` down its image.
* A camera's orientation on the rig is ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (camera to rig): yaw turns the
  camera clockwise seen from above, positive pitch tilts it up, positive roll turns its image clockwise
  as seen from behind the camera.
* Equirectangular pixel centres sit at integer + 0.5 in continuous coordinates, which this module returns in
  OpenCV's convention (pixel ``(u, v)`` covers ``[u - 0.5, u + 0.5)``): the centre column ``width / 2 - 0.5``
  looks forward, longitude grows to the right (clockwise), the top row is the zenith.
"""

from __future__ import annotations

import math

import numpy as np

from panopipe.stitching.rig import RigCamera


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The 3x3 rotation taking camera-frame directions to rig-frame directions."""
    yaw, pitch, roll = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


def rotation_to_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw_deg, pitch_deg, roll_deg)`` of a camera-to-rig rotation (the inverse of :func:`rotation_matrix`).

    Looking straight up or down, yaw and roll turn about the same axis; roll is then reported as 0.
    """
    pitch = math.asin(max(-1.0, min(1.0, -rotation[2, 0])))
    if math.cos(pitch) < 1e-9:
        return math.degrees(math.atan2(-rotation[0, 1], rotation[1, 1])), math.degrees(pitch), 0.0
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    roll = math.atan2(rotation[2, 1], rotation[2, 2])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def camera_rotation(camera: RigCamera) -> np.ndarray:
    """The camera-to-rig rotation of ``camera``."""
    return rotation_matrix(camera.yaw_deg, camera.pitch_deg, camera.roll_deg)


def equirect_lon_lat(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitude of each column and latitude of each row of a ``width x height`` panorama, in radians."""
    return _longitude(np.arange(width), width), _latitude(np.arange(height), height)


def equirect_to_directions(u: np.ndarray, v: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unit rig-frame directions (``...x3``) of equirectangular pixel coordinates ``u``, ``v``."""
    lon, lat = (
        _longitude(np.asarray(u, dtype=np.float64), width),
        _latitude(np.asarray(v, dtype=np.float64), height),
    )
    cos_lat = np.cos(lat)
    return np.stack(np.broadcast_arrays(cos_lat * np.cos(lon), cos_lat * np.sin(lon), -np.sin(lat)), axis=-1)


def _longitude(u: np.ndarray, width: int) -> np.ndarray:
    return ((u + 0.5) / width - 0.5) * (2 * math.pi)


def _latitude(v: np.ndarray, height: int) -> np.ndarray:
    return (0.5 - (v + 0.5) / height) * math.pi


def directions_to_equirect(directions: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular pixel coordinates ``(u, v)`` of rig-frame directions (need not be unit length)."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    lon = np.arctan2(y, x)
    lat = np.arctan2(-z, np.hypot(x, y))
    return (lon / (2 * math.pi) + 0.5) * width - 0.5, (0.5 - lat / math.pi) * height - 0.5


def camera_to_directions(camera: RigCamera, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit camera-frame directions (``...x3``) of pixel coordinates ``u``, ``v`` in ``camera``'s image."""
    f = camera.focal_px
    a = (np.asarray(u, dtype=np.float64) - (camera.width / 2 - 0.5)) / f
    b = (np.asarray(v, dtype=np.float64) - (camera.height / 2 - 0.5)) / f
    a, b = np.broadcast_arrays(a, b)
    if camera.lens == "fisheye":
        theta = np.hypot(a, b)  # angle from the optical axis
        scale = np.sinc(theta / math.pi)  # sin(theta) / theta, 1 at the centre
        return np.stack((np.cos(theta), a * scale, b * scale), axis=-1)
    directions = np.stack((np.ones_like(a), a, b), axis=-1)
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def directions_to_camera(
    camera: RigCamera, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates ``(u, v)`` in ``camera``'s image of camera-frame directions, and where they are valid.

    Valid means in front of the lens model (``x > 0`` for a rectilinear lens, less than 180° off axis for a
    fisheye) and inside the image.
    """
    return camera_pixels(camera, directions[..., 0], directions[..., 1], directions[..., 2])


def camera_pixels(
    camera: RigCamera, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`directions_to_camera` for directions given as separate ``x``, ``y``, ``z`` arrays."""
    f = camera.focal_px
    if camera.lens == "fisheye":
        side = np.hypot(y, z)
        theta = np.arctan2(side, x)
        radial = f * theta / np.maximum(side, 1e-12)
        a, b = y * radial, z * radial
        in_front = theta < math.pi * 0.999
    else:
        in_front = x > 1e-6
        safe_x = np.where(in_front, x, 1.0)
        a, b = f * y / safe_x, f * z / safe_x
    u = a + (camera.width / 2 - 0.5)
    v = b + (camera.height / 2 - 0.5)
    inside = (u >= -0.5) & (u <= camera.width - 0.5) & (v >= -0.5) & (v <= camera.height - 0.5)
    return u, v, in_front & inside


__all__ = [
    "camera_pixels",
    "camera_rotation",
    "camera_to_directions",
    "directions_to_camera",
    "directions_to_equirect",
    "equirect_lon_lat",
    "equirect_to_directions",
    "rotation_matrix",
    "rotation_to_angles",
]
