"""boto3 clients built from :class:`~panopipe.config.Settings` (endpoint URL, region and profile in one place),
and which of their errors are worth retrying."""

from __future__ import annotations

import os
import threading
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from panopipe.config import ENV_S3_ENDPOINT_URL, Settings, settings_or_loaded
from panopipe.errors import ConfigError

S3Client: TypeAlias = Any  # boto3 generates client classes at run time

DEFAULT_MAX_POOL_CONNECTIONS = 64
MAX_RETRIES = 5
"""Retries botocore makes of a call (standard retry mode, with backoff) before an error reaches panopipe."""
CONNECT_TIMEOUT_S = 3
"""Seconds botocore waits for a connection, each attempt: a connection to S3 takes milliseconds (botocore's own
default, 60 s, took minutes before an endpoint was known down)."""
READ_TIMEOUT_S = 20
"""Seconds an S3 client waits for a byte of an answer (botocore's default, 60 s, tried six times, kept an ingest
waiting 6 minutes on an endpoint that took connections and never answered): S3 answers in milliseconds, and
keeps a long CompleteMultipartUpload alive with whitespace."""
CONNECT_RETRIES = 1
"""Retries of a call that got no answer (the connection refused, a name not resolved, no connection within
:data:`CONNECT_TIMEOUT_S`, or no byte within the read timeout), whatever :data:`MAX_RETRIES` allows: one, for a
blip. A dead endpoint is then unreachable (:func:`is_endpoint_unreachable`) within a second when it refuses,
about 7 s when it does not answer; one that takes connections and never answers fails its call (transient)
after twice :data:`READ_TIMEOUT_S`. botocore's retries of everything had taken 15 s, a minute and 6 minutes."""

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
    }
)
"""Error codes of AWS and S3-compatible servers that mean "too fast" or "not now": retrying later may succeed."""

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

CREDENTIALS_HINT = (
    "set AWS_PROFILE (a profile of ~/.aws/config), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run `aws configure`"
)
"""What to do when botocore finds no credentials (``NoCredentialsError``)."""


def s3_client(
    settings: Settings | None = None, *, max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
) -> S3Client:
    """An S3 client for AWS, MinIO or moto's server, configured from ``settings`` (default: those
    :func:`~panopipe.config.settings_or_loaded` loads).

    With an endpoint URL the client uses path-style addressing, which S3-compatible servers expect. A process
    builds one client per configuration (endpoint, region, profile, pool size and the AWS variables of its
    environment) and shares it: boto3 clients are thread-safe, and building one (botocore loads the service's
    model) costs more CPU than reading or writing a thumbnail.
    """
    settings = settings_or_loaded(settings)
    key = (
        os.getpid(),  # a forked child must not share its parent's connections
        settings.s3_endpoint_url,
        settings.aws_region,
        settings.aws_profile,
        max_pool_connections,
        *(os.environ.get(name) for name in _CLIENT_ENVIRONMENT),
    )
    with _S3_CLIENTS_LOCK:
        client = _S3_CLIENTS.get(key)
        if client is None:
            client = _S3_CLIENTS[key] = aws_client(
                "s3",
                settings,
                endpoint_url=settings.s3_endpoint_url,
                retries={"mode": "standard", "max_attempts": MAX_RETRIES},
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                max_pool_connections=max_pool_connections,
                s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
            )
        return client


_CLIENT_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
)
"""The variables boto3 reads when it builds a client that settings do not carry: a client built under other
values (another test's credentials or endpoint) is not reused."""
_S3_CLIENTS: dict[tuple[Any, ...], S3Client] = {}
_S3_CLIENTS_LOCK = threading.Lock()


def aws_client(
    service: str,
    settings: Settings | None = None,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    **config: Any,
) -> Any:
    """A boto3 client of ``service`` in ``region`` (default: the region of ``settings``) and the profile of
    ``settings``, with botocore ``config`` (retries, pools); ``endpoint_url`` (``settings.s3_endpoint_url``
    for S3) else boto3's own (``AWS_ENDPOINT_URL``...). A profile that does not exist, no region at all, or
    an endpoint URL that is no URL or has a path is a :class:`~panopipe.errors.ConfigError` saying what to
    set."""
    import boto3
    import botocore.config
    import botocore.exceptions

    settings = settings_or_loaded(settings)
    try:
        session = boto3.session.Session(profile_name=settings.aws_profile)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"{exc}: check AWS_PROFILE and ~/.aws/config") from None
    client_config = botocore.config.Config(region_name=region or settings.aws_region, **config)
    try:
        client = session.client(service, endpoint_url=endpoint_url, config=client_config)
    except botocore.exceptions.NoRegionError:
        raise ConfigError(
            "no AWS region: set AWS_REGION, a region in ~/.aws/config or aws_region in [panopipe]"
        ) from None
    except botocore.exceptions.InvalidRegionError as exc:  # a ValueError too: before the endpoint's
        raise ConfigError(
            f"invalid AWS region {exc.kwargs.get('region_name')!r}: write it as AWS does, e.g. eu-west-1 "
            "(AWS_REGION, aws_region in [panopipe] or ~/.aws/config)"
        ) from None
    except ValueError as exc:  # botocore's "Invalid endpoint: URL"
        raise _invalid_endpoint(exc, endpoint_url, settings) from None
    _refuse_malformed_endpoint(client.meta.endpoint_url, endpoint_url, settings)
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"needs-retry.{service}", _connect_retries_spent)  # before botocore's
    return client


