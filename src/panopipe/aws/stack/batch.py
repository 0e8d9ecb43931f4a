"""AWS Batch: the workers that run reprocessing jobs, on Fargate Spot first and on-demand Fargate after."""

from __future__ import annotations

from panopipe.aws.stack._cfn import (
    Json,
    equals,
    get_att,
    if_,
    log_group,
    ref,
    resource,
    role,
    select,
    split,
    statement,
    sub,
)
from panopipe.aws.stack.database import PROXY_USER_ARN, catalog_url
from panopipe.aws.stack.network import PRIVATE_SUBNET_IDS
from panopipe.aws.stack.storage import BUCKET_ARN
from panopipe.config import ENV_AWS_REGION, ENV_BUCKETS, ENV_CATALOG, ENV_OUTPUT_PREFIX
from panopipe.executors.worker import STOPPED_EXIT, UNAVAILABLE_EXIT

WORKER_COMMAND = ("panopipe", "worker", "run")
ATTEMPTS = 3
# Tried in order; the first match decides (Batch takes 5 at most). A reclaimed Spot host, a task stopped by
# SIGTERM (exit 143), a worker that found S3 unreachable (exit 75: a blip, retried within ATTEMPTS, as the
# dispatcher never resubmits a failed job) and an image pull that failed are worth another attempt; anything
# else is the job's own failure.
RETRY_ON = (
    {"OnStatusReason": "Host EC2*", "Action": "RETRY"},
    {"OnExitCode": str(STOPPED_EXIT), "Action": "RETRY"},
    {"OnExitCode": str(UNAVAILABLE_EXIT), "Action": "RETRY"},
    {"OnReason": "CannotPullContainerError*", "Action": "RETRY"},
    {"OnReason": "*", "Action": "EXIT"},
)
RUNNABLE_STUCK_REASONS = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
)

# WorkerImage read apart (an ECR image is ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/REPOSITORY:TAG or @DIGEST).
# Fn::Split takes no function as its delimiter, so the host is cut off at the partition's literal domain; the
# text appended to each split value gives Fn::Select its item in any image, ECR's or not.
_IMAGE_HOST = select(0, split("/", ref("WorkerImage")))
_IMAGE_REGION = select(3, split(".", {"Fn::Join": ["", [_IMAGE_HOST, "..."]]}))


def _after(domain: str) -> Json:
    """What follows ``domain`` in WorkerImage (empty when it is not there)."""
    return select(1, split(domain, {"Fn::Join": ["", [ref("WorkerImage"), domain]]}))


_IMAGE_PATH = if_("InChina", _after(".amazonaws.com.cn/"), _after(".amazonaws.com/"))  # REPOSITORY:TAG...
_WORKER_REPOSITORY_ARN = sub(
    "arn:${AWS::Partition}:ecr:${Region}:${AWS::AccountId}:repository/${Repository}",
    Region=_IMAGE_REGION,
    Repository=select(0, split(":", select(0, split("@", _IMAGE_PATH)))),
)
CONDITIONS: dict[str, Json] = {
    "InChina": equals(ref("AWS::URLSuffix"), "amazonaws.com.cn"),
    # an image of this account's ECR, in any region of the partition
    "WorkerImageInEcr": equals(
        _IMAGE_HOST, sub("${AWS::AccountId}.dkr.ecr.${Region}.${AWS::URLSuffix}", Region=_IMAGE_REGION)
    ),
}


def worker_environment() -> dict[str, Json | str]:
    """The settings a worker job starts with (the contract with ``panopipe worker run``)."""
    return {
        ENV_CATALOG: catalog_url("WorkerSslRootCert"),
        ENV_BUCKETS: ref("BucketName"),
        ENV_OUTPUT_PREFIX: sub("s3://${BucketName}/${OutputPrefix}"),
        ENV_AWS_REGION: ref("AWS::Region"),
    }


def _compute_environment(capacity: str, purpose: str) -> Json:
    return resource(
        "AWS::Batch::ComputeEnvironment",
        purpose,
        {
            "Type": "MANAGED",
            "State": "ENABLED",
            # No ServiceRole: Batch uses its service-linked role, AWSServiceRoleForBatch (made if missing). It
            # cannot move a compute environment from a service role to it: Tags, set only at creation, make
            # CloudFormation replace those of a stack made with one.
            "Tags": {"panopipe:batch-role": "AWSServiceRoleForBatch"},
            "ComputeResources": {
                "Type": capacity,
                "MaxvCpus": ref("BatchMaxVcpus"),
                "Subnets": PRIVATE_SUBNET_IDS,
                "SecurityGroupIds": [get_att("AppSecurityGroup", "GroupId")],
            },
        },
    )


