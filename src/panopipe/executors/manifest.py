"""The manifest of an array job: the jobs of one submission, in chunks, and their results, as objects.

A submission to a remote executor lives under one prefix (``<work root>/<name>/``)::

    manifest.json          {"format": 3, "kind": "manifest", "step", "jobs", "chunks", "chunk_jobs", "body",
                            "offsets", "shared"}
    chunks.jsonl.gz        every chunk's jobs, one encoded job (executors.codec) per line, each chunk a gzip
                           member of its own: chunk i is bytes offsets[i] to offsets[i + 1] - 1; the payload
                           fields in "shared" are left out of the lines
    results/<job id>.json  the encoded outcome of one job, written by the worker once the job has ended

Chunk ``i`` is what the array child with ``AWS_BATCH_JOB_ARRAY_INDEX = i`` runs: it reads the manifest, then
its chunk with one ranged GET of the body. One body object, not one object per chunk: a submission of 10,000
children is two PUTs (or one multipart upload), not 10,001. A result object exists only for a job that ended
(succeeded or failed for a reason of its own); a job abandoned by a stopped worker has none, so the next
attempt of the child runs it.

``shared`` holds the payload fields whose value is the same for every job of the submission (a step's
parameters, such as the rig profile a stitch job carries, which is most of its bytes): written once, and
given back to each job of a chunk as it is read.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from panopipe.catalog.types import utcnow
from panopipe.errors import (
    BucketNotFoundError,
    ManifestError,
    ObjectNotFoundError,
    StepError,
    StorageError,
)
from panopipe.executors.codec import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.storage import CONCURRENT_REQUESTS, Storage, local_path, resolve_uri

if TYPE_CHECKING:
    from panopipe.config import Settings

MANIFEST = "manifest.json"
BODY = "chunks.jsonl.gz"
RESULTS = "results/"
MANIFEST_FORMAT = 3
"""The version of the manifest's layout written and read (1: one object per chunk, ``chunks/00000.jsonl``;
2: no ``shared`` payload fields)."""
COMPRESS_LEVEL = 1
"""gzip level of the chunks: JSON lines of jobs shrink about tenfold at the fastest level."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One submission: its step, how many jobs, and how many chunks of at most ``chunk_jobs`` jobs."""

    uri: str
    step: str
    jobs: int
    chunks: int
    chunk_jobs: int
    body: str = BODY
    """The key of the object that holds the chunks, relative to the submission's prefix."""
    offsets: tuple[int, ...] = ()
    """Where each chunk starts in the body, and where the last one ends (``chunks + 1`` numbers)."""
    shared: Mapping[str, Any] = field(default_factory=dict)
    """The payload fields of every job, left out of the chunks' lines."""


def _shared_fields(specs: Sequence[JobSpec]) -> dict[str, Any]:
    """The payload fields that every one of ``specs`` holds the very same value of (the same object: a step
    gives each of its jobs its one parameters dict)."""
    if not specs:
        return {}
    missing = object()
    return {
        key: value
        for key, value in specs[0].payload.items()
        if all(spec.payload.get(key, missing) is value for spec in specs)
    }


def chunk_count(jobs: int, chunk_jobs: int) -> int:
    """How many chunks ``jobs`` jobs make at ``chunk_jobs`` per chunk."""
    return math.ceil(jobs / chunk_jobs)


def _trimmed(uri: str) -> str:
    """``uri`` without the slashes it ends in, but those of a URL's ``://`` (``s3://`` is a URL without a bucket,
    not ``s3:``)."""
    scheme, separator, rest = uri.rpartition("://")
    return scheme + separator + rest.rstrip("/")


