"""What a step is: a named, versioned unit with declared inputs, parameters and outputs.

A step runs once per *subject*. A subject is either one shot of a multi-camera rig (``shot:<shot id>``, its
frames are the shot's images) or one single 360° image already in equirectangular projection
(``image:<image id>``). Planning happens in the catalog's process; :meth:`Step.execute` runs in a worker (a
local process, later a container) from a JSON-ready payload, reaching files only through storage URIs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, NamedTuple

from panopipe.catalog.records import to_json_value
from panopipe.catalog.subjects import Subject, SubjectKind
from panopipe.config import ConfigKey, check_names
from panopipe.errors import ConfigError, ObjectExistsError, StepError, StorageError
from panopipe.steps.fingerprint import canonical_json, fingerprint
from panopipe.storage import open_storage, resolve_uri

Log = Callable[[str], None]
"""Receives one line of a job's log."""


FINGERPRINT_IN_KEY = 16
"""Hex digits of the job's fingerprint in a content-addressed output key (64 bits, per subject and step)."""


class CopiedOutput(NamedTuple):
    """A recorded output of a step that a job copies (:attr:`Step.copies`): which step made it, where, its
    SHA-256 and when."""

    step: str
    uri: str
    hash: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Upstream:
    """The recorded output of the step a step reads from (its primary output), and the recorded outputs of the
    steps it copies (:attr:`Step.copies`) by artifact name. ``step``, ``uri`` and ``hash`` are ``None`` when
    the step reads its subject's image files (:meth:`Step.upstream` is ``None``) and copies outputs."""

    step: str | None
    uri: str | None
    hash: str | None
    copies: Mapping[str, CopiedOutput] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Output:
    """One file a job wrote completely: its artifact name, URI, SHA-256 and size."""

    name: str
    uri: str
    hash: str
    size: int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to run: everything a worker needs, JSON-ready (``payload``), and its identity."""

    id: str
    step: str
    subject: str
    fingerprint: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PipelineContext:
    """What steps share when planning: the project name, where outputs go, every step's config table (a step
    whose output copies another's, such as publish, reads that step's parameters), and the ``[qc]`` table
    (which positions count: ``null_island_deg``)."""

    project: str
    output_uri: str
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    qc: Mapping[str, Any] = field(default_factory=dict)


class Step(ABC):
    """A versioned processing step. Bump ``version`` whenever a change alters the outputs.

    Subclasses declare ``outputs`` (artifact names, the first is the primary output others read), the subject
    ``kinds`` they apply to, the effective metadata ``reads`` (whose values enter the fingerprint) and
    ``parameters`` (the keys of their ``[steps.<name>]`` table besides ``enabled``, with defaults and help: the
    one declaration that validation, :meth:`configure` and the configuration reference read), and the steps whose
    recorded outputs a job also ``copies`` (given in :attr:`Upstream.copies`).

    Outputs are content-addressed: a job writes under a key holding its fingerprint
    (:meth:`job_output_uri`), create-only, so that a dead attempt, a racing worker or a late job of other
    inputs can never leave its object where the recorded artifact points (docs/architecture.md).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    kinds: ClassVar[frozenset[SubjectKind]] = frozenset({"shot", "image"})
    reads: ClassVar[tuple[str, ...]] = ()
    reads_if_set: ClassVar[tuple[str, ...]] = ()
    """Metadata fields read, like ``reads``, that enter the fingerprint only when set: fields the step came to
    read after its outputs were made, so that an upgrade makes none of them stale that the field does not
    change."""
    parameters: ClassVar[tuple[ConfigKey, ...]] = ()
    config_keys: ClassVar[frozenset[str]] = frozenset()
    """The names of ``parameters`` (set for each subclass)."""
    copies: ClassVar[tuple[str, ...]] = ()
    overwrites: ClassVar[bool] = False
    """Whether the step writes its outputs at stable names, replacing those of its previous job (publish's
    human-named copies), rather than at content-addressed keys, where an object found is kept (its first
    complete write wins)."""
    frame_fields: ClassVar[tuple[str, ...]] = ()
    """The fields of the frames (:class:`~panopipe.catalog.records.Image`) that planning a job reads besides
    ``reads``, ``id``, ``uri``, ``content_hash`` and ``shot`` (its payload, problem and output names): frames
    loaded by the planner carry these only (see :func:`~panopipe.catalog.subjects.load_subjects`)."""
    heavy: ClassVar[bool] = False
    """Whether the step's jobs are too heavy for the event path: an upload queues them for the dispatcher
    (AWS Batch) instead of running them in the event function (:func:`~panopipe.pipeline.runner.initiate`)."""
    enabled_by_default: ClassVar[bool] = True
    """Whether ``panopipe run`` runs the step when its table does not set ``enabled``."""
    tagged: ClassVar[bool] = False
    """Whether the step's outputs carry the catalog's effective metadata (:meth:`carries_metadata`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.config_keys = frozenset(key.name for key in cls.parameters)

    def __init__(self, table: Mapping[str, Any], context: PipelineContext) -> None:
        check_names(table, {*self.config_keys, "enabled"}, section=f"steps.{self.name}")
        self.context = context
        self._output = open_storage(context.output_uri)
        defaults = {key.name: key.default for key in self.parameters if key.default is not None}
        self.params: dict[str, Any] = self.configure({**defaults, **table})

    @classmethod
    def enabled_key(cls) -> ConfigKey:
        """The ``enabled`` key every step's table has besides its parameters."""
        return ConfigKey(
            "enabled", cls.enabled_by_default, "Whether `panopipe run` (without `--steps`) runs this step."
        )

    @classmethod
    def enabled_in(cls, tables: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the ``[steps.*]`` ``tables`` turn the step on (``enabled``, else its default)."""
        table = tables.get(cls.name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[steps.{cls.name}] must be a table")
        enabled = table.get("enabled", cls.enabled_by_default)
        if not isinstance(enabled, bool):
            raise ConfigError(f"[steps.{cls.name}]: enabled must be true or false, got {enabled!r}")
        return enabled

    @abstractmethod
    def configure(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """Validated parameters from the step's config table, its declared defaults filled in (those that are not
        ``None``); they enter the fingerprint."""

    def upstream(self, kind: SubjectKind) -> str | None:
        """The step whose primary output this step reads for a subject of ``kind``; ``None``: the image files."""
        return None

    def carries_metadata(self, name: str) -> bool:
        """Whether output ``name`` carries the catalog's effective metadata, as the step is configured:
        ``verify`` compares its tags with the catalog's."""
        return self.tagged

    @functools.cached_property
    def params_hash(self) -> str:
        """Fingerprint of the step's version and parameters."""
        return fingerprint({"step": self.name, "version": self.version, "params": self.params})

    def fingerprint(self, subject: Subject, upstream: Upstream | None) -> str:
        """Hash of step, version, parameters, input content hashes and the metadata values the step reads."""
        if upstream is None or upstream.step is None:
            inputs: Any = [frame.content_hash for frame in subject.frames]
        else:
            inputs = {upstream.step: upstream.hash}
        if upstream is not None and upstream.copies:  # a new output of a step the job copies makes it stale
            copied = {name: output.hash for name, output in upstream.copies.items()}
            inputs = (
                {"files": inputs, "copies": copied} if upstream.step is None else {**inputs, "copies": copied}
            )
        metadata = [{name: to_json_value(getattr(f, name)) for name in self.reads} for f in subject.frames]
        if self.reads_if_set:  # most steps have none: planning a million frames pays nothing for them
            for entry, f in zip(metadata, subject.frames, strict=True):
                entry.update(
                    (name, to_json_value(v))
                    for name in self.reads_if_set
                    if (v := getattr(f, name)) is not None
                )
        # The canonical JSON of {"inputs", "metadata", "params", "step", "version"}, keys sorted: the part from
        # "params" on is the same for every subject, serialised once per step.
        head = canonical_json({"inputs": inputs, "metadata": metadata})[:-1]
        return hashlib.sha256(f"{head},{self._fingerprint_tail}".encode()).hexdigest()

    @functools.cached_property
    def _fingerprint_tail(self) -> str:
        return canonical_json({"params": self.params, "step": self.name, "version": self.version})[1:]

    def output_key(self, subject: Subject, name: str) -> str:
        """The stable storage key of output ``name`` of ``subject`` under the output root, which
        :meth:`job_output_uri` extends with the job's fingerprint."""
        return f"{self.name}/{subject.kind}/{safe_name(subject.key)}/{name}.jpg"

    def validate(self, subjects: Sequence[Subject], taken: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        """The subjects of ``subjects`` whose jobs cannot run, by id, with why (checked before any job runs: the
        others go on); :class:`ConfigError` if the step's configuration cannot work for any. ``taken`` are
        ``(subject id, output URI)`` pairs of this step's outputs recorded where the subjects' outputs would go
        (theirs among them)."""
        return {}

    def problem(self, subject: Subject) -> str | None:
        """Why a job on ``subject`` will fail, when that is known before it runs (``plan`` shows it), or ``None``."""
        return None

    def incomplete(self, subject: Subject) -> str | None:
        """Why ``subject`` is not all there yet (inputs that may still arrive, such as the frames of a rig shot
        still uploading), or ``None``. The event path and the dispatcher leave such a subject until they are;
        ``panopipe run`` runs it, and :meth:`problem` says why it fails."""
        return None

    def payload(self, subject: Subject, upstream: Upstream | None, fingerprint: str) -> dict[str, Any]:
        """The JSON-ready payload of the job of ``fingerprint``: inputs, parameters and output URIs; when the
        inputs are the frames' files, their content hashes in the catalog (see :func:`job_inputs`)."""
        source = upstream.uri if upstream is not None else None
        payload: dict[str, Any] = {
            "params": self.params,
            "inputs": [source] if source is not None else [f.uri for f in subject.frames],
            "outputs": {name: self.job_output_uri(subject, name, fingerprint) for name in self.outputs},
        }
        if source is None:
            payload["input_hashes"] = [f.content_hash for f in subject.frames]
        return payload

    def output_uri(self, subject: Subject, name: str) -> str:
        """The absolute URI of :meth:`output_key`."""
        return self._output.uri(self.output_key(subject, name))

    def job_output_uri(self, subject: Subject, name: str, fingerprint: str) -> str:
        """Where the job of ``fingerprint`` writes output ``name`` of ``subject``: :meth:`output_key` with the
        fingerprint before the extension (``stitch/shot/R001-000042/panorama-3f2a9c1b0d4e5f67.jpg``)."""
        stem, dot, extension = self.output_key(subject, name).rpartition(".")
        return self._output.uri(f"{stem}-{fingerprint[:FINGERPRINT_IN_KEY]}{dot}{extension}")

    def output_roots(self) -> tuple[str, ...]:
        """The roots the step writes under besides the pipeline's output (whose objects never trigger it)."""
        return ()

    @classmethod
    @abstractmethod
    def execute(cls, payload: Mapping[str, Any], log: Log) -> list[Output]:
        """Run one job in a worker; raise :class:`~panopipe.errors.StepError` with the reason on failure."""


def jpeg_quality(step: str, value: Any) -> int:
    """``value`` as the JPEG quality of ``step``'s outputs; :class:`ConfigError` unless a whole number 1-100."""
    if type(value) is not int or not 1 <= value <= 100:
        raise ConfigError(f"[steps.{step}]: quality must be an integer from 1 to 100, got {value!r}")
    return value


def frame_fields(steps: Iterable[Step]) -> frozenset[str]:
    """The frame fields that planning jobs of ``steps`` reads (:attr:`Step.frame_fields`, :attr:`Step.reads` and
    :attr:`Step.reads_if_set`)."""
    return frozenset(name for step in steps for name in (*step.reads, *step.reads_if_set, *step.frame_fields))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` as one safe storage key segment; altered names get a short hash so they stay distinct."""
    safe = _UNSAFE.sub("_", text).strip(".") or "_"
    if safe != text:
        safe = f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe


def put_output(name: str, uri: str, data: bytes, *, replace: bool = False) -> Output:
    """Store ``data`` at ``uri`` and describe what ``uri`` holds as a finished output.

    The write is create-only: the first complete write to a content-addressed key wins. An object already
    there was written whole (writes are atomic) by another attempt of this very job (the key names every
    input): a dead attempt or a racing worker. It is kept and described as it is stored, so that every
    attempt reports the same content; on S3 only if it carries the SHA-256 panopipe stores with every object
    (S3 verified it on upload), else it was not written by panopipe and is replaced. An empty object where
    ``data`` is not is replaced too: a folder's small create-only write is not flushed to disk, and a power
    loss can leave its name on an empty file. ``replace`` overwrites in any case (publish's human-named copies).
    """
    storage, key = resolve_uri(uri)
    if not replace:
        try:
            info = storage.put_new(key, data)
        except ObjectExistsError:
            info = storage.head(key)
            stored = info.sha256 or storage.sha256(key)
            if stored is not None and (info.size or not data):  # empty: cut short by a power loss
                return Output(name, uri, stored, info.size)
        else:
            return Output(name, uri, hashlib.sha256(data).hexdigest(), info.size)
    info = storage.put(key, data)
    return Output(name, uri, hashlib.sha256(data).hexdigest(), info.size)


def discard_outputs(uris: Iterable[str]) -> None:
    """Delete the objects at ``uris`` (superseded outputs nothing records any more), as far as possible: one
    left behind is garbage, never read."""
    for uri in uris:
        storage, key = resolve_uri(uri)
        with contextlib.suppress(StorageError):
            storage.delete(key)


def read_input(uri: str, sha256: str | None = None) -> bytes:
    """All bytes of the file or object at ``uri``; with ``sha256`` (a catalogued file's content hash), a
    :class:`StepError` if they are other bytes now: the job would make, and record under the catalogued
    content, an output of content it was not given. The check is one SHA-256 of bytes in memory: 2.6 ms for a
    4.7 MB frame of 12 megapixels, 3% of decoding it (0.55 ms a megabyte, with the CPU's SHA instructions)."""
    storage, key = resolve_uri(uri)
    data = storage.get(key)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StepError(f"input {uri} changed since it was catalogued: run `panopipe ingest`")
    return data


def job_inputs(payload: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The URI of each input of a job, with the SHA-256 the catalog holds of it when it is a catalogued file
    (``None``: another step's output, or a file whose content the catalog does not know), for
    :func:`read_input`. Jobs submitted before payloads carried them check nothing."""
    hashes = payload.get("input_hashes") or [None] * len(payload["inputs"])
    return list(zip(payload["inputs"], hashes, strict=True))


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How one job ended in its worker: its outputs (only when it succeeded), error, log and timings."""

    status: Literal["succeeded", "failed"]
    outputs: tuple[Output, ...]
    error: str | None
    log: str
    attempts: int
    started_at: datetime
    finished_at: datetime
    unreachable: bool = False
    """Whether it failed because the storage's endpoint could not be reached
    (:class:`~panopipe.errors.EndpointUnreachableError`): every other job would fail alike, so a run stops."""


__all__ = [
    "FINGERPRINT_IN_KEY",
    "CopiedOutput",
    "JobOutcome",
    "JobSpec",
    "Log",
    "Output",
    "PipelineContext",
    "Step",
    "Subject",
    "SubjectKind",
    "Upstream",
    "discard_outputs",
    "frame_fields",
    "job_inputs",
    "jpeg_quality",
    "put_output",
    "read_input",
    "safe_name",
]
