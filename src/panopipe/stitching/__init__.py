"""Imaging core for multi-camera rigs: rig profiles, projection maths, stitchers and a synthetic test scene.

A pure library: frames in, panorama out, as numpy arrays (RGB ``uint8``) and dataclasses. Pipeline steps wire
it to the catalog and storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.lazy import lazy_attributes

# Names load their module on first use (PEP 562), so that importing the package for planning (rig profiles,
# the calibrated stitcher's fingerprint) does not load OpenCV or numpy.
_MODULES = {
    "CalibratedParams": "calibrated",
    "CalibratedStitcher": "calibrated",
    "ExternalParams": "external",
    "ExternalStitchError": "external",
    "ExternalStitcher": "external",
    "OpenCVParams": "opencv_stitcher",
    "OpenCVStitcher": "opencv_stitcher",
    "RigCamera": "rig",
    "RigProfile": "rig",
    "StitchResult": "base",
    "Stitcher": "base",
    "output_size": "calibrated",
    "psnr": "quality",
    "refine_rig": "refine",
    "render_views": "render",
    "synthetic_panorama": "scene",
}

if TYPE_CHECKING:
    from panopipe.stitching.base import Stitcher, StitchResult
    from panopipe.stitching.calibrated import CalibratedParams, CalibratedStitcher, output_size
    from panopipe.stitching.external import ExternalParams, ExternalStitcher, ExternalStitchError
    from panopipe.stitching.opencv_stitcher import OpenCVParams, OpenCVStitcher
    from panopipe.stitching.quality import psnr
    from panopipe.stitching.refine import refine_rig
    from panopipe.stitching.render import render_views
    from panopipe.stitching.rig import RigCamera, RigProfile
    from panopipe.stitching.scene import synthetic_panorama


__getattr__ = lazy_attributes(__name__, _MODULES)


__all__ = [
    "CalibratedParams",
    "CalibratedStitcher",
    "ExternalParams",
    "ExternalStitchError",
    "ExternalStitcher",
    "OpenCVParams",
    "OpenCVStitcher",
    "RigCamera",
    "RigProfile",
    "StitchResult",
    "Stitcher",
    "output_size",
    "psnr",
    "refine_rig",
    "render_views",
    "synthetic_panorama",
]
