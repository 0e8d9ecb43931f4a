"""The stack template: cfn-lint clean, least privilege, and deployed by `panopipe cloud deploy` into moto's
CloudFormation, where each resource is read back through boto3 (or, for the types moto ignores, checked in
the template)."""

from __future__ import annotations

import ast
import copy
import http.server
import io
import json
import re
import threading
import warnings
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import lint_file
from moto import mock_aws
from tests.aws import moto_cfn
from tests.conftest import free_port

from panopipe.aws import deploy
from panopipe.aws.stack import PARAMETERS, RETRY_ON, WORKER_COMMAND, build_template
from panopipe.aws.stack.database import instance_identifier
from panopipe.cli import main
from panopipe.errors import (
    ConfigError,
    EndpointUnreachableError,
    Interrupted,
    ManifestError,
    StackError,
    StackNotFoundError,
    StorageError,
)
from panopipe.executors.worker import STOPPED_EXIT, UNAVAILABLE_EXIT

STACK = "pano"
VALUES = {
    "BucketName": "survey-images",
    "LambdaCodeBucket": "artifacts",
    "LambdaCodeKey": "releases/panopipe-lambda.zip",
    "WorkerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/panopipe:0.1.0",
}


def _args(values: dict[str, str]) -> list[str]:
    return [arg for name, value in values.items() for arg in ("--param", f"{name}={value}")]


ARGS = _args(VALUES)
TEMPLATE = build_template()
RESOURCES = TEMPLATE["Resources"]


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in RESOURCES.items() if spec["Type"] == kind}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto with the code zip uploaded where the stack's parameters point."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    moto_cfn.install(monkeypatch)
    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns of every resource type it does not model
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("panopipe/__init__.py", "")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=VALUES["LambdaCodeBucket"])
        s3.put_object(Bucket=VALUES["LambdaCodeBucket"], Key=VALUES["LambdaCodeKey"], Body=code.getvalue())
        yield


