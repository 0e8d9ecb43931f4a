"""The manifest of an array job: the jobs of one submission, in chunks, and their results, as objects.

A submission to a remote executor lives under one prefix (``<work root>/<name>/``)::

    manifest.json          {"format": 1, "kind": "manifest", "step", "jobs", "chunks", "chunk_jobs"}
    chunks/00000.jsonl     the jobs of array child 0, one encoded job (executors.codec) per line
    results/<job id>.json  the encoded outcome of one job, written by the worker once the job has ended

Chunk ``i`` is what the array child with ``AWS_BATCH_JOB_ARRAY_INDEX = i`` runs. A result object exists only
for a job that ended (succeeded or failed for a reason of its own); a job abandoned by a stopped worker has
none, so the next attempt of the child runs it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from panopipe.catalog.types import utcnow
from panopipe.errors import ManifestError, ObjectNotFoundError, StepError, StorageError
from panopipe.executors.codec import FORMAT, decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.storage import Storage, resolve_uri

if TYPE_CHECKING:
    from panopipe.config import Settings

MANIFEST = "manifest.json"
CHUNKS = "chunks/"
RESULTS = "results/"
WRITERS = 16
"""Objects written or read at once (S3 answers each request in tens of milliseconds)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One submission: its step, how many jobs, and how many chunks of at most ``chunk_jobs`` jobs."""

    uri: str
    step: str
    jobs: int
    chunks: int
    chunk_jobs: int


def chunk_count(jobs: int, chunk_jobs: int) -> int:
    """How many chunks ``jobs`` jobs make at ``chunk_jobs`` per chunk."""
    return math.ceil(jobs / chunk_jobs)


class Submission:
    """The objects of one submission: under ``prefix`` (ending in ``/``) in ``storage``."""

    def __init__(self, storage: Storage, prefix: str) -> None:
        self.storage, self.prefix = storage, prefix

    @classmethod
    def at(cls, uri: str, settings: Settings | None = None) -> Submission:
        """The submission whose manifest (or prefix) is at the storage URI ``uri``."""
        storage, key = resolve_uri(uri.removesuffix(MANIFEST) + MANIFEST, settings)
        return cls(storage, key.removesuffix(MANIFEST))

    @property
    def manifest_uri(self) -> str:
        return self.storage.uri(self.prefix + MANIFEST)

    def write(self, step: str, specs: Sequence[JobSpec], chunk_jobs: int) -> Manifest:
        """Write the chunks of ``specs``, then the manifest; the manifest."""
        chunks = [specs[i : i + chunk_jobs] for i in range(0, len(specs), chunk_jobs)]

        def put(item: tuple[int, Sequence[JobSpec]]) -> None:
            index, chunk = item
            self.storage.put(self._chunk_key(index), "".join(encode_job(s) + "\n" for s in chunk).encode())

        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(put, enumerate(chunks)))
        document = {"format": FORMAT, "kind": "manifest", "step": step, "jobs": len(specs)}
        document |= {"chunks": len(chunks), "chunk_jobs": chunk_jobs}
        self.storage.put(self.prefix + MANIFEST, json.dumps(document, separators=(",", ":")).encode())
        return Manifest(self.manifest_uri, step, len(specs), len(chunks), chunk_jobs)

    def manifest(self) -> Manifest:
        """The manifest; :class:`ManifestError` saying what is wrong if it is missing or malformed."""
        uri = self.manifest_uri
        try:
            text = self.storage.get(self.prefix + MANIFEST)
        except ObjectNotFoundError:
            raise ManifestError(f"manifest {uri} does not exist") from None
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest {uri} is not valid JSON: {exc}") from None
        fields = {"step": str, "jobs": int, "chunks": int, "chunk_jobs": int}
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or data.get("kind") != "manifest"
            or any(type(data.get(name)) is not kind for name, kind in fields.items())
        ):
            raise ManifestError(
                f"manifest {uri} is not a format {FORMAT} manifest (format, kind, step, jobs, chunks, chunk_jobs)"
            )
        return Manifest(uri, data["step"], data["jobs"], data["chunks"], data["chunk_jobs"])

    def chunk(self, manifest: Manifest, index: int) -> list[JobSpec]:
        """The jobs of chunk ``index``; :class:`ManifestError` if it is out of range, missing or malformed."""
        if not 0 <= index < manifest.chunks:
            raise ManifestError(f"manifest {manifest.uri} has chunks 0 to {manifest.chunks - 1}, not {index}")
        key = self._chunk_key(index)
        try:
            text = self.storage.get(key)
        except ObjectNotFoundError:
            raise ManifestError(f"chunk {self.storage.uri(key)} does not exist") from None
        try:
            return [decode_job(line) for line in text.splitlines() if line.strip()]
        except StepError as exc:
            raise ManifestError(f"chunk {self.storage.uri(key)}: {exc}") from None

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

        with ThreadPoolExecutor(WRITERS) as pool:
            yield from pool.map(read, job_ids)

    def _chunk_key(self, index: int) -> str:
        return f"{self.prefix}{CHUNKS}{index:05d}.jsonl"

    def _result_key(self, job_id: str) -> str:
        return f"{self.prefix}{RESULTS}{job_id}.json"


__all__ = [
    "CHUNKS",
    "MANIFEST",
    "RESULTS",
    "WRITERS",
    "Manifest",
    "Submission",
    "chunk_count",
]