def _roles() -> dict[str, Json]:
    objects = "arn:${AWS::Partition}:s3:::${BucketName}"
    return {
        "WorkerJobRole": role(
            "ecs-tasks.amazonaws.com",
            "What a worker may do: read images, write outputs, connect to the catalog through the proxy.",
            [
                statement(
                    "ReadImagesAndOutputs",
                    ["s3:GetObject"],
                    [sub(objects + "/${InputPrefix}*"), sub(objects + "/${OutputPrefix}*")],
                ),
                statement(
                    "WriteOutputs", ["s3:PutObject", "s3:DeleteObject"], [sub(objects + "/${OutputPrefix}*")]
                ),
                statement(
                    "ListTheirPrefixes",
                    ["s3:ListBucket"],
                    [BUCKET_ARN],
                    StringLike={"s3:prefix": [sub("${InputPrefix}*"), sub("${OutputPrefix}*")]},
                ),
                statement("ConnectToCatalog", ["rds-db:connect"], [PROXY_USER_ARN]),
            ],
        ),
        "WorkerExecutionRole": role(
            "ecs-tasks.amazonaws.com",
            "What Fargate needs to start a worker: pull its image (from its repository, if in this account's"
            " ECR), write its logs.",
            [
                statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
                if_(
                    "WorkerImageInEcr",
                    statement(
                        "PullImage",
                        [
                            "ecr:BatchCheckLayerAvailability",
                            "ecr:GetDownloadUrlForLayer",
                            "ecr:BatchGetImage",
                        ],
                        [_WORKER_REPOSITORY_ARN],
                    ),
                    ref("AWS::NoValue"),
                ),
                statement(
                    "Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [get_att("WorkerLogGroup", "Arn")]
                ),
            ],
            skips=[("CKV_AWS_111", "ecr:GetAuthorizationToken takes no resource scope")],
        ),
    }


def _job_definition() -> Json:
    return resource(
        "AWS::Batch::JobDefinition",
        "A worker job: `panopipe worker run` in the worker image, retried on Spot reclaims and pull errors.",
        {
            "Type": "container",
            "PlatformCapabilities": ["FARGATE"],
            "PropagateTags": True,
            "Timeout": {"AttemptDurationSeconds": ref("WorkerTimeoutSeconds")},
            "RetryStrategy": {"Attempts": ATTEMPTS, "EvaluateOnExit": [dict(rule) for rule in RETRY_ON]},
            "ContainerProperties": {
                "Image": ref("WorkerImage"),
                "Command": list(WORKER_COMMAND),
                "ResourceRequirements": [
                    {"Type": "VCPU", "Value": ref("WorkerVcpu")},
                    {"Type": "MEMORY", "Value": ref("WorkerMemoryMiB")},
                ],
                "JobRoleArn": get_att("WorkerJobRole", "Arn"),
                "ExecutionRoleArn": get_att("WorkerExecutionRole", "Arn"),
                "Environment": [
                    {"Name": name, "Value": value} for name, value in worker_environment().items()
                ],
                "NetworkConfiguration": {"AssignPublicIp": "DISABLED"},
                "FargatePlatformConfiguration": {"PlatformVersion": "LATEST"},
                "LogConfiguration": {
                    "LogDriver": "awslogs",
                    "Options": {
                        "awslogs-group": ref("WorkerLogGroup"),
                        "awslogs-region": ref("AWS::Region"),
                        "awslogs-stream-prefix": "worker",
                    },
                },
                "Privileged": False,
                "ReadonlyRootFilesystem": False,
            },
        },
    )


def batch_resources() -> dict[str, Json]:
    """The two compute environments, the job queue, the worker job definition, their roles and log group."""
    return {
        **_roles(),
        "WorkerLogGroup": log_group(sub("/aws/batch/${AWS::StackName}-worker"), "The workers' log lines."),
        "SpotCompute": _compute_environment(
            "FARGATE_SPOT", "Fargate Spot capacity: tried first, up to 70% cheaper."
        ),
        "OnDemandCompute": _compute_environment(
            "FARGATE", "On-demand Fargate capacity: used when Spot has none."
        ),
        "JobQueue": resource(
            "AWS::Batch::JobQueue",
            "The workers' queue: Spot first; a job that cannot get capacity for RunnableTimeoutSeconds is cancelled.",
            {
                "State": "ENABLED",
                "Priority": 1,
                "ComputeEnvironmentOrder": [
                    {"Order": 1, "ComputeEnvironment": ref("SpotCompute")},
                    {"Order": 2, "ComputeEnvironment": ref("OnDemandCompute")},
                ],
                "JobStateTimeLimitActions": [
                    {
                        "Action": "CANCEL",
                        "State": "RUNNABLE",
                        "MaxTimeSeconds": ref("RunnableTimeoutSeconds"),
                        "Reason": reason,
                    }
                    for reason in RUNNABLE_STUCK_REASONS
                ],
            },
        ),
        "WorkerJobDefinition": _job_definition(),
    }


__all__ = [
    "ATTEMPTS",
    "CONDITIONS",
    "RETRY_ON",
    "RUNNABLE_STUCK_REASONS",
    "WORKER_COMMAND",
    "batch_resources",
    "worker_environment",
]
