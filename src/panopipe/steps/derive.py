"""The ``derive`` step: a thumbnail and a preview of each panorama or 360° image.

Scaling is done with libvips' ``thumbnail`` rule and quality: the JPEG decoder scales by 1/2, 1/4 or 1/8
in the DCT domain (OpenCV's reduced reads, libjpeg-turbo), leaving at least a factor 2 to a Lanczos-3
resample (the decoder's 1/8 scale alone is an 8x8 block mean, which aliases: its thumbnails are measurably
further from a Lanczos downscale of the full image, see ``bench/bench_derive.py``). So a 4096 px panorama
becomes a 512 px thumbnail after decoding a quarter of its width. A job decodes its panorama once, for the
largest output: the thumbnail is shrunk from the preview's pixels (a 2048 px preview leaves a factor 4), not
decoded again. The Lanczos-3 resample is applied to the luma only; the chroma, which the encoder's 4:2:0
subsampling halves again, is area-averaged (a third of the filtering, at the same luma SSIM). When the factor
left is a whole number (4096 -> 512, 4096 -> 2048, 2048 -> 512), the filter runs as vectorised OpenCV line
filters computed only at the kept pixels (one filter of 6 or 7 taps per phase of the factor); other factors
use Pillow's Lanczos. OpenCV (already a dependency) rather than pyvips (libvips 8.18 took more CPU per 512 px
thumbnail; a 21 MB binary) or simplejpeg (its libjpeg-turbo decodes at 1/4 in the same CPU time as
OpenCV's): ``bench/README.md``, issue 15 gap 2. Jobs run in parallel on the executor's workers.

The step reads the pixels upstream of ``apply-metadata`` (the stitched panorama, or the image file, or their
``nadir`` output when that step is on), turned as its EXIF orientation tells a viewer to show it (the
derived images have no orientation tag), and writes into each derived image the source's ICC profile (its
colours mean what they meant in the source; a file without one pays nothing) and the metadata
``apply-metadata`` writes (:func:`~panopipe.steps.apply_metadata.expected_metadata`: GPS, capture time, camera, panopipe tags; not the
artist, copyright and description of ``[steps.apply-metadata]``), with a GPano of the derived image's own
size, so that a viewer opens it as a 360° panorama. A metadata edit makes it stale.

Config (``[steps.derive]``): ``thumbnail = 512`` and ``preview = 2048`` (long side in pixels; 0 disables
the preview), ``quality = 85``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from panopipe.catalog.records import to_json_value
from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, MetadataError, StepError
from panopipe.metadata import parse_jpeg_header
from panopipe.metadata.jpeg import icc_profile, scan_jpeg, scan_segments, with_icc
from panopipe.steps.apply_metadata import (
    METADATA_FIELDS,
    METADATA_FIELDS_IF_SET,
    ApplyMetadataStep,
    Placement,
    expected_metadata,
    with_metadata,
)
from panopipe.steps.base import (
    Log,
    Output,
    Step,
    Subject,
    SubjectKind,
    Upstream,
    job_inputs,
    jpeg_quality,
    put_output,
    read_input,
)
from panopipe.steps.nadir import covered, pixel_source
from panopipe.steps.pixels import decode_pixels


class DeriveStep(Step):
    """Scaled-down copies of the panorama: ``thumbnail`` (the primary output) and ``preview``."""

    name = "derive"
    version = "5"  # 5: turned as the EXIF orientation says, with the source's ICC profile
    outputs = ("thumbnail", "preview")
    reads = METADATA_FIELDS
    reads_if_set = METADATA_FIELDS_IF_SET
    frame_fields = ApplyMetadataStep.frame_fields
    tagged = True
    # It decodes the whole image with OpenCV and Pillow, which the event function ships without
    # (panopipe.aws.package.EXCLUDED): an upload queues it for AWS Batch.
    heavy = True
    parameters = (
        ConfigKey("thumbnail", 512, "Long side of the thumbnail in pixels, 16 to 65536."),
        ConfigKey("preview", 2048, "Long side of the preview in pixels, 16 to 65536; 0 makes no preview."),
        ConfigKey("quality", 85, "JPEG quality of both, 1 to 100."),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(table)
        params.pop("enabled", None)
        params["project"] = self.context.project
        params.update(covered(self.context.tables))
        params.update(Placement.params(self.context))
        self.placement = Placement.of(self.context)
        for key in ("thumbnail", "preview"):
            value = params[key]
            if type(value) is not int or not (16 <= value <= 65536 or (key == "preview" and value == 0)):
                no_preview = ", or 0 for none" if key == "preview" else ""
                raise ConfigError(
                    f"[steps.derive]: {key} must be a whole number of pixels from 16 to 65536{no_preview}, "
                    f"got {value!r}"
                )
        jpeg_quality(self.name, params["quality"])
        return params

    def upstream(self, kind: SubjectKind) -> str | None:
        return pixel_source(kind, self.context.tables)

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        payload = super().payload(subject, upstream, fingerprint)
        if not self.params["preview"]:
            payload["outputs"].pop("preview")
        metadata = expected_metadata(subject, {"project": self.params["project"]}, self.placement)
        return {**payload, "metadata": {k: to_json_value(v) for k, v in metadata.items()}}

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        uri, sha256 = job_inputs(payload)[0]
        source = read_input(uri, sha256)
        try:
            header = parse_jpeg_header(source)  # a partial panorama's area, which its copies keep
        except MetadataError as exc:
            raise StepError(f"cannot decode {uri}: {exc}") from exc
        params, outputs = payload["params"], payload["outputs"]
        sizes = [params[name] for name in outputs]
        images = scaled_jpegs(source, sizes, params["quality"], orientation=header.orientation, source=uri)
        profile = icc_profile(source)
        return [
            put_output(
                name,
                out,
                with_metadata(with_icc(image, profile), payload["metadata"], out, scaled_from=header),
            )
            for (name, out), image in zip(outputs.items(), images, strict=True)
        ]


def scaled_jpegs(
    data: bytes,
    sizes: Sequence[int],
    quality: int,
    *,
    orientation: int | None = None,
    source: str = "the image",
) -> list[bytes]:
    """``data`` (a JPEG, called ``source`` in errors) scaled to fit ``size`` x ``size`` pixels for each of
    ``sizes`` (never enlarged), as JPEGs, from one decode, turned as its EXIF ``orientation`` says (as a
    viewer shows it; the copies have no orientation tag). The decoder scales for the largest size; each
    smaller one is shrunk from the pixels of the next larger one when that leaves a factor of at least 2, else from the decoded pixels (a
    512 px thumbnail from a 2048 px preview's pixels takes about 2 ms instead of a decode of about 20, and is
    nearer a Lanczos downscale of the full image: ``bench/README.md``)."""
    import cv2  # imported by the worker only: planning never loads OpenCV or Pillow

    decoded, targets = decode_for_sizes(data, sizes, orientation=orientation, source=source)
    encoded: dict[tuple[int, int], bytes] = {}
    pixels = decoded
    for target in sorted(set(targets), reverse=True):
        larger = pixels if pixels.shape[1] >= 2 * target[0] else decoded
        pixels = larger if larger.shape[:2] == (target[1], target[0]) else _shrink(larger, target)
        ok, image = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise StepError("cannot encode the scaled image")
        encoded[target] = image.tobytes()
    return [encoded[target] for target in targets]


def decode_for_sizes(
    data: bytes, sizes: Sequence[int], *, orientation: int | None = None, source: str = "the image"
) -> tuple[Any, list[tuple[int, int]]]:
    """``data`` (a JPEG) decoded to BGR pixels at the smallest DCT scale (1/8, 1/4, 1/2 or 1) that leaves a
    factor of at least 2 to the largest of ``sizes``, turned as EXIF ``orientation`` says, and the
    (width, height) that fits each of ``sizes``. The part of :func:`scaled_jpegs` that every way of scaling a
    JPEG pays: ``bench/bench_derive.py`` times it alone as the floor of a thumbnail's cost."""
    try:
        segments, _, end = scan_segments(data)  # the header only
        header = scan_jpeg(data, segments, end)
    except MetadataError as exc:
        raise StepError(f"cannot decode {source}: {exc}") from exc
    width, height = header.width, header.height
    if not width or not height:
        raise StepError(f"cannot decode {source}: its frame has no size")
    if orientation in (5, 6, 7, 8):  # turned a quarter: shown as high as it is stored wide
        width, height = height, width
    targets = [_fitted(width, height, size) for size in sizes]
    largest = max(targets)
    # the largest DCT scale that leaves a factor of at least 2
    room = min(width // (2 * largest[0]), height // (2 * largest[1]))
    shrink = next(shrink for shrink in (8, 4, 2, 1) if shrink <= max(1, room))
    return decode_pixels(data, source, upright=orientation in range(2, 9), shrink=shrink), targets


def _fitted(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled to fit ``size`` x ``size``, never enlarged."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(pixels: Any, target: tuple[int, int]) -> Any:
    """``pixels`` (H x W x 3 BGR, uint8) shrunk to ``target`` (width, height): the luma by a Lanczos-3
    resample, the chroma by an area average (it is halved again by the encoder's 4:2:0 subsampling)."""
    import cv2
    import numpy as np
    from PIL import Image as PILImage

    luma = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)  # the Y of YCrCb: the same BT.601 weights
    factor = pixels.shape[1] // target[0]
    if factor > 1 and pixels.shape[:2] == (factor * target[1], factor * target[0]):
        luma = _lanczos_shrink(luma, factor)
    else:
        luma = np.asarray(PILImage.fromarray(luma).resize(target, PILImage.Resampling.LANCZOS))
    small = cv2.cvtColor(cv2.resize(pixels, target, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2YCrCb)
    small[..., 0] = luma
    return cv2.cvtColor(small, cv2.COLOR_YCrCb2BGR)


def _lanczos_shrink(plane: Any, factor: int) -> Any:
    """``plane`` (H x W, uint8, both multiples of ``factor``) shrunk by the whole number ``factor`` with a
    Lanczos-3 filter, computed only where a pixel is kept: each of the ``factor`` phases (every
    factor-th row, then column, from an offset) gets its own 6 or 7 taps of the filter."""
    import cv2
    import numpy as np

    phases = _lanczos_phases(factor)
    rows: list[Any] = [
        cv2.filter2D(  # of floats: OpenCV vectorises its line filters of floats, not of bytes to floats
            plane[p::factor].astype(np.float32),
            cv2.CV_32F,
            kernel[:, None],
            anchor=(0, shift),
            borderType=cv2.BORDER_REFLECT,
        )
        for p, kernel, shift in phases
    ]
    for part in rows[1:]:
        cv2.add(rows[0], part, dst=rows[0])
    columns: list[Any] = [
        cv2.filter2D(
            np.ascontiguousarray(rows[0][:, p::factor]),
            cv2.CV_32F,
            kernel[None, :],
            anchor=(shift, 0),
            borderType=cv2.BORDER_REFLECT,
        )
        for p, kernel, shift in phases
    ]
    for part in columns[2:]:
        cv2.add(columns[1], part, dst=columns[1])
    # the sum of the phases, rounded and saturated to uint8 in one pass
    return cv2.addWeighted(columns[0], 1.0, columns[1], 1.0, 0.0, dtype=cv2.CV_8U)


@cache
def _lanczos_phases(factor: int) -> list[tuple[int, Any, int]]:
    """The ``(phase, taps, shift)`` of a Lanczos-3 shrink by ``factor`` (see :func:`_lanczos_shrink`),
    computed once per factor."""
    import numpy as np

    # the filter of a Lanczos-3 resample by ``factor``: output pixel j, centred on input pixel
    # factor * j + (factor - 1) / 2, is sum(taps[k] * input[factor * j + k - anchor]); the 7 * factor taps
    # cover the 6 * factor input pixels within 3 output pixels of that centre, for odd factors too
    anchor = 3 * factor
    offsets = (np.arange(7 * factor) - anchor - (factor - 1) / 2) / factor
    taps = np.where(np.abs(offsets) < 3, np.sinc(offsets) * np.sinc(offsets / 3), 0.0)
    taps = (taps / taps.sum()).astype(np.float32)
    # phase p (input pixels factor * i + p) meets taps first, first + factor, ... at output offset -shift;
    # its zero taps at either end are left out (each would cost a multiplication per pixel)
    phases = []
    for p in range(factor):
        kernel, shift = taps[(anchor + p) % factor :: factor], (anchor + p) // factor
        kept = np.flatnonzero(kernel)
        phases.append((p, kernel[kept[0] : kept[-1] + 1], shift - kept[0]))
    return phases


__all__ = ["DeriveStep", "decode_for_sizes", "scaled_jpegs"]
