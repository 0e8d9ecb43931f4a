"""The ``publish`` step: the finished images (with metadata) placed in a publish layout named by a template.

Config (``[steps.publish]``)::

    template = "{project}/{reel}/{project}_{reel}_{frame:06d}.jpg"
    root = "s3://bucket/published"   # any storage URI; default: "publish" under the output storage

Template fields: ``project``, ``reel``, ``frame``, ``shot``, ``id`` (shot or image id), ``kind`` (``shot`` or
``image``), ``name`` (an image's file name without its extension, a shot's id), ``date`` (capture date,
``YYYY-MM-DD``), ``route`` and ``mp`` (the route and measure ``panopipe route locate`` stored:
``{route}/{mp:08.3f}.jpg``; a template that uses them makes them part of the fingerprint, so that locating
again renames what moved). The default template names a subject without a reel or a frame (a 360° image
straight from its camera, ``R0014760.JPG``) ``{project}/{name}.jpg`` instead. When the step is configured
(so ``plan`` refuses it as ``run`` does), a template is refused that is malformed (``{shot``), names a field no
subject has or formats one in a way its type does not take, escapes the root (``..``, absolute), or names files
without the ``.jpg`` extension; before anything runs, the subjects it cannot name (a route not located yet)
or names alike fail their publish job (:meth:`PublishStep.validate`), and the rest run; a name that a subject
leaves in the same run (frames renumbered, two swapped) is free for another.

The ``derive`` step's thumbnail and preview, when it recorded them, are published under the image's name in
trees of their own (``layout = "apart"``, the default): ``thumbnails/demo/R001/demo_R001_000042.jpg`` and
``previews/…``, so that each reel's folder holds its panoramas alone, as Mapillary's and Panoramax's uploaders
take a folder; or beside the image with the output name before the extension (``layout = "beside"``):
``…_000042_thumbnail.jpg`` and ``…_000042_preview.jpg``. The job follows the image's ``apply-metadata``
output; it reruns when that output or the metadata changes, and when ``[steps.derive]`` changes (derive's
parameters are part of publish's), after derive has run again. With ``[steps.derive] enabled = false`` it
publishes the image alone: what derive made before would carry stale metadata, and nothing remakes it. An
output it copies that is recorded but gone fails the job, which then writes nothing.

With ``[steps.apply-metadata] enabled = false`` it publishes, as it is, what that step would have read
(:func:`~panopipe.steps.nadir.pixel_source`): the stitched panorama, or the 360° image's own file, or their
``nadir`` output when that step is on. Nothing writes the catalog's metadata into it (derive's thumbnail and
preview carry it, as always), so ``verify`` checks its content, not its tags: for a delivery whose metadata
travels apart (an export) or is written by a tool of one's own, with no second copy of every panorama. What
apply-metadata made before it was turned off is never published: an edit since leaves it stale, and nothing
remakes it. Turning apply-metadata on or off, or the nadir cap while apply-metadata is off, republishes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from string import Formatter
from typing import Any

from panopipe.config import ConfigKey
from panopipe.errors import ConfigError, ObjectNotFoundError, StepError, StorageError
from panopipe.steps.apply_metadata import ApplyMetadataStep
from panopipe.steps.base import (
    Log,
    Output,
    Step,
    Subject,
    SubjectKind,
    Upstream,
    job_inputs,
    put_output,
    read_input,
)
from panopipe.steps.derive import DeriveStep
from panopipe.steps.fingerprint import fingerprint
from panopipe.steps.nadir import covered, pixel_source
from panopipe.storage import Storage, open_storage, validate_key

DEFAULT_TEMPLATE = "{project}/{reel}/{project}_{reel}_{frame:06d}.jpg"
UNNUMBERED_TEMPLATE = "{project}/{name}.jpg"
"""What the default template becomes for a subject without a reel or a frame."""
SOURCE = ApplyMetadataStep.name
"""The step whose primary output is published while it is on."""
DERIVED = DeriveStep.outputs
LOCATED = ("route", "mp")
"""Template fields that ``panopipe route locate`` fills."""
LAYOUTS = ("apart", "beside")
"""Where thumbnails and previews are published: in trees of their own, or beside the image."""


class PublishStep(Step):
    """Copy each subject's ``apply-metadata`` output (with that step off: the panorama as it is, no metadata
    written) to ``root`` under the name the template gives."""

    name = "publish"
    version = "2"
    outputs = ("published", *DERIVED)
    reads = ("reel", "frame", "shot", "captured_at")
    frame_fields = ("route", "measure")
    parameters = (
        ConfigKey(
            "template",
            DEFAULT_TEMPLATE,
            "Name of each published image under `root`, a relative path ending in `.jpg`; fields: project, "
            "reel, frame, shot, id, kind, name, date, route, mp. The default names an image without reel or "
            f"frame `{UNNUMBERED_TEMPLATE}`.",
        ),
        ConfigKey(
            "root", None, "Storage URI published images go under.", "`publish` under the pipeline output"
        ),
        ConfigKey(
            "layout",
            "apart",
            "Where thumbnails and previews go: `apart`, under `thumbnails/` and `previews/` with the image's "
            "name, so each reel's folder holds its panoramas alone (as Mapillary's and Panoramax's uploaders "
            "take a folder); `beside`, next to the image (`…_000042_thumbnail.jpg`).",
        ),
    )
    copies = (DeriveStep.name,)
    overwrites = True

    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        template = table["template"]
        root = table.get("root") or open_storage(self.context.output_uri).uri("publish")
        if not isinstance(template, str) or not template.strip():
            raise ConfigError(f"[steps.publish]: template must be non-empty text, got {template!r}")
        _check_template(template)  # refused by plan as by run, not at the first job
        if table["layout"] not in LAYOUTS:
            raise ConfigError(f"[steps.publish]: layout must be 'apart' or 'beside', got {table['layout']!r}")
        self.root: Storage = open_storage(root)
        derive = DeriveStep(self.context.tables.get(DeriveStep.name, {}), self.context)
        derived = derive.params_hash if DeriveStep.enabled_in(self.context.tables) else None
        located = {"located": True} if any(f"{{{name}" in template for name in LOCATED) else {}
        tagged = ApplyMetadataStep.enabled_in(self.context.tables)
        return {
            "template": template,
            "root": self.root.root_uri,
            "project": self.context.project,
            "derived": derived,
            **located,
            # "beside" is the layout of the parameters before there was a choice: it keeps their hash
            **({"layout": table["layout"]} if table["layout"] != "beside" else {}),
            # apply-metadata off: what it would have read is published, covered by the nadir cap or not
            **({} if tagged else {"metadata": False, **covered(self.context.tables)}),
        }

    def fingerprint(self, subject: Subject, upstream: Upstream | None) -> str:
        base = super().fingerprint(subject, upstream)
        if not self.params.get("located"):
            return base
        return fingerprint({"base": base, "located": [[f.route, f.measure] for f in subject.frames]})

    def upstream(self, kind: SubjectKind) -> str | None:
        return pixel_source(kind, self.context.tables) if "metadata" in self.params else SOURCE

    def carries_metadata(self, name: str) -> bool:
        return name in DERIVED or "metadata" not in self.params

    def output_key(self, subject: Subject, name: str) -> str:
        key = self.publish_key(subject)
        if name == "published":
            return key
        if self.params.get("layout") == "apart":
            return f"{name}s/{key}"
        stem, dot, extension = key.rpartition(".")
        return f"{stem}_{name}.{extension}" if dot and "/" not in extension else f"{key}_{name}"

    def output_uri(self, subject: Subject, name: str) -> str:
        return self.root.uri(self.output_key(subject, name))

    def job_output_uri(self, subject: Subject, name: str, fingerprint: str) -> str:
        """The human-named copy: the template's name, whatever the job (a rerun replaces it)."""
        return self.output_uri(subject, name)

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        derived = {
            name: upstream.copies[name].uri
            for name in DERIVED
            if upstream and name in upstream.copies and self.params["derived"] is not None
        }
        source = upstream.step if upstream is not None else None  # None: the image file
        return {**super().payload(subject, upstream, fingerprint), "derived": derived, "source": source}

    def output_roots(self) -> tuple[str, ...]:
        return (self.root.root_uri,)

    def publish_key(self, subject: Subject) -> str:
        """The key of ``subject`` under the publish root; :class:`ConfigError` if the template is unusable."""
        first = subject.frames[0]
        frames = [f.frame for f in subject.frames if f.frame is not None]
        fields = {
            "project": self.params["project"],
            "reel": first.reel,
            "frame": min(frames) if frames else None,
            "shot": subject.key if subject.kind == "shot" else first.shot,
            "id": subject.key,
            "kind": subject.kind,
            "name": PurePosixPath(first.uri).stem if subject.kind == "image" else subject.key,
            "date": first.captured_at.date().isoformat() if first.captured_at else None,
            "route": first.route,
            "mp": first.measure,
        }
        template = self.params["template"]
        if template == DEFAULT_TEMPLATE and (first.reel is None or fields["frame"] is None):
            template = UNNUMBERED_TEMPLATE
        try:
            key = template.format(**fields)
        except (ValueError, TypeError) as exc:  # a value this subject lacks, or one of another type
            unset = sorted(
                name for name, value in fields.items() if value is None and f"{{{name}" in template
            )
            why = f"it has no {', '.join(unset)}" if unset else f"{type(exc).__name__}: {exc}"
            hint = " (`panopipe route locate` places it on a route)" if set(unset) & set(LOCATED) else ""
            raise StepError(
                f"[steps.publish]: template {template!r} cannot name {subject.id}: {why}{hint}"
            ) from exc
        try:
            return validate_key(key)
        except StorageError as exc:
            raise ConfigError(
                f"[steps.publish]: template {template!r} gives {key!r} for {subject.id}, outside the publish root"
            ) from exc

    def validate(self, subjects: Sequence[Subject], taken: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        """Refuse a template that names a field no subject has, or one outside the root
        (:class:`ConfigError`); and, subject by subject, one the template cannot name (a value it lacks) and
        those that would end with one name: all of them, since none is the right one. ``taken`` are
        ``(subject id, output URI)`` pairs published before: a subject keeps those unless it is among
        ``subjects`` and not refused, so that names freed and taken in one run (frames renumbered, two
        swapped) are no collision, and a subject refused keeps what it published (which may refuse others)."""
        names: dict[str, list[str]] = {}
        refused: dict[str, str] = {}
        for subject in subjects:
            try:
                names[subject.id] = [self.output_uri(subject, name) for name in self.outputs]
            except StepError as exc:
                refused[subject.id] = str(exc)
        kept: dict[str, list[str]] = {}
        for holder, uri in taken:
            kept.setdefault(holder, []).append(uri)
        owners: dict[str, dict[str, bool]] = {}  # by URI: who ends with it, and whether only as a name kept

        def own(subject_id: str, uris: Iterable[str], keeps: bool) -> None:
            for uri in uris:
                owners.setdefault(uri, {}).setdefault(subject_id, keeps)

        for subject_id, uris in names.items():
            if subject_id not in refused:
                own(subject_id, uris, False)
        for holder, uris in kept.items():
            if holder not in names or holder in refused:
                own(holder, uris, True)
        pending = list(owners)
        while pending:
            uri = pending.pop()
            if len(ids := owners[uri]) < 2:
                continue
            why = (
                f"[steps.publish]: template {self.params['template']!r} gives {_listed(sorted(ids))} the same "
                f"name {uri}; add a field that tells them apart (e.g. {{shot}} or {{id}})"
            )
            if keepers := sorted(i for i, keeps in ids.items() if keeps and i in names):
                why += f"; {_listed(keepers)} keep{'s' if len(keepers) == 1 else ''} it, being refused too"
            for subject_id in ids:
                if subject_id in names and subject_id not in refused:
                    refused[subject_id] = why
                    own(subject_id, kept.get(subject_id, ()), True)  # what it published stays
                    pending += kept.get(subject_id, ())
        return refused

    @classmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        """Every source is read before anything is written: one that is gone fails the job (:class:`StepError`,
        saying what brings it back), and what the subject had published stays as it was."""
        sources = {
            "published": job_inputs(payload)[0],
            **{n: (u, None) for n, u in payload["derived"].items()},
        }
        for name in (n for n in payload["outputs"] if n not in sources):
            log(f"no {name} recorded, not published")  # derive off, or no preview asked for
        read = {}
        for name, (source, sha256) in sources.items():
            try:
                read[name] = read_input(source, sha256)
            except ObjectNotFoundError as exc:
                made_by = payload.get("source", SOURCE) if name == "published" else DeriveStep.name
                raise StepError(_missing(made_by, name, source)) from exc
        outputs = []
        for name, data in read.items():
            uri = payload["outputs"][name]
            log(f"publish {sources[name][0]} -> {uri}")
            outputs.append(put_output(name, uri, data, replace=cls.overwrites))
        return outputs


def _missing(step: str | None, name: str, uri: str) -> str:
    """Why a job fails whose input ``name`` at ``uri``, made by ``step`` (``None``: the image file), is gone,
    and what brings it back."""
    if step is None:
        return f"the image file it publishes is missing: {uri}; run `panopipe ingest`"
    from panopipe.steps.registry import STEP_TYPES  # which imports this module

    output = name if name in DERIVED else STEP_TYPES[step].outputs[0]
    return (
        f"the {step} {output} it publishes is missing: {uri}; "
        "run `panopipe verify --repair`, then `panopipe run`"
    )


def _listed(ids: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, (", ".join(ids[:-1]), ids[-1])))


