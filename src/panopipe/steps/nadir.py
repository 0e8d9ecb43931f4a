"""The ``nadir`` step: the bottom of each panorama or 360° image, where the rig sees its own vehicle, covered by
a disc (:mod:`panopipe.stitching.nadir`): blurred, one colour, or a logo.

Off unless ``[steps.nadir] enabled = true``. When on, it runs after ``stitch`` (shots) or on the image file
(single 360° images; an upload queues it for AWS Batch as it does a stitch, :attr:`Step.heavy`), and
``apply-metadata`` and ``derive`` read its output instead, so that every published image, thumbnail and
preview is covered. Turning it on or off makes those two (and publish) stale; changing the cap (its angle,
fill, logo file or quality) reruns the cap and what follows it, never the stitching.

The nadir is the bottom of the image as a viewer shows it (turned as its EXIF orientation says; the covered
image keeps the orientation and its pixels are stored as they were). An image that is a GPano area of a full
panorama (``CroppedArea*`` and ``FullPano*``) is covered where the cap falls in it; when the area ends above
the cap, the nadir is not in the image: it is left as it is (the job's log says so) and goes on to publish.

The covered image is encoded again (JPEG, ``quality``), with the source's metadata segments (EXIF, XMP, ICC)
carried over unchanged; its pixels above the cap are decoded and encoded again too: one more JPEG generation.
The logo keeps its proportions (:func:`~panopipe.stitching.nadir.fit_logo`). It is a file or object that every
planner and worker reads (in a deployed stack, under its output prefix); its SHA-256 is part of the parameters,
so replacing the file reruns the cap. Planning refuses a logo cut short or with a damaged PNG chunk
(:func:`~panopipe.steps.pixels.structure_damage`: it decodes no pixels); the worker decodes it as every step
decodes an image (:func:`~panopipe.steps.pixels.decode_pixels`), which fails a job whose logo, a JPEG, has
damaged compressed data.

Config (``[steps.nadir]``): ``enabled = false``, ``angle_deg = 20``, ``fill = "blur"`` (or ``"#RRGGBB"``),
``logo`` (none), ``quality = 92``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, MetadataError, StepError, StorageError
from panopipe.metadata import ImageMetadata, parse_jpeg_header
from panopipe.metadata.writer import with_segments_of
from panopipe.steps.base import (
    Log,
    Output,
    Step,
    SubjectKind,
    job_inputs,
    jpeg_quality,
    put_output,
    read_input,
)
from panopipe.steps.pixels import as_displayed, decode_pixels, structure_damage
from panopipe.storage import local_path, resolve_uri

if TYPE_CHECKING:  # numpy and OpenCV are imported by the worker only: planning never loads them
    import numpy as np

    from panopipe.steps.apply_metadata import PanoramaArea

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class NadirStep(Step):
    """Cover the nadir of the panorama (shots) or of the 360° image (single images) with a disc: blurred, one
    colour, or a logo. Off unless enabled; when on, apply-metadata and derive read its output."""

    name = "nadir"
    version = "2"  # 2: the bottom as a viewer shows it (EXIF orientation), the nadir of a GPano area
    outputs = ("image",)
    enabled_by_default = False
    heavy = True  # the whole image decoded and encoded again (226 MB of pixels at 12288x6144): AWS Batch
    parameters = (
        ConfigKey("angle_deg", 20.0, "The disc's radius, in degrees from straight down (1 to 60)."),
        ConfigKey(
            "fill",
            "blur",
            "What fills the disc: `blur` (the image's own colours there, blurred) or a colour `#RRGGBB`.",
        ),
        ConfigKey(
            "logo",
            None,
            "An image (PNG, with transparency, or JPEG) drawn on the disc, upright to a viewer facing forward "
            "and looking down, in its own proportions (its longer side spans the disc, the fill shows around a "
            "logo that is not square, and the disc's rim trims the corners of the square): an s3:// URI or a path (relative: to the config file's folder) that every planner and "
            "worker can read (in a deployed stack: under its output prefix, e.g. "
            "s3://BUCKET/panopipe-out/assets/nadir.png); replacing the file reruns the cap. A file cut short, or a PNG "
            "with a damaged chunk, is refused when planning (exit code 2).",
            "none",
        ),
        ConfigKey("quality", 92, "JPEG quality of the covered image, 1 to 100."),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        from panopipe.stitching.nadir import parse_fill

        angle, fill, logo, quality = (table.get(key) for key in ("angle_deg", "fill", "logo", "quality"))
        if not isinstance(angle, int | float) or isinstance(angle, bool) or not 1 <= angle <= 60:
            raise ConfigError(f"[steps.nadir]: angle_deg must be a number from 1 to 60, got {angle!r}")
        try:
            parse_fill(fill if isinstance(fill, str) else repr(fill))
        except ValueError as exc:
            raise ConfigError(f"[steps.nadir]: fill: {exc}") from exc
        jpeg_quality(self.name, quality)
        params: dict[str, Any] = {"angle_deg": float(angle), "fill": fill, "quality": quality}
        if logo is not None:
            params["logo"], params["logo_sha256"] = _read_logo(logo)
            # How fit_logo fits it to the disc, its proportions kept (a logo that is not square had been
            # stretched to a square): a parameter, not the step's version, so that only caps with a logo rerun.
            params["logo_fit"] = "contain"
        return params

    def upstream(self, kind: SubjectKind) -> str | None:
        return "stitch" if kind == "shot" else None

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        import cv2
        import numpy as np

        from panopipe.steps.apply_metadata import partial_panorama  # which imports this module
        from panopipe.stitching.nadir import cap_geometry, cover_nadir, parse_fill

        params, (source, sha256) = payload["params"], job_inputs(payload)[0]
        data = read_input(source, sha256)
        stored = decode_pixels(data, source)
        header = _header(data)
        pixels = as_displayed(stored, header.orientation if header else None)  # its bottom is the nadir
        height, width = pixels.shape[:2]
        area = partial_panorama(header) if header and header.width == width else None
        full_width, full_height, left, top = area or (width, height, 0, 0)
        if full_width != 2 * full_height:
            raise StepError(
                f"{source} is {_size(width, height, area)}, not a full equirectangular panorama (twice as "
                "wide as high) nor a GPano area of one: its nadir is not in the image"
            )
        cap_top = cap_geometry(full_width, full_height, params["angle_deg"]).top
        if top + height <= cap_top:
            log(
                f"the nadir of {source} is not in the image (its GPano area is rows {top}-{top + height} of "
                f"{full_height}, the cap starts at row {cap_top}): left as it is"
            )
            return [put_output("image", payload["outputs"]["image"], data)]
        logo = None
        if params.get("logo"):
            size = cap_geometry(full_width, full_height, params["angle_deg"]).view
            logo = _logo_at(params["logo"], params["logo_sha256"], size)
        panorama = _full_panorama(pixels, area) if area else np.ascontiguousarray(pixels)
        cover_nadir(panorama, params["angle_deg"], parse_fill(params["fill"]), logo)
        if area:
            pixels[...] = panorama[top : top + height, (left + np.arange(width)) % full_width]
        elif panorama is not pixels:
            pixels[...] = panorama
        ok, encoded = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
        if not ok:
            raise StepError("cannot encode the covered image as JPEG")
        try:
            covered = with_segments_of(data, encoded.tobytes())
        except MetadataError as exc:
            raise StepError(f"cannot carry the metadata of {source} over: {exc}") from exc
        log(f"covered {params['angle_deg']:g}° around the nadir of {_size(width, height, area)}")
        return [put_output("image", payload["outputs"]["image"], covered)]


def _header(data: bytes) -> ImageMetadata | None:
    """The metadata of ``data`` (its orientation and GPano area); ``None`` where it is not a JPEG's."""
    try:
        return parse_jpeg_header(data)
    except MetadataError:
        return None


