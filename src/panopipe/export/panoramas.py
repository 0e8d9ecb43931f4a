"""The panoramas export (``export --of panoramas``): one row per rig shot or single 360° image, with what the
pipeline produced for it.

Position, time, orientation and the reel/frame/shot tags are those ``apply-metadata`` writes into the panorama
(:func:`~panopipe.steps.apply_metadata.expected_metadata`: the position averaged over the shot's frames that
have a fix, time of the frame of the lowest camera index, heading, pitch and roll the rig's). The files come
from the job store's artifacts: the published image, thumbnail and preview, the image with metadata and the
stitched panorama, of the steps turned on: what a step turned off made before (``[steps.derive] enabled =
false``: a thumbnail) carries stale metadata, and nothing remakes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.records import Image
from panopipe.catalog.subjects import KINDS, Subject, SubjectKind, load_subjects, selected_subjects
from panopipe.catalog.values import rounded
from panopipe.config import Settings
from panopipe.errors import ConfigError, MetadataError, StorageError
from panopipe.export.images import ACCURACY_DOC, ALTITUDE_DOC, CLOCK_DOC, ORIENTATION_DOCS
from panopipe.export.table import Column, Table, capture_time
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.store import StoredOutput, latest_job_states, stored_outputs
from panopipe.steps.apply_metadata import Placement, expected_metadata, partial_panorama
from panopipe.steps.registry import build_steps

log = logging.getLogger(__name__)

STATUSES = ("failed", "stale", "outdated", "published", "processed", "pending")
"""A panorama's ``status``, the first that applies: the latest job of one of its steps ``failed`` or was
marked ``stale``; the catalog changed after one of its outputs that reads it was made (``outdated``: an edit
not run yet, which ``panopipe plan`` lists and ``verify`` calls so); it is ``published``; some step produced an
output (``processed``); nothing yet (``pending``)."""

PANORAMA_COLUMNS: tuple[Column, ...] = (
    Column("id", "text", "the shot id (rig shots) or the image id (single 360° images)"),
    Column("kind", "text", "shot or image"),
    Column("reel", "text", "the reel (survey run)"),
    Column("frame", "integer", "the lowest frame number of the shot's frames"),
    Column("shot", "text", "the shot id"),
    Column(
        "captured_at", "datetime", f"capture time of the frame of the lowest camera index, UTC; {CLOCK_DOC}"
    ),
    Column("lat", "real", "latitude, WGS84 degrees (the mean over the shot's frames with a fix)"),
    Column("lon", "real", "longitude, WGS84 degrees (the mean over the shot's frames with a fix)"),
    Column("altitude_msl_m", "real", f"{ALTITUDE_DOC}; the mean over the shot's frames"),
    Column("gps_accuracy_m", "real", f"{ACCURACY_DOC}; the largest of the shot's frames'"),
    *(
        Column(name, "real", f"{doc}; the rig's (its forward axis is the panorama's centre)")
        for name, doc in ORIENTATION_DOCS.items()
    ),
    Column("image_uri", "text", "the most finished image: published, else with metadata, else stitched"),
    Column("published_uri", "text", "the published image (https URL with --base-url)"),
    Column("thumbnail_uri", "text", "the published thumbnail, else the derived one"),
    Column("preview_uri", "text", "the published preview, else the derived one"),
    Column("status", "text", " / ".join(STATUSES)),
)
"""The columns of the panoramas export, with their types."""

FULL_VIEW = (360.0, 180.0)
"""Horizontal and vertical field of view of a full panorama, in degrees."""


@dataclass(frozen=True, slots=True)
class Panorama:
    """One shot or single 360° image, where it was and what the pipeline made of it (see
    :data:`PANORAMA_COLUMNS`)."""

    id: str
    kind: SubjectKind
    reel: str | None
    frame: int | None
    shot: str | None
    captured_at: datetime | None
    lat: float | None
    lon: float | None
    altitude_msl_m: float | None
    gps_accuracy_m: float | None
    heading: float | None
    pitch: float | None
    roll: float | None
    image_uri: str | None
    published_uri: str | None
    thumbnail_uri: str | None
    preview_uri: str | None
    status: str
    view_deg: tuple[float, float] = FULL_VIEW
    """Horizontal and vertical field of view: a partial panorama's (a 360° camera's cropped image) are less."""

    def row(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in PANORAMA_COLUMNS}


def load_panoramas(
    catalog: Catalog,
    selection: Selection | None = None,
    settings: Settings | None = None,
    *,
    base_url: str | None = None,
) -> list[Panorama]:
    """The shots and single 360° images the selection touches, by reel and frame, with the outputs and jobs of
    the steps turned on (see the module). With ``base_url``, files
    under the publish root (``[steps.publish] root``) are named by their URL under ``base_url``; others have
    none (a warning says how many)."""
    pipeline = load_pipeline(catalog, settings, ["apply-metadata", "publish"])
    params, publish_root = pipeline.steps[0].params, pipeline.steps[1].params["root"]
    turned_on = build_steps(pipeline.context.tables, pipeline.context)
    names = {step.name for step in turned_on}
    placement = Placement.of(pipeline.context)
    link = _Linker(publish_root, base_url)
    found: list[Panorama] = []
    with catalog.transaction() as conn, selected_subjects(conn, selection or Selection()) as selected:
        for kind in KINDS:
            outputs = stored_outputs(conn, kind, selected, turned_on)
            subjects = list(load_subjects(conn, kind, sorted(selected.keys_of(conn, kind), key=str)))
            states = latest_job_states(conn, [subject.id for subject in subjects])
            for subject in subjects:
                made = outputs.get(subject.key, [])
                latest = {
                    step: status for step, status in states.get(subject.id, {}).items() if step in names
                }
                metadata = expected_metadata(subject, params, placement)
                found.append(_panorama(subject, metadata, made, latest, link))
    if link.unlinked:
        log.warning(
            "--base-url: %d file(s) outside the publish root %s have no URL (left empty): "
            "`panopipe run` publishes them",
            len(link.unlinked),
            publish_root,
        )
    return sorted(found, key=lambda p: (p.reel or "", p.frame if p.frame is not None else -1, p.id))


def _panorama(
    subject: Subject,
    metadata: Mapping[str, Any],
    made: Sequence[StoredOutput],
    states: Mapping[str, str],
    link: _Linker,
) -> Panorama:
    tags = metadata["panopipe"]
    first = subject.frames[0]
    uris = {(output.step, output.name): output.uri for output in made}
    published = uris.get(("publish", "published"))
    source = first.uri if subject.kind == "image" else None
    processed = (
        uris.get(name) for name in (("apply-metadata", "image"), ("nadir", "image"), ("stitch", "panorama"))
    )
    image = published or next(filter(None, processed), None) or source
    if "failed" in states.values():
        status = "failed"
    elif "stale" in states.values():
        status = "stale"
    elif any(output.outdated for output in made):  # as verify tells it: a run makes it again
        status = "outdated"
    else:
        status = "published" if published else "processed" if made else "pending"
    return Panorama(
        id=subject.key,
        kind=subject.kind,
        reel=tags.get("reel"),
        frame=tags.get("frame"),
        shot=tags.get("shot"),
        captured_at=capture_time(metadata["captured_at"], metadata["utc_offset_minutes"]),
        lat=rounded("lat", metadata["gps_latitude"]),  # means of the frames' values
        lon=rounded("lon", metadata["gps_longitude"]),
        altitude_msl_m=rounded("alt", metadata["gps_altitude"]),
        gps_accuracy_m=metadata["gps_h_positioning_error"],
        heading=metadata["gps_img_direction"],
        pitch=metadata["pitch"],
        roll=metadata["roll"],
        image_uri=link(image),
        published_uri=link(published),
        thumbnail_uri=link(uris.get(("publish", "thumbnail")) or uris.get(("derive", "thumbnail"))),
        preview_uri=link(uris.get(("publish", "preview")) or uris.get(("derive", "preview"))),
        status=status,
        view_deg=_view(first) if subject.kind == "image" else FULL_VIEW,
    )


def _view(image: Image) -> tuple[float, float]:
    """The field of view of a 360° image: full, unless its GPano places it in a larger panorama (a cropped
    image, read only where its size is not a full panorama's 2:1)."""
    if not image.width or not image.height or image.width == 2 * image.height:
        return FULL_VIEW
    from panopipe.metadata import read_jpeg
    from panopipe.storage import resolve_uri

    try:
        storage, key = resolve_uri(image.uri)
        header, _ = read_jpeg(lambda start, length: storage.read_range(key, start, length))
    except (MetadataError, StorageError):
        return FULL_VIEW  # as apply-metadata then writes it
    area = partial_panorama(header)
    if area is None:
        return FULL_VIEW
    full_width, full_height, _, _ = area
    return 360.0 * image.width / full_width, 180.0 * image.height / full_height


class _Linker:
    """Names a file URI by its URL under ``base_url`` when it is under ``publish_root``; without a URL for
    the others (remembered in ``unlinked``), which are no file a web client can fetch."""

    def __init__(self, publish_root: str, base_url: str | None) -> None:
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                raise ConfigError(
                    f"--base-url must be an http(s) URL, e.g. https://cdn.example.com/survey, got {base_url!r}"
                )
            if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
                raise ConfigError(
                    f"--base-url {base_url!r} has a query or fragment: the files' paths go after it; give the "
                    "URL the publish root is served under, e.g. https://cdn.example.com/survey"
                )
            base_url = parts._replace(path=quote(parts.path.rstrip("/"), safe="/%")).geturl()
        self.base_url = base_url
        self.root = publish_root.rstrip("/") + "/"
        self.unlinked: set[str] = set()

    def __call__(self, uri: str | None) -> str | None:
        if uri is None or self.base_url is None:
            return uri
        if not uri.startswith(self.root):
            self.unlinked.add(uri)
            return None
        return f"{self.base_url}/{quote(uri[len(self.root) :])}"


def panoramas_table(found: Sequence[Panorama]) -> Table:
    """The panoramas export of ``found``."""
    return Table.of_rows("panoramas", PANORAMA_COLUMNS, (panorama.row() for panorama in found))


__all__ = ["FULL_VIEW", "PANORAMA_COLUMNS", "STATUSES", "Panorama", "load_panoramas", "panoramas_table"]
