"""Storage and events: the image bucket, its notifications, the event queue and its dead-letter queue."""

from __future__ import annotations

from panopipe.aws.stack._cfn import Json, get_att, policy_document, ref, resource, sub
from panopipe.errors import ConfigError

LAMBDA_TIMEOUT_S = 60
# AWS's advice for a queue that drives a function: a visibility timeout of six times the function's timeout.
VISIBILITY_TIMEOUT_S = 6 * LAMBDA_TIMEOUT_S
BUCKET_ARN = sub("arn:${AWS::Partition}:s3:::${BucketName}")
NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*")
"""Lifecycle rules delete objects without an ``ObjectRemoved`` event: their expirations are notified too."""
IMAGE_SUFFIXES = (".jpg", ".JPG", ".jpeg", ".JPEG")
"""The spellings of a JPEG's name that notify: S3 compares a suffix case-sensitively, and 360° cameras write
``.JPG`` (GoPro, Ricoh THETA), so there is a notification per spelling."""


def notification_rules(input_prefix: Json | str, suffix: str) -> list[Json]:
    """The key filter of one of the bucket's notifications (the stack's, and ``panopipe dev up``'s): keys under
    the input prefix that end in ``suffix`` (one of :data:`IMAGE_SUFFIXES`; one suffix per rule set)."""
    return [{"Name": "prefix", "Value": input_prefix}, {"Name": "suffix", "Value": suffix}]


def check_prefixes(
    input_prefix: str, output_prefix: str, names: tuple[str, str] = ("input prefix", "output prefix")
) -> None:
    """:class:`ConfigError` when one prefix starts the other: outputs under the input prefix would notify the
    queue (an event loop), and uploads under the output prefix would be taken for panopipe's own outputs."""
    if input_prefix.startswith(output_prefix) or output_prefix.startswith(input_prefix):
        raise ConfigError(f"{names[0]} {input_prefix!r} and {names[1]} {output_prefix!r} must not overlap")


# S3 cannot send to a queue under the AWS managed KMS key, so the queues use SQS-managed encryption (SSE-SQS).
_SSE_SQS = [
    ("CKV_AWS_27", "encrypted with SQS-managed keys (SSE-SQS); S3 cannot notify a queue under aws/sqs")
]


def _bucket() -> Json:
    notify = [
        {
            "Event": event,
            "Queue": get_att("EventQueue", "Arn"),
            "Filter": {"S3Key": {"Rules": notification_rules(ref("InputPrefix"), suffix)}},
        }
        for event in NOTIFIED_EVENTS
        for suffix in IMAGE_SUFFIXES
    ]
    return resource(
        "AWS::S3::Bucket",
        "Images (under InputPrefix, which notifies the queue) and pipeline outputs (under OutputPrefix).",
        {
            "BucketName": ref("BucketName"),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-old-versions",
                        "Status": "Enabled",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                    }
                ]
            },
            "NotificationConfiguration": {"QueueConfigurations": notify},
        },
        skips=[
            ("CKV_AWS_18", "access logs need a second bucket; CloudTrail data events are the alternative")
        ],
        DependsOn="EventQueuePolicy",  # S3 checks that it may send to the queue when notifications are set
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
    )


def _tls_only_policy() -> Json:
    deny = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [BUCKET_ARN, sub("arn:${AWS::Partition}:s3:::${BucketName}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return resource(
        "AWS::S3::BucketPolicy",
        "Refuses every request to the bucket that does not use TLS (kept with the bucket).",
        {"Bucket": ref("Bucket"), "PolicyDocument": policy_document([deny])},
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
    )


def _queue_policy() -> Json:
    allow_bucket = {
        "Sid": "BucketNotifies",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": get_att("EventQueue", "Arn"),
        "Condition": {
            "ArnLike": {"aws:SourceArn": BUCKET_ARN},
            "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        },
    }
    return resource(
        "AWS::SQS::QueuePolicy",
        "Lets only the image bucket, in this account, send to the event queue.",
        {"Queues": [ref("EventQueue")], "PolicyDocument": policy_document([allow_bucket])},
    )


def storage_resources() -> dict[str, Json]:
    """The bucket with its TLS-only policy, the event queue with its policy, and the dead-letter queue."""
    return {
        "Bucket": _bucket(),
        "BucketPolicy": _tls_only_policy(),
        "DeadLetterQueue": resource(
            "AWS::SQS::Queue",
            "Keeps, for 14 days, the events that failed MaxReceiveCount times, for a human to look at.",
            {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
            skips=_SSE_SQS,
        ),
        "EventQueue": resource(
            "AWS::SQS::Queue",
            "The bucket's image events, waiting for the function.",
            {
                "VisibilityTimeout": VISIBILITY_TIMEOUT_S,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": get_att("DeadLetterQueue", "Arn"),
                    "maxReceiveCount": ref("MaxReceiveCount"),
                },
            },
            skips=_SSE_SQS,
        ),
        "EventQueuePolicy": _queue_policy(),
    }


__all__ = [
    "BUCKET_ARN",
    "IMAGE_SUFFIXES",
    "LAMBDA_TIMEOUT_S",
    "NOTIFIED_EVENTS",
    "VISIBILITY_TIMEOUT_S",
    "check_prefixes",
    "notification_rules",
    "storage_resources",
]
