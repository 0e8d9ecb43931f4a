"""Rig profiles: where each camera of a multi-camera rig looks and what lens it has.

A profile is plain data. :meth:`RigProfile.from_dict` validates a profile read from JSON or TOML and names the
bad field in its :class:`~panopipe.errors.ConfigError`; :meth:`RigProfile.fingerprint_fields` is the part of
the profile that determines stitched pixels.

Angles follow the convention of :mod:`panopipe.stitching.projection`: yaw clockwise from the rig's forward
axis seen from above, pitch up positive, roll clockwise seen from behind the camera.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from panopipe.errors import ConfigError

Lens = Literal["rectilinear", "fisheye"]
LENSES: tuple[Lens, ...] = ("rectilinear", "fisheye")

_CAMERA_KEYS = {
    "index",
    "yaw_deg",
    "pitch_deg",
    "roll_deg",
    "lens",
    "hfov_deg",
    "focal_px",
    "width",
    "height",
}
_PROFILE_KEYS = {"name", "version", "mount_height_m", "cameras"}


@dataclass(frozen=True, slots=True)
class RigCamera:
    """One camera of a rig: its orientation on the rig, its lens model and its image size in pixels.

    ``lens`` is ``"rectilinear"`` (pinhole) or ``"fisheye"`` (equidistant: the distance from the image centre
    is proportional to the angle from the optical axis). The principal point is the image centre.
    """

    index: int
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    lens: Lens
    hfov_deg: float
    width: int
    height: int

    @property
    def focal_px(self) -> float:
        """Focal length in pixels, derived from the horizontal field of view and the lens model."""
        half = math.radians(self.hfov_deg) / 2
        if self.lens == "fisheye":
            return self.width / 2 / half
        return self.width / 2 / math.tan(half)


@dataclass(frozen=True, slots=True)
class RigProfile:
    """A named, versioned description of a camera rig; ``cameras[i].index == i`` (frame ``i`` comes from it)."""

    name: str
    version: int
    cameras: tuple[RigCamera, ...]
    mount_height_m: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RigProfile:
        """Validate a profile as read from JSON/TOML; raise :class:`ConfigError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"rig profile must be a table/object, got {type(data).__name__}")
        _reject_unknown(data, _PROFILE_KEYS, "rig profile: ")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"rig profile: name must be a non-empty string, got {name!r}")
        where = f"rig profile {name!r}: "
        version = _int(data, "version", where, minimum=1)
        mount_height_m = _number(data, "mount_height_m", where, low=0.0, high=100.0, low_open=True)
        raw_cameras = data.get("cameras")
        if not isinstance(raw_cameras, Sequence) or isinstance(raw_cameras, str) or not raw_cameras:
            raise ConfigError(f"{where}cameras must be a non-empty list of camera tables")
        cameras = tuple(_camera(raw, f"{where}cameras[{i}].") for i, raw in enumerate(raw_cameras))
        indexes = sorted(camera.index for camera in cameras)
        if indexes != list(range(len(cameras))):
            raise ConfigError(f"{where}camera indexes must be 0..{len(cameras) - 1} once each, got {indexes}")
        return cls(name, version, tuple(sorted(cameras, key=lambda c: c.index)), mount_height_m)

    @classmethod
    def from_compact(cls, data: Mapping[str, Any]) -> RigProfile:
        """Build a profile from a compact form: shared ``defaults`` and one pose or table per camera.

        Each entry of ``cameras`` is either ``[yaw_deg, pitch_deg, roll_deg]`` or a table of fields that
        override ``defaults``; indexes follow the list order. Example (TOML)::

            name = "van-6"
            version = 2
            mount_height_m = 2.4
            defaults = { lens = "rectilinear", hfov_deg = 110, width = 1200, height = 900 }
            cameras = [[0, 0, 0], [90, 0, 0], [180, 0, 0], [270, 0, 0], { pitch_deg = 90, lens = "fisheye" }]
        """
        defaults = data.get("defaults", {})
        if not isinstance(defaults, Mapping):
            raise ConfigError("rig profile: defaults must be a table")
        cameras = data.get("cameras")
        if not isinstance(cameras, Sequence) or isinstance(cameras, str):
            raise ConfigError("rig profile: cameras must be a list of [yaw, pitch, roll] poses or tables")
        expanded: list[dict[str, Any]] = []
        for i, entry in enumerate(cameras):
            camera = {"index": i, "yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0, **defaults}
            if isinstance(entry, Mapping):
                camera.update(entry)
            elif isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 3:
                camera.update(zip(("yaw_deg", "pitch_deg", "roll_deg"), entry, strict=True))
            else:
                raise ConfigError(
                    f"rig profile: cameras[{i}] must be [yaw, pitch, roll] or a table, got {entry!r}"
                )
            expanded.append(camera)
        rest = {key: value for key, value in data.items() if key != "defaults"}
        return cls.from_dict({**rest, "cameras": expanded})

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON/TOML-ready data; ``RigProfile.from_dict(p.to_dict()) == p``."""
        return {
            "name": self.name,
            "version": self.version,
            "mount_height_m": self.mount_height_m,
            "cameras": [asdict(camera) for camera in self.cameras],
        }

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything in the profile that determines stitched pixels: each camera's pose, lens and size.

        The name, version and mount height are left out, so renaming or re-versioning a profile without
        changing its geometry does not trigger reprocessing; correcting a camera does.
        """
        return {"cameras": [asdict(camera) for camera in self.cameras]}

    def replace_camera(self, index: int, **changes: Any) -> RigProfile:
        """A copy of the profile with fields of camera ``index`` changed (validated like :meth:`from_dict`)."""
        data = self.to_dict()
        data["cameras"][index].update(changes)
        return RigProfile.from_dict(data)

    def size_mismatch(self, index: int, width: int, height: int) -> str | None:
        """Why a ``width x height`` frame cannot come from camera ``index``: the settings that differ, or ``None``."""
        camera = self.cameras[index]
        wrong = [
            (key, want, got)
            for key, want, got in (("width", camera.width, width), ("height", camera.height, height))
            if want != got
        ]
        if not wrong:
            return None
        settings = " and ".join(f"{key} = {want}" for key, want, _ in wrong)
        fixes = ", ".join(f"{key} = {got}" for key, _, got in wrong)
        return (
            f"camera {index} of rig {self.name!r} has {settings} but its frame is {width}x{height}: "
            f"set {fixes} for camera {index} in [steps.stitch.rig]"
        )


_GUESS_NAME = "my-rig"
_GUESS_MOUNT_HEIGHT_M = 2.5


def starter_profile(sizes: Mapping[int, tuple[int, int]]) -> str:
    """A ``[steps.stitch.rig]`` TOML table to start from, for frames of ``sizes[camera index] = (width, height)``.

    Only the camera count, indexes and sizes are known; everything else is a guess, marked so: one rectilinear
    camera per index on the horizon, yaw spread evenly, a field of view that makes neighbours overlap.
    """
    count = len(sizes)
    hfov = min(round(360 / count * 1.25), 170)
    shared = len(set(sizes.values())) == 1
    defaults = f'lens = "rectilinear", hfov_deg = {hfov}'
    if shared:
        width, height = next(iter(sizes.values()))
        defaults += f", width = {width}, height = {height}"
    cameras = []
    for index in sorted(sizes):
        yaw = round(360 * index / count, 1)
        if shared:
            cameras.append(f"  [{yaw:g}, 0, 0],  # camera {index}")
        else:
            width, height = sizes[index]
            cameras.append(
                f"  {{ yaw_deg = {yaw:g}, width = {width}, height = {height} }},  # camera {index}"
            )
    return "\n".join(
        [
            "[steps.stitch.rig]",
            f"# A GUESS derived from the frames: {count} camera(s), indexes {_ranges(sorted(sizes))}; only their",
            "# sizes are known. Correct each camera's yaw/pitch/roll, lens and hfov_deg to your rig's calibration.",
            f'name = "{_GUESS_NAME}"',
            "version = 1",
            f"mount_height_m = {_GUESS_MOUNT_HEIGHT_M}  # GUESS: height of the cameras above the ground",
            f"defaults = {{ {defaults} }}  # lens and hfov_deg: GUESS",
            "cameras = [  # [yaw_deg, pitch_deg, roll_deg]: yaw spread evenly, a GUESS",
            *cameras,
            "]",
        ]
    )


def _ranges(numbers: Sequence[int]) -> str:
    """``0-5`` for consecutive numbers, else the list."""
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(map(str, numbers))


def _camera(raw: Any, where: str) -> RigCamera:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.removesuffix('.')} must be a table, got {raw!r}")
    _reject_unknown(raw, _CAMERA_KEYS, where)
    lens = raw.get("lens")
    if lens not in LENSES:
        raise ConfigError(f"{where}lens must be one of {', '.join(LENSES)}, got {lens!r}")
    width = _int(raw, "width", where, minimum=8)
    height = _int(raw, "height", where, minimum=8)
    max_fov = 360.0 if lens == "fisheye" else 179.0
    if ("hfov_deg" in raw) == ("focal_px" in raw):
        raise ConfigError(f"{where.removesuffix('.')}: give exactly one of hfov_deg and focal_px")
    if "hfov_deg" in raw:
        hfov_deg = _number(raw, "hfov_deg", where, low=0.0, high=max_fov, low_open=True)
    else:
        focal_px = _number(raw, "focal_px", where, low=0.0, high=math.inf, low_open=True)
        half = width / 2 / focal_px if lens == "fisheye" else math.atan(width / 2 / focal_px)
        hfov_deg = math.degrees(2 * half)
        if hfov_deg > max_fov:
            raise ConfigError(
                f"{where}focal_px {focal_px} gives a {hfov_deg:.1f}° field of view, over {max_fov}°"
            )
    return RigCamera(
        index=_int(raw, "index", where, minimum=0),
        yaw_deg=_number(raw, "yaw_deg", where, low=-360.0, high=360.0),
        pitch_deg=_number(raw, "pitch_deg", where, low=-90.0, high=90.0),
        roll_deg=_number(raw, "roll_deg", where, low=-180.0, high=180.0),
        lens=cast(Lens, lens),
        hfov_deg=hfov_deg,
        width=width,
        height=height,
    )


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where.rstrip('. :')}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _int(data: Mapping[str, Any], key: str, where: str, *, minimum: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}{key} must be at least {minimum}, got {value}")
    return value


def _number(
    data: Mapping[str, Any], key: str, where: str, *, low: float, high: float, low_open: bool = False
) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}{key} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        opening = "(" if low_open else "["
        raise ConfigError(f"{where}{key} must be in {opening}{low:g}, {high:g}], got {value:g}")
    return float(value)


__all__ = ["LENSES", "Lens", "RigCamera", "RigProfile", "starter_profile"]
