"""Refine a rig profile's camera angles from feature matches in the overlaps of one shot's frames.

Only small corrections are estimated (a profile that is nearly right, e.g. after a camera was remounted): ORB
features are matched between every pair of cameras, matches are kept when the profile already puts both
points within ``max_correction_deg`` of each other, and a rotation-only least-squares fit (linearised, a few
iterations, dropping outliers) moves each camera. A global rotation of the whole rig cannot be seen from
overlaps; the median common rotation is removed, so correctly mounted cameras stay put and a mis-set one
takes the correction. For a camera looking straight up or down, yaw and roll are nearly the same turn, so
the refined profile may split it between them differently from the original (the rotation is what counts).
A fit is kept only when every camera has enough consistent matches and none moves more than
``max_correction_deg``; otherwise the profile stays as it is and the log says why, since a handful of chance
matches in small overlaps can fit rotations tens of degrees off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from panopipe.stitching.projection import camera_rotation, camera_to_directions, rotation_to_angles
from panopipe.stitching.rig import RigProfile

_MIN_MATCHES = 12
"""Matches a camera pair needs to enter the fit, and consistent matches each camera needs for it to be trusted."""
_RIDGE = 1e-3  # keeps the system solvable: a common rotation of all cameras is not observable
_MIN_GATE = math.radians(0.05)


def refine_rig(
    rig: RigProfile, frames: Sequence[np.ndarray], max_correction_deg: float = 5.0, iterations: int = 4
) -> tuple[RigProfile, str]:
    """The rig with yaw/pitch/roll of each camera corrected to fit ``frames``, and a log of what changed.

    The correction is trusted only when every camera shares at least :data:`_MIN_MATCHES` consistent matches
    with the others and no camera moves more than ``max_correction_deg``; otherwise ``rig`` comes back
    unchanged and the log says why (a few chance matches can fit a wildly wrong rotation).
    """
    features = [_features(frame) for frame in frames]
    pairs = []
    for a in range(len(frames)):
        for b in range(a + 1, len(frames)):
            matches = _match(features[a][1], features[b][1])
            if len(matches) >= _MIN_MATCHES:
                ray_a = camera_to_directions(rig.cameras[a], *features[a][0][matches[:, 0]].T)
                ray_b = camera_to_directions(rig.cameras[b], *features[b][0][matches[:, 1]].T)
                pairs.append((a, b, ray_a, ray_b))
    original = [camera_rotation(camera) for camera in rig.cameras]
    rotations, gate = original, math.radians(max_correction_deg)
    for _ in range(iterations):
        lhs, rhs, counts = _normal_equations(pairs, rotations, gate)
        if unfit := _too_few(rig, counts):
            return rig, f"refine: {unfit}; profile left unchanged"
        steps = np.linalg.solve(lhs, rhs).reshape(-1, 3)
        rotations = [_rotation(step) @ rotation for step, rotation in zip(steps, rotations, strict=True)]
        gate = max(3 * _median_residual(pairs, rotations, gate), _MIN_GATE)
    _, _, counts = _normal_equations(pairs, rotations, gate)
    if unfit := _too_few(rig, counts):
        return rig, f"refine: {unfit} after the fit; profile left unchanged"
    # Overlaps fix the cameras only relative to each other: remove the median common rotation, so that
    # correctly mounted cameras stay put and the mis-set ones take the correction.
    corrections = np.array(
        [cv2.Rodrigues(new @ old.T)[0].ravel() for new, old in zip(rotations, original, strict=True)]
    )
    corrections -= np.median(corrections, axis=0)
    moved = np.degrees(np.linalg.norm(corrections, axis=1))
    summary = (
        f"refine: {int(counts.sum()) // 2} matches in {len(pairs)} camera pairs, "
        f"median residual {math.degrees(_median_residual(pairs, rotations, gate)):.3f}°"
    )
    worst = int(np.argmax(moved))
    if moved[worst] > max_correction_deg:
        return rig, (
            f"{summary}; camera {rig.cameras[worst].index} would move {moved[worst]:.2f}°, more than "
            f"max_correction_deg {max_correction_deg:g}°: profile left unchanged"
        )
    refined, log = rig, []
    for camera, correction, old, degrees in zip(rig.cameras, corrections, original, moved, strict=True):
        yaw, pitch, roll = rotation_to_angles(_rotation(correction) @ old)
        yaw = camera.yaw_deg + (yaw - camera.yaw_deg + 180) % 360 - 180  # stay near the profile's own yaw
        refined = refined.replace_camera(camera.index, yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)
        log.append(f"camera {camera.index}: moved {degrees:.2f}°")
    return refined, "\n".join([summary, *log])


def _too_few(rig: RigProfile, counts: np.ndarray) -> str | None:
    """Why the matches of each camera (``counts``, consistent matches with the other cameras) cannot fix
    the rig's angles, or ``None``."""
    fewest = int(np.argmin(counts))
    if counts[fewest] < _MIN_MATCHES:
        return (
            f"camera {rig.cameras[fewest].index} has {int(counts[fewest])} consistent matches with the "
            f"others ({_MIN_MATCHES} needed; {int(counts.sum()) // 2} in all)"
        )
    return None