@pytest.fixture
def outputs(aws: None, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The stack deployed through the CLI; its outputs as `cloud deploy --json` printed them."""
    assert main(["cloud", "deploy", "--stack", STACK, *ARGS, "--yes", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "CREATE_COMPLETE"
    assert {c["resource"] for c in printed["changes"]} >= set(RESOURCES) - {"AlarmSubscription"}  # no e-mail
    return printed["outputs"]  # type: ignore[no-any-return]


def _stacks() -> list[str]:
    return [s["StackName"] for s in boto3.client("cloudformation").describe_stacks()["Stacks"]]


# --- the template -------------------------------------------------------------------------------------------


def test_cfn_lint_finds_no_error_in_the_template_and_does_find_one_in_a_broken_copy(tmp_path: Path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(TEMPLATE))
    assert [str(match) for match in lint_file(path)] == []
    function = json.loads(json.dumps(RESOURCES["Function"]))
    function["Properties"]["Runtime"] = "python2.7"
    broken = {"Parameters": TEMPLATE["Parameters"], "Resources": {**RESOURCES, "Function": function}}
    path.write_text(json.dumps(broken))
    assert any(match.rule.id.startswith("E") for match in lint_file(path))


def test_cloud_template_prints_the_template_with_given_defaults(capsys: pytest.CaptureFixture[str]):
    assert main(["cloud", "template", "--param", "Egress=nat", "--param", "LambdaMaxConcurrency=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["Resources"].keys() == RESOURCES.keys()
    assert printed["Parameters"]["Egress"]["Default"] == "nat"
    assert printed["Parameters"]["LambdaMaxConcurrency"]["Default"] == "3"
    assert len(deploy.template_json(compact=True)) < deploy.TEMPLATE_BODY_LIMIT


def test_every_resource_says_what_it_is_for_and_why_any_check_is_skipped():
    for name, spec in RESOURCES.items():
        assert len(spec["Metadata"]["Purpose"]) > 15, name
        for skip in spec["Metadata"].get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV") and len(skip["comment"]) > 20, name


def _allow_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of the roles, a conditional one (``Fn::If`` with ``AWS::NoValue``) included."""
    for name, role in _of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "Fn::If" in statement:
                    _, statement, otherwise = statement["Fn::If"]
                    assert otherwise == {"Ref": "AWS::NoValue"}, name
                yield name, statement


def test_roles_name_their_resources_except_where_an_action_takes_none():
    unscoped = {(name, s["Sid"]) for name, s in _allow_statements() if "*" in s["Resource"]}
    assert unscoped == {
        ("FunctionRole", "NetworkInterfaces"),
        ("DispatcherRole", "NetworkInterfaces"),
        ("DispatcherRole", "FollowJobs"),  # batch:DescribeJobs and ListJobs take no resource
        ("WorkerExecutionRole", "EcrLogin"),
    }
    assert all(not action.endswith(":*") for _, s in _allow_statements() for action in s["Action"])
    connect = [s for _, s in _allow_statements() if s["Action"] == ["rds-db:connect"]]
    assert len(connect) == 3  # the function, the dispatcher and the workers, on the proxy's user only
    assert all("dbuser:" in json.dumps(s["Resource"]) for s in connect)


def _waits_for(node: Any) -> set[str]:
    """The names a resource's ``DependsOn``, ``Ref`` and ``Fn::GetAtt`` make CloudFormation create first."""
    if isinstance(node, list):
        return set().union(*map(_waits_for, node))
    if not isinstance(node, dict):
        return set()
    named: set[str] = set()
    if isinstance(node.get("Ref"), str):
        named.add(node["Ref"])
    if "Fn::GetAtt" in node:
        named.add(node["Fn::GetAtt"][0])
    depends = node.get("DependsOn", [])
    named.update([depends] if isinstance(depends, str) else depends)
    return named | _waits_for(list(node.values()))


def test_the_databases_log_group_is_the_stacks_and_made_before_the_database():
    """RDS exports the PostgreSQL log to /aws/rds/instance/ID/postgresql and, if that group does not exist
    yet, makes it itself: kept forever, and left behind by a deleted stack."""
    database = RESOURCES["Database"]
    assert database["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql"]
    group = RESOURCES["DatabaseLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["Condition"] == "DatabaseNamed"
    assert group["Properties"] == {
        "LogGroupName": {"Fn::Sub": "/aws/rds/instance/${DbInstanceIdentifier}/postgresql"},
        "RetentionInDays": {"Ref": "LogRetentionDays"},
    }
    assert "DatabaseLogGroup" in _waits_for(database)
    # the instance is named only with an identifier (not an update's empty default: see below)
    assert TEMPLATE["Conditions"]["DatabaseNamed"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DbInstanceIdentifier"}, ""]}]
    }


def test_batch_uses_its_service_linked_role_rather_than_a_role_of_the_stack():
    """AWS recommends Batch's service-linked role (AWSServiceRoleForBatch) over a service role with the legacy
    AWSBatchServiceRole policy: a compute environment that names no ServiceRole uses it, and Batch makes it
    the first time in an account (moto's Batch requires a ServiceRole: moto_cfn gives it that role)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    environments = _of_type("AWS::Batch::ComputeEnvironment").values()
    assert len(environments) == 2
    assert all("ServiceRole" not in spec["Properties"] for spec in environments)
    roles = _of_type("AWS::IAM::Role").values()
    assert not any("batch.amazonaws.com" in json.dumps(role) for role in roles)
    assert all("ManagedPolicyArns" not in role["Properties"] for role in roles)
    # Batch cannot move a compute environment from a service role to its service-linked role: a stack made
    # with one gets new compute environments, as a property set only at creation differs (the resource's
    # schema, in cfn-lint, says which are)
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Batch::ComputeEnvironment")
    assert "/properties/Tags" in schema.schema["createOnlyProperties"]
    assert all(
        spec["Properties"]["Tags"] == {"panopipe:batch-role": "AWSServiceRoleForBatch"}
        for spec in environments
    )


# Resource types moto's CloudFormation does not model: each is checked in the template instead.
def _alarm() -> None:
    alarm = RESOURCES["DeadLetterAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    # a dispatcher or a function that keeps failing (the catalog unreachable, the schema not upgraded) is told
    watched = {
        (a["Properties"]["MetricName"], json.dumps(a["Properties"]["Dimensions"][0]["Value"]))
        for a in _of_type("AWS::CloudWatch::Alarm").values()
    }
    assert watched >= {
        ("Errors", '{"Ref": "Function"}'),
        ("Throttles", '{"Ref": "Function"}'),
        ("Errors", '{"Ref": "Dispatcher"}'),
        ("ApproximateAgeOfOldestMessage", '{"Fn::GetAtt": ["EventQueue", "QueueName"]}'),
    }
    for alarm in _of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def _egress() -> None:
    rules = {name: spec["Properties"] for name, spec in _of_type("AWS::EC2::SecurityGroupEgress").items()}
    assert {(r["FromPort"], r["ToPort"]) for r in rules.values()} == {(5432, 5432)}
    assert rules["AppToProxy"]["DestinationSecurityGroupId"] == {
        "Fn::GetAtt": ["ProxySecurityGroup", "GroupId"]
    }
    assert rules["ProxyToDatabase"]["DestinationSecurityGroupId"] == {
        "Fn::GetAtt": ["DatabaseSecurityGroup", "GroupId"]
    }


def _bucket_policy() -> None:
    (deny,) = RESOURCES["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _topic_policy() -> None:
    (allow,) = RESOURCES["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert "events.amazonaws.com" in allow["Principal"]["Service"] and allow["Action"] == "sns:Publish"


def _queue_policy() -> None:
    (allow,) = RESOURCES["EventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert "aws:SourceArn" in allow["Condition"]["ArnLike"]


def _subscription() -> None:
    subscription = RESOURCES["AlarmSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Protocol"] == "email"


MOTO_IGNORES = {
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::EC2::SecurityGroupEgress": _egress,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::SNS::Subscription": _subscription,
}


def _batch_action(
    rules: list[dict[str, str]], exit_code: int, reason: str = "", status_reason: str = ""
) -> str:
    """What AWS Batch does with an attempt that ended so: the first rule all of whose patterns match (glob
    patterns, ``*`` at the end only), EXIT when none does."""
    given = {"OnExitCode": str(exit_code), "OnReason": reason, "OnStatusReason": status_reason}
    for rule in rules:
        patterns = {key: value for key, value in rule.items() if key != "Action"}
        if all(
            re.fullmatch(re.escape(p.removesuffix("*")) + (".*" if p.endswith("*") else ""), given[k])
            for k, p in patterns.items()
        ):
            return rule["Action"]
    return "EXIT"


def test_batch_retries_a_worker_stopped_or_cut_off_from_s3_and_nothing_else_within_its_attempts():
    # The dispatcher never resubmits a failed child: an S3 blip that the job definition does not retry fails
    # its jobs for good. The worker's exit codes are those `worker run` gives (tests/pipeline/test_batch_worker).
    strategy = RESOURCES["WorkerJobDefinition"]["Properties"]["RetryStrategy"]
    rules = strategy["EvaluateOnExit"]

    assert strategy["Attempts"] == 3 and len(rules) <= 5  # Batch takes at most 5 rules
    assert _batch_action(rules, STOPPED_EXIT) == "RETRY"  # SIGTERM: a stopped Fargate task
    assert _batch_action(rules, UNAVAILABLE_EXIT) == "RETRY"  # S3 unreachable, or failing past its retries
    assert _batch_action(rules, 1, status_reason="Host EC2 (instance i-0a) terminated.") == "RETRY"
    assert _batch_action(rules, 1, reason="CannotPullContainerError: timeout") == "RETRY"
    for code in (0, 1, ManifestError.exit_code, StorageError.exit_code):  # the job's own failure
        assert _batch_action(rules, code, reason="Essential container in task exited") == "EXIT", code


def test_the_types_moto_ignores_are_each_checked_in_the_template(monkeypatch: pytest.MonkeyPatch):
    from moto.cloudformation import parsing

    moto_cfn.install(monkeypatch)
    modelled = parsing.get_model_map()
    assert {spec["Type"] for spec in RESOURCES.values()} - set(modelled) == set(MOTO_IGNORES)
    for check in MOTO_IGNORES.values():
        check()


def test_what_moto_does_not_keep_of_modelled_resources_is_in_the_template():
    bucket = RESOURCES["Bucket"]
    assert bucket["DeletionPolicy"] == "Retain" and RESOURCES["Database"]["DeletionPolicy"] == "Snapshot"
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    notified = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    wired = set()
    for notification in notified:  # only the input prefix notifies, so outputs cause no event loop
        rules = {r["Name"]: r["Value"] for r in notification["Filter"]["S3Key"]["Rules"]}
        assert rules.pop("prefix") == {"Ref": "InputPrefix"}
        wired.add((notification["Event"], rules.pop("suffix")))
        assert rules == {}
    # S3 compares suffixes case-sensitively: a GoPro's or a THETA's .JPG notifies too
    # and a lifecycle rule's deletions, which send no ObjectRemoved event
    events = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*")
    assert wired == {(e, suffix) for e in events for suffix in (".jpg", ".JPG", ".jpeg", ".JPEG")}
    assert RESOURCES["Database"]["Properties"]["EnableIAMDatabaseAuthentication"] is True
    job = RESOURCES["WorkerJobDefinition"]["Properties"]
    assert job["Timeout"] == {"AttemptDurationSeconds": {"Ref": "WorkerTimeoutSeconds"}}
    limits = RESOURCES["JobQueue"]["Properties"]["JobStateTimeLimitActions"]
    assert {(a["Action"], a["State"]) for a in limits} == {("CANCEL", "RUNNABLE")}


# --- deployed into moto -------------------------------------------------------------------------------------


def test_deploy_creates_the_event_path(outputs: dict[str, str]):
    assert outputs["BucketName"] == VALUES["BucketName"]
    assert boto3.client("s3").get_bucket_encryption(Bucket=VALUES["BucketName"])
    sqs = boto3.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["QueueArn"])
    redrive = json.loads(queue["RedrivePolicy"])
    assert (
        redrive["deadLetterTargetArn"] == dlq["Attributes"]["QueueArn"]
        and int(redrive["maxReceiveCount"]) == 5
    )
    assert queue["VisibilityTimeout"] == "360"
    lam = boto3.client("lambda")
    function = lam.get_function(FunctionName=outputs["FunctionName"])["Configuration"]
    assert (
        function["Handler"] == "panopipe.aws.lambda_handler.handler" and function["Runtime"] == "python3.12"
    )
    env = function["Environment"]["Variables"]
    assert env["PANOPIPE_CATALOG"].startswith(f"postgresql://panopipe_admin@{outputs['ProxyEndpoint']}:5432/")
    assert "iam=true" in env["PANOPIPE_CATALOG"] and env["PANOPIPE_EXECUTOR"] == "inline"
    assert env["PANOPIPE_BATCH_JOB_QUEUE"] == outputs["JobQueueArn"]  # stitch is queued for the dispatcher
    assert env["PANOPIPE_BUCKETS"] == VALUES["BucketName"]
    assert env["PANOPIPE_OUTPUT_PREFIX"] == f"s3://{VALUES['BucketName']}/panopipe-out/"
    assert len(function["VpcConfig"]["SubnetIds"]) == 2
    (mapping,) = lam.list_event_source_mappings(FunctionName=outputs["FunctionName"])["EventSourceMappings"]
    assert mapping["EventSourceArn"] == queue["QueueArn"] and mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}
    groups = {g["logGroupName"]: g for g in boto3.client("logs").describe_log_groups()["logGroups"]}
    assert int(groups[f"/aws/lambda/{outputs['FunctionName']}"]["retentionInDays"]) == 30
    assert int(groups[f"/aws/batch/{STACK}-worker"]["retentionInDays"]) == 30


def test_deploy_creates_the_database_behind_its_proxy(outputs: dict[str, str]):
    rds = boto3.client("rds")
    (db,) = rds.describe_db_instances()["DBInstances"]
    assert db["Engine"] == "postgres" and db["StorageEncrypted"] and not db["PubliclyAccessible"]
    assert db["MasterUserSecret"]["SecretArn"] == outputs["DatabaseSecretArn"]
    (proxy,) = rds.describe_db_proxies()["DBProxies"]
    assert proxy["Endpoint"] == outputs["ProxyEndpoint"] and proxy["RequireTLS"]
    assert (
        proxy["Auth"][0]["IAMAuth"] == "REQUIRED"
        and proxy["Auth"][0]["SecretArn"] == outputs["DatabaseSecretArn"]
    )
    targets = rds.describe_db_proxy_targets(DBProxyName=proxy["DBProxyName"])["Targets"]
    assert [t["RdsResourceId"] for t in targets] == [db["DBInstanceIdentifier"]]
    # named after the stack, so that its log group is the stack's (moto's RDS makes no log group of its own)
    assert db["DBInstanceIdentifier"] == f"{STACK}-catalog"
    (group,) = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/aws/rds/")["logGroups"]
    assert group["logGroupName"] == f"/aws/rds/instance/{STACK}-catalog/postgresql"
    assert int(group["retentionInDays"]) == 30
    endpoints = boto3.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    services = {e["ServiceName"].removeprefix("com.amazonaws.us-east-1.") for e in endpoints}
    assert services == {"s3", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "batch"}


def test_deploy_creates_the_dispatcher_and_its_schedule(outputs: dict[str, str]):
    lam = boto3.client("lambda")
    function = lam.get_function(FunctionName=f"{STACK}-dispatcher")
    config = function["Configuration"]
    assert config["Handler"] == "panopipe.aws.lambda_handler.dispatcher" and config["Timeout"] == 300
    assert function["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    env = config["Environment"]["Variables"]
    assert env["PANOPIPE_BATCH_JOB_QUEUE"] == outputs["JobQueueArn"]
    assert env["PANOPIPE_BATCH_JOB_DEFINITION"] == outputs["JobDefinitionArn"]
    events = boto3.client("events")
    (rule,) = [r for r in events.list_rules()["Rules"] if r.get("ScheduleExpression")]
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == config["FunctionArn"]
    policy = json.loads(lam.get_policy(FunctionName=f"{STACK}-dispatcher")["Policy"])
    (allow,) = policy["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}


def test_deploy_creates_the_batch_workers(outputs: dict[str, str]):
    batch = boto3.client("batch")
    environments = batch.describe_compute_environments()["computeEnvironments"]
    kinds = {e["computeEnvironmentArn"]: e["computeResources"]["type"] for e in environments}
    (queue,) = batch.describe_job_queues(jobQueues=[outputs["JobQueueArn"]])["jobQueues"]
    order = sorted(queue["computeEnvironmentOrder"], key=lambda o: o["order"])
    assert [kinds[o["computeEnvironment"]] for o in order] == ["FARGATE_SPOT", "FARGATE"]
    (job,) = batch.describe_job_definitions(jobDefinitions=[outputs["JobDefinitionArn"]])["jobDefinitions"]
    assert job["containerProperties"]["command"] == list(WORKER_COMMAND)
    retry = job["retryStrategy"]
    assert retry["attempts"] == 3
    assert [r["action"].upper() for r in retry["evaluateOnExit"]] == [r["Action"] for r in RETRY_ON]
    assert retry["evaluateOnExit"][0]["onStatusReason"] == "Host EC2*"
    env = {e["name"]: e["value"] for e in job["containerProperties"]["environment"]}
    assert env["PANOPIPE_CATALOG"].startswith(f"postgresql://panopipe_admin@{outputs['ProxyEndpoint']}")
    roles = {r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]}
    assert job["containerProperties"]["jobRoleArn"].rsplit("/", 1)[-1] in roles
    execution = job["containerProperties"]["executionRoleArn"].rsplit("/", 1)[-1]
    assert _pulls_from(execution) == ["arn:aws:ecr:us-east-1:123456789012:repository/panopipe"]
    (rule,) = [r for r in boto3.client("events").list_rules()["Rules"] if r.get("EventPattern")]
    assert json.loads(rule["EventPattern"])["detail"] == {
        "status": ["FAILED"],
        "jobQueue": [outputs["JobQueueArn"]],
    }


def test_with_egress_nat_a_nat_gateway_replaces_the_interface_endpoints(aws: None):
    deploy.deploy(STACK, {**VALUES, "Egress": "nat"}, poll_seconds=0)
    ec2 = boto3.client("ec2")
    (nat,) = ec2.describe_nat_gateways()["NatGateways"]
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert [e["VpcEndpointType"] for e in endpoints] == ["Gateway"]  # S3 only
    (routed,) = [
        table
        for table in ec2.describe_route_tables()["RouteTables"]
        if any(route.get("NatGatewayId") == nat["NatGatewayId"] for route in table["Routes"])
    ]
    resources = boto3.client("cloudformation").describe_stack_resources(StackName=STACK)["StackResources"]
    ids = {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in resources}
    assert routed["RouteTableId"] == ids["PrivateRouteTable"] and nat["SubnetId"] == ids["PublicSubnet"]


def test_status_reports_the_stack_and_its_outputs(
    outputs: dict[str, str], capsys: pytest.CaptureFixture[str]
):
    assert main(["cloud", "status", "--stack", STACK, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "CREATE_COMPLETE" and report["failed"] == []
    assert report["outputs"] == outputs


def test_deploying_again_with_nothing_changed_leaves_the_stack_as_it_is(outputs: dict[str, str]):
    result = deploy.deploy(STACK, {}, poll_seconds=0)  # an update keeps the current parameter values
    assert result.report is not None and result.report.outputs == outputs


def test_destroy_deletes_the_stack_and_says_what_it_keeps(
    outputs: dict[str, str], capsys: pytest.CaptureFixture[str]
):
    assert main(["cloud", "destroy", "--stack", STACK, "--yes"]) == 0
    said = capsys.readouterr().err
    assert VALUES["BucketName"] in said and "snapshot" in said
    # moto keeps neither a bucket policy nor notifications: the template and the warning are what is checked
    assert RESOURCES["BucketPolicy"]["DeletionPolicy"] == RESOURCES["BucketPolicy"]["UpdateReplacePolicy"]
    assert RESOURCES["BucketPolicy"]["DeletionPolicy"] == "Retain"
    assert (
        "its event notifications still name the deleted queue: remove them with `aws s3api "
        f"put-bucket-notification-configuration --bucket {VALUES['BucketName']} --notification-configuration "
        "'{}'`" in " ".join(said.split())
    )
    assert STACK not in _stacks()
    assert boto3.client("s3").head_bucket(Bucket=VALUES["BucketName"])  # retained


def test_destroy_refuses_a_stack_whose_database_is_protected_and_says_how_to_unprotect_it(
    aws: None, capsys: pytest.CaptureFixture[str]
):
    protected = _args({**VALUES, "DbDeletionProtection": "true", "DbMultiAZ": "true"})
    assert main(["cloud", "deploy", "--stack", STACK, *protected, "--yes"]) == 0
    capsys.readouterr()

    assert main(["cloud", "destroy", "--stack", STACK, "--yes"]) == 2
    said = capsys.readouterr().err
    assert (
        said.startswith("error: the catalog database of pano has deletion protection on")
        and len(said.splitlines()) == 1
    )
    assert f"cloud deploy --stack {STACK} --param DbDeletionProtection=false" in said
    assert STACK in _stacks()
    # a first deploy that failed and rolled back made no database: nothing protects it, destroy goes on
    cloudformation = boto3.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    from botocore.stub import Stubber

    with Stubber(cloudformation) as stubber:  # moto cannot fail a creation half way
        stubber.add_response("describe_stacks", {"Stacks": [stack | {"StackStatus": "ROLLBACK_COMPLETE"}]})
        stubber.add_response("describe_stack_resources", {"StackResources": []})
        asked = deploy.destroy(STACK, confirm=lambda retained: False, client=cloudformation)
    assert not asked.deleted  # it got as far as the question
    database = RESOURCES["Database"]["Properties"]
    assert database["MultiAZ"] == {"Ref": "DbMultiAZ"} and database["DeletionProtection"] == {
        "Ref": "DbDeletionProtection"
    }


def test_a_declined_change_set_creates_nothing(aws: None):
    result = deploy.deploy(STACK, VALUES, confirm=lambda changes: False, poll_seconds=0)
    assert not result.executed and {c.action for c in result.changes} == {"Add"}
    assert {c.resource for c in result.changes} >= set(RESOURCES) - {"AlarmSubscription"}
    assert STACK not in _stacks()


def _create_stack(template: dict[str, Any], values: dict[str, str]) -> None:
    """Create the stack ``STACK`` from another ``template`` than the panopipe's, as `cloud deploy` does."""
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_change_set(
        StackName=STACK,
        ChangeSetName="other",
        ChangeSetType="CREATE",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=deploy.CAPABILITIES,
    )
    cloudformation.execute_change_set(StackName=STACK, ChangeSetName="other")


def _pulls_from(role: str) -> list[str] | None:
    """The repositories the deployed ``role`` may pull images from (``None``: no statement lets it pull)."""
    answer = boto3.client("iam").get_role_policy(RoleName=role, PolicyName="least-privilege")
    document = answer["PolicyDocument"]  # moto answers a CloudFormation role's policy as its Python repr
    statements = (ast.literal_eval(document) if isinstance(document, str) else document)["Statement"]
    pulls = [s["Resource"] for s in statements if "ecr:BatchGetImage" in s["Action"]]
    return pulls[0] if pulls else None


@pytest.mark.parametrize(
    ("image", "china", "repository"),
    [
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/panopipe:0.1.0",
            False,
            "us-east-1:123456789012:repository/panopipe",
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/survey/panopipe@sha256:" + "0" * 64,
            False,
            "eu-west-1:123456789012:repository/survey/panopipe",
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/survey/panopipe:0.1.0@sha256:" + "0" * 64,
            True,
            "cn-north-1:123456789012:repository/survey/panopipe",
        ),
        ("210987654321.dkr.ecr.us-east-1.amazonaws.com/panopipe:0.1.0", False, None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/panopipe:0.1.0", False, None),
        ("public.ecr.aws/example/panopipe:0.1.0", False, None),
        ("ghcr.io/example/panopipe:0.1.0", False, None),
        ("python:3.12", False, None),
    ],
    ids=[
        "ecr",
        "ecr-other-region-digest",
        "ecr-china",
        "ecr-other-account",
        "ecr-other-partition",
        "ecr-public",
        "ghcr",
        "docker-hub",
    ],
)
def test_the_worker_may_pull_only_the_repository_of_its_image_from_this_accounts_ecr(
    aws: None, monkeypatch: pytest.MonkeyPatch, image: str, china: bool, repository: str | None
):
    """The execution role's ECR statement, as CloudFormation resolves it from WorkerImage: the role and its
    log group deployed alone (moto does not enforce IAM: the policy is read back). moto's CloudFormation knows
    one partition: China's is given to it for the test."""
    from moto.cloudformation.parsing import ResourceMap

    if china:
        made = ResourceMap.__init__

        def in_china(self: Any, *args: Any, **kwargs: Any) -> None:
            made(self, *args, **kwargs)
            self._parsed_resources.update({"AWS::Partition": "aws-cn", "AWS::URLSuffix": "amazonaws.com.cn"})

        monkeypatch.setattr(ResourceMap, "__init__", in_china)
    template = copy.deepcopy(TEMPLATE)
    template["Resources"] = {name: RESOURCES[name] for name in ("WorkerExecutionRole", "WorkerLogGroup")}
    del template["Outputs"]
    values = {**VALUES, "WorkerImage": image}
    assert deploy.validate_parameters(values)
    _create_stack(template, values)
    (role,) = [r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]]
    partition = "aws-cn" if china else "aws"
    assert _pulls_from(role) == (None if repository is None else [f"arn:{partition}:ecr:{repository}"])


def test_a_new_stack_names_its_database_in_lower_case_and_its_log_group_goes_with_it(aws: None):
    """RDS stores an instance's identifier in lower case, and names the log group so."""
    rds, logs = boto3.client("rds"), boto3.client("logs")
    deploy.deploy("Survey-2026", {**VALUES, "BucketName": "survey-2026"}, poll_seconds=0)
    (db,) = rds.describe_db_instances()["DBInstances"]
    assert db["DBInstanceIdentifier"] == instance_identifier("Survey-2026") == "survey-2026-catalog"
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/aws/rds/")["logGroups"]
    assert group["logGroupName"] == "/aws/rds/instance/survey-2026-catalog/postgresql"
    assert deploy.destroy("Survey-2026", poll_seconds=0).deleted
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/rds/")["logGroups"] == []  # not left behind


def test_an_update_of_a_stack_made_before_the_database_identifier_leaves_its_database_unnamed(aws: None):
    """CloudFormation replaces an instance whose identifier changes. An update sends no DbInstanceIdentifier,
    so a stack made before the parameter gets its empty default, which names nothing and makes no log group
    (moto cannot update a DB instance: the update is declined once its parameters are sent, and what the
    empty value makes is deployed as a stack of its own)."""
    before = copy.deepcopy(TEMPLATE)  # the template as it was
    del before["Parameters"]["DbInstanceIdentifier"], before["Conditions"]["DatabaseNamed"]
    del before["Resources"]["DatabaseLogGroup"]
    del before["Resources"]["Database"]["Properties"]["DBInstanceIdentifier"]
    _create_stack(before, VALUES)
    cloudformation = boto3.client("cloudformation")
    sent: list[list[dict[str, Any]]] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append(params["Parameters"])

    cloudformation.meta.events.register("provide-client-params.cloudformation.CreateChangeSet", record)
    deploy.deploy(STACK, {"MaxReceiveCount": "7"}, confirm=lambda changes: False, client=cloudformation)
    (parameters,) = sent
    assert {p["ParameterKey"] for p in parameters} == set(before["Parameters"])  # DbInstanceIdentifier not
    assert PARAMETERS["DbInstanceIdentifier"]["Default"] == ""

    deploy.deploy("unnamed", {**VALUES, "BucketName": "unnamed", "DbInstanceIdentifier": ""}, poll_seconds=0)
    rds, logs = boto3.client("rds"), boto3.client("logs")
    identifiers = [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]]
    assert len(identifiers) == 2 and instance_identifier("unnamed") not in identifiers
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/rds/")["logGroups"] == []


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (ARGS[:-2], "missing parameter(s) WorkerImage"),
        ([*ARGS, "--param", "Colour=blue"], "unknown parameter(s) Colour"),
        ([*ARGS, "--param", "Egress=vpn"], "choose one of endpoints, nat"),
        ([*ARGS, "--param", "LambdaMaxConcurrency=1"], "out of range"),
        ([*ARGS, "--param", "BucketName=Not_A_Bucket"], "lower-case"),
        ([*ARGS, "--param", "OutputPrefix=incoming/out/"], "must not overlap"),
        (
            [*ARGS, "--param", "WorkerVcpu=0.25"],
            "error: WorkerVcpu=0.25 and WorkerMemoryMiB=8192 (the default) are not a Fargate size: with 0.25 "
            "vCPU, WorkerMemoryMiB must be 512, 1024 or 2048",
        ),
        (
            [*ARGS, "--param", "WorkerVcpu=16", "--param", "WorkerMemoryMiB=512"],
            "WorkerMemoryMiB must be 32768 to 122880 in steps of 8192",
        ),
        ([*ARGS, "--param", "BucketName"], "not of the form KEY=VALUE"),
        # CloudFormation's Number type takes these; the resources, which want integers, refuse them only once
        # they are created (the event source mapping after the database and its proxy)
        ([*ARGS, "--param", "LambdaMaxConcurrency=2.5"], "LambdaMaxConcurrency='2.5' is not a whole number"),
        ([*ARGS, "--param", "LambdaMaxConcurrency=nan"], "is not a whole number"),
        ([*ARGS, "--param", "MaxReceiveCount=1_0"], "is not a whole number"),
        ([*ARGS, "--param", "DbAllocatedStorage=\uff12\uff10"], "is not a whole number"),  # full-width 20
        ([*ARGS, "--param", "WorkerMemoryMiB=8192.0"], "WorkerMemoryMiB='8192.0' is not a whole number"),
        ([*ARGS, "--param", "WorkerMemoryMiB=08192"], "without leading zeros"),  # the template compares text
        ([*ARGS, "--param", "DbMasterUsername=public"], "a name PostgreSQL reserves or RDS keeps"),
        ([*ARGS, "--param", "DbName=template1"], "a name PostgreSQL reserves or RDS keeps"),
        # RDS would store it in lower case, and name its log group so: not the stack's log group
        (
            [*ARGS, "--param", "DbInstanceIdentifier=Survey-catalog"],
            "DbInstanceIdentifier='Survey-catalog' is",
        ),
        ([*ARGS, "--param", "DbInstanceIdentifier=survey--catalog"], "not ending with one (RDS's rules"),
        # names S3 and RDS refuse only when the resource is created
        ([*ARGS, "--param", "BucketName=a..b"], "BucketName='a..b' is not valid: 3 to 63 lower-case"),
        ([*ARGS, "--param", "BucketName=192.168.1.10"], "not an IP address"),
        ([*ARGS, "--param", "DbMasterUsername=rdsadmin"], "not a name RDS keeps (rdsadmin, rds_*, pg_*)"),
        ([*ARGS, "--param", "DbMasterUsername=pg_monitor"], "not a name RDS keeps"),
        (
            [*ARGS, "--param", "DbMasterUsername=user"],
            "DbMasterUsername='user' is not valid: a name PostgreSQL",
        ),
        (
            [*ARGS, "--param", "DbName=select"],
            "DbName='select' is not valid: a name PostgreSQL reserves or RDS keeps",
        ),
    ],
)
def test_bad_parameters_fail_with_one_line_before_anything_is_created(
    aws: None, capsys: pytest.CaptureFixture[str], params: list[str], message: str
):
    assert main(["cloud", "deploy", "--stack", STACK, *params, "--yes"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert _stacks() == []


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST = "@sha256:" + "0a" * 32


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        (f"{ECR}/panopipe:0.1.0", True),
        (f"{ECR}/panopipe{DIGEST}", True),
        (f"registry.example.com:5000/team/panopipe:v2{DIGEST}", True),  # a tag and a digest
        (f"{ECR}/p@sha256:ABC", False),  # was read as the tag ABC of an image "p@sha256"
        (f"{ECR}/p{DIGEST.upper().replace('SHA', 'sha')}", False),  # a digest is lower-case
        (f"{ECR}/p{DIGEST[:-1]}", False),  # 63 digits
        ("registry.example.com:5000/panopipe", False),  # no tag: the port is none
    ],
)
def test_the_worker_image_needs_a_tag_or_a_whole_digest(capsys: pytest.CaptureFixture[str], image, valid):
    # One pattern: panopipe's own check reads the template's AllowedPattern, which CloudFormation applies.
    code = main(["cloud", "template", "--param", f"WorkerImage={image}"])

    out, err = capsys.readouterr()
    if valid:
        assert code == 0 and json.loads(out)["Parameters"]["WorkerImage"]["Default"] == image
    else:
        assert (code, out) == (ConfigError.exit_code, "")
        assert err.startswith(f"error: parameter WorkerImage={image!r} is not valid: an image URI ending in ")


