"""Every step that reads pixels (stitch, nadir, derive) says the same about a file it cannot decode."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import DATA
from tests.pipeline.captures import damaged, jpeg

from panopipe.errors import StepError
from panopipe.metadata.jpeg import scan_segments
from panopipe.steps import DeriveStep, NadirStep, StitchStep
from panopipe.steps.pixels import MAX_PIXELS, decode_pixels, structure_damage
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

    assert str(raised.value) == f"corrupt JPEG data in {source}: premature end of JPEG file"


@pytest.mark.parametrize("step", ["stitch", "nadir", "derive"])
def test_damaged_jpeg_data_fails_every_step_naming_the_file(
    tmp_path: Path, step: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real 360° photo with a block of its entropy-coded data zeroed (a bad card sector), its header intact:
    libjpeg decodes garbage with a mere warning, which OpenCV printed bare on stderr while the step went on
    with the garbage."""
    source = tmp_path / "R0014760.JPG"
    source.write_bytes(damaged((DATA / "exif/trek-view-360/R0014760.JPG").read_bytes()))
    step_type, payload = payloads(str(source), tmp_path)[step]

    with pytest.raises(StepError) as raised:
        step_type.execute(payload, lambda text: None)

    assert str(raised.value).startswith(f"corrupt JPEG data in {source}: ")
    assert str(raised.value).endswith(" extraneous bytes before marker 0xd9")
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("step", ["stitch", "nadir", "derive"])
def test_a_marker_libjpeg_does_not_know_in_the_image_data_fails_every_step(
    tmp_path: Path, step: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Random damage in the entropy-coded data reads, most often, as a marker: libjpeg stops there with an
    error, which had been taken for a header quirk, and OpenCV then decoded the rest as grey with a mere
    warning. 108 of 300 random damages of a demo frame were such."""
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(256, 128, seed=1)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    _, sos, _ = scan_segments(data)
    middle = sos + (len(data) - sos) // 2
    source = tmp_path / "frame.jpg"
    source.write_bytes(data[:middle] + b"\xff\x56" + data[middle + 2 :])
    step_type, payload = payloads(str(source), tmp_path)[step]

    with pytest.raises(StepError) as raised:
        step_type.execute(payload, lambda text: None)

    assert str(raised.value) == f"corrupt JPEG data in {source}: unsupported marker type 0x56"
    assert capfd.readouterr().err == ""


def _quirky(data: bytes, quirk: str) -> bytes:
    """``data`` (a JPEG from Pillow, JFIF) with a quirk some cameras and tools leave, its pixels untouched."""
    if quirk == "fill before the end marker":
        return data[:-2] + bytes(11) + data[-2:]
    assert data[6:11] == b"JFIF\x00"
    return data[:11] + bytes([2, 1]) + data[13:]  # "unknown JFIF revision number 2.01"


@pytest.mark.parametrize("quirk", ["fill before the end marker", "a JFIF revision libjpeg does not know"])
def test_a_harmless_libjpeg_warning_does_not_fail_the_decode(quirk: str, capfd: pytest.CaptureFixture[str]):
    """libjpeg warns of these, and the strict decode had failed the job: the pixels are all there."""
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(256, 128, seed=1)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()

    assert (decode_pixels(_quirky(data, quirk), "frame.jpg") == decode_pixels(data, "frame.jpg")).all()


def test_a_header_claiming_more_pixels_than_a_decode_makes_is_refused_before_any_is_allocated():
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(256, 128, seed=1)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    claimed = data[: sof + 5] + (32500).to_bytes(2, "big") + (65000).to_bytes(2, "big") + data[sof + 9 :]

    with pytest.raises(StepError) as raised:
        decode_pixels(claimed, "big.jpg")

    assert str(raised.value) == f"cannot decode big.jpg: 65000x32500 pixels, more than {MAX_PIXELS:,}"


def test_alpha_decodes_a_logo_as_bgra_with_its_transparency():
    rgba = np.dstack([synthetic_panorama(64, 32, seed=2), np.arange(64 * 32, dtype=np.uint8).reshape(32, 64)])
    png, grey16 = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, "PNG")
    Image.fromarray(np.full((32, 64), 257 * 200, np.uint16)).save(grey16, "PNG")
    opaque = jpeg(rgba[..., :3])

    assert (decode_pixels(png.getvalue(), "logo.png", alpha=True) == rgba[..., [2, 1, 0, 3]]).all()
    assert (decode_pixels(grey16.getvalue(), "logo.png", alpha=True) == (200, 200, 200, 255)).all()
    assert (decode_pixels(opaque, "logo.jpg", alpha=True)[..., :3] == decode_pixels(opaque, "logo.jpg")).all()
    assert (decode_pixels(opaque, "logo.jpg", alpha=True)[..., 3] == 255).all()


def test_a_logo_with_damaged_jpeg_data_fails_the_cap_naming_the_logo(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    """Its structure is whole, so planning takes it (only a decode finds the damage): OpenCV had decoded it
    with a bare warning, and the cap pasted the garbage on every image."""
    logo = tmp_path / "logo.jpg"
    logo.write_bytes(damaged(jpeg(synthetic_panorama(96, 64, seed=3))))
    source = tmp_path / "pano.jpg"
    source.write_bytes(jpeg(synthetic_panorama(256, 128, seed=1)))
    sha256 = hashlib.sha256(logo.read_bytes()).hexdigest()
    _, payload = payloads(str(source), tmp_path)["nadir"]
    payload["params"] |= {"logo": str(logo), "logo_sha256": sha256}

    assert structure_damage(logo.read_bytes()) is None
    with pytest.raises(StepError) as raised:
        NadirStep.execute(payload, lambda text: None)

    assert str(raised.value).startswith(f"corrupt JPEG data in logo {logo}: ")
    assert capfd.readouterr().err == ""
