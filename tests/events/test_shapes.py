"""Envelope unwrapping, key decoding and event routing of panopipe.events.shapes, on real samples."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from functools import cmp_to_key

import pytest

from panopipe.errors import EventError
from panopipe.events import EventKind, compare_sequencers, object_events, parse_event

CREATED, REMOVED = EventKind.CREATED, EventKind.REMOVED


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Values read by hand from the sample files: (file, SQS messageId, [(bucket, key, kind, size, etag,
# version_id, sequencer, time), ...]).
SAMPLES = [
    (
        "powertools-python/s3Event.json",
        None,
        [
            (
                "lambda-artifacts-deafc19498e3f2df",
                "b21b84d653bb07b05b1e6b33684dc11b",
                CREATED,
                1305107,
                "b21b84d653bb07b05b1e6b33684dc11b",
                None,
                "0C0F6F405D6ED209E1",
                _t("2019-09-03T19:37:27.192"),
            )
        ],
    ),
    (
        "powertools-python/s3EventDeleteObject.json",
        None,
        [
            (
                "lambda-artifacts-deafc19498e3f2df",
                "b21b84d653bb07b05b1e6b33684dc11b",
                REMOVED,
                None,
                None,
                None,
                "0C0F6F405D6ED209E1",
                _t("2019-09-03T19:37:27.192"),
            )
        ],
    ),
    (
        "aws-lambda-go/s3-event.json",
        None,
        [
            (
                "sourcebucket",
                "Happy Face.jpg",
                CREATED,
                1024,
                "d41d8cd98f00b204e9800998ecf8427e",
                "version",
                "Happy Sequencer",
                _t("1970-01-01T00:00:00.123"),
            )
        ],
    ),
    (
        "aws-lambda-dotnet/s3-event.json",
        None,
        [
            (
                "sourcebucket",
                "HappyFace.jpg",
                CREATED,
                1024,
                "0123456789abcdef0123456789abcdef",
                None,
                "0A1B2C3D4E5F678901",
                _t("1970-01-01T00:00:00"),
            ),
            (
                "sourcebucket",
                "New File.jpg",
                CREATED,
                1024,
                "0123456789abcdef0123456789abcdef",
                None,
                "0A1B2C3D4E5F678901",
                _t("1970-01-01T00:00:00"),
            ),
        ],
    ),
    (
        "datadog-lambda-js/s3-copyobject.json",
        None,
        [
            (
                "my-bucket-name",
                "copied_object.txt",
                CREATED,
                100,
                "01234567890123456789012345678901",
                "r_qtaksdfj9127489Uaksdfj",
                "00112233445566AABB",
                _t("2024-11-27T15:13:08.307"),
            )
        ],
    ),
    (
        "datadog-lambda-js/s3-completemultipartupload.json",
        None,
        [
            (
                "my-bucket-name",
                "multipart_object.txt",
                CREATED,
                8388608,
                "09876543210987654321098765432109-2",
                "r_qtaksdfj9127489Uaksdfj",
                "00112233445566AABB",
                _t("2024-11-27T15:13:12.668"),
            )
        ],
    ),
    (
        "powertools-python/s3SqsEvent.json",
        "ca3e7a89-c358-40e5-8aa0-5da01403c267",
        [
            (
                "xxx",
                "test.pdf",
                CREATED,
                104681,
                "2e3ad1e983318bbd8e73b080e2997980",
                "yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV",
                "00643717F9F8B85354",
                _t("2023-04-12T20:43:38.021"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/sqs_s3_event.json",
        "44103047-3123-4583-aed3-7224000351a8",
        [
            (
                "sqs-s3-unwrap-bucket",
                "samconfig.toml",
                CREATED,
                221,
                "8f6c039f567cc53694be2a275e452743",
                None,
                "0065F349D4F05B5827",
                _t("2024-03-14T19:02:45.087"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/sns_s3_event.json",
        None,
        [
            (
                "s3-sns-unwrap-bucket",
                "samconfig.toml",
                CREATED,
                221,
                "551277913a5ad93e0db069e673f23376",
                None,
                "0065F3718D39E6D6DC",
                _t("2024-03-14T21:52:13.311"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/sqs_sns_s3_event.json",
        "45405be4-2278-4eef-a29c-993898bb8917",
        [
            (
                "unwraptestevents-bucket",
                "firehose-s3-template.json",
                CREATED,
                4314,
                "e77dffcd1756d6e8e5123ef1e0ce7c54",
                None,
                "0065FA0B4B104A6DAB",
                _t("2024-03-19T22:01:47.135"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/sqs_rawsns_s3_event.json",
        "519619da-e529-46d7-b58c-bc054405af0f",
        [
            (
                "unwraptestevents-bucket",
                "samconfig.toml",
                CREATED,
                221,
                "9cc7da5febb07868706f59ab70d89981",
                None,
                "0065FA186CC08E810D",
                _t("2024-03-19T22:57:48.823"),
            )
        ],
    ),
    (
        "powertools-python/s3EventBridgeNotificationObjectCreatedEvent.json",
        None,
        [
            (
                "example-bucket",
                "IMG_m7fzo3.jpg",
                CREATED,
                184662,
                "4e68adba0abe2dc8653dc3354e14c01d",
                None,
                "006408CAD69598B05E",
                _t("2023-03-08T17:50:14"),
            )
        ],
    ),
    (
        "powertools-python/s3EventBridgeNotificationObjectDeletedEvent.json",
        None,
        [
            (
                "example-bucket",
                "IMG_m7fzo3.jpg",
                REMOVED,
                None,
                None,
                None,
                "006408CAD69598B05E",
                _t("2021-11-12T00:00:00"),
            )
        ],
    ),
    (
        "powertools-python/s3EventBridgeNotificationObjectExpiredEvent.json",
        None,
        [
            (
                "example-bucket",
                "IMG_m7fzo3.jpg",
                REMOVED,
                184662,
                "4e68adba0abe2dc8653dc3354e14c01d",
                None,
                "006408CAD69598B05E",
                _t("2021-11-12T00:00:00"),
            )
        ],
    ),
    (
        "aws-lambda-dotnet/cloudwatchevents-s3objectcreated.json",
        None,
        [
            (
                "DOC-EXAMPLE-BUCKET1",
                "example-key",
                CREATED,
                5,
                "b1946ac92492d2347c6235b4d2611184",
                "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                "617f08299329d189",
                _t("2021-11-12T00:00:00"),
            )
        ],
    ),
    (
        "aws-lambda-dotnet/cloudwatchevents-s3objectdeleted.json",
        None,
        [
            (
                "DOC-EXAMPLE-BUCKET1",
                "example-key",
                REMOVED,
                None,
                "d41d8cd98f00b204e9800998ecf8427e",
                "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
                "617f0837b476e463",
                _t("2021-11-12T00:00:00"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/eb_s3_event.json",
        None,
        [
            (
                "s3-eb-unwrap-sourcebucket",
                "s3-eb-template.yaml",
                CREATED,
                1565,
                "e56e21b1610dd94e9907f82b8d05b934",
                None,
                "0065FB77A03AD4478F",
                _t("2024-03-20T23:56:16"),
            )
        ],
    ),
    (
        "powertools-python-pr4069/sqs_eb_s3_event.json",
        "ee95829a-ba32-471d-9684-34368ab9995e",
        [
            (
                "s3-eb-unwrap-sourcebucket",
                "__init__.py",
                CREATED,
                0,
                "d41d8cd98f00b204e9800998ecf8427e",
                None,
                "0066030E82E2A48DFE",
                _t("2024-03-26T18:05:54"),
            )
        ],
    ),
    (
        "localstack-extracted/s3-key-encoding.json",
        None,
        [
            (
                "<resource:1>",
                "a@b",
                CREATED,
                9,
                "437b930db84b8079c2dd804a71936b5f",
                None,
                "sequencer",
                _t("1970-01-01T00:00:00"),
            )
        ],
    ),
    (
        "localstack-extracted/eventbridge-object-deleted-permanently.json",
        None,
        [
            (
                "<bucket-name:1>",
                "<key-name:1>",
                REMOVED,
                None,
                None,
                None,
                "object-sequencer",
                _t("1970-01-01T00:00:00"),
            )
        ],
    ),
]


@pytest.mark.parametrize(("name", "message_id", "expected"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_normalises_to_the_values_in_the_file(load_event, name, message_id, expected):
    [message] = parse_event(load_event(name))

    assert (message.message_id, message.error, message.ignored) == (message_id, None, None)
    got = [
        (e.bucket, e.key, e.kind, e.size, e.etag, e.version_id, e.sequencer, e.time) for e in message.events
    ]
    assert got == expected


def test_event_name_and_region_come_from_the_inner_notification(load_event):
    [s3, eb, expired] = [
        object_events(load_event(name))[0]
        for name in (
            "powertools-python-pr4069/sqs_rawsns_s3_event.json",
            "powertools-python/s3EventBridgeNotificationObjectDeletedEvent.json",
            "powertools-python/s3EventBridgeNotificationObjectExpiredEvent.json",
        )
    ]
    assert (s3.event_name, s3.region) == ("ObjectCreated:Put", "us-west-2")
    assert (eb.event_name, eb.region) == ("Object Deleted:DeleteObject", "ca-central-1")
    assert expired.event_name == "Object Deleted:Lifecycle Expiration"


def test_payload_may_be_json_text_or_bytes(load_event):
    payload = load_event("aws-lambda-dotnet/s3-event.json")
    as_dict = object_events(payload)

    assert object_events(json.dumps(payload)) == as_dict
    assert object_events(json.dumps(payload).encode()) == as_dict
    assert [e.key for e in as_dict] == ["HappyFace.jpg", "New File.jpg"]


def test_versioned_puts_deletes_and_delete_marker_route_to_created_and_removed(load_event):
    events = object_events(load_event("localstack-extracted/s3-versioned-put-delete-marker.json"))

    assert [(e.event_name, e.kind, e.size, e.version_id) for e in events] == [
        ("ObjectCreated:Put", CREATED, 13, "version-id"),
        ("ObjectCreated:Put", CREATED, 4, "version-id"),
        ("ObjectRemoved:Delete", REMOVED, None, "version-id"),
        ("ObjectRemoved:DeleteMarkerCreated", REMOVED, None, "version-id"),
    ]


@pytest.mark.parametrize("name", ["LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated"])
def test_lifecycle_expirations_are_removals(load_event, name):
    """A lifecycle rule's deletions send no ``ObjectRemoved`` event, only these (the stack subscribes to them)."""
    document = load_event("powertools-python/s3EventDeleteObject.json")
    document["Records"][0]["eventName"] = name
    [event] = object_events(document)
    assert (event.event_name, event.kind) == (name, REMOVED)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("localstack-extracted/s3-object-tagging-put.json", "event type ObjectTagging:Put"),
        (
            "localstack-extracted/s3-restore-object.json",
            "event type ObjectRestore:Post; event type ObjectRestore:Completed",
        ),
        (
            "localstack-extracted/eventbridge-object-restore-completed.json",
            "event type Object Restore Completed",
        ),
        ("awsdocs-s3-guide/s3-test-event.json", "s3:TestEvent"),
    ],
)
def test_other_event_types_are_ignored_with_the_reason(load_event, name, reason):
    [message] = parse_event(load_event(name))

    assert (message.events, message.error, message.ignored) == ((), None, reason)