def test_a_worker_size_is_checked_against_fargates_table_with_the_values_an_update_keeps(
    outputs: dict[str, str], capsys: pytest.CaptureFixture[str]
):
    # The stack runs 2 vCPU with 8192 MiB; an update keeps the memory when only the vCPUs are given.
    assert main(["cloud", "deploy", "--stack", STACK, "--param", "WorkerVcpu=0.5", "--yes"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: WorkerVcpu=0.5 and WorkerMemoryMiB=8192 (the stack's current value) are not a Fargate size: "
        "with 0.5 vCPU, WorkerMemoryMiB must be 1024, 2048, 3072 or 4096"
    ]
    stack = boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"  # no change set was made
    kept = {"WorkerVcpu": "2", "WorkerMemoryMiB": "65536", "InputPrefix": "in/", "OutputPrefix": "out/"}
    assert deploy.validate_parameters({"WorkerVcpu": "16"}, require_all=False, current=kept)
    assert deploy.validate_parameters({"WorkerVcpu": "16"}, require_all=False, current={})  # not known yet
    assert main(["cloud", "template", "--param", "WorkerVcpu=8", "--param", "WorkerMemoryMiB=20480"]) == 0
    assert main(["cloud", "template", "--param", "WorkerVcpu=8"]) == 2  # 8192 MiB: the default


def _rules_hold(template: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The descriptions of the template's failing rule assertions for these parameter values, as
    CloudFormation evaluates Rules before a create or update (moto ignores the section, so this evaluates the
    functions the rules use: Ref, Fn::Equals, Fn::Contains; a Number parameter's Ref is its text)."""

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            ((function, argument),) = node.items()
            if function == "Ref":
                return values.get(argument, str(template["Parameters"][argument].get("Default")))
            if function == "Fn::Equals":
                return value(argument[0]) == value(argument[1])
            if function == "Fn::Contains":
                return value(argument[1]) in [value(item) for item in argument[0]]
            raise AssertionError(f"a rule uses {function}, which this test does not evaluate")
        return node

    return [
        assertion["AssertDescription"]
        for rule in template["Rules"].values()
        if value(rule.get("RuleCondition", True))
        for assertion in rule["Assertions"]
        if not value(assertion["Assert"])
    ]


@pytest.mark.parametrize(
    ("vcpu", "memory", "fargate_offers"),
    # pairs from the Amazon ECS developer guide's "Task CPU and memory" table
    [
        ("0.25", "512", True),
        ("0.25", "4096", False),
        ("0.5", "4096", True),
        ("2", "4096", True),
        ("2", "3072", False),
        ("4", "30720", True),
        ("8", "20480", True),
        ("8", "18432", False),  # 8 vCPU: steps of 4 GiB
        ("16", "122880", True),
        ("16", "8192", False),
    ],
)
def test_the_template_itself_refuses_a_worker_size_fargate_does_not_offer(
    capsys: pytest.CaptureFixture[str], vcpu: str, memory: str, fargate_offers: bool
):
    """A stack deployed from the console (or any tool but `cloud deploy`) gets the same check from the
    template's Rules as `cloud deploy` makes."""
    values = {"WorkerVcpu": vcpu, "WorkerMemoryMiB": memory}
    failing = _rules_hold(TEMPLATE, values)
    code = main(["cloud", "template", *_args(values)])
    err = capsys.readouterr().err
    if fargate_offers:
        assert (failing, code) == ([], 0), err
    else:
        assert len(failing) == 1 and failing[0].startswith(f"with {vcpu} vCPU, WorkerMemoryMiB must be ")
        assert code == 2 and err.strip().endswith(failing[0])  # the same words as `cloud deploy`'s error


def test_deploy_without_a_terminal_needs_yes(aws: None, capsys: pytest.CaptureFixture[str]):
    assert main(["cloud", "deploy", "--stack", STACK, *ARGS]) == 2
    assert "--yes" in capsys.readouterr().err
    assert _stacks() == []


def test_status_and_destroy_of_a_missing_stack_say_so_in_one_line_naming_the_region(
    aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    # It said "in this account and region", naming neither: a stack deployed in another region looked gone.
    main(["cloud", "deploy", "--stack", STACK, *ARGS, "--yes"])
    capsys.readouterr()
    monkeypatch.setenv("AWS_REGION", "eu-west-1")

    assert main(["cloud", "status", "--stack", STACK]) == StackNotFoundError.exit_code == 9
    assert main(["cloud", "destroy", "--stack", "nothing-here", "--yes"]) == 9
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: stack {name} does not exist in eu-west-1 for these AWS credentials: check the name, AWS_REGION "
        "and AWS_PROFILE"
        for name in (STACK, "nothing-here")
    ]


def test_a_stack_that_cannot_be_created_fails_with_one_line(aws: None, capsys: pytest.CaptureFixture[str]):
    taken = _args({**VALUES, "BucketName": VALUES["LambdaCodeBucket"]})  # a bucket name already in use
    assert main(["cloud", "deploy", "--stack", STACK, *taken, "--yes"]) == StackError.exit_code == 8
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CloudFormation: ") and len(err.splitlines()) == 1


def test_status_names_the_resources_that_failed_in_the_last_operation(monkeypatch: pytest.MonkeyPatch):
    """moto records no resource events, so CloudFormation's answers for a rolled-back stack are stubbed."""
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("cloudformation", region_name="us-east-1")
    stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/pano/1"
    when = datetime(2026, 12, 1, tzinfo=UTC)

    def event(n: int, resource: str, kind: str, status: str, reason: str = "") -> dict[str, Any]:
        return {
            "StackId": stack_id,
            "EventId": str(n),
            "StackName": STACK,
            "LogicalResourceId": resource,
            "ResourceType": kind,
            "ResourceStatus": status,
            "ResourceStatusReason": reason,
            "Timestamp": when + timedelta(seconds=n),
        }

    stack = "AWS::CloudFormation::Stack"
    history = [  # newest first, as CloudFormation answers; an older failed operation comes last
        event(9, STACK, stack, "ROLLBACK_COMPLETE"),
        event(8, "Function", "AWS::Lambda::Function", "DELETE_COMPLETE"),
        event(
            7, STACK, stack, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [Proxy]."
        ),
        event(6, "Proxy", "AWS::RDS::DBProxy", "CREATE_FAILED", "Secret is not reachable"),
        event(5, "Function", "AWS::Lambda::Function", "CREATE_COMPLETE"),
        event(4, STACK, stack, "CREATE_IN_PROGRESS", "User Initiated"),
        event(3, "Bucket", "AWS::S3::Bucket", "CREATE_FAILED", "an older operation"),
        event(2, STACK, stack, "CREATE_IN_PROGRESS", "User Initiated"),
    ]
    description = {
        "StackId": stack_id,
        "StackName": STACK,
        "StackStatus": "ROLLBACK_COMPLETE",
        "StackStatusReason": "",
        "CreationTime": when,
    }
    with Stubber(client) as stubber:
        stubber.add_response("describe_stacks", {"Stacks": [description]}, {"StackName": STACK})
        stubber.add_response("describe_stack_events", {"StackEvents": history}, {"StackName": stack_id})
        report = deploy.status(STACK, client=client)
    assert report.status == "ROLLBACK_COMPLETE" and report.outputs == {}
    assert [(e.resource, e.reason) for e in report.failed] == [("Proxy", "Secret is not reachable")]


def _names_from_the_stack_name(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(property, Fn::Sub text)`` of every name the template derives from ``${AWS::StackName}``."""
    if isinstance(node, dict):
        text = node.get("Fn::Sub")
        if isinstance(text, str) and "${AWS::StackName}" in text:
            yield key, text
        for name, value in node.items():
            yield from _names_from_the_stack_name(value, name if name != "Fn::Sub" else key)
    elif isinstance(node, list):
        for item in node:
            yield from _names_from_the_stack_name(item, key)


# What each service allows in the names derived from the stack's (their API references).
NAME_RULES = {
    "DBProxyName": r"(?!.*--)[A-Za-z][A-Za-z0-9-]{0,62}(?<!-)",  # RDS: no "--", no hyphen at the end
    "FunctionName": r"[A-Za-z0-9_-]{1,64}",
    "LogGroupName": r"[A-Za-z0-9_/.#-]{1,512}",
}


@pytest.mark.parametrize("stack", ["a", "A" * 40, "a1-" * 13 + "b", "survey-2026"])
def test_every_name_derived_from_a_valid_stack_name_is_valid_for_its_service(stack: str):
    assert deploy.STACK_NAME.fullmatch(stack)
    derived = list(_names_from_the_stack_name(RESOURCES))
    assert {key for key, _ in derived} == set(NAME_RULES)  # a new derived name needs its service's rule here
    for key, text in derived:
        name = text.replace("${AWS::StackName}", stack)
        assert re.fullmatch(NAME_RULES[key], name), (key, name)
    # `cloud deploy` names a new stack's database after it (RDS: the proxy's rules, in lower case)
    identifier = instance_identifier(stack)
    assert re.fullmatch(NAME_RULES["DBProxyName"], identifier) and identifier == identifier.lower()
    assert deploy.validate_parameters({"DbInstanceIdentifier": identifier}, require_all=False)


@pytest.mark.parametrize("stack", ["survey-", "my--stack", "1survey", "a" * 41])
def test_a_stack_name_that_would_make_an_invalid_derived_name_is_refused_first(
    aws: None, capsys: pytest.CaptureFixture[str], stack: str
):
    assert main(["cloud", "deploy", "--stack", stack, *ARGS, "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"stack name {stack!r} is not valid" in err and len(err.strip().splitlines()) == 1
    assert _stacks() == []


class _NotAws(http.server.BaseHTTPRequestHandler):
    """A web server that is not AWS (a corporate proxy's page, a wrong endpoint): HTML with status 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    "body",
    [b"<!DOCTYPE html><p>Bad gateway", b"<html><body>Sign in to the proxy</body></html>"],
    ids=["not-xml", "xml-but-not-cloudformation"],
)
def test_an_endpoint_that_does_not_answer_as_aws_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], body: bytes
):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAws)
    server.body = body  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, "testing")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        assert main(["cloud", "status", "--stack", STACK]) == StackError.exit_code
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CloudFormation: the endpoint's answer is not CloudFormation's")
    assert "AWS_ENDPOINT_URL" in err and len(err.splitlines()) == 1


def test_an_endpoint_that_cannot_be_reached_is_exit_4_as_other_endpoints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """It had been exit 8 (a stack operation failed), without saying what to check."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for command in (["cloud", "status", "--stack", STACK], ["ls", "--catalog", f"cloudformation://{STACK}"]):
        assert main(command) == EndpointUnreachableError.exit_code == 4
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: CloudFormation: Could not connect to the endpoint URL")
        assert err.endswith(": check that the CloudFormation endpoint is up and reachable")
        assert len(err.splitlines()) == 1


def test_no_credentials_and_an_unknown_region_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert main(["cloud", "status", "--stack", STACK]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no AWS credentials: set AWS_PROFILE (a profile of ~/.aws/config), or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run `aws configure`"
    )
    monkeypatch.setenv("AWS_REGION", "mars-north-9")  # refused before a request retries a host that is not
    assert main(["cloud", "status", "--stack", STACK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: AWS region 'mars-north-9' is unknown: set AWS_REGION") and "\n" not in err
    monkeypatch.setenv("AWS_REGION", "eu_west_1")  # botocore's InvalidRegionError had been a traceback
    assert main(["cloud", "status", "--stack", STACK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid AWS region 'eu_west_1': write it as AWS does") and "\n" not in err


def test_a_template_over_the_inline_limit_says_how_to_deploy_it(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(
        deploy, "TEMPLATE_BODY_LIMIT", 1000
    )  # the template is ~49 kB of CloudFormation's 51,200
    assert main(["cloud", "deploy", "--stack", STACK, *ARGS, "--yes"]) == StackError.exit_code
    err = capsys.readouterr().err.strip()
    assert "over CloudFormation's inline limit of 1000: deploy it from S3 with the AWS CLI" in err
    assert "aws cloudformation deploy --template-file stack.json --stack-name pano --s3-bucket" in err
    assert len(err.splitlines()) == 1 and _stacks() == []


class _Terminal(io.StringIO):
    """Standard input that is a terminal whose user typed ``value`` (and then nothing, as Ctrl-C leaves it)."""

    def isatty(self) -> bool:
        return True


def test_deploy_json_on_a_terminal_needs_yes(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    assert main(["cloud", "deploy", "--stack", STACK, *ARGS, "--json"]) == 2
    out, err = capsys.readouterr()  # it had asked "Apply these 59 changes?" without showing them
    assert (
        out == ""
        and err.strip() == "error: `cloud deploy --json` shows the changes once applied: pass --yes with it"
    )
    assert _stacks() == []


def test_ctrl_c_at_the_question_of_a_first_deploy_leaves_no_empty_stack(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr("sys.stdin", _Terminal(""))  # click answers Ctrl-C and the end of input alike
    assert main(["cloud", "deploy", "--stack", STACK, *ARGS]) == Interrupted.exit_code == 130
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "error: interrupted: the change set was deleted, and the empty stack pano it had created; nothing changed"
        )
    )
    assert _stacks() == []  # no stack left in REVIEW_IN_PROGRESS


def test_ctrl_c_while_the_change_set_is_computed_leaves_no_empty_stack(aws: None):
    """The cleanup covered the question only: Ctrl-C while CloudFormation computed the changes left the
    REVIEW_IN_PROGRESS stack a first change set makes."""
    cloudformation = boto3.client("cloudformation")

    def interrupt(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    cloudformation.meta.events.register("before-call.cloudformation.DescribeChangeSet", interrupt)
    with pytest.raises(Interrupted, match="and the empty stack pano it had created"):
        deploy.deploy(STACK, VALUES, client=cloudformation, poll_seconds=0)
    assert _stacks() == []


def test_ctrl_c_at_the_question_of_an_update_deletes_its_change_set(outputs: dict[str, str]):
    def interrupt(changes: list[deploy.Change]) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="the change set was deleted, the stack is as it was"):
        deploy.deploy(STACK, {"MaxReceiveCount": "7"}, confirm=interrupt, poll_seconds=0)
    cloudformation = boto3.client("cloudformation")
    summaries = cloudformation.list_change_sets(StackName=STACK)["Summaries"]
    assert [s["ExecutionStatus"] for s in summaries] == ["EXECUTE_COMPLETE"]  # the one that created it
    assert cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def _replacing_change_set(client: Any, replaced: dict[str, Any]) -> Any:
    """A Stubber answering one update whose change set replaces the ``replaced`` resources (logical id:
    causes); moto computes no change for a parameter update, so CloudFormation's answers are stubbed."""
    from botocore.stub import Stubber

    stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/pano/1"
    changes = [
        {
            "Type": "Resource",
            "ResourceChange": {
                "Action": "Modify",
                "LogicalResourceId": name,
                "ResourceType": RESOURCES[name]["Type"],
                "Replacement": "True",
                "Details": [
                    {"Target": {"Attribute": "Properties", "Name": cause, "RequiresRecreation": "Always"}}
                    for cause in causes
                ],
            },
        }
        for name, causes in replaced.items()
    ]
    stubber = Stubber(client)
    stack = {
        "StackId": stack_id,
        "StackName": STACK,
        "StackStatus": "CREATE_COMPLETE",
        "CreationTime": datetime(2026, 12, 1, tzinfo=UTC),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in VALUES.items()],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]})
    stubber.add_response("create_change_set", {"Id": "cs-1", "StackId": stack_id})
    stubber.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": changes})
    stubber.add_response("delete_change_set", {})
    return stubber


