"""PostgreSQL and Amazon RDS connections: credentials, TLS and pool settings that suit a laptop and Lambda.

A catalog URL may carry, besides libpq's own parameters (``sslmode``, ``sslrootcert``, ``options``...):

``secret_arn=ARN``
    Take the user name and password (and host, port and database when the URL has none) from a Secrets
    Manager secret in the JSON form RDS writes. Re-read every :data:`SECRET_LIFETIME_S`, so rotation is seen.
``iam=true``
    Authenticate with an IAM database authentication token instead of a password. Tokens live 15 minutes;
    one is reused for :data:`TOKEN_LIFETIME_S` then renewed, and every new connection gets a current one.
``region=eu-west-1``
    The AWS region for IAM tokens (default: taken from an ``*.rds.amazonaws.com`` host, else boto3's).
``statement_timeout=30s``
    Cancel statements running longer than this (milliseconds, or a number with ``ms``, ``s``, ``min``, ``h``).

TLS: with IAM authentication or an ``*.rds.amazonaws.com`` host, ``sslmode`` defaults to ``verify-full`` (the
server must prove it is the host named in the URL, with a certificate from the CA in ``sslrootcert``).
Secrets and tokens go to the driver per connection and never into the URL, so they cannot reach a message.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from panopipe.config import ENV_LAMBDA_FUNCTION_NAME
from panopipe.errors import CatalogError, CatalogUnreachableError, ConfigError

PANOPIPE_PARAMETERS = ("secret_arn", "iam", "region", "statement_timeout")
TOKEN_LIFETIME_S = 600.0
SECRET_LIFETIME_S = 600.0
CONNECT_TIMEOUT_S = 10
"""Seconds a new connection may take (a catalog URL's ``connect_timeout`` wins): an unreachable server is an
error then, not a command, handler or dispatcher tick that hangs until its own timeout kills it."""
PING_AFTER_IDLE_S = 1.0
"""A pooled connection unused this long is checked (one round trip) before it is used again. One used again
sooner is not: an event batch's transactions follow each other within milliseconds, and a connection cut
meanwhile fails its statement, which the caller's retry covers (:func:`retry_read`; a failed event message
comes back)."""
RDS_HOST = re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.rds\.amazonaws\.com$")
_DURATION = re.compile(r"^\d+(ms|s|min|h)?$")

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """The panopipe parameters of a PostgreSQL URL (they stay in the engine's URL and never reach libpq)."""

    secret_arn: str | None = None
    iam: bool = False
    region: str | None = None
    statement_timeout: str | None = None

    @classmethod
    def from_url(cls, url: URL) -> ConnectionSettings:
        """The panopipe parameters of ``url``; :class:`ConfigError` for invalid values."""
        values: dict[str, str | None] = {}
        for name in PANOPIPE_PARAMETERS:
            value = url.query.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"catalog URL parameter {name} is given more than once")
            values[name] = value
        iam = (values["iam"] or "false").lower()
        if iam not in ("true", "1", "yes", "false", "0", "no"):
            raise ConfigError(f"invalid iam={values['iam']!r} in the catalog URL: expected true or false")
        timeout = values["statement_timeout"]
        if timeout is not None and not _DURATION.match(timeout):
            raise ConfigError(
                f"invalid statement_timeout={timeout!r} in the catalog URL: expected e.g. 30s or 1500ms"
            )
        return cls(
            secret_arn=values["secret_arn"],
            iam=iam in ("true", "1", "yes"),
            region=values["region"],
            statement_timeout=timeout,
        )


class _Expiring:
    """One value, fetched again once ``lifetime_s`` has passed; thread-safe."""

    def __init__(self, fetch: Callable[[], T], lifetime_s: float, clock: Clock):
        self._fetch, self._lifetime, self._clock = fetch, lifetime_s, clock
        self._value: Any = None
        self._expires = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._clock() >= self._expires:
                self._value = self._fetch()
                self._expires = self._clock() + self._lifetime
            return self._value


