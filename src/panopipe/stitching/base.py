"""The stitcher interface: frames in, an equirectangular panorama with its coverage mask out.

Frames and panoramas are ``uint8`` ``height x width x 3`` arrays in RGB order (as Pillow decodes). Parameters
come as a plain mapping (a step's JSON/TOML settings) or as the stitcher's own frozen params dataclass; unknown
or invalid parameters raise :class:`~panopipe.errors.ConfigError`, a stitch that cannot be made raises
:class:`~panopipe.errors.StepError` with the reason.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from panopipe.errors import ConfigError, StepError
from panopipe.stitching.rig import RigProfile

if TYPE_CHECKING:  # numpy is imported where pixels are handled, so planning never loads it
    import numpy as np
    from _typeshed import DataclassInstance


@dataclass(frozen=True, slots=True)
class StitchResult:
    """A stitched panorama, the pixels that received image data, the tool's log and how many frames it used.

    ``rig`` is the refined rig profile when the calibrated stitcher was asked to refine, otherwise ``None``.
    """

    panorama: np.ndarray
    coverage: np.ndarray
    log: str
    views_used: int
    rig: RigProfile | None = None


P = TypeVar("P", bound="DataclassInstance")


class Stitcher(ABC, Generic[P]):
    """A way of stitching one shot's frames; ``name`` and ``version`` identify it in fingerprints.

    Subclasses set ``params_type`` to a frozen dataclass whose ``__post_init__`` validates its fields, and
    bump ``version`` whenever a change alters the pixels they produce.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    params_type: ClassVar[type[Any]]
    upright_frames: ClassVar[bool] = False
    """Whether the frames come as a viewer shows them, turned as their EXIF orientation says (handheld photos),
    rather than as stored (a rig's cameras, which its profile describes as mounted)."""

    @abstractmethod
    def stitch(
        self, frames: Sequence[np.ndarray], params: Mapping[str, Any] | P | None = None
    ) -> StitchResult:
        """Stitch the frames of one shot; raise :class:`StepError` with the reason when that is impossible."""

    def parse_params(self, params: Mapping[str, Any] | P | None) -> P:
        """``params`` as this stitcher's params dataclass; unknown names raise :class:`ConfigError`."""
        if params is None:
            return self.params_type()
        if isinstance(params, self.params_type):
            return params
        if not isinstance(params, Mapping):
            raise ConfigError(f"{self.name} stitcher: params must be a table, got {type(params).__name__}")
        known = {field.name for field in dataclasses.fields(self.params_type)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"{self.name} stitcher: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return self.params_type(**params)

    def fingerprint_fields(self, params: Mapping[str, Any] | P | None = None) -> dict[str, Any]:
        """Everything about this stitcher and ``params`` that determines its output (for the step fingerprint)."""
        return {
            "stitcher": self.name,
            "version": self.version,
            "params": dataclasses.asdict(self.parse_params(params)),
        }


def check_frames(frames: Sequence[np.ndarray], stitcher: str) -> None:
    """Raise :class:`StepError` unless ``frames`` is a non-empty sequence of ``uint8`` colour images."""
    import numpy as np

    if not frames:
        raise StepError(f"{stitcher} stitcher: no frames to stitch")
    for i, frame in enumerate(frames):
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            shape = getattr(frame, "shape", None)
            raise StepError(f"{stitcher} stitcher: frame {i} is not an 8-bit colour image (shape {shape})")


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds (for params ``__post_init__``)."""
    if not condition:
        raise ConfigError(message)


__all__ = ["StitchResult", "Stitcher", "check_frames", "require"]
