"""Imaging core for multi-camera rigs: rig profiles, projection maths, stitchers and a synthetic test scene.

A pure library: frames in, panorama out, as numpy arrays (RGB ``uint8``) and dataclasses. Pipeline steps wire
it to the catalog and storage.
"""

from panopipe.stitching.base import Stitcher, StitchResult
from panopipe.stitching.calibrated import CalibratedParams, CalibratedStitcher, output_size
from panopipe.stitching.quality import psnr
from panopipe.stitching.render import render_views
from panopipe.stitching.rig import RigCamera, RigProfile, demo_rig
from panopipe.stitching.scene import synthetic_panorama

__all__ = [
    "CalibratedParams",
    "CalibratedStitcher",
    "RigCamera",
    "RigProfile",
    "StitchResult",
    "Stitcher",
    "demo_rig",
    "output_size",
    "psnr",
    "render_views",
    "synthetic_panorama",
]
