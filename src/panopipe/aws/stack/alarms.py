"""Alarms: a topic told when events reach the dead-letter queue or wait too long, when the event function
fails or is throttled, when the dispatcher fails, or when a worker job fails."""

from __future__ import annotations

from panopipe.aws.stack._cfn import Json, get_att, policy_document, ref, resource

CONDITIONS: dict[str, Json] = {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}}


OLDEST_EVENT_S = 1800
"""Age of the oldest waiting event (seconds) that raises the alarm: the function takes a batch in seconds."""


def _alarm(
    purpose: str,
    says: str,
    metric: tuple[str, str, str, Json],
    statistic: str,
    threshold: int,
    *,
    periods: int = 1,
    period_s: int = 300,
) -> Json:
    """An alarm telling the alarm topic when ``metric`` (namespace, name, dimension and its value) is above
    ``threshold`` for ``periods`` periods; no data is no alarm."""
    namespace, name, dimension, value = metric
    return resource(
        "AWS::CloudWatch::Alarm",
        purpose,
        {
            "AlarmDescription": f"panopipe: {says}",
            "Namespace": namespace,
            "MetricName": name,
            "Dimensions": [{"Name": dimension, "Value": value}],
            "Statistic": statistic,
            "Period": period_s,
            "EvaluationPeriods": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [ref("AlarmTopic")],
        },
    )


def alarm_resources() -> dict[str, Json]:
    """The alarm topic (with an e-mail subscription when ``AlarmEmail`` is set), the DLQ alarm, the failed-job rule."""
    publish = {
        "Sid": "AlarmsPublish",
        "Effect": "Allow",
        "Principal": {"Service": ["events.amazonaws.com", "cloudwatch.amazonaws.com"]},
        "Action": "sns:Publish",
        "Resource": ref("AlarmTopic"),
        "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}},
    }
    return {
        "AlarmTopic": resource(
            "AWS::SNS::Topic",
            "Where alarms go: subscribe e-mail, chat or paging to it.",
            {},
            skips=[
                (
                    "CKV_AWS_26",
                    "EventBridge and CloudWatch cannot publish to a topic under the AWS managed key",
                )
            ],
        ),
        "AlarmTopicPolicy": resource(
            "AWS::SNS::TopicPolicy",
            "Lets this account's EventBridge rules and alarms publish to the topic.",
            {"Topics": [ref("AlarmTopic")], "PolicyDocument": policy_document([publish])},
        ),
        "AlarmSubscription": resource(
            "AWS::SNS::Subscription",
            "E-mails AlarmEmail (who must confirm the subscription once).",
            {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": ref("AlarmEmail")},
            Condition="HasAlarmEmail",
        ),
        "DeadLetterAlarm": _alarm(
            "Fires as soon as an event waits in the dead-letter queue.",
            "events in the dead-letter queue need a look",
            (
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                get_att("DeadLetterQueue", "QueueName"),
            ),
            "Maximum",
            0,
        ),
        "OldEventAlarm": _alarm(
            "Fires when an event has waited in the queue for 30 minutes: the function is failing or throttled.",
            "events wait in the queue for the function: read its log",
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", get_att("EventQueue", "QueueName")),
            "Maximum",
            OLDEST_EVENT_S,
        ),
        "FunctionErrorAlarm": _alarm(
            "Fires when the event function fails (errors or timeouts) in 5 minutes.",
            "the event function fails: read its log",
            ("AWS/Lambda", "Errors", "FunctionName", ref("Function")),
            "Sum",
            0,
        ),
        "FunctionThrottleAlarm": _alarm(
            "Fires when invocations of the event function are throttled (the account's concurrency is used up).",
            "the event function is throttled",
            ("AWS/Lambda", "Throttles", "FunctionName", ref("Function")),
            "Sum",
            0,
        ),
        "DispatcherErrorAlarm": _alarm(
            "Fires when the dispatcher fails three ticks in a row: queued jobs are not submitted.",
            "the dispatcher fails, queued jobs wait: read its log",
            ("AWS/Lambda", "Errors", "FunctionName", ref("Dispatcher")),
            "Sum",
            0,
            periods=3,
            period_s=60,
        ),
        "FailedJobRule": resource(
            "AWS::Events::Rule",
            "Tells the alarm topic of every worker job of this queue that ends FAILED.",
            {
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.batch"],
                    "detail-type": ["Batch Job State Change"],
                    "detail": {"status": ["FAILED"], "jobQueue": [ref("JobQueue")]},
                },
                "Targets": [{"Id": "alarm-topic", "Arn": ref("AlarmTopic")}],
            },
        ),
    }


__all__ = ["CONDITIONS", "OLDEST_EVENT_S", "alarm_resources"]
