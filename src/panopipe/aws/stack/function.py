"""The event function (``panopipe.aws.lambda_handler.handler``, fed by the event queue) and the dispatcher
(``panopipe.aws.lambda_handler.dispatcher``, run every minute by a schedule)."""

from __future__ import annotations

from typing import Any

from panopipe.aws.stack._cfn import Json, get_att, log_group, ref, resource, role, statement, sub
from panopipe.aws.stack.database import PROXY_USER_ARN, catalog_url
from panopipe.aws.stack.network import PRIVATE_SUBNET_IDS
from panopipe.aws.stack.storage import BUCKET_ARN, LAMBDA_TIMEOUT_S
from panopipe.config import (
    ENV_BATCH_JOB_DEFINITION,
    ENV_BATCH_JOB_QUEUE,
    ENV_BUCKETS,
    ENV_CATALOG,
    ENV_EXECUTOR,
    ENV_OUTPUT_PREFIX,
)

FUNCTION_NAME = sub("${AWS::StackName}-events")
HANDLER = "panopipe.aws.lambda_handler.handler"
DISPATCHER_NAME = sub("${AWS::StackName}-dispatcher")
DISPATCHER_HANDLER = "panopipe.aws.lambda_handler.dispatcher"
DISPATCH_SCHEDULE = "rate(1 minute)"
DISPATCHER_TIMEOUT_S = 300
BATCH_SIZE = 10
_OBJECTS = "arn:${AWS::Partition}:s3:::${BucketName}"


def _environment() -> dict[str, Json | str]:
    """What both functions read: the catalog, the bucket, the output prefix and the workers' job queue."""
    return {
        ENV_CATALOG: catalog_url("LambdaSslRootCert"),
        ENV_BUCKETS: ref("BucketName"),
        ENV_OUTPUT_PREFIX: sub("s3://${BucketName}/${OutputPrefix}"),
        ENV_BATCH_JOB_QUEUE: ref("JobQueue"),
    }


def function_environment() -> dict[str, Json | str]:
    """The settings lambda_handler.py reads. ``inline``: light steps run in the function; with the job queue
    named, heavy steps (stitch, derive; nadir when on) are queued in the catalog for the dispatcher."""
    return {**_environment(), ENV_EXECUTOR: "inline"}


def dispatcher_environment() -> dict[str, Json | str]:
    """The dispatcher's settings: those of the function, and the job definition it submits."""
    return {**_environment(), ENV_BATCH_JOB_DEFINITION: ref("WorkerJobDefinition")}


