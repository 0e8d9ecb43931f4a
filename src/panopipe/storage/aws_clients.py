"""boto3 clients built from :class:`~panopipe.config.Settings`: endpoint URL, region and profile in one place."""

from __future__ import annotations

from typing import Any, TypeAlias

from panopipe.config import Settings, load_settings
from panopipe.errors import ConfigError

S3Client: TypeAlias = Any  # boto3 generates client classes at run time

DEFAULT_MAX_POOL_CONNECTIONS = 64


def s3_client(
    settings: Settings | None = None, *, max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
) -> S3Client:
    """An S3 client for AWS, MinIO or moto's server, configured from ``settings`` (default: :func:`load_settings`).

    With an endpoint URL the client uses path-style addressing, which S3-compatible servers expect.
    """
    import boto3
    import botocore.config
    import botocore.exceptions

    settings = settings or load_settings()
    config = botocore.config.Config(
        region_name=settings.aws_region,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
    )
    try:
        session = boto3.session.Session(profile_name=settings.aws_profile)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"{exc}: check AWS_PROFILE and ~/.aws/config") from None
    return session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


__all__ = ["DEFAULT_MAX_POOL_CONNECTIONS", "S3Client", "s3_client"]
