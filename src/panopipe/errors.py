"""The exception tree of panopipe.

Every error panopipe raises on purpose derives from :class:`PanopipeError`. Entry points turn it into
something a user reads: the CLI prints one line and exits with :attr:`PanopipeError.exit_code`, the Lambda
handler records a failed item. Messages say what went wrong and, where possible, what to do.
"""

from __future__ import annotations

import errno

TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET})
"""OSError numbers worth retrying: busy, interrupted, timed out, reset. A full disk or a denial is not."""


class Terminated(BaseException):
    """SIGTERM (``timeout``, systemd, ``docker stop``, a CI job cancelled) stopping a run, or the local pool
    stopping a job it will not wait for: taken as Ctrl-C is (unfinished jobs are cancelled). A
    ``BaseException``, so that no ``except Exception`` takes it for a failed item."""

    exit_code = 143
    """128 + SIGTERM, as a shell reports a process SIGTERM ended."""


class PanopipeError(Exception):
    """Root of all panopipe errors."""

    exit_code = 1


class ConfigError(PanopipeError):
    """A setting, a config file or a command-line value is invalid."""

    exit_code = 2


class CatalogError(PanopipeError):
    """The catalog cannot be opened, read or written."""

    exit_code = 3


class CatalogUnavailableError(CatalogError):
    """The catalog refuses every write for now, whatever is written: locked by another process, read-only, out
    of space, on a failing disk, damaged or unreachable. A condition of the catalog, not of what was written:
    trying each item of a batch alone would fail alike (and wait alike)."""


class CatalogUnreachableError(CatalogUnavailableError):
    """The catalog's database cannot be reached (the URL in the message has its password masked)."""


class SchemaOutdatedError(CatalogError):
    """The catalog's schema is older (or newer) than this panopipe expects."""


class NotFoundError(CatalogError):
    """A catalog record (image, edit, job) does not exist."""


class StorageError(PanopipeError):
    """A file or object cannot be read, written or listed; ``transient`` when trying again may succeed
    (throttling, a server error, a timeout or a reset connection), as the storage backend classified it."""

    exit_code = 4

    def __init__(self, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ObjectNotFoundError(StorageError):
    """The file or object does not exist."""


class BucketNotFoundError(StorageError):
    """The bucket does not exist (in this account and region): everything under it is missing."""


class EndpointUnreachableError(StorageError):
    """The storage's endpoint (or SQS's, AWS Batch's or CloudFormation's) refuses connections, cannot be
    resolved or does not answer, after botocore's own retries: every call to it would fail alike until it is
    back, so a job is not tried again, ``sync`` stops and a submission to AWS Batch fails at once, where each
    call had waited through the retries again."""


class ObjectExistsError(StorageError):
    """A create-only write found an object already at the key (S3 ``If-None-Match: *``, a folder's link)."""


class MetadataError(PanopipeError):
    """Image metadata cannot be read or written (corrupt, truncated or not a JPEG)."""

    exit_code = 5


class StepError(PanopipeError):
    """A processing step failed for one item."""

    exit_code = 6


class EventError(PanopipeError):
    """An incoming event cannot be understood."""

    exit_code = 7


class StackError(PanopipeError):
    """CloudFormation refused a request, or the stack ended in a failed state."""

    exit_code = 8


class StackNotFoundError(StackError):
    """The stack does not exist (in this account and region)."""

    exit_code = 9


class Interrupted(PanopipeError):
    """Ctrl-C stopped a command, which undid what it had started: the message says what is left."""

    exit_code = 130
    """128 + SIGINT, as a shell reports a process Ctrl-C ended."""


class ManifestError(PanopipeError):
    """A worker's manifest or chunk (``panopipe worker run --manifest``) is missing or malformed."""

    exit_code = 10


def is_transient_os_error(error: OSError) -> bool:
    """Whether the OSError ``error`` is worth retrying (:data:`TRANSIENT_ERRNOS`)."""
    return error.errno in TRANSIENT_ERRNOS


__all__ = [
    "TRANSIENT_ERRNOS",
    "BucketNotFoundError",
    "CatalogError",
    "CatalogUnavailableError",
    "CatalogUnreachableError",
    "ConfigError",
    "EndpointUnreachableError",
    "EventError",
    "Interrupted",
    "ManifestError",
    "MetadataError",
    "NotFoundError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "PanopipeError",
    "SchemaOutdatedError",
    "StackError",
    "StackNotFoundError",
    "StepError",
    "StorageError",
    "Terminated",
    "is_transient_os_error",
]
