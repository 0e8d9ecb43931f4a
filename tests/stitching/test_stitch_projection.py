"""Projection maths: conventions and round trips for both lens models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panopipe.stitching.projection import (
    camera_rotation,
    camera_to_directions,
    directions_to_camera,
    directions_to_equirect,
    equirect_to_directions,
    rotation_matrix,
    rotation_to_angles,
)
from panopipe.stitching.rig import RigCamera


def _camera(lens: str = "rectilinear", hfov: float = 90.0, **pose: float) -> RigCamera:
    angles = {"yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0, **pose}
    return RigCamera(index=0, lens=lens, hfov_deg=hfov, width=640, height=480, **angles)  # type: ignore[arg-type]


def test_equirect_round_trip_and_orientation() -> None:
    width, height = 360, 180
    v, u = np.mgrid[0:height, 0:width]
    directions = equirect_to_directions(u, v, width, height)
    assert np.allclose(np.linalg.norm(directions, axis=-1), 1)
    back_u, back_v = directions_to_equirect(directions, width, height)
    assert np.allclose(back_u, u, atol=1e-9) and np.allclose(back_v, v, atol=1e-9)
    # Forward is the centre, right is a quarter turn to the right, up is the top edge.
    assert np.allclose(directions_to_equirect(np.array([1.0, 0, 0]), width, height), (179.5, 89.5))
    assert np.allclose(directions_to_equirect(np.array([0, 1.0, 0]), width, height), (269.5, 89.5))
    assert np.isclose(directions_to_equirect(np.array([0, 0, -1.0]), width, height)[1], -0.5)


@pytest.mark.parametrize(
    ("pose", "expected"),
    [
        ({"yaw_deg": 90.0}, (0, 1, 0)),  # clockwise from above: to the right
        ({"pitch_deg": 90.0}, (0, 0, -1)),  # up
        ({"yaw_deg": 180.0, "pitch_deg": -30.0}, (-math.cos(math.pi / 6), 0, 0.5)),  # back and down
    ],
)
def test_rotation_points_the_optical_axis(pose: dict, expected: tuple[float, float, float]) -> None:
    assert np.allclose(camera_rotation(_camera(**pose)) @ [1, 0, 0], expected, atol=1e-12)


def test_positive_roll_turns_the_image_clockwise() -> None:
    # Rolled clockwise as seen from behind, the image's right-hand side points down.
    assert np.allclose(rotation_matrix(0, 0, 90) @ [0, 1, 0], [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize(("lens", "hfov"), [("rectilinear", 100.0), ("fisheye", 200.0), ("fisheye", 120.0)])
def test_camera_pixels_round_trip(lens: str, hfov: float) -> None:
    camera = _camera(lens, hfov)
    v, u = np.mgrid[0:480:7, 0:640:7].astype(float)
    directions = camera_to_directions(camera, u, v)
    assert np.allclose(np.linalg.norm(directions, axis=-1), 1)
    back_u, back_v, valid = directions_to_camera(camera, directions)
    assert valid.all()
    assert np.abs(back_u - u).max() < 1e-6 and np.abs(back_v - v).max() < 1e-6


def test_fisheye_is_equidistant() -> None:
    camera = _camera("fisheye", 180.0)
    # The right-hand edge of a 180° fisheye is 90° off axis; halfway there is 45°.
    edge = camera_to_directions(camera, np.array([639.5, 479.5]), np.array([239.5, 239.5]))
    assert np.allclose(edge[0], [0, 1, 0], atol=1e-9)
    assert np.allclose(edge[1], [math.sqrt(0.5), math.sqrt(0.5), 0], atol=1e-9)
    # It still sees slightly behind itself in the corners, which a rectilinear lens never does.
    _, _, valid = directions_to_camera(camera, np.array([[-0.1, 0.9, 0.4], [-0.1, 1.0, 0.0]]))
    assert valid.tolist() == [True, False]


def test_rectilinear_rejects_directions_behind_it() -> None:
    _, _, valid = directions_to_camera(
        _camera(), np.array([[-1.0, 0.0, 0.0], [1.0, 0.2, -0.1], [1.0, 2.0, 0]])
    )
    assert valid.tolist() == [False, True, False]


@pytest.mark.parametrize(
    "angles", [(0.0, 0.0, 0.0), (135.0, -20.0, 12.5), (-90.0, 45.0, -170.0), (30.0, 90.0, 0.0)]
)
def test_rotation_to_angles_inverts_rotation_matrix(angles: tuple[float, float, float]) -> None:
    recovered = rotation_to_angles(rotation_matrix(*angles))
    assert np.allclose(rotation_matrix(*recovered), rotation_matrix(*angles), atol=1e-9)
    if abs(angles[1]) < 90:
        assert np.allclose(recovered, angles)