def _connect_retries_spent(attempts: int, caught_exception: BaseException | None = None, **_: Any) -> None:
    """Raises ``caught_exception`` once a call that got no answer (it could not connect, or its read timed out)
    was tried :data:`CONNECT_RETRIES` times again: the call fails as it would after botocore's last retry.
    Otherwise returns ``None``, which leaves the decision to botocore's retry mode. Raising, not answering
    ``False``: a botocore before 1.43.5 (a Lambda runtime's) takes any answer but ``None`` for a delay, and would
    retry at once, for ever."""
    from botocore.exceptions import ReadTimeoutError

    if caught_exception is None or attempts <= CONNECT_RETRIES:
        return
    if is_endpoint_unreachable(caught_exception) or isinstance(caught_exception, ReadTimeoutError):
        raise caught_exception


_INVALID_ENDPOINT = "Invalid endpoint: "
_BOTO_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
"""boto3's variable of every service's endpoint; ``AWS_ENDPOINT_URL_SQS`` (``_S3``...) of one service."""


def _invalid_endpoint(error: ValueError, endpoint_url: str | None, settings: Settings) -> ConfigError:
    """The :class:`ConfigError` of botocore's ``Invalid endpoint`` ``error``, naming where the endpoint was set
    (see :func:`_endpoint_source`)."""
    message = str(error)
    if not message.startswith(_INVALID_ENDPOINT):
        raise error
    value = message.removeprefix(_INVALID_ENDPOINT)
    example = f"http://{value}" if value and "://" not in value else "http://localhost:9000"
    return ConfigError(
        f"{_endpoint_source(value, endpoint_url, settings)} is {value!r}, not an endpoint URL: give "
        f"http://HOST:PORT or https://HOST, e.g. {example}"
    )


def _refuse_malformed_endpoint(value: str, endpoint_url: str | None, settings: Settings) -> None:
    """A :class:`ConfigError` if the endpoint URL ``value`` a client uses has a path or a query (a bucket
    pasted into it): botocore would put it before every request's path, and every object read as missing; or
    a port that is no port (botocore would try to connect, and report the endpoint unreachable)."""
    parts = urlsplit(value)
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or out of 0-65535
        port_ok = False
    if parts.path.strip("/") or parts.query or parts.fragment:
        problem, example = "a path is not allowed", f"{parts.scheme}://{parts.netloc}"
    elif not port_ok:
        problem, example = (
            "its port is not a number from 1 to 65535",
            f"{parts.scheme}://{parts.hostname}:9000",
        )
    else:
        return
    raise ConfigError(
        f"{_endpoint_source(value, endpoint_url, settings)} is {value!r}, not an endpoint URL: {problem}; give "
        f"SCHEME://HOST:PORT, e.g. {example}"
    )


def _endpoint_source(value: str, endpoint_url: str | None, settings: Settings) -> str:
    """Where the endpoint URL ``value`` was set: ``endpoint_url`` is the S3 endpoint of ``settings``; without
    it boto3 took an ``AWS_ENDPOINT_URL*`` variable or the profile's ``endpoint_url``."""
    if endpoint_url is not None:
        in_file = settings.origins.get("s3_endpoint_url") == "file"
        return f"[panopipe] s3_endpoint_url in {settings.config_file}" if in_file else ENV_S3_ENDPOINT_URL
    # the longest name first: a service's own variable wins over AWS_ENDPOINT_URL, as in boto3
    names = sorted(
        (name for name, text in os.environ.items() if name.startswith(_BOTO_ENDPOINT_VARIABLE)),
        key=lambda name: (os.environ[name] != value, -len(name)),
    )
    return names[0] if names else "endpoint_url in ~/.aws/config"


def is_endpoint_unreachable(error: BaseException) -> bool:
    """Whether the botocore ``error`` says its endpoint refused the connection, could not be resolved or did
    not answer in time, after botocore's own retries: every call to it would fail alike until it is back, so
    it is not tried again (:class:`~panopipe.errors.EndpointUnreachableError`)."""
    from botocore import exceptions as aws

    return isinstance(error, aws.EndpointConnectionError | aws.ConnectTimeoutError)


def unreachable_hint(service: str) -> str:
    """What to do when the endpoint of ``service`` (``S3``, ``SQS``) cannot be reached
    (:func:`is_endpoint_unreachable`)."""
    return f"check that the {service} endpoint is up and reachable"


def is_transient_aws_error(error: BaseException) -> bool:
    """Whether a botocore or urllib3 ``error`` is worth retrying later: throttling, a server error (5xx), a
    timeout, a refused, closed or reset connection, or a body cut short. Denials, missing keys, bad requests
    and missing credentials are not."""
    from botocore import exceptions as aws
    from urllib3 import exceptions as http

    if isinstance(error, aws.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in THROTTLING_CODES or status in TRANSIENT_STATUSES
    if isinstance(error, aws.SSLError | aws.ProxyConnectionError):
        return False  # a certificate or proxy misconfiguration stays broken
    return isinstance(
        error,
        aws.ConnectionError  # EndpointConnectionError, ConnectTimeoutError
        | aws.HTTPClientError  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
        | aws.IncompleteReadError
        | http.ProtocolError
        | http.TimeoutError,
    )


__all__ = [
    "CONNECT_RETRIES",
    "CONNECT_TIMEOUT_S",
    "CREDENTIALS_HINT",
    "DEFAULT_MAX_POOL_CONNECTIONS",
    "MAX_RETRIES",
    "READ_TIMEOUT_S",
    "THROTTLING_CODES",
    "TRANSIENT_STATUSES",
    "S3Client",
    "aws_client",
    "is_endpoint_unreachable",
    "is_transient_aws_error",
    "s3_client",
    "unreachable_hint",
]