def _sqs_record(message_id: str, body: str) -> dict:
    return {"messageId": message_id, "body": body, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}


def _sns_envelope(message: str) -> dict:
    return {"Type": "Notification", "Subject": "Amazon S3 Notification", "Message": message}


@pytest.mark.parametrize("name", ["awsdocs-s3-guide/s3-test-event.json", "aws-lambda-go/s3-test-event.json"])
def test_test_event_inside_sqs_and_sns_is_ignored(load_event, name):
    test_event = json.dumps(load_event(name))
    sqs = {"Records": [_sqs_record("m-1", test_event)]}
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": _sns_envelope(test_event)}]}
    sqs_sns = {"Records": [_sqs_record("m-2", json.dumps(_sns_envelope(test_event)))]}

    messages = [m for payload in (sqs, sns, sqs_sns) for m in parse_event(payload)]

    assert [(m.message_id, m.events, m.error, m.ignored) for m in messages] == [
        ("m-1", (), None, "s3:TestEvent"),
        (None, (), None, "s3:TestEvent"),
        ("m-2", (), None, "s3:TestEvent"),
    ]
    assert object_events(sqs) == []


def _with_key(load_event, name: str, key: str) -> dict:
    payload = copy.deepcopy(load_event(name))
    if "Records" in payload:
        payload["Records"][0]["s3"]["object"]["key"] = key
    else:
        payload["detail"]["object"]["key"] = key
    return payload


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("caf%C3%A9.jpg", "café.jpg"),
        ("photos/2024+run/%E6%9D%B1%E4%BA%AC+1.jpg", "photos/2024 run/東京 1.jpg"),
        ("c%2B%2B+notes.txt", "c++ notes.txt"),
        ("100%25.jpg", "100%.jpg"),
    ],
)
@pytest.mark.parametrize(
    "name",
    ["powertools-python/s3Event.json", "powertools-python/s3EventBridgeNotificationObjectCreatedEvent.json"],
)
def test_keys_are_url_decoded_as_utf8(load_event, name, raw, decoded):
    [event] = object_events(_with_key(load_event, name, raw))

    assert event.key == decoded


