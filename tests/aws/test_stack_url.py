"""``cloudformation://STACK`` catalog URLs: the stack deployed into moto's CloudFormation (as test_stack.py
deploys it) is resolved through its outputs into the RDS Proxy's URL, with IAM authentication and verify-full.

moto's proxy endpoint names no server, so for the last hop the test gives moto's proxy the address 127.0.0.1
(moto-side, :func:`tests.aws.moto_cfn.move_proxies`), where the local PostgreSQL listens: the connection then
really goes out with what panopipe resolved. That server runs without TLS and trusts local users, so it ignores
the IAM token (botocore signs it locally with moto's test keys) and refuses verify-full, as its error says.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import boto3
import psycopg
import pytest
from sqlalchemy.engine import make_url
from tests.aws import moto_cfn
from tests.aws.test_stack import ARGS, aws  # noqa: F401 (the moto fixture, shared)

from panopipe.catalog import catalog_url
from panopipe.cli import main
from panopipe.demo import generate_survey
from panopipe.errors import StackError, StackNotFoundError


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_stack_url_names_the_proxy_with_iam_and_verify_full_and_commands_reach_it(
    aws: None,  # noqa: F811
    postgres_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    local = make_url(postgres_url)  # a schema of its own, chosen by ?options=, in the session's database
    database, user, options = local.database, local.username, quote(str(local.query["options"]), safe="")
    stack = f"cat{uuid.uuid4().hex[:8]}"  # resolutions are kept for the process: a name of its own
    params = ["--param", f"DbName={database}", "--param", f"DbMasterUsername={user}"]
    code, _, err = _run(capsys, "cloud", "deploy", "--stack", stack, *ARGS, *params, "--yes")
    assert code == 0, err
    assert f"export PANOPIPE_CATALOG=cloudformation://{stack}" in " ".join(err.split())
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    }
    (proxy,) = boto3.client("rds").describe_db_proxies()["DBProxies"]
    assert outputs["ProxyEndpoint"] == proxy["Endpoint"].lower() != "127.0.0.1"

    url = catalog_url(f"cloudformation://{stack}")
    assert (url.drivername, url.host, url.port, url.database, url.username) == (
        "postgresql+psycopg",
        proxy["Endpoint"].lower(),
        5432,
        database,
        user,
    )
    assert dict(url.query) == {"iam": "true", "sslmode": "verify-full", "region": "us-east-1"}
    other = catalog_url(
        f"cloudformation://reader@{stack}/other?sslrootcert=/opt/rds.pem&statement_timeout=5s"
    )
    assert (other.username, other.database, other.query["sslrootcert"], other.query["iam"]) == (
        "reader",
        "other",
        "/opt/rds.pem",
        "true",
    )

    moto_cfn.move_proxies("127.0.0.1")
    assert catalog_url(f"cloudformation://{stack}") == url  # resolved once per process
    source = str(tmp_path / "c.db")
    generate_survey(tmp_path / "survey", shots=1, camera_size=(160, 120))
    assert _run(capsys, "ingest", str(tmp_path / "survey" / "R001"), "--catalog", source)[0] == 0

    target = f"cloudformation://{stack}?connect_timeout=5"  # another URL, resolved anew: 127.0.0.1
    code, _, err = _run(capsys, "db", "migrate", "--catalog", source, "--to", target)
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert f"postgresql://{user}@127.0.0.1:5432/{database}?" in err
    assert "server does not support SSL, but SSL was required" in err  # verify-full reached the server

    target = f"cloudformation://{stack}?sslmode=disable&options={options}"  # what the local server accepts
    code, _, err = _run(capsys, "db", "migrate", "--catalog", source, "--to", target)
    assert code == 0, err
    _, listed, _ = _run(capsys, "ls", "--catalog", source, "--json")
    _, moved, _ = _run(capsys, "ls", "--catalog", target, "--json")
    assert json.loads(moved) == json.loads(listed) and len(json.loads(moved)) == 6
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone() == (6,)


def test_an_unknown_stack_is_one_line_naming_cloud_status(
    aws: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
):
    code, _, err = _run(capsys, "ls", "--catalog", "cloudformation://nothing-here")
    assert code == StackNotFoundError.exit_code == 9
    (line,) = err.strip().splitlines()
    assert "stack nothing-here does not exist in us-east-1" in line
    assert "`panopipe cloud status --stack nothing-here`" in line


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["db", "current"],
        ["db", "upgrade"],
        ["db", "migrate", "--catalog", "x.db", "--to", "cloudformation://nothing-here", "--dry-run"],
    ],
)
def test_a_stack_is_looked_up_in_the_region_of_the_config_file_given(
    aws: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
):
    """``db`` had looked the stack up with the settings of the environment and the current folder, not of
    --config (us-east-1 here): the catalog of another region's stack of the same name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_REGION")  # it would override the file's; boto3's default stays us-east-1
    (tmp_path / "other.toml").write_text('[panopipe]\naws_region = "eu-west-3"\n')
    if command[0] == "db" and command[1] == "migrate":
        assert _run(capsys, "db", "upgrade", "--catalog", "x.db")[0] == 0
    else:
        command = [*command, "--catalog", "cloudformation://nothing-here"]
    code, _, err = _run(capsys, *command, "--config", "other.toml")
    assert code == StackNotFoundError.exit_code
    assert "stack nothing-here does not exist in eu-west-3" in err


def test_a_stack_without_the_catalog_outputs_or_not_created_says_so(
    aws: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
):
    cloudformation = boto3.client("cloudformation")
    queue = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    cloudformation.create_stack(StackName="other", TemplateBody=json.dumps(queue))
    code, _, err = _run(capsys, "db", "current", "--catalog", "cloudformation://other")
    assert code == StackError.exit_code == 8
    (line,) = err.strip().splitlines()
    assert "stack other has no output ProxyEndpoint, ProxyPort, CatalogDatabase, CatalogUser" in line

    # moto creates a stack at once, and refuses at once what it cannot create: a change set not executed yet
    # is the stack that is not created.
    cloudformation.create_change_set(
        StackName="pending", ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=json.dumps(queue)
    )
    code, _, err = _run(capsys, "db", "current", "--catalog", "cloudformation://pending")
    assert code == 8
    (line,) = err.strip().splitlines()
    assert (
        "stack pending is REVIEW_IN_PROGRESS, its catalog is not ready: it was never deployed: run " in line
    )


def test_a_mistyped_scheme_lists_the_supported_ones(capsys: pytest.CaptureFixture[str]):
    code, _, err = _run(capsys, "ls", "--catalog", "cloudformaton://pano")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: unsupported catalog URL cloudformaton://pano: a catalog is a SQLite file path, a "
        "postgresql:// URL or cloudformation://STACK (a deployed stack's), not cloudformaton://"
    ]
    code, _, err = _run(capsys, "ls", "--catalog", "cloudformation://pano:5432?sslpassword=hunter2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        "invalid catalog URL cloudformation://pano:5432?sslpassword=***: expected cloudformation://STACK"
        in err
    )


def test_without_a_region_a_stack_url_says_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    code, _, err = _run(capsys, "ls", "--catalog", "cloudformation://pano")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: no AWS region: set AWS_REGION, a region in ~/.aws/config or aws_region in [panopipe]"
    ]
