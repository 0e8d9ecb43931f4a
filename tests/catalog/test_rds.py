"""RDS connections: secrets, IAM tokens, TLS defaults, Lambda pool, timeouts, retries, and nothing leaked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import sqlalchemy as sa
from moto import mock_aws
from sqlalchemy.engine import make_url

from panopipe.catalog import Catalog, mask_url, shared_engine
from panopipe.catalog.engine import catalog_url, connect
from panopipe.catalog.rds import (
    PING_AFTER_IDLE_S,
    TOKEN_LIFETIME_S,
    ConnectionSettings,
    Credentials,
    create_postgres_engine,
    retry_read,
)
from panopipe.cli import main
from panopipe.errors import CatalogUnreachableError, ConfigError

RDS_HOST = "survey.c9akciq32.eu-west-1.rds.amazonaws.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRds:
    """The real (botocore) RDS client, counting and remembering the tokens it generates."""

    def __init__(self) -> None:
        self.client = boto3.client("rds", region_name="eu-west-1")
        self.meta = self.client.meta
        self.tokens: list[str] = []

    def generate_db_auth_token(self, **kwargs: Any) -> str:
        token = self.client.generate_db_auth_token(**kwargs)
        self.tokens.append(token)
        return token


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def _secret(values: dict[str, Any]) -> str:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    return client.create_secret(Name="panopipe/catalog", SecretString=json.dumps(values))["ARN"]


def _settings(url: str) -> ConnectionSettings:
    return ConnectionSettings.from_url(make_url(url))


def test_panopipe_parameters_are_taken_out_of_the_driver_url():
    settings = _settings(
        "postgresql+psycopg://ana@db/survey?secret_arn=arn:aws:secretsmanager:eu-west-1:1:secret:x"
        "&iam=true&region=eu-west-1&statement_timeout=30s&sslrootcert=/etc/rds/global-bundle.pem"
    )
    assert settings.iam and settings.region == "eu-west-1" and settings.statement_timeout == "30s"
    assert settings.secret_arn == "arn:aws:secretsmanager:eu-west-1:1:secret:x"
    params = {
        "host": "db",
        "sslrootcert": "/rds.pem",
        "options": "-csearch_path=s",
        "iam": "false",
        "region": "x",
    }
    Credentials(_settings("postgresql://db/x?statement_timeout=30s")).apply(params)
    assert params == {
        "host": "db",
        "sslrootcert": "/rds.pem",
        "options": "-csearch_path=s -c statement_timeout=30s",
    }
    with pytest.raises(ConfigError, match="iam="):
        _settings("postgresql://db/x?iam=maybe")
    with pytest.raises(ConfigError, match="statement_timeout"):
        _settings("postgresql://db/x?statement_timeout=1;DROP")


def test_secret_fills_the_connection_and_is_re_read_after_its_lifetime(aws: None):
    arn = _secret({"username": "ana", "password": "pw-1", "host": RDS_HOST, "port": 5432, "dbname": "survey"})
    clock = Clock()
    credentials = Credentials(_settings(f"postgresql://?secret_arn={arn}"), clock=clock)
    params: dict[str, Any] = {}
    credentials.apply(params)
    assert params == {
        "user": "ana",
        "password": "pw-1",
        "host": RDS_HOST,
        "port": 5432,
        "dbname": "survey",
        "sslmode": "verify-full",
    }
    # What the URL gives wins: e.g. an RDS Proxy endpoint with the database's secret.
    params = {"host": "proxy.example.org", "sslmode": "require"}
    credentials.apply(params)
    assert (params["host"], params["user"], params["sslmode"]) == ("proxy.example.org", "ana", "require")

    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"password": "pw-2"})
    )
    fresh: dict[str, Any] = {}
    credentials.apply(fresh)
    assert fresh["password"] == "pw-1"
    clock.now += 601
    credentials.apply(fresh := {})
    assert fresh == {"password": "pw-2"}


def test_iam_token_is_the_password_and_is_renewed_before_it_expires(aws: None):
    rds, clock = CountingRds(), Clock()
    credentials = Credentials(_settings("postgresql://?iam=true"), rds_client=rds, clock=clock)
    first = {"host": RDS_HOST, "port": 5432, "user": "iam_reader"}
    credentials.apply(first)
    assert first["password"] == rds.tokens[0] and first["sslmode"] == "verify-full"
    assert first["password"].startswith(f"{RDS_HOST}:5432/?Action=connect&DBUser=iam_reader")
    assert "X-Amz-Signature=" in first["password"] and "eu-west-1" in first["password"]
    clock.now += TOKEN_LIFETIME_S - 1
    credentials.apply(second := {"host": RDS_HOST, "port": 5432, "user": "iam_reader"})
    assert second["password"] == first["password"] and len(rds.tokens) == 1
    clock.now += 2
    credentials.apply({"host": RDS_HOST, "port": 5432, "user": "iam_reader"})
    assert len(rds.tokens) == 2
    with pytest.raises(ConfigError, match="needs a host and a user"):
        credentials.apply({"host": RDS_HOST})


def test_tls_is_verified_by_default_only_for_rds_and_iam():
    credentials = Credentials(_settings("postgresql://db.example.org/x"))
    credentials.apply(local := {"host": "db.example.org"})
    assert "sslmode" not in local
    credentials.apply(rds := {"host": RDS_HOST})
    assert rds["sslmode"] == "verify-full"


def test_bad_secrets_are_clear_errors_without_their_content(aws: None):
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(
        CatalogUnreachableError, match=r"cannot read database secret .*nope-AbCdEf: ResourceNotFound"
    ):
        Credentials(_settings(f"postgresql://?secret_arn={missing}")).apply({})
    arn = _secret({"not": "an rds secret", "token": "hunter2"})
    with pytest.raises(ConfigError, match="not a JSON object with username and password") as caught:
        Credentials(_settings(f"postgresql://?secret_arn={arn}")).apply({})
    assert "hunter2" not in str(caught.value)


def test_a_secret_holding_the_local_credentials_connects(aws: None, postgres_database: str):
    local = make_url(postgres_database)
    arn = _secret(
        {"username": local.username, "password": "unused-with-trust", "host": local.host, "port": local.port}
    )
    with Catalog.open(f"postgresql:///{local.database}?secret_arn={arn}") as catalog:
        with catalog.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT current_database()")) == local.database
        assert catalog.count() == 0
        assert "unused-with-trust" not in repr(catalog.engine)
        assert make_url(catalog.url).query["secret_arn"] == arn


def test_each_new_connection_gets_a_current_token(aws: None, postgres_database: str):
    local = make_url(postgres_database)
    rds, clock = CountingRds(), Clock()
    url = catalog_url(f"{postgres_database}?iam=true&region=eu-west-1&sslmode=disable")
    engine = create_postgres_engine(url, rds_client=rds, clock=clock)
    sent: list[str] = []
    sa.event.listen(engine, "do_connect", lambda _d, _r, _a, params: sent.append(params["password"]))
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_user")) == local.username
        # No server-side prepared statements (RDS Proxy would pin the connection).
        assert conn.connection.driver_connection.prepare_threshold is None
    engine.dispose()
    clock.now += TOKEN_LIFETIME_S + 1
    with engine.connect():
        pass
    assert sent == rds.tokens and len(sent) == 2
    engine.dispose()


def test_failed_connections_show_neither_password_nor_token(aws: None, postgres_database: str):
    local = make_url(postgres_database)
    arn = _secret(
        {"username": local.username, "password": "s3cret-pw-41", "host": local.host, "port": local.port}
    )
    with pytest.raises(CatalogUnreachableError) as caught:
        Catalog.open(f"postgresql:///no_such_database?secret_arn={arn}")
    assert "no_such_database" in str(caught.value) and "s3cret-pw-41" not in str(caught.value)

    rds = CountingRds()
    engine = create_postgres_engine(
        catalog_url("postgresql://iam_reader@127.0.0.1:1/x?iam=true&region=eu-west-1&sslmode=disable"),
        rds_client=rds,
    )
    with pytest.raises(CatalogUnreachableError) as caught:
        connect(engine)
    (token,) = rds.tokens
    assert "127.0.0.1" in str(caught.value)
    assert token not in str(caught.value) and "X-Amz-Signature" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ana:pw@db/survey", "postgresql://ana:***@db/survey"),
        (
            "postgresql://ana@db/survey?password=pw&sslmode=require",
            "postgresql://ana@db/survey?password=***&sslmode=require",
        ),
        (
            "postgresql://db/survey?sslpassword=pw&sslkey=/k.pem",
            "postgresql://db/survey?sslkey=%2Fk.pem&sslpassword=***",
        ),
        ("postgresql://db/x?token=pw&aws_session_token=pw&X-Amz-Security-Token=pw", None),
        ("postgresql://u:pw@db/x?PASSWORD=pw&password=pw", None),
        ("postgresql://db/x?client_secret=pw", None),
        # Not secrets: where to find one, and libpq's password file (a path).
        (
            "postgresql://db/x?secret_arn=arn:aws:secretsmanager:eu-west-1:1:secret:x",
            "postgresql://db/x?secret_arn=arn%3Aaws%3Asecretsmanager%3Aeu-west-1%3A1%3Asecret%3Ax",
        ),
        (
            "postgresql://db/x?passfile=/home/ana/.pgpass",
            "postgresql://db/x?passfile=%2Fhome%2Fana%2F.pgpass",
        ),
        ("postgresql://ana@db/survey", "postgresql://ana@db/survey"),
        # as users write it, not SQLAlchemy's driver URL (which psql does not take)
        ("postgresql+psycopg://ana:pw@db/survey", "postgresql://ana:***@db/survey"),
        ("not a url://", "<unparseable URL>"),
    ],
)
def test_mask_url_hides_passwords_and_tokens_in_every_form(url: str, shown: str | None):
    masked = mask_url(url)
    assert "pw" not in masked
    if shown is not None:
        assert masked == shown
    else:
        assert masked.count("***") == len(make_url(url).query) + bool(make_url(url).password)


@pytest.mark.parametrize("command", [["ls"], ["db", "migrate", "--to"]])
def test_connection_errors_do_not_print_a_password_given_as_a_parameter(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    url = "postgresql://u@127.0.0.1:1/db?password=s3cret&sslpassword=s3cret2"
    if command == ["ls"]:
        args = ["ls", "--catalog", url]
    else:
        Catalog.open(tmp_path / "catalog.db").close()
        args = [*command, url, "--catalog", str(tmp_path / "catalog.db")]
    assert main(args) == 3
    out, err = capsys.readouterr()
    assert "127.0.0.1" in err and "password=***" in err
    assert "s3cret" not in out + err


def test_lambda_gets_one_connection_per_process(postgres_url: str):
    url = catalog_url(postgres_url)
    engine = create_postgres_engine(url, environ={"AWS_LAMBDA_FUNCTION_NAME": "panopipe-ingest"})
    assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)  # type: ignore[attr-defined]
    assert create_postgres_engine(url, environ={}).pool.size() == 5
    Catalog.open(postgres_url).close()  # shared_engine checks the schema on first use: a catalog it is
    assert shared_engine(postgres_url) is shared_engine(postgres_url)


@pytest.mark.parametrize(("given", "used"), [("", "10"), ("&connect_timeout=3", "3")])
def test_connecting_gives_up_after_a_timeout_unless_the_url_sets_another(
    postgres_url: str, given: str, used: str
):
    """libpq waits for ever by default: a dispatcher tick against an unreachable catalog hung until Lambda's
    timeout, so its errors came minutes apart and the alarm on three failed ticks in a row did not fire."""
    engine = create_postgres_engine(catalog_url(f"{postgres_url}{given}"))
    with engine.connect() as conn:
        assert conn.connection.driver_connection.info.get_parameters()["connect_timeout"] == used
    engine.dispose()


def test_statement_timeout_joins_existing_options(postgres_url: str):
    engine = create_postgres_engine(catalog_url(f"{postgres_url}&statement_timeout=150ms"))
    schema = make_url(postgres_url).query["options"].split("=")[-1]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SHOW statement_timeout")) == "150ms"
        assert conn.scalar(sa.text("SELECT current_schema()")) == schema
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.execute(sa.text("SELECT pg_sleep(2)"))
    engine.dispose()


def test_retry_read_reconnects_after_a_dropped_connection(postgres_url: str):
    engine = create_postgres_engine(catalog_url(postgres_url))
    calls = 0

    def read() -> int:
        nonlocal calls
        calls += 1
        with engine.connect() as conn:
            if calls == 1:
                conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return conn.scalar(sa.text("SELECT 41 + 1"))

    assert retry_read(read) == 42 and calls == 2

    def broken() -> int:
        nonlocal calls
        calls += 1
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT no_such_column"))

    calls = 0
    with pytest.raises(sa.exc.ProgrammingError):
        retry_read(broken)
    assert calls == 1
    engine.dispose()


def test_a_connection_is_checked_before_reuse_only_after_being_idle(postgres_url: str):
    """Reused within :data:`PING_AFTER_IDLE_S` (an event batch's transactions): no ping round trip; idle longer
    (a Lambda between invocations): pinged, and replaced when the server dropped it meanwhile."""
    now = [0.0]
    engine = create_postgres_engine(catalog_url(postgres_url), clock=lambda: now[0])
    pings: list[int] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(1) or ping(connection)  # type: ignore[method-assign]
    backend = sa.text("SELECT pg_backend_pid()")
    with engine.connect() as conn:
        pid = conn.scalar(backend)
    now[0] += PING_AFTER_IDLE_S / 2
    with engine.connect() as conn:
        assert conn.scalar(backend) == pid and not pings
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server drops it while idle
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.01)
    now[0] += PING_AFTER_IDLE_S
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT 41 + 1")) == 42 and conn.scalar(backend) != pid
    assert pings == [1]
    engine.dispose()