class Credentials:
    """Connection parameters supplied per new connection: secret values, IAM tokens, TLS and timeouts."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        secrets_client: Any = None,
        rds_client: Any = None,
        clock: Clock = time.monotonic,
    ):
        self.settings = settings
        self._secrets_client = secrets_client
        self._rds_client = rds_client
        self._clock = clock
        self._secret = _Expiring(self._read_secret, SECRET_LIFETIME_S, clock)
        self._tokens: dict[tuple[str, int, str], _Expiring] = {}
        self._lock = threading.Lock()

    def apply(self, params: dict[str, Any]) -> None:
        """Turn the engine's connection ``params`` into the driver's, in place.

        The panopipe parameters are taken out; what the URL gives wins over what the secret gives.
        """
        for name in PANOPIPE_PARAMETERS:
            params.pop(name, None)
        if self.settings.statement_timeout:
            options = f"{params.get('options') or ''} -c statement_timeout={self.settings.statement_timeout}"
            params["options"] = options.strip()
        if self.settings.secret_arn:
            for name, value in self._secret.get().items():
                if params.get(name) in (None, ""):
                    params[name] = value
        host = str(params.get("host") or "")
        if self.settings.iam:
            if not host or not params.get("user"):
                raise ConfigError(
                    "IAM database authentication needs a host and a user name in the catalog URL"
                )
            params["password"] = self.token(host, int(params.get("port") or 5432), str(params["user"]))
        if "sslmode" not in params and (self.settings.iam or RDS_HOST.search(host)):
            params["sslmode"] = "verify-full"

    def token(self, host: str, port: int, user: str) -> str:
        """An IAM authentication token for ``user`` at ``host:port``, reused until it is due for renewal."""
        with self._lock:
            cached = self._tokens.get((host, port, user))
            if cached is None:
                cached = _Expiring(lambda: self._new_token(host, port, user), TOKEN_LIFETIME_S, self._clock)
                self._tokens[(host, port, user)] = cached
        return cached.get()

    def _new_token(self, host: str, port: int, user: str) -> str:
        import botocore.exceptions

        match = RDS_HOST.search(host)
        region = self.settings.region or (match["region"] if match else None)
        try:
            if self._rds_client is None:
                from panopipe.storage.aws_clients import aws_client

                self._rds_client = aws_client("rds", region=region)
            return self._rds_client.generate_db_auth_token(
                DBHostname=host,
                Port=port,
                DBUsername=user,
                Region=region or self._rds_client.meta.region_name,
            )
        except (botocore.exceptions.NoRegionError, botocore.exceptions.NoCredentialsError) as exc:
            raise ConfigError(
                f"cannot create an IAM database token for {user}@{host}: {exc}; "
                "set region= in the catalog URL and AWS credentials"
            ) from None

    def _read_secret(self) -> dict[str, Any]:
        import botocore.exceptions

        arn = self.settings.secret_arn
        assert arn is not None
        try:
            if self._secrets_client is None:
                from panopipe.storage.aws_clients import aws_client

                parts = arn.split(":")
                region = parts[3] if len(parts) > 3 and parts[3] else None
                self._secrets_client = aws_client("secretsmanager", region=region)
            text = self._secrets_client.get_secret_value(SecretId=arn)["SecretString"]
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise CatalogUnreachableError(
                f"cannot read database secret {arn}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CatalogUnreachableError(f"cannot read database secret {arn}: {exc}") from None
        return _secret_params(arn, text)


def _secret_params(arn: str, text: str) -> dict[str, Any]:
    """Driver parameters from a secret in the RDS form (``username``, ``password``, ``host``, ``port``...)."""
    try:
        secret = json.loads(text)
    except ValueError:
        secret = None
    if not isinstance(secret, dict) or "password" not in secret:
        # Never echo the secret's text: it may be the password itself.
        raise ConfigError(
            f"database secret {arn} is not a JSON object with username and password (as RDS writes them)"
        )
    names = {"username": "user", "password": "password", "host": "host", "port": "port", "dbname": "dbname"}
    return {param: secret[key] for key, param in names.items() if secret.get(key) not in (None, "")}


def in_lambda(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs in AWS Lambda."""
    return bool(environ.get(ENV_LAMBDA_FUNCTION_NAME))