def test_percent_escapes_that_are_not_utf8_make_the_message_malformed(load_event):
    [message] = parse_event(_with_key(load_event, "powertools-python/s3Event.json", "caf%E9.jpg"))

    assert message.events == ()
    assert "not UTF-8" in message.error


def test_a_key_with_a_lone_surrogate_makes_the_message_malformed(load_event):
    """JSON may escape a lone surrogate (``\\ud800``), which no S3 key holds: the key check of the handler
    raised UnicodeEncodeError, and the whole batch failed."""
    payload = json.dumps(_with_key(load_event, "powertools-python/s3Event.json", "R001/a\ud800.jpg"))

    [message] = parse_event(payload)

    assert message.events == ()
    assert message.error == "object key 'R001/a\\ud800.jpg' is not valid UTF-8"


def _s3_body(load_event, mutate) -> str:
    notification = copy.deepcopy(load_event("powertools-python/s3Event.json"))
    mutate(notification["Records"][0])
    return json.dumps(notification)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda r: r["s3"]["bucket"].pop("name"), "record 0 s3.bucket has no 'name'"),
        (lambda r: r["s3"]["object"].pop("key"), "record 0 s3.object has no 'key'"),
        (
            lambda r: r["s3"]["object"].update(size="1305107"),
            "record 0 s3.object 'size' must be int, got str",
        ),
        (lambda r: r["s3"]["object"].update(size=True), "record 0 s3.object 'size' must be int, got bool"),
        (lambda r: r["s3"]["object"].update(key=""), "object key is empty"),
        (lambda r: r.update(s3=[]), "record 0 's3' must be Mapping, got list"),
        (lambda r: r.update(eventTime="yesterday"), "event time 'yesterday' is not ISO 8601"),
        (
            lambda r: r.update(eventTime="2019-09-03T19:37:27"),
            "event time '2019-09-03T19:37:27' has no time zone",
        ),
    ],
)
def test_malformed_notification_is_an_error_for_that_message_only(load_event, mutate, error):
    good = load_event("powertools-python/s3SqsEvent.json")["Records"][0]
    batch = {"Records": [_sqs_record("bad", _s3_body(load_event, mutate)), good]}

    bad_message, good_message = parse_event(batch)

    assert (bad_message.message_id, bad_message.events, bad_message.error) == ("bad", (), error)
    assert good_message.error is None
    assert [e.key for e in good_message.events] == ["test.pdf"]


