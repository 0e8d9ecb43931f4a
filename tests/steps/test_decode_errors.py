"""Every step that reads pixels (stitch, nadir, derive) says the same about a file it cannot decode."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from panopipe.errors import StepError
from panopipe.steps import DeriveStep, NadirStep, StitchStep
from panopipe.stitching import synthetic_panorama


def payloads(source: str, tmp_path: Path) -> dict[str, tuple[type, dict]]:
    """A job of each step that reads ``source`` (a panorama, or each frame of a shot)."""
    out = str(tmp_path / "out.jpg")
    stitch = {"stitcher": "opencv", "params": {}, "quality": 92, "rig": None}
    return {
        "stitch": (
            StitchStep,
            {"problem": None, "params": stitch, "inputs": [source] * 2, "outputs": {"panorama": out}},
        ),
        "nadir": (
            NadirStep,
            {
                "params": {"angle_deg": 20.0, "fill": "blur", "quality": 92},
                "inputs": [source],
                "outputs": {"image": out},
            },
        ),
        "derive": (
            DeriveStep,
            {
                "params": {"thumbnail": 64, "quality": 85},
                "inputs": [source],
                "outputs": {"thumbnail": out},
                "metadata": {},
            },
        ),
    }


@pytest.mark.parametrize("step", ["stitch", "nadir", "derive"])
def test_a_truncated_file_fails_every_step_with_the_same_reason(tmp_path: Path, step: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(256, 128, seed=1)).save(buffer, "JPEG", quality=90)
    source = tmp_path / "frame.jpg"
    source.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    step_type, payload = payloads(str(source), tmp_path)[step]

    with pytest.raises(StepError) as raised:
        step_type.execute(payload, lambda text: None)

    assert str(raised.value) == f"cannot decode {source}: its data is truncated or corrupt"
