"""Calibrated rig stitching: project every frame onto the sphere from the rig profile and feather the seams.

No feature matching: the geometry comes from the profile, so the result is deterministic and fast. The remap
tables and blend weights depend only on the rig's geometry and the output size; they are built once and kept in
a small in-process cache, so a batch of shots from one rig pays for them once.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from panopipe.errors import StepError
from panopipe.stitching.base import Stitcher, StitchResult, check_frames, require
from panopipe.stitching.rig import RigCamera, RigProfile

if TYPE_CHECKING:  # cv2 and numpy are imported where pixels are handled, so planning never loads them
    import numpy as np

_FILTERS = {"linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}  # cv2 constants
_INTERPOLATIONS = ("auto", *_FILTERS)
LINEAR_SCALE = 0.75
"""``interpolation = "auto"`` warps a tile bilinearly where one panorama pixel spans at most this many frame
pixels (the panorama magnifies the frame 1.33 times or more), bicubically elsewhere."""


@dataclass(frozen=True, slots=True)
class CalibratedParams:
    """Output size (``width`` defaults to the finest camera's resolution at its centre, ``height`` to half of
    ``width``), the resampling filter, and whether to refine the profile's angles from the frames first.

    ``interpolation``: ``"auto"`` (bilinear where one panorama pixel spans at most :data:`LINEAR_SCALE`
    frame pixels, bicubic elsewhere), ``"linear"`` or ``"cubic"``. Where the panorama magnifies the frame,
    bilinear comes as close to the scene as bicubic or closer, at a fraction of its CPU (OpenCV's bicubic
    remap has no SIMD path); near the frame's resolution bicubic is clearly better (bench/README.md).

    With ``refine``, the corrected profile comes back as :attr:`StitchResult.rig` (same name and version: save
    it as a new version if it should be kept). Its remap tables are built for that shot alone, so refine a
    few shots, keep the profile, and stitch the batch without ``refine``.
    """

    width: int | None = None
    height: int | None = None
    interpolation: Literal["auto", "linear", "cubic"] = "auto"
    refine: bool = False

    def __post_init__(self) -> None:
        for key in ("width", "height"):
            value = getattr(self, key)
            require(
                value is None or (type(value) is int and 16 <= value <= 65536),
                f"calibrated stitcher: {key} must be an integer from 16 to 65536, got {value!r}",
            )
        require(
            self.interpolation in _INTERPOLATIONS,
            f"calibrated stitcher: interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {self.interpolation!r}",
        )
        require(
            type(self.refine) is bool,
            f"calibrated stitcher: refine must be true or false, got {self.refine!r}",
        )


@dataclass(frozen=True, slots=True)
class Tile:
    """A block of the panorama one camera contributes to: ``rows`` starting at ``top`` and ``columns``
    starting at ``left`` (never past the right edge), with its fixed-point remap maps and blend weights, and
    ``scale``: the most frame pixels one step of a panorama pixel (right or down) spans in it."""

    top: int
    left: int
    map1: np.ndarray  # rows x columns x 2 int16 (cv2.convertMaps' CV_16SC2)
    map2: np.ndarray  # rows x columns uint16
    weight: np.ndarray  # rows x columns x 3 uint8: the cameras' weights of a pixel sum to 255
    scale: float

    @property
    def rows(self) -> int:
        return self.weight.shape[0]

    @property
    def columns(self) -> int:
        return self.weight.shape[1]


@dataclass(frozen=True, slots=True)
class RemapTables:
    """Everything needed to stitch frames of one rig geometry into one output size."""

    width: int
    height: int
    cameras: tuple[tuple[Tile, ...], ...]  # the tiles of each camera; none: it sees nothing of the output
    coverage: np.ndarray


REFINE_VERSION = 2
"""Bumped when refining gives other profiles (2: a fit that cannot be trusted keeps the profile): the shots
stitched with ``refine`` are stitched again, the others stay current."""


class CalibratedStitcher(Stitcher[CalibratedParams]):
    """Stitch the frames of a calibrated rig (frame ``i`` from camera ``i``) into an equirectangular panorama."""

    name = "calibrated"
    version = 2  # 2: 8-bit weights summing to 255 (pixels may differ by one level from version 1)
    params_type = CalibratedParams

    def __init__(self, rig: RigProfile) -> None:
        self.rig = rig

    def stitch(
        self, frames: Sequence[np.ndarray], params: Mapping[str, Any] | CalibratedParams | None = None
    ) -> StitchResult:
        """Project and blend ``frames``; raise :class:`StepError` if they do not match the rig's cameras."""
        from panopipe.stitching.refine import refine_rig

        options = self.parse_params(params)
        check_frames(frames, self.name)
        self._check_sizes(frames)
        rig, log = self.rig, []
        if options.refine:
            rig, refine_log = refine_rig(rig, frames)
            log.append(refine_log)
        width, height = output_size(rig, options.width, options.height)
        started = time.perf_counter()
        cached = remap_tables.cache_info().hits
        tables = remap_tables(rig.cameras, width, height)
        built = "cached" if remap_tables.cache_info().hits > cached else "built"
        log.append(f"remap tables {built} in {time.perf_counter() - started:.3f} s")
        panorama = blend(frames, tables, options.interpolation)
        used = sum(bool(tiles) for tiles in tables.cameras)
        if options.interpolation == "auto":
            tiles = [tile for camera in tables.cameras for tile in camera]
            linear = sum(tile.rows * tile.columns for tile in tiles if tile.scale <= LINEAR_SCALE)
            total = sum(tile.rows * tile.columns for tile in tiles)
            log.append(f"interpolation auto: bilinear on {linear / max(total, 1):.0%} of the warped pixels")
        log.append(
            f"rig {rig.name!r} v{rig.version}: {used} of {len(frames)} views -> {width}x{height}, "
            f"coverage {tables.coverage.mean():.1%}"
        )
        return StitchResult(panorama, tables.coverage, "\n".join(log), used, rig if options.refine else None)

    def fingerprint_fields(
        self, params: Mapping[str, Any] | CalibratedParams | None = None
    ) -> dict[str, Any]:
        """The stitcher, its params and the rig geometry: correcting the profile changes the fingerprint; with
        ``refine``, the version of the refinement too."""
        fields = {**super().fingerprint_fields(params), "rig": self.rig.fingerprint_fields()}
        if self.parse_params(params).refine:
            fields["refine_version"] = REFINE_VERSION
        return fields

    def _check_sizes(self, frames: Sequence[np.ndarray]) -> None:
        cameras = self.rig.cameras
        if len(frames) != len(cameras):
            raise StepError(
                f"rig {self.rig.name!r} has {len(cameras)} cameras but the shot has {len(frames)} frames"
            )
        for i, frame in enumerate(frames):
            if mismatch := self.rig.size_mismatch(i, frame.shape[1], frame.shape[0]):
                raise StepError(mismatch)