def create_postgres_engine(
    url: URL,
    *,
    secrets_client: Any = None,
    rds_client: Any = None,
    clock: Clock = time.monotonic,
    environ: Mapping[str, str] = os.environ,
) -> sa.Engine:
    """An engine for PostgreSQL or RDS at ``url``; connects lazily, on first use.

    Pooled connections idle for :data:`PING_AFTER_IDLE_S` are checked before use; server-side prepared
    statements are off so that RDS Proxy (and PgBouncer) can share connections; in Lambda the pool holds one
    connection per process. Connecting gives up after :data:`CONNECT_TIMEOUT_S`.
    """
    settings = ConnectionSettings.from_url(url)
    pool: dict[str, Any] = {"pool_size": 1, "max_overflow": 0} if in_lambda(environ) else {}
    connect: dict[str, Any] = {"prepare_threshold": None}
    if "connect_timeout" not in url.query:  # libpq waits for ever: a dispatcher tick would hang till killed
        connect["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, connect_args=connect, **pool)
    credentials = Credentials(settings, secrets_client=secrets_client, rds_client=rds_client, clock=clock)

    @sa.event.listens_for(engine, "do_connect")
    def _supply_credentials(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        credentials.apply(params)

    @sa.event.listens_for(engine, "checkin")
    def _returned(_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = clock()

    @sa.event.listens_for(engine, "checkout")
    def _check_if_idle(connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or clock() - returned < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(connection)
        except engine.dialect.loaded_dbapi.Error as exc:  # the pool replaces the connection
            raise sa.exc.DisconnectionError(f"{type(exc).__name__}: {exc}") from exc

    return engine


_RETURNED_AT = "panopipe_returned_at"


_KEPT_NAMES = frozenset({"public", "none", "template0", "template1", "rdsadmin"})
"""Names PostgreSQL or RDS keeps though no keyword: the roles ``public`` and ``none``, the template databases
and RDS's own database."""


def reserved_word(name: str) -> bool:
    """Whether PostgreSQL reserves ``name`` (``user``, ``select``...) or it or RDS keeps it (``public``,
    ``template1``...), which RDS refuses as a database's or its master user's name."""
    from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS

    return name.lower() in RESERVED_WORDS | _KEPT_NAMES


_LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03", "57P05")
"""PostgreSQL's SQLSTATEs of a lost connection: connection exceptions (class 08), the server shutting down or
restarting (admin_shutdown, a crash, cannot_connect_now: a failover), idle_session_timeout."""


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (a database error, or the :class:`CatalogError` raised from one) says that the
    connection to the database was lost (a failover, a server restart, a proxy's or idle cut-off,
    ``pg_terminate_backend``): a new connection may well succeed."""
    if isinstance(error, CatalogError):
        error = error.__cause__  # type: ignore[assignment]
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return error.connection_invalidated or sqlstate.startswith(_LOST_SQLSTATES)


def retry_read(read: Callable[[], T], *, attempts: int = 2) -> T:
    """``read()``, run again when the connection was lost under it (:func:`connection_lost`: a failover, a
    proxy or idle cut-off), on a new connection.

    Only for idempotent work: a write whose COMMIT the connection was lost in may or may not have been applied.
    """
    for _ in range(attempts - 1):
        try:
            return read()
        except (sa.exc.DBAPIError, CatalogError) as exc:
            if not connection_lost(exc):
                raise
    return read()


__all__ = [
    "CONNECT_TIMEOUT_S",
    "PANOPIPE_PARAMETERS",
    "PING_AFTER_IDLE_S",
    "RDS_HOST",
    "SECRET_LIFETIME_S",
    "TOKEN_LIFETIME_S",
    "Clock",
    "ConnectionSettings",
    "Credentials",
    "connection_lost",
    "create_postgres_engine",
    "in_lambda",
    "reserved_word",
    "retry_read",
]