def test_mixed_sqs_batch_with_one_poison_message(load_event):
    records = [
        load_event("powertools-python/s3SqsEvent.json")["Records"][0],
        _sqs_record("poison", "{not json"),
        load_event("powertools-python-pr4069/sqs_sns_s3_event.json")["Records"][0],
        _sqs_record("test-event", json.dumps(load_event("awsdocs-s3-guide/s3-test-event.json"))),
        load_event("powertools-python-pr4069/sqs_eb_s3_event.json")["Records"][0],
        _sqs_record("unknown", json.dumps({"hello": "world"})),
    ]

    messages = parse_event({"Records": records})

    assert [(m.message_id, [e.key for e in m.events], m.ignored) for m in messages] == [
        ("ca3e7a89-c358-40e5-8aa0-5da01403c267", ["test.pdf"], None),
        ("poison", [], None),
        ("45405be4-2278-4eef-a29c-993898bb8917", ["firehose-s3-template.json"], None),
        ("test-event", [], "s3:TestEvent"),
        ("ee95829a-ba32-471d-9684-34368ab9995e", ["__init__.py"], None),
        ("unknown", [], None),
    ]
    assert [m.message_id for m in messages if m.error] == ["poison", "unknown"]
    assert messages[1].error.startswith("not JSON: ")
    assert messages[5].error == "unrecognised event shape: top-level keys ['hello']"
    with pytest.raises(EventError, match=r"2 of 6 message\(s\) could not be understood: poison: not JSON"):
        object_events({"Records": records})


