"""Image quality measures for checking stitched panoramas against a known scene."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two ``uint8`` images, over the pixels where ``mask`` is true.

    ``mask`` is a ``height x width`` boolean array (e.g. a stitch's coverage); all pixels when omitted.
    Identical images give ``inf``.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match the image's {a.shape[:2]}")
        if not mask.any():
            raise ValueError("mask selects no pixels")
        diff = diff[mask]
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


__all__ = ["psnr"]
