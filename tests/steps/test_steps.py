"""Step building blocks: canonical fingerprints, derived image sizes, output names."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from panopipe.errors import StepError
from panopipe.metadata import apply_metadata
from panopipe.steps.apply_metadata import metadata_update
from panopipe.steps.base import put_output, safe_name
from panopipe.steps.derive import decode_for_sizes, scaled_jpegs
from panopipe.steps.fingerprint import canonical_json, fingerprint
from panopipe.stitching import synthetic_panorama


def test_fingerprint_is_sha256_of_canonical_json():
    document = {
        "b": [1, 2.5, None],
        "a": "é",
        "t": datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    }
    assert canonical_json(document) == '{"a":"é","b":[1,2.5,null],"t":"2024-05-01T10:00:00Z"}'
    # A fixed vector: the same on every machine and Python version.
    assert fingerprint(document) == fingerprint(
        {"t": datetime(2024, 5, 1, 10, tzinfo=UTC), "b": [1, 2.5, None], "a": "é"}
    )
    assert fingerprint({"x": 1}) == "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"


def test_fingerprint_refuses_what_is_not_canonical():
    with pytest.raises(ValueError):
        fingerprint({"t": datetime(2024, 5, 1)})
    with pytest.raises(ValueError):
        fingerprint({"x": float("nan")})


def test_scaled_jpegs_use_dct_scaling_and_fit_the_size():
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(1024, 512, seed=1)).save(buffer, "JPEG", quality=90)
    for size, expected in ((128, (128, 64)), (300, (300, 150)), (4096, (1024, 512))):
        with Image.open(io.BytesIO(scaled_jpegs(buffer.getvalue(), [size], 85)[0])) as scaled:
            assert scaled.size == expected
            assert scaled.format == "JPEG"


@pytest.mark.parametrize(
    ("sizes", "decoded_width", "targets"),
    # the smallest DCT scale that leaves a factor of at least 2 to the largest size
    [
        ([64], 128, [(64, 32)]),  # 1/8
        ([128], 256, [(128, 64)]),  # 1/4
        ([200], 512, [(200, 100)]),  # 1/2
        ([300], 1024, [(300, 150)]),  # no scaling: 1/2 would leave 1.7
        ([64, 300], 1024, [(64, 32), (300, 150)]),  # scaled for the largest
        ([4096], 1024, [(1024, 512)]),  # never enlarged
    ],
)
def test_the_decode_scales_in_the_dct_domain_for_the_largest_size(
    sizes: list[int], decoded_width: int, targets: list[tuple[int, int]]
):
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(1024, 512, seed=1)).save(buffer, "JPEG", quality=90)
    decoded, fitted = decode_for_sizes(buffer.getvalue(), sizes)
    assert decoded.shape == (decoded_width // 2, decoded_width, 3)
    assert fitted == targets


@pytest.mark.parametrize(
    ("width", "sizes", "bound"),
    # factors left after the DCT scaling: 2 (1/4), not whole (Pillow's Lanczos), 3 (1/4), 4 (1/8); then 4
    # from the pixels of a larger size made in the same call (a thumbnail beside its preview: 0.67 RMS
    # where the thumbnail alone is 1.32)
    [(1024, [128], 1.6), (1024, [300], 0.8), (1536, [128], 1.2), (2048, [64], 1.6), (2048, [128, 512], 1.0)],
)
def test_scaled_jpegs_are_as_close_to_a_lanczos_downscale_of_the_full_image_as_libvips(
    width: int, sizes: list[int], bound: float
):
    # the decoder's DCT scaling leaves a factor 2 or more to the Lanczos filter, as libvips does: scaling
    # by the DCT alone to the size (an 8x8 block mean at 1/8) is 2.7 and 2.2 grey levels RMS off at 1024 px;
    # a filter misaligned by half a pixel or more (factors 3 and 4) was 4.9 and 10.4 off
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(width, width // 2, seed=1)).save(buffer, "JPEG", quality=95)
    size = sizes[0]
    with Image.open(io.BytesIO(buffer.getvalue())) as full:
        reference = np.asarray(full.resize((size, size // 2), Image.Resampling.LANCZOS).convert("L"), float)
    with Image.open(io.BytesIO(scaled_jpegs(buffer.getvalue(), sizes, 100)[0])) as scaled:
        error = np.sqrt(((np.asarray(scaled.convert("L"), float) - reference) ** 2).mean())
    assert error < bound


def test_scaled_jpegs_keep_the_picture():
    pixels = np.zeros((256, 512, 3), "uint8")
    pixels[:, 256:] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    with Image.open(io.BytesIO(scaled_jpegs(buffer.getvalue(), [64], 90)[0])) as scaled:
        small = np.asarray(scaled)
    assert small[:, :28].mean() < 10 and small[:, 36:].mean() > 245


def test_scaled_jpegs_refuse_a_truncated_jpeg_and_what_is_not_one():
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(1024, 512, seed=1)).save(buffer, "JPEG", quality=90)
    with pytest.raises(StepError, match=r"^corrupt JPEG data in the image: premature end of JPEG file$"):
        scaled_jpegs(buffer.getvalue()[: buffer.tell() // 2], [128], 85)
    buffer = io.BytesIO()
    Image.fromarray(synthetic_panorama(64, 32, seed=1)).save(buffer, "PNG")
    with pytest.raises(StepError, match="cannot decode the image: "):
        scaled_jpegs(buffer.getvalue(), [16], 85)


def test_put_output_keeps_a_complete_object_and_replaces_the_empty_file_of_a_power_loss(tmp_path):
    kept, cut_short = tmp_path / "kept.jpg", tmp_path / "cut.jpg"
    kept.write_bytes(b"first attempt")
    cut_short.write_bytes(b"")  # a create-only write is not flushed to disk: what a power loss may leave

    assert put_output("a", str(kept), b"second attempt").hash == hashlib.sha256(b"first attempt").hexdigest()
    output = put_output("b", str(cut_short), b"second attempt")

    assert kept.read_bytes() == b"first attempt" and cut_short.read_bytes() == b"second attempt"
    assert (output.hash, output.size) == (hashlib.sha256(b"second attempt").hexdigest(), 14)


@pytest.mark.parametrize(("text", "safe"), [("R001-000120", "R001-000120"), ("..", "_-")])
def test_safe_name(text: str, safe: str):
    assert safe_name(text).startswith(safe)
    assert "/" not in safe_name("a/b") and safe_name("a/b") != safe_name("a_b")


@pytest.mark.exiftool
@pytest.mark.parametrize(
    ("offset", "gps_time", "tags"),
    [
        (
            120,
            datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC),
            {"DateTimeOriginal": "2024:05:01 12:00:01", "OffsetTimeOriginal": "+02:00"},
        ),
        (None, None, {"DateTimeOriginal": "2024:05:01 10:00:01"}),  # the clock's reading, zone unknown
    ],
)
def test_the_offset_and_gps_time_are_written_only_when_the_offset_is_known(offset, gps_time, tags, tmp_path):
    metadata = {
        "captured_at": "2024-05-01T10:00:01Z",
        "utc_offset_minutes": offset,
        "gps_img_direction": None,
    }

    update = metadata_update(metadata, 256, 128)

    assert update.gps_datetime == gps_time
    assert update.captured_at == datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    image = io.BytesIO()
    Image.new("RGB", (256, 128)).save(image, "JPEG")
    written = tmp_path / "written.jpg"
    written.write_bytes(apply_metadata(image.getvalue(), update))
    found = json.loads(
        subprocess.run(
            ["exiftool", "-j", "-DateTimeOriginal", "-OffsetTimeOriginal", "-GPSDateStamp", str(written)],
            capture_output=True,
            check=True,
        ).stdout
    )[0]
    found.pop("SourceFile")
    assert found == tags | ({"GPSDateStamp": "2024:05:01"} if gps_time else {})