class Submission:
    """The objects of one submission: under ``prefix`` (ending in ``/``) in ``storage``."""

    def __init__(self, storage: Storage, prefix: str) -> None:
        self.storage, self.prefix = storage, prefix

    @classmethod
    def at(cls, uri: str, settings: Settings | None = None) -> Submission:
        """The submission whose manifest (or folder) is at the storage URI ``uri``."""
        base = _trimmed(uri)
        path = local_path(base)
        if base == MANIFEST or base.endswith("/" + MANIFEST):
            base = _trimmed(base.removesuffix(MANIFEST))
        elif base.endswith(".json") or (path is not None and path.is_file()):
            raise ManifestError(
                f"{uri} is not a manifest: a submission's is named {MANIFEST}; give it or its folder"
            )
        storage, key = resolve_uri(f"{base}/{MANIFEST}" if base else MANIFEST, settings)
        return cls(storage, key.removesuffix(MANIFEST))

    @property
    def manifest_uri(self) -> str:
        return self.storage.uri(self.prefix + MANIFEST)

    def write(self, step: str, specs: Sequence[JobSpec], chunk_jobs: int) -> Manifest:
        """Write the chunks of ``specs`` (the body), then the manifest; the manifest."""
        shared = _shared_fields(specs)
        members: list[bytes] = []
        offsets = [0]
        for start in range(0, len(specs), chunk_jobs):
            lines = [
                encode_job(
                    JobSpec(
                        spec.id,
                        spec.step,
                        spec.subject,
                        spec.fingerprint,
                        {key: value for key, value in spec.payload.items() if key not in shared},
                    )
                )
                + "\n"
                for spec in specs[start : start + chunk_jobs]
            ]
            members.append(gzip.compress("".join(lines).encode(), compresslevel=COMPRESS_LEVEL, mtime=0))
            offsets.append(offsets[-1] + len(members[-1]))
        document = {"format": MANIFEST_FORMAT, "kind": "manifest", "step": step, "jobs": len(specs)}
        document |= {"chunks": len(members), "chunk_jobs": chunk_jobs, "body": BODY, "offsets": offsets}
        try:  # before anything is stored
            text = json.dumps(document | {"shared": shared}, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StepError(f"job cannot be encoded as JSON: {exc}") from None
        self.storage.put(self.prefix + BODY, b"".join(members))
        self.storage.put(self.prefix + MANIFEST, text.encode())
        return Manifest(
            self.manifest_uri, step, len(specs), len(members), chunk_jobs, BODY, tuple(offsets), shared
        )

    def delete(self) -> None:
        """Delete what :meth:`write` stored (the manifest first: never one whose body is gone)."""
        self.storage.delete(self.prefix + MANIFEST)
        self.storage.delete(self.prefix + BODY)

    def manifest(self) -> Manifest:
        """The manifest; :class:`ManifestError` saying what is wrong if it is missing or malformed."""
        uri = self.manifest_uri
        try:
            text = self.storage.get(self.prefix + MANIFEST)
        except ObjectNotFoundError:
            raise ManifestError(f"manifest {uri} does not exist") from None
        except BucketNotFoundError as exc:
            raise ManifestError(f"manifest {uri} does not exist: {exc}") from None
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest {uri} is not valid JSON: {exc}") from None
        fields = {
            "step": str,
            "jobs": int,
            "chunks": int,
            "chunk_jobs": int,
            "body": str,
            "offsets": list,
            "shared": dict,
        }
        if (
            not isinstance(data, dict)
            or data.get("format") != MANIFEST_FORMAT
            or data.get("kind") != "manifest"
            or any(type(data.get(name)) is not kind for name, kind in fields.items())
            or len(data["offsets"]) != data["chunks"] + 1
            or any(type(offset) is not int for offset in data["offsets"])
            or data["offsets"] != sorted(data["offsets"])
        ):
            raise ManifestError(
                f"manifest {uri} is not a format {MANIFEST_FORMAT} manifest (format, kind, step, jobs, chunks, "
                "chunk_jobs, body, chunks + 1 offsets in order, and shared payload fields)"
            )
        offsets = tuple(data["offsets"])
        return Manifest(
            uri,
            data["step"],
            data["jobs"],
            data["chunks"],
            data["chunk_jobs"],
            data["body"],
            offsets,
            data["shared"],
        )

    def chunk(self, manifest: Manifest, index: int) -> list[JobSpec]:
        """The jobs of chunk ``index`` (one ranged read of the body); :class:`ManifestError` if it is out of
        range, missing, cut short or malformed."""
        if not 0 <= index < manifest.chunks:
            raise ManifestError(f"manifest {manifest.uri} has chunks 0 to {manifest.chunks - 1}, not {index}")
        key = self.prefix + manifest.body
        where = f"chunk {index} of {self.storage.uri(key)}"
        start, end = manifest.offsets[index], manifest.offsets[index + 1]
        try:
            data = self.storage.read_range(key, start, end - start)
        except ObjectNotFoundError:
            raise ManifestError(f"{self.storage.uri(key)} does not exist") from None
        except BucketNotFoundError as exc:
            raise ManifestError(f"{self.storage.uri(key)} does not exist: {exc}") from None
        if len(data) != end - start:
            raise ManifestError(
                f"{where}: the body ends at byte {start + len(data)}, before the chunk's end ({end})"
            )
        try:
            text = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ManifestError(f"{where} is not gzip data: {exc}") from None
        try:
            specs = [decode_job(line) for line in text.splitlines() if line.strip()]
        except StepError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        shared = manifest.shared
        return [
            JobSpec(s.id, s.step, s.subject, s.fingerprint, {**shared, **s.payload}) if shared else s
            for s in specs
        ]

    def write_result(self, job_id: str, outcome: JobOutcome) -> None:
        """Store the outcome of job ``job_id``."""
        self.storage.put(self._result_key(job_id), encode_outcome(outcome).encode())

    def result_ids(self) -> set[str]:
        """The ids of the jobs that have a result."""
        start = self.prefix + RESULTS
        return {
            info.key.removeprefix(start).removesuffix(".json")
            for info in self.storage.list(start)
            if info.key.endswith(".json")
        }

    def read_results(self, job_ids: Sequence[str]) -> Iterator[tuple[str, JobOutcome]]:
        """``(job id, outcome)`` of each of ``job_ids`` (which have a result), read concurrently; a result
        that cannot be read or decoded is a failed outcome saying so."""

        def read(job_id: str) -> tuple[str, JobOutcome]:
            try:
                return job_id, decode_outcome(self.storage.get(self._result_key(job_id)))
            except (StepError, StorageError) as exc:
                now = utcnow()
                return job_id, JobOutcome("failed", (), f"unreadable result: {exc}", "", 1, now, now)

        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
            yield from pool.map(read, job_ids)

    def _result_key(self, job_id: str) -> str:
        return f"{self.prefix}{RESULTS}{job_id}.json"


__all__ = [
    "BODY",
    "COMPRESS_LEVEL",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "RESULTS",
    "Manifest",
    "Submission",
    "chunk_count",
]
