"""The ``stitch`` step: the frames of one rig shot into one equirectangular panorama (JPEG).

Config (``[steps.stitch]``)::

    stitcher = "calibrated"      # or "opencv", "external"
    params = { width = 4096 }    # the stitcher's own parameters
    quality = 92                 # JPEG quality of the panorama
    rig = { ... }                # the rig profile (RigProfile.from_dict or the compact form)

There is no default rig: the calibrated stitcher needs ``[steps.stitch.rig]``. Without it each shot's job fails
with a profile to start from, derived from the shot's frames (their count, camera indexes and sizes). The
stitcher's ``fingerprint_fields()`` enter the fingerprint, so correcting the rig profile makes every shot it
stitched stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

from panopipe.catalog.subjects import Stray
from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, StepError
from panopipe.metadata.jpeg import icc_profile, with_icc
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
from panopipe.steps.pixels import decode_pixels
from panopipe.stitching import CalibratedStitcher, RigProfile, Stitcher, output_size
from panopipe.stitching.rig import starter_profile

if TYPE_CHECKING:  # numpy and OpenCV are imported by the worker only: planning never loads them
    import numpy as np

STITCHERS = ("calibrated", "opencv", "external")
RIG_TABLE = "[steps.stitch.rig]"


def make_stitcher(name: str, rig: Mapping[str, Any] | None) -> Stitcher[Any] | None:
    """The stitcher called ``name``; ``rig`` (profile data) is used by the calibrated stitcher, which is
    ``None`` without one (its jobs fail with :func:`no_rig`)."""
    if name == "calibrated":
        return None if rig is None else CalibratedStitcher(_rig(rig))
    if name == "opencv":
        from panopipe.stitching.opencv_stitcher import OpenCVStitcher

        return OpenCVStitcher()
    if name == "external":
        from panopipe.stitching.external import ExternalStitcher

        return ExternalStitcher()
    raise ConfigError(f"[steps.stitch]: unknown stitcher {name!r}; choose one of {', '.join(STITCHERS)}")


def no_rig(sizes: dict[int, tuple[int, int]]) -> str:
    """Why a shot with frames of ``sizes[camera index] = (width, height)`` cannot be stitched without a rig
    profile (first line), and a profile derived from them to paste and correct (the lines after it)."""
    shapes = sorted({f"{w}x{h}" for w, h in sizes.values()})
    described = f"each {shapes[0]}" if len(shapes) == 1 else f"sizes {', '.join(shapes)}"
    return (
        f"no rig profile: the calibrated stitcher needs {RIG_TABLE} in panopipe.toml (this shot has "
        f"{len(sizes)} frames, camera indexes {min(sizes)}-{max(sizes)}, {described}); "
        f"a profile derived from the frames, to paste and correct:\n{starter_profile(sizes)}"
    )


def panorama_size(stitcher: Stitcher[Any] | None, params: Mapping[str, Any]) -> tuple[int, int] | None:
    """The width and height of every panorama ``stitcher`` makes with ``params``, where they fix it (the calibrated
    stitcher: its ``width`` and ``height``, else the rig's resolution); ``None`` where the frames decide."""
    if not isinstance(stitcher, CalibratedStitcher):
        return None
    options = stitcher.parse_params(params)
    return output_size(stitcher.rig, options.width, options.height)


def configured_rig(tables: Mapping[str, Mapping[str, Any]]) -> RigProfile | None:
    """The rig profile the ``[steps.*]`` ``tables`` stitch by, which orients each panorama (its centre looks
    along the rig's forward axis): ``[steps.stitch.rig]`` when the stitcher is the calibrated one; ``None``
    without one, or for a stitcher that finds the frames' orientation itself."""
    table = tables.get(StitchStep.name, {})
    rig = table.get("rig")
    return _rig(rig) if table.get("stitcher", "calibrated") == "calibrated" and rig is not None else None


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
    frame_fields = ("width", "height")
    heavy = True  # seconds of CPU and GBs per panorama: AWS Batch, never the event function
    parameters = (
        ConfigKey("stitcher", "calibrated", f"The stitcher: {', '.join(STITCHERS)}."),
        ConfigKey(
            "params",
            {},
            "The stitcher's own parameters, e.g. `{ width = 4096 }`. The calibrated stitcher's: `width` and "
            "`height` (default: the rig's resolution), `interpolation` (`auto`: bilinear where the panorama "
            "magnifies the frames 1.33 times or more, bicubic elsewhere; or `linear`, `cubic`), `refine` "
            "(correct the profile's angles from the shot's features, by 5° at most; where they cannot fix "
            "every camera, the profile is kept and the job's log says why). The external stitcher's: "
            "`command`, the tool run once per shot, without a shell, in a temporary work directory: a template "
            "whose `{inputs}` (every frame, in camera order), `{input0}`, `{input1}`… (one frame each), "
            "`{output}` (the file it must write) and `{workdir}` (the work directory) become quoted paths, "
            '`{{` and `}}` literal braces, e.g. `"python my_stitch.py -o {output} {inputs}"`; `timeout_s` '
            "(default 600), after which it is killed; `input_format`, the frames handed over as `jpg` (the "
            "default), `png` or `tif`; `output_name`, the name of `{output}` (default `panorama.jpg`; an alpha "
            "channel in it is the coverage). Every process it starts is killed when its job ends, on Linux "
            "those in sessions of their own too. A failure's reason ends with the last 20 lines of its output, "
            "the work directory written `{workdir}` (so that shots failing alike are one row in `status`); "
            "the job's log keeps the whole.",
        ),
        ConfigKey("quality", 92, "JPEG quality of the panorama, 1 to 100."),
        ConfigKey(
            "rig",
            None,
            "The rig profile: name, version, mount_height_m and cameras (full tables, or the compact form with "
            "`defaults` and `[yaw, pitch, roll]` poses).",
            "none: a rig shot fails with a profile derived from its frames",
        ),
    )

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        name = table["stitcher"]
        stitcher = make_stitcher(name, table.get("rig"))
        quality = table["quality"]
        jpeg_quality(self.name, quality)
        params = dict(table["params"])
        self.rig = stitcher.rig if isinstance(stitcher, CalibratedStitcher) else None
        rig_data = self.rig.to_dict() if self.rig else None
        self.job_params = {"stitcher": name, "params": params, "quality": quality, "rig": rig_data}
        self.panorama_size = panorama_size(stitcher, params)
        self._sound_layouts: set[tuple[tuple[int | None, int | None, int | None], ...]] = set()
        fields = stitcher.fingerprint_fields(params) if stitcher else {"stitcher": name, "rig": None}
        return {"stitcher": fields, "quality": quality}

    def problem(self, subject: Subject) -> str | None:
        """Why the shot cannot be stitched, as far as the catalog tells (frame indexes and sizes), or ``None``.

        Whether there is a problem depends only on the frames' camera indexes and sizes, which the shots of a
        rig share: a layout found sound is remembered (planning 100,000 shots checked each against the rig)."""
        layout = tuple((f.camera_index, f.width, f.height) for f in subject.frames)
        if layout in self._sound_layouts:
            return None
        problem = self._problem(subject)
        if problem is None:
            self._sound_layouts.add(layout)
        return problem

    def incomplete(self, subject: Subject) -> str | None:
        """The rig cameras whose frames of the shot have not arrived (of the rig's cameras, or without a rig
        of those up to the highest camera index seen). A camera whose frame the catalog has elsewhere (failed
        at ingest, or in another shot: :attr:`Subject.strays`) has arrived: waiting would never end, and the
        stitch fails saying where it is."""
        arrived = {stray.camera_index for stray in subject.strays}
        missing = _missing_cameras(subject, len(self.rig.cameras) if self.rig else None)
        if to_come := [camera for camera in missing if camera not in arrived]:
            return f"shot {subject.key} has {len(subject.frames)} frame(s); camera(s) {to_come} to come"
        return None

    def _problem(self, subject: Subject) -> str | None:
        if problem := _frame_problem(subject, len(self.rig.cameras) if self.rig else None):
            return problem
        sizes = {f.camera_index: (f.width, f.height) for f in subject.frames if f.width and f.height}
        if len(sizes) < len(subject.frames):
            return None  # sizes unknown: the worker checks the decoded frames
        if self.job_params["stitcher"] == "calibrated" and self.rig is None:
            return no_rig(cast(dict[int, tuple[int, int]], sizes))
        if self.rig is not None:
            for index, (width, height) in sizes.items():
                if mismatch := self.rig.size_mismatch(cast(int, index), width, height):
                    return mismatch
        return None

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        return {
            **super().payload(subject, upstream, fingerprint),
            "params": self.job_params,
            "problem": self.problem(subject),
        }

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        import cv2

        if payload["problem"]:
            raise StepError(payload["problem"])
        params = payload["params"]
        stitcher = make_stitcher(params["stitcher"], params["rig"])
        upright = stitcher is not None and stitcher.upright_frames
        frames, profiles = [], []
        for uri, sha256 in job_inputs(payload):
            data = read_input(uri, sha256)
            frames.append(_decode(data, uri, upright))
            profiles.append(icc_profile(data))
        if stitcher is None:
            raise StepError(no_rig({i: (f.shape[1], f.shape[0]) for i, f in enumerate(frames)}))
        result = stitcher.stitch(frames, params["params"])
        log(result.log)
        profile = _shared_profile(profiles, log)
        # OpenCV's libjpeg-turbo, straight from the array; no Huffman optimisation: it costs twice the CPU
        # of the encoding for files 3% smaller (bench/bench_stitch_production.py).
        # In place where it may be (the panorama is not used again): no second copy of a 226 MB image.
        panorama = result.panorama
        bgr = cv2.cvtColor(panorama, cv2.COLOR_RGB2BGR, dst=panorama if panorama.flags.writeable else None)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
        if not ok:
            raise StepError("cannot encode the panorama as JPEG")
        return [put_output("panorama", payload["outputs"]["panorama"], with_icc(encoded.tobytes(), profile))]


def _frame_problem(subject: Subject, cameras: int | None) -> str | None:
    """Why the shot cannot be stitched (frames missing, with where the catalog has them, or doubled), or
    ``None``."""
    indexes = [frame.camera_index for frame in subject.frames if frame.camera_index is not None]
    if len(indexes) != len(subject.frames):
        return (
            f"shot {subject.key}: some frames have no camera index (the `camera` group of [ingest] "
            "path_pattern); a 360° image needs its GPano ProjectionType, a flat photo alone is not stitched"
        )
    if len(set(indexes)) != len(indexes):
        return f"shot {subject.key}: several frames from one camera (camera indexes {sorted(indexes)})"
    expected = set(range(cameras if cameras is not None else max(indexes) + 1))
    if extra := sorted(set(indexes) - expected):
        return f"shot {subject.key} has frames of camera(s) {extra} but the rig has cameras 0-{len(expected) - 1}"
    if missing := _missing_cameras(subject, cameras):
        problem = f"shot {subject.key} is missing the frame(s) of camera(s) {missing}: has {len(indexes)} of {len(expected)}"
        return "; ".join([problem, *_where_missing(subject, missing)])
    return None


def _where_missing(subject: Subject, missing: list[int]) -> list[str]:
    """Where the catalog has the frames of the ``missing`` cameras of the shot (its reel and frame numbers,
    :attr:`~panopipe.catalog.subjects.Subject.strays`): a file ingest could not read, or a frame in another
    shot (captured too far apart, or put there by an edit); one phrase per place."""
    places: dict[tuple[str | None, str | None, bool], list[Stray]] = {}
    for stray in subject.strays:
        if stray.camera_index in missing:
            places.setdefault((stray.error, stray.shot, stray.edited), []).append(stray)
    phrases = []
    for (error, shot, edited), strays in places.items():
        cameras = sorted({stray.camera_index for stray in strays})
        if error is not None:
            where = f"failed at ingest ({error})"
        elif shot is None:
            where = "are in no shot" + (" (taken out by an edit)" if edited else "")
        else:
            where = f"are in shot {shot}"
            times = [stray.apart_s for stray in strays if stray.apart_s is not None]
            if times:  # the first of them against the shot's first, as grouping compares them
                where += f", captured {abs(min(times)):.2g} s {'later' if min(times) > 0 else 'earlier'}"
            if edited:
                where += " (put there by an edit)"
            elif times:
                where += ", further apart than [ingest] shot_tolerance_s"
        phrases.append(f"its frame(s) of camera(s) {cameras} {where}")
    return phrases


def _missing_cameras(subject: Subject, cameras: int | None) -> list[int]:
    """The camera indexes of ``cameras`` (default: up to the highest index of the shot) that have no frame in
    the shot; none when a frame has no camera index (another problem)."""
    indexes = [frame.camera_index for frame in subject.frames]
    if not indexes or None in indexes:
        return []
    present = set(cast(list[int], indexes))
    return sorted(set(range(cameras if cameras is not None else max(present) + 1)) - present)


def _decode(data: bytes, uri: str, upright: bool) -> np.ndarray:
    """The frame ``data`` (read from ``uri``) as 8-bit RGB, as stored or turned as its EXIF orientation says
    (``upright``)."""
    import cv2

    return cv2.cvtColor(decode_pixels(data, uri, upright=upright), cv2.COLOR_BGR2RGB)


def _shared_profile(profiles: list[bytes], log: Log) -> bytes:
    """The ICC profile segments the panorama carries: the frames' when they all carry the same (none when
    none does). Frames whose profiles differ give it none, read as sRGB: the stitcher blends their pixel
    values as they are, and no one profile describes the result; the job's log says so."""
    if len(set(profiles)) == 1:
        return profiles[0]
    log("warning: the frames' ICC profiles differ: the panorama carries none (read as sRGB)")
    return b""


__all__ = [
    "RIG_TABLE",
    "STITCHERS",
    "StitchStep",
    "configured_rig",
    "make_stitcher",
    "no_rig",
    "panorama_size",
]
