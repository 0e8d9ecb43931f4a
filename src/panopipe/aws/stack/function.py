"""The event function: ``panopipe.aws.lambda_handler.handler`` fed by the event queue."""

from __future__ import annotations

from panopipe.aws.stack._cfn import Json, get_att, log_group, ref, resource, role, statement, sub
from panopipe.aws.stack.database import PROXY_USER_ARN, catalog_url
from panopipe.aws.stack.network import PRIVATE_SUBNET_IDS
from panopipe.aws.stack.storage import BUCKET_ARN, LAMBDA_TIMEOUT_S
from panopipe.config import ENV_BUCKETS, ENV_CATALOG, ENV_EXECUTOR, ENV_OUTPUT_PREFIX

FUNCTION_NAME = sub("${AWS::StackName}-events")
HANDLER = "panopipe.aws.lambda_handler.handler"
BATCH_SIZE = 10


def function_environment() -> dict[str, Json | str]:
    """The settings lambda_handler.py reads. ``none``: the function plans, workers run the steps."""
    return {
        ENV_CATALOG: catalog_url("LambdaSslRootCert"),
        ENV_BUCKETS: ref("BucketName"),
        ENV_OUTPUT_PREFIX: sub("s3://${BucketName}/${OutputPrefix}"),
        ENV_EXECUTOR: "none",
    }


def _role() -> Json:
    return role(
        "lambda.amazonaws.com",
        "The function reads new images' headers, consumes the queue, logs, and connects to the proxy.",
        [
            statement(
                "ReadInputImages",
                ["s3:GetObject"],
                [sub("arn:${AWS::Partition}:s3:::${BucketName}/${InputPrefix}*")],
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
            statement(
                "NetworkInterfaces",
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                ["*"],
            ),
        ],
        skips=[
            (
                "CKV_AWS_111",
                "Lambda's VPC network-interface actions take no resource scope (AWS's own policy uses *)",
            ),
        ],
    )


def function_resources() -> dict[str, Json]:
    """The function, its role, its log group and the queue's event source mapping."""
    return {
        "FunctionRole": _role(),
        "FunctionLogGroup": log_group(
            sub("/aws/lambda/${AWS::StackName}-events"), "The function's log lines."
        ),
        "Function": resource(
            "AWS::Lambda::Function",
            "Catalogs each new or removed image and plans the reprocessing it makes due.",
            {
                "FunctionName": FUNCTION_NAME,
                "Runtime": ref("LambdaRuntime"),
                "Handler": HANDLER,
                "Architectures": [ref("LambdaArchitecture")],
                "Code": {"S3Bucket": ref("LambdaCodeBucket"), "S3Key": ref("LambdaCodeKey")},
                "Role": get_att("FunctionRole", "Arn"),
                "Timeout": LAMBDA_TIMEOUT_S,
                "MemorySize": 512,
                "Environment": {"Variables": function_environment()},
                "VpcConfig": {
                    "SubnetIds": PRIVATE_SUBNET_IDS,
                    "SecurityGroupIds": [get_att("AppSecurityGroup", "GroupId")],
                },
                "LoggingConfig": {"LogGroup": ref("FunctionLogGroup")},
            },
            skips=[
                (
                    "CKV_AWS_116",
                    "fed by SQS: failed events go to the queue's dead-letter queue, not a function DLQ",
                ),
                ("CKV_AWS_115", "concurrency is capped by the event source mapping's MaximumConcurrency"),
                (
                    "CKV_AWS_173",
                    "no secret in the environment (IAM authentication); the default key encrypts it",
                ),
            ],
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
    }


__all__ = ["BATCH_SIZE", "FUNCTION_NAME", "HANDLER", "function_environment", "function_resources"]