def _size(width: int, height: int, area: PanoramaArea | None) -> str:
    """The size of an image in words, and the panorama it is the GPano ``area`` of."""
    if area is None:
        return f"{width}x{height}"
    full_width, full_height, left, top = area
    return f"{width}x{height} (from column {left}, row {top} of a {full_width}x{full_height} panorama)"


def _full_panorama(pixels: np.ndarray, area: PanoramaArea) -> np.ndarray:
    """The whole panorama that ``pixels`` are the GPano ``area`` of: ``pixels`` in place (columns wrapping
    around), the rows above and below them repeating their first and last rows (what a blurred cap samples
    there), black beside them."""
    import numpy as np

    full_width, full_height, left, top = area
    height, width = pixels.shape[:2]
    panorama = np.zeros((full_height, full_width, 3), np.uint8)
    columns = (left + np.arange(width)) % full_width
    panorama[top : top + height, columns] = pixels
    panorama[:top, columns] = pixels[:1]
    panorama[top + height :, columns] = pixels[-1:]
    return panorama


def pixel_source(kind: SubjectKind, tables: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The step whose output holds the finished pixels of a subject of ``kind``, as the ``[steps.*]`` ``tables``
    configure it: ``nadir`` when it is on, else ``stitch`` for a shot; ``None``: the image file."""
    if NadirStep.enabled_in(tables):
        return NadirStep.name
    return "stitch" if kind == "shot" else None


def covered(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """The parameter that the steps reading :func:`pixel_source` add while ``nadir`` is on, so that turning it
    on or off makes them stale (none while it is off: their outputs of before stay current)."""
    return {"nadir": True} if NadirStep.enabled_in(tables) else {}


def _read_logo(location: Any) -> tuple[str, str]:
    """The absolute URI of the logo at ``location`` and its SHA-256; :class:`ConfigError` if it is unreadable,
    neither a PNG nor a JPEG, or damaged (see :func:`~panopipe.steps.pixels.structure_damage`)."""
    if not isinstance(location, str) or not location:
        raise ConfigError(f"[steps.nadir]: logo must be a path or an s3:// URI, got {location!r}")
    path = local_path(location)
    uri = str(path.absolute()) if path is not None else location
    try:
        storage, key = resolve_uri(uri)
        data = storage.get(key)
    except (StorageError, OSError) as exc:
        raise ConfigError(f"[steps.nadir]: cannot read logo {location}: {exc}") from exc
    if not data.startswith(_IMAGE_MAGIC):
        raise ConfigError(f"[steps.nadir]: logo {location} is neither a PNG nor a JPEG")
    damage = structure_damage(data)
    if damage is not None:
        raise ConfigError(
            f"[steps.nadir]: logo {location} is damaged ({damage}): replace it with an intact copy"
        )
    return uri, hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=4)  # one read and resize per worker process and image size, not per job
def _logo_at(uri: str, sha256: str, size: int) -> np.ndarray:
    """The logo at ``uri`` as BGRA pixels fitted to a disc's square of ``size`` pixels
    (:func:`~panopipe.stitching.nadir.fit_logo`); :class:`StepError` if it is no longer the file that was
    planned, or cannot be decoded."""
    from panopipe.stitching.nadir import fit_logo

    data = read_input(uri)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StepError(f"logo {uri} changed since this job was planned: run again to plan with the new logo")
    return fit_logo(decode_pixels(data, f"logo {uri}", alpha=True), size)


__all__ = ["NadirStep", "covered", "pixel_source"]