def _received(record: dict) -> dict:
    """An SQS record as Lambda delivers it, as ReceiveMessage returns it (what `aws sqs receive-message`
    prints: the same message, its keys capitalised)."""
    return {
        "MessageId": record["messageId"],
        "ReceiptHandle": record["receiptHandle"],
        "MD5OfBody": record["md5OfBody"],
        "Body": record["body"],
        "Attributes": record["attributes"],
    }


def test_what_aws_sqs_receive_message_prints_is_a_batch_of_its_messages(load_event):
    """The documented dead-letter replay saves `aws sqs receive-message` output; it was an unrecognised shape."""
    sqs = load_event("powertools-python/s3SqsEvent.json")
    received = {
        "Messages": [
            *map(_received, sqs["Records"]),
            _received(
                _sqs_record("poison", "{not json") | {"receiptHandle": "r", "md5OfBody": "", "attributes": {}}
            ),
            "not a message",
        ]
    }

    messages = parse_event(json.dumps(received, indent=4))

    assert [m.events for m in messages[:1]] == [m.events for m in parse_event(sqs)]
    assert [(m.message_id, bool(m.events), m.error) for m in messages[1:]] == [
        (
            "poison",
            False,
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (None, False, "SQS message must be an object, got str"),
    ]
    assert messages[0].message_id == "ca3e7a89-c358-40e5-8aa0-5da01403c267"


def test_an_empty_payload_says_so_and_why_it_may_be():
    """`aws sqs receive-message` prints nothing when the queue holds no message."""
    for payload in (b"", " \n"):
        [message] = parse_event(payload)

        assert (
            message.error
            == "empty: no event (`aws sqs receive-message` prints nothing when no message is there)"
        )


KNOWN = (
    " (known: an S3, SNS or EventBridge event, Lambda's SQS event, or the messages `aws sqs receive-message`"
    " prints)"
)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"detail": {}, "id": "x"}, f"unrecognised event shape: top-level keys ['detail', 'id']{KNOWN}"),
        ([1, 2], f"unrecognised event shape: expected a JSON object, got list{KNOWN}"),
        ({"Records": "nope"}, "Records must be a list, got str"),
        (
            {"Records": [{"eventSource": "aws:kinesis"}]},
            "record 0 is neither an S3 nor an SNS record: keys ['eventSource']",
        ),
    ],
)
def test_unknown_shapes_yield_one_error_message_not_an_exception(payload, error):
    assert [(m.message_id, m.events, m.error, m.ignored) for m in parse_event(payload)] == [
        (None, (), error, None)
    ]


def test_text_that_is_not_json_yields_one_error_message():
    [message] = parse_event(b"\xff not json")

    assert message.error.startswith("not JSON: ")


def test_time_is_utc_aware_and_to_dict_is_json_ready(load_event):
    [event] = object_events(load_event("powertools-python/s3Event.json"))

    assert event.time.utcoffset().total_seconds() == 0
    assert json.loads(json.dumps(event.to_dict())) == {
        "bucket": "lambda-artifacts-deafc19498e3f2df",
        "key": "b21b84d653bb07b05b1e6b33684dc11b",
        "kind": "created",
        "size": 1305107,
        "etag": "b21b84d653bb07b05b1e6b33684dc11b",
        "version_id": None,
        "sequencer": "0C0F6F405D6ED209E1",
        "time": "2019-09-03T19:37:27.192Z",
        "event_name": "ObjectCreated:Put",
        "region": "us-east-2",
    }
    [eb] = object_events(load_event("powertools-python/s3EventBridgeNotificationObjectCreatedEvent.json"))
    assert eb.to_dict()["time"] == "2023-03-08T17:50:14.000Z"


def test_sequencers_of_different_lengths_compare_after_left_padding():
    # true order: 0xFF < 0x100 < ... ; lengths differ, and case does not matter
    true_order = ["ff", "0100", "101", "617f08299329d189", "00643717F9F8B85354", "0065F349D4F05B5827"]
    shuffled = true_order[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != true_order

    assert sorted(shuffled, key=cmp_to_key(compare_sequencers)) == true_order
    assert compare_sequencers("0A", "a") == 0
    assert compare_sequencers("0065F349D4F05B5827", "65F349D4F05B5828") < 0


@pytest.mark.parametrize("bad", ["Happy Sequencer", "", "0x1F", "sequencer"])
def test_non_hex_sequencers_cannot_be_compared(bad):
    with pytest.raises(EventError, match="hexadecimal"):
        compare_sequencers(bad, "00")
