"""Drift check: do the output files still hold what the catalog says they should?

Every recorded output is checked for presence, size and SHA-256. Outputs that carry metadata as configured
(:meth:`~panopipe.steps.base.Step.carries_metadata`: those of ``apply-metadata`` and ``derive``, and
publish's copies of them) are read back with panopipe's reader and compared with the metadata the catalog's
effective values give now. Tags that differ because the catalog changed after the output was made (an edit
not run yet) are ``outdated``, not drift: ``panopipe run`` rewrites them, as ``panopipe plan`` says.
``repair`` marks the drifted jobs stale, so the next run rewrites them, and deletes the intermediate outputs
whose bytes are not those recorded (the rerun would keep what it found at its key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.subjects import CHUNK, KINDS, Subject, load_subjects, selected_subjects
from panopipe.config import Settings
from panopipe.errors import MetadataError, ObjectNotFoundError
from panopipe.metadata import parse_jpeg_header
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.store import StoredOutput, mark_stale, stored_outputs, withdrawn_outputs
from panopipe.steps.apply_metadata import Placement, absent_values, expected_metadata
from panopipe.steps.base import Step, discard_outputs
from panopipe.steps.registry import STEP_TYPES
from panopipe.storage import CONCURRENT_REQUESTS, resolve_uri

WITHDRAWN = {
    "excluded": "an edit excluded the image (qc --fix thinning): delete the file, or undo the edit",
    "deleted": "the files it was made from were removed: delete this output, or put them back and ingest them",
}
"""Why an output of an image (or a shot of images) that left processing is listed: it stays where it was
published until someone decides; once its file is deleted, it is no longer listed."""
OUTDATED = (
    "the catalog changed after this output was made (an edit, a changed file): `panopipe run` rewrites it"
)
"""Why an output whose tags differ is not drift: a run would make it again anyway (``plan`` lists it)."""
# (reader field, expected field, tolerance); None compares exactly. An expected None is compared only where it
# says the file has none (apply_metadata.absent_values): otherwise the value is not known.
_COMPARED: tuple[tuple[str, str, float | None], ...] = (
    ("gps_latitude", "gps_latitude", 1e-7),
    ("gps_longitude", "gps_longitude", 1e-7),
    ("gps_altitude", "gps_altitude", 1e-3),
    ("gps_img_direction", "gps_img_direction", 1e-3),
    ("pose_heading", "gps_img_direction", 1e-3),
    ("gps_h_positioning_error", "gps_h_positioning_error", 1e-3),
    ("pose_pitch", "pitch", 1e-3),
    ("pose_roll", "roll", 1e-3),
    ("make", "make", None),
    ("model", "model", None),
)
_ANGLES = frozenset({"gps_img_direction", "pose_heading", "pose_roll"})
"""Compared the short way round the circle."""


@dataclass(frozen=True, slots=True)
class Drift:
    """One output that differs from what the catalog recorded or expects: ``missing``, ``changed`` (size or
    hash), ``metadata`` (tags differ; ``details`` name them), ``excluded`` or ``deleted`` (an output of an
    image an edit excluded or whose file was removed, see :data:`WITHDRAWN`), or ``outdated`` (tags differ since the catalog changed after the output
    was made: not drift, see :data:`OUTDATED`)."""

    step: str
    subject: str
    name: str
    uri: str
    problem: str
    details: tuple[str, ...] = ()

    @property
    def is_drift(self) -> bool:
        """Whether ``verify`` counts it as drift (its exit code 6): all but ``outdated``, work a run does."""
        return self.problem != "outdated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "subject": self.subject,
            "name": self.name,
            "uri": self.uri,
            "problem": self.problem,
            "details": list(self.details),
        }


def verify(
    catalog: Catalog,
    selection: Selection | None = None,
    settings: Settings | None = None,
    *,
    repair: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Drift]:
    """Every drifted output of the selected subjects, then the outputs of selected images an edit excluded
    or whose files were removed (problem ``excluded`` or ``deleted``, left in place); with ``repair``, the drifted jobs are marked stale. The outputs of
    steps turned off (``enabled = false``) are not checked: nothing remakes, copies or publishes them; nor are
    the tags of an output that carries no metadata as configured (publish's copy of a panorama while
    apply-metadata is off).
    ``progress(done, total)`` follows the outputs checked. The outputs are read ``CONCURRENT_REQUESTS`` at
    a time (a verify of S3 outputs waits on requests, not on the CPU)."""
    metadata_step = load_pipeline(catalog, settings, ["apply-metadata"]).steps[0]
    placement = Placement.of(metadata_step.context)
    running = load_pipeline(catalog, settings).steps
    tagged = {(step.name, name) for step in running for name in step.outputs if step.carries_metadata(name)}
    drifts: list[Drift] = []
    stale: dict[tuple[str, str], tuple[StoredOutput, str]] = {}  # one reason per job: its last drift
    checked = 0
    with catalog.transaction() as conn, selected_subjects(conn, selection or Selection()) as selected:
        found = {kind: stored_outputs(conn, kind, selected, running) for kind in KINDS}
        total = sum(len(outputs) for by_key in found.values() for outputs in by_key.values())
        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as readers:
            for kind, by_key in found.items():
                keys = list(by_key)
                for start in range(0, len(keys), CHUNK):
                    checks: list[tuple[StoredOutput, Subject, bool]] = []
                    for subject in load_subjects(conn, kind, keys[start : start + CHUNK]):
                        outputs = by_key[subject.key]
                        # a step made outdated by the catalog runs again, and every step after it
                        outdated = any(output.outdated for output in outputs)
                        checks += [(output, subject, outdated) for output in outputs]
                    found_drifts = readers.map(
                        lambda check: _check(check[0], check[1], tagged, metadata_step, placement), checks
                    )
                    for (output, _, outdated), drift in zip(checks, found_drifts, strict=True):
                        if drift is not None and drift.problem == "metadata" and outdated:
                            drift = replace(drift, problem="outdated", details=(OUTDATED, *drift.details))
                        if drift is not None:
                            drifts.append(drift)
                            if drift.problem != "outdated":
                                stale[(drift.step, drift.subject)] = (output, _reason(drift))
                        checked += 1
                        if progress is not None:
                            progress(checked, total)
        if repair:
            mark_stale(conn, stale.values())
            # A rerun writes the same content-addressed key, where it keeps an object it finds: one whose bytes
            # are not those recorded (corrupted, overwritten) goes first, so that the run writes it anew.
            discard_outputs(
                d.uri
                for d in drifts
                if d.problem in ("changed", "metadata") and not STEP_TYPES[d.step].overwrites
            )
        drifts += [
            Drift(o.step, o.subject, o.name, o.uri, why, (WITHDRAWN[why],))
            for why, o in withdrawn_outputs(conn, selection or Selection())
            if _still_there(o.uri)  # deleted as the listing says: settled
        ]
    return drifts


def _still_there(uri: str) -> bool:
    storage, key = resolve_uri(uri)
    return storage.exists(key)


def _check(
    artifact: StoredOutput,
    subject: Subject,
    tagged: Collection[tuple[str, str]],
    metadata_step: Step,
    placement: Placement,
) -> Drift | None:
    def drift(problem: str, *details: str) -> Drift:
        return Drift(artifact.step, artifact.subject, artifact.name, artifact.uri, problem, details)

    storage, key = resolve_uri(artifact.uri)
    try:
        data = storage.get(key)
    except ObjectNotFoundError:
        return drift("missing")
    if artifact.size is not None and len(data) != artifact.size:
        return drift("changed", f"size {len(data)} bytes, recorded {artifact.size}")
    if artifact.hash is not None and hashlib.sha256(data).hexdigest() != artifact.hash:
        return drift("changed", "content differs from the recorded SHA-256")
    if (artifact.step, artifact.name) not in tagged:
        return None
    try:
        found = parse_jpeg_header(data)
    except MetadataError as exc:
        return drift("metadata", f"unreadable: {exc}")
    expected = expected_metadata(subject, metadata_step.params, placement)
    lacks = absent_values(expected)
    details = [
        f"{field}: file has {_shown(getattr(found, field))}, catalog says {_shown(expected[wanted])}"
        for field, wanted, tolerance in _COMPARED
        if (expected[wanted] is not None or field in lacks)
        and not _same(getattr(found, field), expected[wanted], tolerance, circular=field in _ANGLES)
    ]
    moment: datetime | None = expected["captured_at"]
    if moment is not None and (
        found.captured_at is None or abs((found.captured_at - moment).total_seconds()) >= 1e-3
    ):
        details.append(f"captured_at: file has {found.captured_at}, catalog says {moment}")
    if found.projection_type != "equirectangular":
        details.append(
            f"GPano ProjectionType: file has {found.projection_type!r}, expected 'equirectangular'"
        )
    return drift("metadata", *details) if details else None


def _shown(value: Any) -> str:
    """A tag's value as a detail shows it: numbers without float noise (a mean of frames' degrees)."""
    return f"{value:.10g}" if isinstance(value, float) else repr(value)


def _same(found: Any, expected: Any, tolerance: float | None, *, circular: bool = False) -> bool:
    if tolerance is None or found is None or expected is None:
        return found == expected
    difference = found - expected
    if circular:  # 360° is 0° (GPSImgDirection is written 0 to 359.9999), and roll 180° is -180°
        difference = (difference + 180.0) % 360.0 - 180.0
    return abs(difference) <= tolerance


def _reason(drift: Drift) -> str:
    return f"output {drift.problem}" + (f": {'; '.join(drift.details)}" if drift.details else "")


__all__ = ["OUTDATED", "WITHDRAWN", "Drift", "verify"]