def test_a_change_set_that_replaces_the_database_or_the_bucket_is_refused_even_with_yes(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("cloudformation", region_name="us-east-1")
    replaced = {"Database": ["DBName", "MasterUsername"], "Bucket": ["BucketName"]}
    asked: list[list[deploy.Change]] = []
    with _replacing_change_set(client, replaced) as stubber:
        with pytest.raises(ConfigError) as refused:
            deploy.deploy(
                STACK, {"DbName": "catalog2"}, confirm=lambda c: asked.append(c) or True, client=client
            )
        stubber.assert_no_pending_responses()  # the change set was deleted
    assert str(refused.value) == (
        "the change set replaces Database (DBName, MasterUsername): a new, empty catalog database takes its "
        "place (the old one is deleted after a final snapshot); and Bucket (BucketName): a new, empty bucket "
        "takes its place (the old one is kept with its images, no longer notified): nothing was changed; pass "
        "--allow-replacement to apply it"
    )
    assert asked == []  # refused before the question, as --yes answers it
    with _replacing_change_set(client, {"Database": ["DBName"]}) as stubber:
        result = deploy.deploy(
            STACK, {"DbName": "catalog2"}, confirm=lambda c: False, client=client, allow_replacement=True
        )
        stubber.assert_no_pending_responses()
    assert [(c.resource, c.causes) for c in result.changes] == [("Database", ("DBName",))]


def test_a_greater_engine_version_upgrades_the_database_and_a_lower_one_is_refused():
    """RDS refuses a major-version change without AllowMajorVersionUpgrade, and any downgrade (moto checks
    neither: the template and the check before any change set are what is tested)."""
    assert RESOURCES["Database"]["Properties"]["AllowMajorVersionUpgrade"] is True
    stack = {**VALUES, "DbEngineVersion": "16"}
    assert deploy.validate_parameters({"DbEngineVersion": "17"}, require_all=False, current=stack)
    with pytest.raises(
        ConfigError, match="DbEngineVersion=15 is older than the stack's 16: RDS cannot downgrade"
    ):
        deploy.validate_parameters({"DbEngineVersion": "15"}, require_all=False, current=stack)
    assert deploy.validate_parameters({**VALUES, "DbEngineVersion": "15"})  # a new stack: any version
