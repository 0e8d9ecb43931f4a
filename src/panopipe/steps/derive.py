"""The ``derive`` step: a thumbnail and a preview of each panorama or 360° image.

Scaling is done as libvips' ``thumbnail`` does it, with the same quality: Pillow's ``Image.draft()`` makes
the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT domain, leaving at least a factor 2 to a Lanczos-3
resample (the decoder's 1/8 scale alone is an 8x8 block mean, which aliases: its thumbnails are measurably
further from a Lanczos downscale of the full image, see ``bench/bench_derive.py``). So a 4096 px panorama
becomes a 512 px thumbnail after decoding a quarter of its width. Pillow rather than pyvips: both drive
libjpeg-turbo's DCT scaling and a Lanczos-3 filter, so pyvips would do the same work at the same speed,
while needing libvips, a system library. Jobs run in parallel on the executor's workers. The step reads the pixels upstream of
``apply-metadata`` (the stitched panorama, or the image file) and writes into each derived image the metadata
``apply-metadata`` writes (:func:`~panopipe.steps.apply_metadata.expected_metadata`: GPS, capture time,
camera, panopipe tags; not the artist, copyright and description of ``[steps.apply-metadata]``), with a
GPano of the derived image's own size, so that a viewer opens it as a 360° panorama. A metadata edit makes
it stale.

Config (``[steps.derive]``): ``thumbnail = 512`` and ``preview = 2048`` (long side in pixels; 0 disables
the preview), ``quality = 85``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from panopipe.catalog.records import to_json_value
from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, StepError
from panopipe.steps.apply_metadata import METADATA_FIELDS, expected_metadata, with_metadata
from panopipe.steps.base import Log, Output, Step, Subject, SubjectKind, Upstream, put_output, read_input


class DeriveStep(Step):
    """Scaled-down copies of the panorama: ``thumbnail`` (the primary output) and ``preview``."""

    name = "derive"
    version = "2"
    outputs = ("thumbnail", "preview")
    reads = METADATA_FIELDS
    parameters = (
        ConfigKey("thumbnail", 512, "Long side of the thumbnail in pixels."),
        ConfigKey("preview", 2048, "Long side of the preview in pixels; 0 makes no preview."),
        ConfigKey("quality", 85, "JPEG quality of both, 1 to 100."),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(table)
        params.pop("enabled", None)
        params["project"] = self.context.project
        for key, low in (("thumbnail", 16), ("preview", 0), ("quality", 1)):
            value = params[key]
            if type(value) is not int or not (value == 0 or low <= value) or value > 65536:
                raise ConfigError(f"[steps.derive]: {key} must be a whole number of pixels, got {value!r}")
        if params["quality"] > 100:
            raise ConfigError(f"[steps.derive]: quality must be 1 to 100, got {params['quality']}")
        return params

    def upstream(self, kind: SubjectKind) -> str | None:
        return "stitch" if kind == "shot" else None

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        payload = super().payload(subject, upstream, fingerprint)
        if not self.params["preview"]:
            payload["outputs"].pop("preview")
        metadata = expected_metadata(subject, {"project": self.params["project"]})
        return {**payload, "metadata": {k: to_json_value(v) for k, v in metadata.items()}}

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        source = read_input(payload["inputs"][0])
        params = payload["params"]
        return [
            put_output(
                name,
                uri,
                with_metadata(scaled_jpeg(source, params[name], params["quality"]), payload["metadata"], uri),
            )
            for name, uri in payload["outputs"].items()
        ]


def scaled_jpeg(data: bytes, size: int, quality: int) -> bytes:
    """``data`` (a JPEG) scaled to fit ``size`` x ``size`` pixels (never enlarged), as a JPEG."""
    from PIL import Image as PILImage  # imported by the worker only: planning never loads Pillow

    try:
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
            scale = min(1.0, size / max(width, height))
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            image.draft("RGB", (2 * target[0], 2 * target[1]))
            scaled = image.convert("RGB")
            if scaled.size != target:
                scaled = scaled.resize(target, PILImage.Resampling.LANCZOS)
    except OSError as exc:
        raise StepError(f"cannot decode the image: {exc}") from exc
    buffer = io.BytesIO()
    scaled.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


__all__ = ["DeriveStep", "scaled_jpeg"]
