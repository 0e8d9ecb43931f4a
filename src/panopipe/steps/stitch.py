"""The ``stitch`` step: the frames of one rig shot into one equirectangular panorama (JPEG).

Config (``[steps.stitch]``)::

    stitcher = "calibrated"      # or "opencv", "external"
    params = { width = 4096 }    # the stitcher's own parameters
    quality = 92                 # JPEG quality of the panorama
    rig = { ... }                # the rig profile (RigProfile.from_dict or the compact form); default: demo rig

The stitcher's ``fingerprint_fields()`` enter the fingerprint, so correcting the rig profile makes every shot
it stitched stale.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, StepError
from panopipe.steps.base import Log, Output, Step, Subject, SubjectKind, Upstream, put_output, read_input
from panopipe.stitching import CalibratedStitcher, RigProfile, Stitcher, demo_rig

if TYPE_CHECKING:  # numpy and Pillow are imported by the worker only: planning never loads them
    import numpy as np

STITCHERS = ("calibrated", "opencv", "external")


def make_stitcher(name: str, rig: Mapping[str, Any] | None) -> Stitcher[Any]:
    """The stitcher called ``name``; ``rig`` (profile data) is used by the calibrated stitcher."""
    if name == "calibrated":
        profile = demo_rig() if rig is None else _rig(rig)
        return CalibratedStitcher(profile)
    if name == "opencv":
        from panopipe.stitching.opencv_stitcher import OpenCVStitcher

        return OpenCVStitcher()
    if name == "external":
        from panopipe.stitching.external import ExternalStitcher

        return ExternalStitcher()
    raise ConfigError(f"[steps.stitch]: unknown stitcher {name!r}; choose one of {', '.join(STITCHERS)}")


def _rig(data: Mapping[str, Any]) -> RigProfile:
    if "defaults" in data or any(not isinstance(c, Mapping) for c in data.get("cameras", ())):
        return RigProfile.from_compact(data)
    return RigProfile.from_dict(data)


class StitchStep(Step):
    """Stitch the frames of one shot, ordered by camera index, with the configured stitcher."""

    name = "stitch"
    version = "1"
    outputs = ("panorama",)
    kinds: ClassVar[frozenset[SubjectKind]] = frozenset({"shot"})
    reads = ("camera_index",)
    parameters = (
        ConfigKey("stitcher", "calibrated", f"The stitcher: {', '.join(STITCHERS)}."),
        ConfigKey("params", {}, "The stitcher's own parameters, e.g. `{ width = 4096 }`."),
        ConfigKey("quality", 92, "JPEG quality of the panorama, 1 to 100."),
        ConfigKey(
            "rig",
            None,
            "The rig profile: name, version, mount_height_m and cameras (full tables, or the compact form with "
            "`defaults` and `[yaw, pitch, roll]` poses).",
            "the demo rig",
        ),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        name = table["stitcher"]
        rig = table.get("rig")
        stitcher = make_stitcher(name, rig)
        quality = table["quality"]
        if type(quality) is not int or not 1 <= quality <= 100:
            raise ConfigError(f"[steps.stitch]: quality must be an integer from 1 to 100, got {quality!r}")
        params = dict(table["params"])
        rig_data = stitcher.rig.to_dict() if isinstance(stitcher, CalibratedStitcher) else None
        self.job_params = {"stitcher": name, "params": params, "quality": quality, "rig": rig_data}
        return {"stitcher": stitcher.fingerprint_fields(params), "quality": quality}

    def payload(self, subject: Subject, upstream: Upstream | None) -> dict[str, Any]:
        rig = self.job_params["rig"]
        problem = _frame_problem(subject, len(rig["cameras"]) if rig else None)
        return {**super().payload(subject, upstream), "params": self.job_params, "problem": problem}

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        from PIL import Image as PILImage

        if payload["problem"]:
            raise StepError(payload["problem"])
        params = payload["params"]
        stitcher = make_stitcher(params["stitcher"], params["rig"])
        frames = [_decode(uri) for uri in payload["inputs"]]
        result = stitcher.stitch(frames, params["params"])
        log(result.log)
        buffer = io.BytesIO()
        PILImage.fromarray(result.panorama).save(buffer, "JPEG", quality=params["quality"], optimize=True)
        return [put_output("panorama", payload["outputs"]["panorama"], buffer.getvalue())]


def _frame_problem(subject: Subject, cameras: int | None) -> str | None:
    """Why the shot cannot be stitched (frames missing or doubled), or ``None``."""
    indexes = [frame.camera_index for frame in subject.frames if frame.camera_index is not None]
    if len(indexes) != len(subject.frames):
        return f"shot {subject.key}: some frames have no camera index"
    if len(set(indexes)) != len(indexes):
        return f"shot {subject.key}: several frames from one camera (camera indexes {sorted(indexes)})"
    expected = set(range(cameras if cameras is not None else max(indexes) + 1))
    if set(indexes) != expected:
        missing = sorted(expected - set(indexes))
        return f"shot {subject.key} is missing the frame(s) of camera(s) {missing}: has {len(indexes)} of {len(expected)}"
    return None


def _decode(uri: str) -> np.ndarray:
    import numpy as np
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(read_input(uri))) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as exc:
        raise StepError(f"cannot decode frame {uri}: {exc}") from exc


__all__ = ["STITCHERS", "StitchStep", "make_stitcher"]