_NETWORK_INTERFACES = statement(
    "NetworkInterfaces",
    [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    ["*"],
)
_NETWORK_SKIP = (
    "CKV_AWS_111",
    "Lambda's VPC network-interface actions take no resource scope (AWS's own policy uses *)",
)


def _role() -> Json:
    return role(
        "lambda.amazonaws.com",
        "The function reads new images, runs the light steps, consumes the queue, logs, connects to the proxy.",
        [
            statement(
                "ReadImagesAndOutputs",
                ["s3:GetObject"],
                [sub(_OBJECTS + "/${InputPrefix}*"), sub(_OBJECTS + "/${OutputPrefix}*")],
            ),
            statement(
                "WriteOutputs", ["s3:PutObject", "s3:DeleteObject"], [sub(_OBJECTS + "/${OutputPrefix}*")]
            ),
            # ListBucket makes S3 answer 404 rather than 403 for an object deleted before it was read.
            statement("TellMissingFromForbidden", ["s3:ListBucket"], [BUCKET_ARN]),
            statement(
                "ConsumeQueue",
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                [get_att("EventQueue", "Arn")],
            ),
            statement(
                "Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [get_att("FunctionLogGroup", "Arn")]
            ),
            statement("ConnectToCatalog", ["rds-db:connect"], [PROXY_USER_ARN]),
            _NETWORK_INTERFACES,
        ],
        skips=[_NETWORK_SKIP],
    )


def _dispatcher_role() -> Json:
    return role(
        "lambda.amazonaws.com",
        "The dispatcher submits and follows worker jobs, keeps their manifests and results, connects to the proxy.",
        [
            statement("SubmitWorkerJobs", ["batch:SubmitJob"], [ref("JobQueue"), ref("WorkerJobDefinition")]),
            statement("FollowJobs", ["batch:DescribeJobs", "batch:ListJobs"], ["*"]),
            statement(
                "ManifestsResultsAndOutputs",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [sub(_OBJECTS + "/${OutputPrefix}*")],
            ),
            statement(
                "ListOutputs",
                ["s3:ListBucket"],
                [BUCKET_ARN],
                StringLike={"s3:prefix": [sub("${OutputPrefix}*")]},
            ),
            statement(
                "Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [get_att("DispatcherLogGroup", "Arn")]
            ),
            statement("ConnectToCatalog", ["rds-db:connect"], [PROXY_USER_ARN]),
            _NETWORK_INTERFACES,
        ],
        skips=[
            _NETWORK_SKIP,
            ("CKV_AWS_111", "batch:DescribeJobs and batch:ListJobs take no resource scope"),
        ],
    )


def _function(
    name: Json, handler: str, purpose: str, role_name: str, logs: str, timeout_s: int, env: dict[str, Any]
) -> Json:
    """A function of the package's code in the private subnets, logging to ``logs``."""
    return resource(
        "AWS::Lambda::Function",
        purpose,
        {
            "FunctionName": name,
            "Runtime": ref("LambdaRuntime"),
            "Handler": handler,
            "Architectures": [ref("LambdaArchitecture")],
            "Code": {"S3Bucket": ref("LambdaCodeBucket"), "S3Key": ref("LambdaCodeKey")},
            "Role": get_att(role_name, "Arn"),
            "Timeout": timeout_s,
            "MemorySize": 512,
            "Environment": {"Variables": env},
            "VpcConfig": {
                "SubnetIds": PRIVATE_SUBNET_IDS,
                "SecurityGroupIds": [get_att("AppSecurityGroup", "GroupId")],
            },
            "LoggingConfig": {"LogGroup": ref(logs)},
        },
        skips=[
            (
                "CKV_AWS_116",
                "failed events go to the queue's dead-letter queue; a failed tick, to the next one",
            ),
            (
                "CKV_AWS_115",
                "concurrency is capped by the event source mapping, the dispatcher's is reserved",
            ),
            ("CKV_AWS_173", "no secret in the environment (IAM authentication); the default key encrypts it"),
        ],
    )


def function_resources() -> dict[str, Json]:
    """The event function with its role, log group and the queue's event source mapping; the dispatcher with
    its role, log group, schedule and the permission that lets the schedule call it."""
    dispatcher = _function(
        DISPATCHER_NAME,
        DISPATCHER_HANDLER,
        "Every minute: records the worker jobs that ended, submits what is queued and due as array jobs.",
        "DispatcherRole",
        "DispatcherLogGroup",
        DISPATCHER_TIMEOUT_S,
        dispatcher_environment(),
    )
    dispatcher["Properties"]["ReservedConcurrentExecutions"] = 1  # one tick at a time (claims make two safe)
    return {
        "FunctionRole": _role(),
        "FunctionLogGroup": log_group(
            sub("/aws/lambda/${AWS::StackName}-events"), "The function's log lines."
        ),
        "Function": _function(
            FUNCTION_NAME,
            HANDLER,
            "Catalogs each new or removed image, runs the light steps and queues the heavy ones.",
            "FunctionRole",
            "FunctionLogGroup",
            LAMBDA_TIMEOUT_S,
            function_environment(),
        ),
        "FunctionEvents": resource(
            "AWS::Lambda::EventSourceMapping",
            "Feeds the function batches of 10 events; only the failed ones come back.",
            {
                "EventSourceArn": get_att("EventQueue", "Arn"),
                "FunctionName": ref("Function"),
                "BatchSize": BATCH_SIZE,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": ref("LambdaMaxConcurrency")},
            },
        ),
        "DispatcherRole": _dispatcher_role(),
        "DispatcherLogGroup": log_group(
            sub("/aws/lambda/${AWS::StackName}-dispatcher"), "The dispatcher's log lines."
        ),
        "Dispatcher": dispatcher,
        "DispatchSchedule": resource(
            "AWS::Events::Rule",
            "Runs the dispatcher every minute.",
            {
                "State": "ENABLED",
                "ScheduleExpression": DISPATCH_SCHEDULE,
                "Targets": [{"Id": "dispatcher", "Arn": get_att("Dispatcher", "Arn")}],
            },
        ),
        "DispatchPermission": resource(
            "AWS::Lambda::Permission",
            "Lets the schedule (and nothing else) invoke the dispatcher.",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("Dispatcher"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("DispatchSchedule", "Arn"),
            },
        ),
    }


__all__ = [
    "BATCH_SIZE",
    "DISPATCHER_HANDLER",
    "DISPATCHER_NAME",
    "DISPATCHER_TIMEOUT_S",
    "DISPATCH_SCHEDULE",
    "FUNCTION_NAME",
    "HANDLER",
    "dispatcher_environment",
    "function_environment",
    "function_resources",
]
