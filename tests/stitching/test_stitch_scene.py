"""The synthetic scene and the PSNR measure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panopipe.stitching import psnr, synthetic_panorama


def test_scene_is_deterministic_and_seeded() -> None:
    a = synthetic_panorama(512, 256, seed=1)
    assert a.shape == (256, 512, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_panorama(512, 256, seed=1))
    assert not np.array_equal(a, synthetic_panorama(512, 256, seed=2))


def test_scene_has_detail_and_wraps_around() -> None:
    image = synthetic_panorama(1024, 512, seed=0).astype(np.float64)
    # Neighbouring columns across the 180° seam differ no more than neighbouring columns elsewhere.
    seam = np.abs(image[:, 0] - image[:, -1]).mean()
    inside = np.abs(np.diff(image, axis=1)).mean()
    assert seam < 2 * inside
    # Detail at several scales: shifting by 1, 4 or 16 pixels all change the image noticeably.
    for shift in (1, 4, 16):
        assert psnr(image.astype(np.uint8), np.roll(image, shift, axis=1).astype(np.uint8)) < 32


def test_psnr_values_and_mask() -> None:
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[0, 0] = 110
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (3 * 100 / 48)))
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    assert psnr(a, b, mask) == math.inf
    with pytest.raises(ValueError, match="mask selects no pixels"):
        psnr(a, b, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, b[:2])
