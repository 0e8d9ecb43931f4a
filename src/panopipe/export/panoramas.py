"""The panoramas export (``export --of panoramas``): one row per rig shot or single 360° image, with what the
pipeline produced for it.

Position, time, heading and the reel/frame/shot tags are those ``apply-metadata`` writes into the panorama
(:func:`~panopipe.steps.apply_metadata.expected_metadata`: the position averaged over the shot's frames, time
and heading of the frame of the lowest camera index); pitch and roll are that frame's too. The files come
from the job store's artifacts: the published image, thumbnail and preview, the image with metadata and the
stitched panorama.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.subjects import KINDS, Subject, SubjectKind, load_subjects, selected_subjects
from panopipe.catalog.values import rounded
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.export.images import ACCURACY_DOC, ALTITUDE_DOC, ORIENTATION_DOCS
from panopipe.export.table import Column, Table
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.store import StoredOutput, latest_job_states, stored_outputs
from panopipe.steps.apply_metadata import expected_metadata

STATUSES = ("failed", "stale", "published", "processed", "pending")
"""A panorama's ``status``, the first that applies: the latest job of one of its steps ``failed`` or was
marked ``stale``; it is ``published``; some step produced an output (``processed``); nothing yet
(``pending``)."""

PANORAMA_COLUMNS: tuple[Column, ...] = (
    Column("id", "text", "the shot id (rig shots) or the image id (single 360° images)"),
    Column("kind", "text", "shot or image"),
    Column("reel", "text", "the reel (survey run)"),
    Column("frame", "integer", "the lowest frame number of the shot's frames"),
    Column("shot", "text", "the shot id"),
    Column("captured_at", "datetime", "capture time, UTC (of the frame of the lowest camera index)"),
    Column("lat", "real", "latitude, WGS84 degrees (the mean over the shot's frames)"),
    Column("lon", "real", "longitude, WGS84 degrees (the mean over the shot's frames)"),
    Column("altitude_msl_m", "real", f"{ALTITUDE_DOC}; the mean over the shot's frames"),
    Column("gps_accuracy_m", "real", f"{ACCURACY_DOC}; the largest of the shot's frames'"),
    *(
        Column(name, "real", f"{doc}; of the frame of the lowest camera index")
        for name, doc in ORIENTATION_DOCS.items()
    ),
    Column("image_uri", "text", "the most finished image: published, else with metadata, else stitched"),
    Column("published_uri", "text", "the published image (https URL with --base-url)"),
    Column("thumbnail_uri", "text", "the published thumbnail, else the derived one"),
    Column("preview_uri", "text", "the published preview, else the derived one"),
    Column("status", "text", " / ".join(STATUSES)),
)
"""The columns of the panoramas export, with their types."""

_Link = Callable[[str | None], str | None]


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

    def row(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in PANORAMA_COLUMNS}


def load_panoramas(
    catalog: Catalog,
    selection: Selection | None = None,
    settings: Settings | None = None,
    *,
    base_url: str | None = None,
) -> list[Panorama]:
    """The shots and single 360° images the selection touches, by reel and frame. With ``base_url``, files
    under the publish root (``[steps.publish] root``) are named by their URL under ``base_url``."""
    pipeline = load_pipeline(catalog, settings, ["apply-metadata", "publish"])
    params, publish_root = pipeline.steps[0].params, pipeline.steps[1].params["root"]
    link = _linker(publish_root, base_url)
    found: list[Panorama] = []
    with catalog.transaction() as conn, selected_subjects(conn, selection or Selection()) as selected:
        for kind in KINDS:
            outputs = stored_outputs(conn, kind, selected)
            subjects = list(load_subjects(conn, kind, sorted(selected.keys_of(conn, kind), key=str)))
            states = latest_job_states(conn, [subject.id for subject in subjects])
            for subject in subjects:
                made = outputs.get(subject.key, [])
                found.append(_panorama(subject, params, made, states.get(subject.id, {}), link))
    return sorted(found, key=lambda p: (p.reel or "", p.frame if p.frame is not None else -1, p.id))


def _panorama(
    subject: Subject,
    params: Mapping[str, Any],
    made: Sequence[StoredOutput],
    states: Mapping[str, str],
    link: _Link,
) -> Panorama:
    metadata = expected_metadata(subject, params)
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
    else:
        status = "published" if published else "processed" if made else "pending"
    return Panorama(
        id=subject.key,
        kind=subject.kind,
        reel=tags.get("reel"),
        frame=tags.get("frame"),
        shot=tags.get("shot"),
        captured_at=metadata["captured_at"],
        lat=rounded("lat", metadata["gps_latitude"]),  # means of the frames' values
        lon=rounded("lon", metadata["gps_longitude"]),
        altitude_msl_m=rounded("alt", metadata["gps_altitude"]),
        gps_accuracy_m=metadata["gps_h_positioning_error"],
        heading=metadata["gps_img_direction"],
        pitch=first.pitch,
        roll=first.roll,
        image_uri=link(image),
        published_uri=link(published),
        thumbnail_uri=link(uris.get(("publish", "thumbnail")) or uris.get(("derive", "thumbnail"))),
        preview_uri=link(uris.get(("publish", "preview")) or uris.get(("derive", "preview"))),
        status=status,
    )


def _linker(publish_root: str, base_url: str | None) -> _Link:
    """A function naming a file URI by its URL under ``base_url`` when it is under ``publish_root``."""
    if base_url is not None and not base_url.startswith(("https://", "http://")):
        raise ConfigError(
            f"--base-url must be an http(s) URL, e.g. https://cdn.example.com/survey, got {base_url!r}"
        )
    root = publish_root.rstrip("/") + "/"

    def link(uri: str | None) -> str | None:
        if uri is None or base_url is None or not uri.startswith(root):
            return uri
        return f"{base_url.rstrip('/')}/{quote(uri[len(root) :])}"

    return link


def panoramas_table(found: Sequence[Panorama]) -> Table:
    """The panoramas export of ``found``."""
    return Table.of_rows("panoramas", PANORAMA_COLUMNS, (panorama.row() for panorama in found))


__all__ = ["PANORAMA_COLUMNS", "STATUSES", "Panorama", "load_panoramas", "panoramas_table"]
