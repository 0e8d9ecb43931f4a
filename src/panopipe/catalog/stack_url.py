"""Catalog URLs that name a deployed stack: ``cloudformation://STACK[/DBNAME]``.

The stack's outputs (:data:`~panopipe.aws.stack.CATALOG_OUTPUTS`, read with one DescribeStacks call) give the
RDS Proxy's host and port, the database and the IAM user; the URL becomes
``postgresql+psycopg://USER@PROXY:5432/DBNAME?iam=true&region=REGION&sslmode=verify-full``. ``/DBNAME`` picks
another database behind the same proxy; ``USER@`` another IAM user; ``?region=`` the stack's region (default:
the region of the settings given); every other query parameter (``sslrootcert=``, ``statement_timeout=``...) is passed on.
A URL is resolved once per process.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from panopipe.errors import ConfigError, StackError, StackNotFoundError

if TYPE_CHECKING:
    from panopipe.config import Settings

SCHEME = "cloudformation"
USABLE_STATUSES = ("CREATE_COMPLETE", "IMPORT_COMPLETE", "UPDATE_")
"""Statuses (or their prefixes) of a stack whose database exists: created, or being updated or rolled back
from an update (the database of the previous version serves meanwhile)."""

_resolved: dict[tuple[str, str | None, str | None], URL] = {}
_lock = threading.Lock()


def stack_catalog_url(stack: str) -> str:
    """The catalog URL that names ``stack``'s catalog."""
    return f"{SCHEME}://{stack}"


def resolve_stack_url(url: URL, settings: Settings | None = None, *, client: Any = None) -> URL:
    """The ``postgresql+psycopg`` URL of the catalog of the stack that ``url`` (``cloudformation://``) names,
    looked up in the region and with the profile of ``settings`` (default:
    :func:`~panopipe.config.settings_or_loaded`).

    A stack that does not exist is a :class:`~panopipe.errors.StackNotFoundError`; one that is not created
    yet, failed, is being deleted, or lacks the catalog's outputs, a :class:`~panopipe.errors.StackError`.
    """
    from panopipe.aws.deploy import cloudformation_client
    from panopipe.config import settings_or_loaded

    if not url.host or url.port is not None or url.password is not None:
        from panopipe.catalog.engine import mask_url

        raise ConfigError(
            f"invalid catalog URL {mask_url(url)}: expected {SCHEME}://STACK[/DBNAME] (no port, no password: "
            "the stack's outputs give the address and IAM gives the credentials)"
        )
    query = {name: str(value) for name, value in url.query.items()}
    settings = settings_or_loaded(settings)
    if "region" in query:
        settings = replace(settings, aws_region=query["region"])
    key = (url.render_as_string(hide_password=False), settings.aws_region, settings.aws_profile)
    with _lock:
        cached = _resolved.get(key)
    if cached is not None:
        return cached
    client = client or cloudformation_client(settings)
    resolved = _resolve(url.host, url, query, client)
    with _lock:
        _resolved[key] = resolved
    return resolved


def _resolve(stack: str, url: URL, query: dict[str, str], client: Any) -> URL:
    from panopipe.aws.deploy import status
    from panopipe.aws.stack import CATALOG_OUTPUTS

    region = str(client.meta.region_name)
    look = f"`panopipe cloud status --stack {stack}`"
    try:
        report = status(stack, client=client, events=False)
    except StackNotFoundError as exc:
        raise StackNotFoundError(f"catalog {SCHEME}://{stack}: {exc} ({look} shows a stack)") from None
    if not report.status.startswith(USABLE_STATUSES):
        if report.status == "REVIEW_IN_PROGRESS":
            hint = f"it was never deployed: run `panopipe cloud deploy --stack {stack}`"
        elif report.status.endswith("IN_PROGRESS"):
            hint = f"wait for it to finish with {look}"
        else:
            hint = f"see why with {look}"
        raise StackError(
            f"catalog {SCHEME}://{stack}: stack {stack} is {report.status}, its catalog is not ready: {hint}"
        )
    missing = [name for name in CATALOG_OUTPUTS if not report.outputs.get(name)]
    if missing:
        raise StackError(
            f"catalog {SCHEME}://{stack}: stack {stack} has no output {', '.join(missing)}; it is not a "
            "panopipe stack, or an older one: update it with `panopipe cloud deploy`"
        )
    outputs = report.outputs
    try:
        port = int(outputs["ProxyPort"])
    except ValueError:
        raise StackError(
            f"catalog {SCHEME}://{stack}: output ProxyPort {outputs['ProxyPort']!r} is not a port number"
        ) from None
    return URL.create(
        "postgresql+psycopg",
        username=url.username or outputs["CatalogUser"],
        host=outputs["ProxyEndpoint"],
        port=port,
        database=url.database or outputs["CatalogDatabase"],
        query={"sslmode": "verify-full", "region": region, **query, "iam": "true"},
    )


__all__ = ["SCHEME", "USABLE_STATUSES", "resolve_stack_url", "stack_catalog_url"]
