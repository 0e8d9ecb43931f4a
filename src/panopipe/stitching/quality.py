"""Image quality measures for checking stitched panoramas against a known scene."""

from __future__ import annotations

import math

import numpy as np

_ROWS = 256


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two ``uint8`` images, over the pixels where ``mask`` is true.

    ``mask`` is a ``height x width`` boolean array (e.g. a stitch's coverage); all pixels when omitted.
    Identical images give ``inf``.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if mask is not None:
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match the image's {a.shape[:2]}")
        if not mask.any():
            raise ValueError("mask selects no pixels")
    total, count = 0.0, 0
    for start in range(0, a.shape[0], _ROWS):  # a block of rows at a time: no float copy of a whole panorama
        rows = slice(start, start + _ROWS)
        diff = a[rows].astype(np.float64) - b[rows]
        if mask is not None:
            diff = diff[mask[rows]]
        total += float(np.vdot(diff, diff))
        count += diff.size
    return math.inf if total == 0 else 10 * math.log10(255.0**2 * count / total)


__all__ = ["psnr"]
