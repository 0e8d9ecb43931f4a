"""OpenCV's feature-based stitcher on real overlapping photographs (tests/data/stitching, see PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panopipe.errors import ConfigError, StepError
from panopipe.steps.stitch import StitchStep
from panopipe.stitching.opencv_stitcher import OpenCVStitcher

DATA = Path(__file__).parents[1] / "data" / "stitching"


def _frames(folder: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted((DATA / folder).glob("*.jpg"))]


@pytest.mark.parametrize("folder", ["arches-JDW_9518-9520", "arches-JDW_0302-0304"])
def test_arches_sets_stitch_with_every_frame(folder: str) -> None:
    frames = _frames(folder)
    result = OpenCVStitcher().stitch(frames)
    assert result.views_used == 3
    height, width = result.panorama.shape[:2]
    # Three overlapping frames make a panorama wider than one frame but narrower than all three side by side.
    assert frames[0].shape[1] * 1.3 < width < frames[0].shape[1] * 3
    assert height >= frames[0].shape[0] * 0.8
    assert result.coverage.mean() > 0.8
    assert "kept 3 of 3 frames" in result.log


def test_river_pair_fails_at_default_confidence_with_the_reason() -> None:
    with pytest.raises(
        StepError, match=r"not enough overlapping features between the images \(ERR_NEED_MORE_IMGS\)"
    ):
        OpenCVStitcher().stitch(_frames("vlfeat-river"))


def test_river_pair_stitches_with_a_lower_confidence_threshold() -> None:
    result = OpenCVStitcher().stitch(_frames("vlfeat-river"), {"confidence_threshold": 0.3})
    assert result.views_used == 2
    assert result.panorama.shape[1] > 512 * 1.3


def test_single_frame_and_bad_threshold_are_rejected() -> None:
    frames = _frames("vlfeat-river")
    with pytest.raises(StepError, match="needs at least 2 overlapping frames"):
        OpenCVStitcher().stitch(frames[:1])
    with pytest.raises(ConfigError, match="confidence_threshold must be a number"):
        OpenCVStitcher().stitch(frames, {"confidence_threshold": "low"})


def test_the_stitch_step_turns_handheld_frames_as_their_exif_orientation_says(tmp_path: Path) -> None:
    # portrait photos as cameras store them: landscape pixels, and Orientation 6 (turn 90° clockwise to show)
    upright = _frames("arches-JDW_0302-0304")
    inputs = []
    for index, frame in enumerate(upright):
        exif = Image.Exif()
        exif[0x0112] = 6
        path = tmp_path / f"cam{index}.jpg"
        Image.fromarray(np.rot90(frame)).save(path, quality=95, exif=exif)
        inputs.append(str(path))
    payload = {
        "problem": None,
        "params": {"stitcher": "opencv", "params": {}, "quality": 92, "rig": None},
        "inputs": inputs,
        "outputs": {"panorama": str(tmp_path / "panorama.jpg")},
    }

    StitchStep.execute(payload, lambda text: None)

    panorama = np.asarray(Image.open(tmp_path / "panorama.jpg"))
    expected = OpenCVStitcher().stitch(upright).panorama
    assert abs(panorama.shape[0] - expected.shape[0]) < 0.1 * expected.shape[0]
    assert abs(panorama.shape[1] - expected.shape[1]) < 0.1 * expected.shape[1]
    assert (panorama.max(axis=2) < 10).mean() < 0.2  # stored sideways, 79% of it was black