_EXAMPLE = {
    "project": "demo",
    "reel": "R001",
    "frame": 42,
    "shot": "R001-000042",
    "id": "R001-000042",
    "kind": "shot",
    "name": "R001-000042",
    "date": "2024-05-01",
    "route": "A9",
    "mp": 12.345,
}
"""A value of each template field, as a subject has them, that a template is tried on before anything runs."""


def _check_template(template: str) -> None:
    """Refuse (:class:`ConfigError`) a ``template`` that is malformed, names a field no subject has, formats a
    value in a way its type does not take, names a file outside the publish root, or not a JPEG."""
    fields = ", ".join(_EXAMPLE)
    try:
        names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        if unknown := sorted(n for n in names if re.split(r"[.\[]", n, maxsplit=1)[0] not in _EXAMPLE):
            raise ConfigError(
                f"[steps.publish]: template {template!r} names {', '.join(map(repr, unknown))}, which no "
                f"subject has; fields: {fields}"
            )
        key = template.format(**_EXAMPLE)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"[steps.publish]: invalid template {template!r}: {exc}") from exc
    try:
        validate_key(key)
    except StorageError as exc:
        raise ConfigError(
            f"[steps.publish]: template {template!r} names files outside the publish root (e.g. {key!r}): "
            "it must be a relative path inside it (no leading '/', no '..')"
        ) from exc
    if not key.lower().endswith((".jpg", ".jpeg")):
        raise ConfigError(
            f"[steps.publish]: template {template!r} names files without the .jpg extension (e.g. {key!r})"
        )


__all__ = [
    "DEFAULT_TEMPLATE",
    "DERIVED",
    "LAYOUTS",
    "LOCATED",
    "SOURCE",
    "UNNUMBERED_TEMPLATE",
    "PublishStep",
]
