"""Alarms: a topic told when events reach the dead-letter queue or a worker job fails."""

from __future__ import annotations

from panopipe.aws.stack._cfn import Json, get_att, policy_document, ref, resource

CONDITIONS: dict[str, Json] = {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}}


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
        "DeadLetterAlarm": resource(
            "AWS::CloudWatch::Alarm",
            "Fires as soon as an event waits in the dead-letter queue.",
            {
                "AlarmDescription": "panopipe: events in the dead-letter queue need a look",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": get_att("DeadLetterQueue", "QueueName")}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [ref("AlarmTopic")],
            },
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


__all__ = ["CONDITIONS", "alarm_resources"]
