"""OpenCV's feature-based stitcher, for overlapping photos taken without a rig profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from panopipe.errors import StepError
from panopipe.stitching.base import Stitcher, StitchResult, check_frames, require

_DEFAULT_CONFIDENCE = 1.0  # cv2.Stitcher's own default in PANORAMA mode

_REASONS = {
    cv2.Stitcher_ERR_NEED_MORE_IMGS: "not enough overlapping features between the images (ERR_NEED_MORE_IMGS)",
    cv2.Stitcher_ERR_HOMOGRAPHY_EST_FAIL: "homography estimation failed (ERR_HOMOGRAPHY_EST_FAIL)",
    cv2.Stitcher_ERR_CAMERA_PARAMS_ADJUST_FAIL: "camera parameter adjustment failed (ERR_CAMERA_PARAMS_ADJUST_FAIL)",
}


@dataclass(frozen=True, slots=True)
class OpenCVParams:
    """``confidence_threshold``: how sure the matcher must be that two images overlap (lower accepts harder
    pairs, and more wrong matches)."""

    confidence_threshold: float = _DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        value = self.confidence_threshold
        require(
            type(value) in (int, float) and 0 < value <= 10,
            f"opencv stitcher: confidence_threshold must be a number in (0, 10], got {value!r}",
        )


class OpenCVStitcher(Stitcher[OpenCVParams]):
    """``cv2.Stitcher`` in PANORAMA mode: features, matching, bundle adjustment, spherical warp, multi-band blend.

    The panorama is the region OpenCV produced (not placed on a full 360° canvas); ``coverage`` is its
    non-black pixels and ``views_used`` the number of frames OpenCV kept in the stitched component.
    """

    name = "opencv"
    version = 2  # 2: frames turned as their EXIF orientation says
    params_type = OpenCVParams
    upright_frames = True

    def stitch(
        self, frames: Sequence[np.ndarray], params: Mapping[str, Any] | OpenCVParams | None = None
    ) -> StitchResult:
        """Stitch ``frames``; raise :class:`StepError` with OpenCV's reason when it cannot."""
        options = self.parse_params(params)
        check_frames(frames, self.name)
        if len(frames) < 2:
            raise StepError("opencv stitcher: needs at least 2 overlapping frames")
        stitcher = cv2.Stitcher.create(cv2.Stitcher_PANORAMA)
        stitcher.setPanoConfidenceThresh(float(options.confidence_threshold))
        bgr = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
        try:
            status, panorama = stitcher.stitch(bgr)
        except cv2.error as error:  # some OpenCV builds assert instead of returning a status
            raise StepError(f"opencv stitcher failed inside OpenCV: {error.err or error}") from error
        if status != cv2.Stitcher_OK:
            reason = _REASONS.get(status, f"unknown status {status}")
            raise StepError(
                f"opencv stitcher: {reason} at confidence_threshold={options.confidence_threshold:g}; "
                "a lower threshold may help if the frames really overlap"
            )
        kept = len(stitcher.component())
        rgb = cv2.cvtColor(panorama, cv2.COLOR_BGR2RGB)
        log = (
            f"cv2.Stitcher {cv2.__version__} PANORAMA, confidence_threshold={options.confidence_threshold:g}: "
            f"kept {kept} of {len(frames)} frames -> {rgb.shape[1]}x{rgb.shape[0]}"
        )
        return StitchResult(rgb, np.any(rgb, axis=2), log, kept)


__all__ = ["OpenCVParams", "OpenCVStitcher"]