def output_size(rig: RigProfile, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """The panorama size for ``rig``: by default as many pixels per degree as its finest camera has at its
    centre (rounded up to a multiple of 16), and half as high as wide."""
    if width is None:
        finest = max(camera.focal_px for camera in rig.cameras)
        width = math.ceil(2 * math.pi * finest / 16) * 16
    return width, height if height is not None else width // 2


_STRIP = 64
"""Rows per tile: a camera's block of the panorama is cut into strips this high, each trimmed to the columns
where the camera's weight is not zero, so no pixel is warped only to be weighted by zero."""
_GAP = 256
"""Columns of zero weight that split a strip into two tiles (fewer are warped for nothing)."""


@functools.lru_cache(maxsize=2)  # a 6-camera 12288x6144 set takes about 1 GB, 2640x1320 about 50 MB
def remap_tables(cameras: tuple[RigCamera, ...], width: int, height: int) -> RemapTables:
    """Remap maps and feather weights (8-bit, summing to 255) of each camera for a ``width x height``
    panorama, cut into tiles (cached)."""
    import numpy as np

    from panopipe.stitching.projection import camera_rotation, equirect_lon_lat

    lon, lat = equirect_lon_lat(width, height)
    total = np.zeros((height, width), np.float32)
    blocks: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = []
    for camera in cameras:
        rotation = camera_rotation(camera)
        footprint = _footprint(camera, rotation, lon, lat)
        if footprint is None:
            blocks.append(None)
            continue
        top, bottom, left, count = footprint
        columns = (left + np.arange(count)) % width
        map1, map2, weight, scales = _camera_maps(camera, rotation, lon[columns], lat[top:bottom])
        for view, part in _wrapped(total[top:bottom], left, count):
            view += weight[:, part]
        blocks.append((top, left, map1, map2, weight, scales))
    coverage = total > 0
    scale = np.divide(np.float32(255), total, out=np.zeros_like(total), where=coverage)
    del total
    # Weights in 255ths, rounded so that every covered pixel's sum is exactly 255: each camera gets the
    # difference of the rounded running sums before and after it.
    running = np.zeros((height, width), np.float32)
    tables: list[tuple[Tile, ...]] = []
    for i, block in enumerate(blocks):
        if block is None:
            tables.append(())
            continue
        top, left, map1, map2, weight, scales = block
        blocks[i] = None  # frees the float weights as soon as they are quantised
        rows = slice(top, top + weight.shape[0])
        quantised = np.empty(weight.shape, np.uint8)
        for (view, part), (factor, _) in zip(
            _wrapped(running[rows], left, weight.shape[1]),
            _wrapped(scale[rows], left, weight.shape[1]),
            strict=True,
        ):
            before = np.rint(view)
            view += weight[:, part] * factor
            quantised[:, part] = np.rint(view) - before
        tables.append(_tiles(top, left, width, map1, map2, quantised, scales))
    return RemapTables(width, height, tuple(tables), coverage)


def _camera_maps(
    camera: RigCamera, rotation: np.ndarray, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-point remap maps (``cv2.CV_16SC2``) and float feather weights of ``camera`` for the directions at
    ``lat`` x ``lon``, computed strip by strip so the float maps never exist whole, and each strip's
    :func:`_column_scale`."""
    import cv2
    import numpy as np

    from panopipe.stitching.projection import camera_pixels

    map1 = np.empty((lat.size, lon.size, 2), np.int16)
    map2 = np.empty((lat.size, lon.size), np.uint16)
    weight = np.empty((lat.size, lon.size), np.float32)
    scales = np.empty((-(-lat.size // _STRIP), lon.size), np.float32)
    for strip, start in enumerate(range(0, lat.size, _STRIP)):
        rows = slice(start, start + _STRIP)
        map_x, map_y, valid = camera_pixels(camera, *_camera_xyz(rotation, lon, lat[rows]))
        # Feather: the weight falls linearly to zero at the image border, so seams blend smoothly.
        wx = 1 - np.abs(2 * map_x / camera.width - (camera.width - 1) / camera.width)
        wy = 1 - np.abs(2 * map_y / camera.height - (camera.height - 1) / camera.height)
        weight[rows] = np.where(valid, np.clip(wx, 0, 1) * np.clip(wy, 0, 1), np.float32(0))
        scales[strip] = _column_scale(map_x, map_y, valid)
        map1[rows], map2[rows] = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return map1, map2, weight, scales


def _column_scale(map_x: np.ndarray, map_y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """For each column of a strip of maps, the most frame pixels that one step of a panorama pixel (right or
    down) spans, over the rows where the camera sees (0 where it sees none)."""
    import numpy as np

    steps = np.zeros(map_x.shape, np.float32)
    for axis in (0, 1):
        if map_x.shape[axis] > 1:
            np.maximum(
                steps, np.hypot(np.gradient(map_x, axis=axis), np.gradient(map_y, axis=axis)), out=steps
            )
    return np.where(valid, steps, np.float32(0)).max(axis=0)


def _tiles(
    top: int,
    left: int,
    width: int,
    map1: np.ndarray,
    map2: np.ndarray,
    weight: np.ndarray,
    scales: np.ndarray,
) -> tuple[Tile, ...]:
    """A camera's block (``top``, ``left``, wrapping at ``width``) cut into strips, each trimmed to its runs of
    columns of non-zero weight (runs closer than :data:`_GAP` merged, split where the panorama wraps and
    where the strip's ``scales`` cross :data:`LINEAR_SCALE`)."""
    import cv2
    import numpy as np

    tiles: list[Tile] = []
    for strip, start in enumerate(range(0, weight.shape[0], _STRIP)):
        rows = slice(start, start + _STRIP)
        used = np.flatnonzero(weight[rows].any(axis=0))
        if not used.size:
            continue
        magnified = scales[strip, used] <= LINEAR_SCALE
        breaks = np.flatnonzero(
            (np.diff(used) > _GAP)
            | ((used[:-1] < width - left) & (used[1:] >= width - left))
            | (magnified[:-1] != magnified[1:])
        )
        for first, last in zip(used[np.r_[0, breaks + 1]], used[np.r_[breaks, used.size - 1]], strict=True):
            span = slice(int(first), int(last) + 1)
            tiles.append(
                Tile(
                    top + start,
                    (left + span.start) % width,
                    map1[rows, span].copy(),
                    map2[rows, span].copy(),
                    cv2.merge((weight[rows, span],) * 3),
                    float(scales[strip, span].max()),
                )
            )
    return tuple(tiles)


def _camera_xyz(rotation: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, ...]:
    """Camera-frame ``x, y, z`` (``len(lat) x len(lon)`` float32 each) of the panorama directions at ``lon``
    and ``lat``: ``R.T @ d`` written out, since the direction grid is separable in longitude and latitude."""
    import numpy as np

    cos_lat, sin_lat = np.cos(lat, dtype=np.float32)[:, None], np.sin(lat, dtype=np.float32)[:, None]
    cos_lon, sin_lon = np.cos(lon, dtype=np.float32)[None, :], np.sin(lon, dtype=np.float32)[None, :]
    r = rotation.astype(np.float32)
    return tuple(cos_lat * (cos_lon * r[0, k] + sin_lon * r[1, k]) - sin_lat * r[2, k] for k in range(3))


def _footprint(
    camera: RigCamera, rotation: np.ndarray, lon: np.ndarray, lat: np.ndarray, step: int = 8
) -> tuple[int, int, int, int] | None:
    """Rows ``top:bottom`` and ``count`` columns from ``left`` (wrapping around) of the panorama the camera can see, found on
    a grid of every ``step``-th pixel and grown by one grid cell, so full-size maps are built only there."""
    import numpy as np

    from panopipe.stitching.projection import camera_pixels

    _, _, seen = camera_pixels(camera, *_camera_xyz(rotation, lon[::step], lat[::step]))
    if not seen.any():
        return None
    rows = np.flatnonzero(seen.any(axis=1))
    top, bottom = max(0, (rows[0] - 1) * step), min(lat.size, (rows[-1] + 2) * step)
    used = seen.any(axis=0)
    start, length = _circular_span(used | np.roll(used, 1) | np.roll(used, -1))
    return top, bottom, start * step % lon.size, min(lon.size, length * step)


def _circular_span(used: np.ndarray) -> tuple[int, int]:
    """The shortest ``(start, length)`` run of columns, wrapping around, that holds every used column."""
    import numpy as np

    size = used.size
    if used.all():
        return 0, size
    # Start right after the longest run of unused columns (doubling the array handles wrap-around).
    free = np.concatenate((~used, ~used))
    best_end, best_len, run = 0, 0, 0
    for i, empty in enumerate(free):
        run = run + 1 if empty else 0
        if run > best_len:
            best_end, best_len = i, run
    best_len = min(best_len, size)
    return (best_end + 1) % size, size - best_len


def blend(
    frames: Sequence[np.ndarray],
    tables: RemapTables,
    interpolation: Literal["auto", "linear", "cubic"] = "auto",
) -> np.ndarray:
    """Warp each frame tile by tile and sum them with their weights into a ``uint8`` panorama
    (``interpolation`` as in :class:`CalibratedParams`).

    Integer arithmetic throughout: 8-bit pixels times 8-bit weights summed in 16 bits, divided by 255 once.
    """
    import cv2
    import numpy as np

    accumulator = np.zeros((tables.height, tables.width, 3), np.uint16)
    for frame, tiles in zip(frames, tables.cameras, strict=True):
        for tile in tiles:
            name = interpolation
            if name == "auto":
                name = "linear" if tile.scale <= LINEAR_SCALE else "cubic"
            flag = getattr(cv2, _FILTERS[name])
            warped = cv2.remap(frame, tile.map1, tile.map2, flag, borderMode=cv2.BORDER_REPLICATE)
            contribution = cv2.multiply(warped, tile.weight, dtype=cv2.CV_16U)
            target = accumulator[tile.top : tile.top + tile.rows, tile.left : tile.left + tile.columns]
            cv2.add(target, contribution, dst=target)  # in place on the accumulator's view, multi-threaded
    return cv2.convertScaleAbs(accumulator, alpha=1 / 255)


def _wrapped(rows: np.ndarray, left: int, count: int) -> list[tuple[np.ndarray, slice]]:
    """Views of ``count`` columns of ``rows`` from ``left`` on, wrapping past the right edge, each with the
    part of those columns it holds."""
    first = min(count, rows.shape[1] - left)
    parts = [(rows[:, left : left + first], slice(0, first))]
    if first < count:
        parts.append((rows[:, : count - first], slice(first, count)))
    return parts


__all__ = [
    "LINEAR_SCALE",
    "REFINE_VERSION",
    "CalibratedParams",
    "CalibratedStitcher",
    "RemapTables",
    "Tile",
    "blend",
    "output_size",
    "remap_tables",
]