def _features(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    keypoints, descriptors = cv2.ORB.create(nfeatures=3000).detectAndCompute(gray, None)
    return np.array([point.pt for point in keypoints], np.float64).reshape(-1, 2), descriptors


def _match(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray:
    """Index pairs of matches that pass Lowe's ratio test."""
    if first is None or second is None or len(first) < 2 or len(second) < 2:
        return np.empty((0, 2), int)
    candidates = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(first, second, k=2)
    good = [
        (m.queryIdx, m.trainIdx)
        for m, n in (c for c in candidates if len(c) == 2)
        if m.distance < 0.8 * n.distance
    ]
    return np.array(good, int).reshape(-1, 2)


def _normal_equations(
    pairs: list[tuple[int, int, np.ndarray, np.ndarray]], rotations: list[np.ndarray], gate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal equations for small rig-frame rotations ``w`` (3 per camera) that bring matched rays together,
    and how many matches each camera has in them.

    With ``d' = d + w × d``, a match of ``p`` in camera ``a`` and ``q`` in camera ``b`` gives
    ``[q]× w_b - [p]× w_a = q - p``. Matches further apart than ``gate`` are left out.
    """
    size = 3 * len(rotations)
    lhs, rhs, counts = _RIDGE * np.eye(size), np.zeros(size), np.zeros(len(rotations), int)
    for a, b, rays_a, rays_b in pairs:
        p, q = rays_a @ rotations[a].T, rays_b @ rotations[b].T
        keep = np.linalg.norm(p - q, axis=1) < gate
        counts[[a, b]] += int(keep.sum())
        blocks = {a: -_cross_matrices(p[keep]), b: _cross_matrices(q[keep])}
        residual = q[keep] - p[keep]
        for i, block_i in blocks.items():
            rhs[3 * i : 3 * i + 3] += np.einsum("kji,kj->i", block_i, residual)
            for j, block_j in blocks.items():
                lhs[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] += np.einsum("kji,kjl->il", block_i, block_j)
    return lhs, rhs, counts


def _median_residual(
    pairs: list[tuple[int, int, np.ndarray, np.ndarray]], rotations: list[np.ndarray], gate: float
) -> float:
    """Median distance (radians, about) between matched rays, over the matches closer than ``gate``."""
    distances = np.concatenate(
        [np.linalg.norm(ra @ rotations[a].T - rb @ rotations[b].T, axis=1) for a, b, ra, rb in pairs]
    )
    inside = distances[distances < gate]
    return float(np.median(inside)) if inside.size else gate


def _cross_matrices(v: np.ndarray) -> np.ndarray:
    """``[v]×`` for each row of ``v`` (``k x 3`` -> ``k x 3 x 3``)."""
    zero = np.zeros(len(v))
    x, y, z = v.T
    return np.stack(
        [np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], 1
    )


def _rotation(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, np.float64).reshape(3, 1))[0]


__all__ = ["refine_rig"]
