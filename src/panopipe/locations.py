"""Where a user points panopipe: a path or a URL, told apart in one place for catalogs and storage."""

from __future__ import annotations

import re

from panopipe.errors import ConfigError

# RFC 3986's scheme; two characters at least, so that a Windows drive (C:) stays a path
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def url_scheme(location: str) -> str | None:
    """The scheme of ``location`` when it is a URL (``s3://...``: ``"s3"``), None when it is a path.

    A scheme without ``//`` (``s3:/bucket``, ``postgresql:survey``) is a mistyped URL rather than a file
    named so: a :class:`~panopipe.errors.ConfigError`, so that a typo never reads or creates a local file.
    """
    match = _SCHEME.match(location)
    if match is None:
        return None
    if not location.startswith("//", match.end()):
        # only the scheme is shown: the rest of a mistyped database URL may hold a password
        raise ConfigError(
            f"{match.group(0)}... is neither a path nor a URL: a URL needs // after {match.group(0)} "
            "(a file or folder whose name has a colon: write ./ before it)"
        )
    return match.group(1)


__all__ = ["url_scheme"]
