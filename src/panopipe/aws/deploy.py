"""Deploy, inspect and delete the panopipe stack with CloudFormation change sets (boto3).

Parameters are checked against the template's own ``Parameters`` (allowed values, patterns, bounds) before
anything is sent, so a wrong value never leaves a half-created stack. AWS errors become one-line
:class:`StackError` (exit code 8); a stack that does not exist is :class:`StackNotFoundError` (exit code 9), an
endpoint that cannot be reached :class:`~panopipe.errors.EndpointUnreachableError` (exit code 4).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from panopipe.config import Settings
from panopipe.errors import ConfigError, EndpointUnreachableError, Interrupted, StackError, StackNotFoundError
from panopipe.storage.aws_clients import (
    CREDENTIALS_HINT,
    aws_client,
    is_endpoint_unreachable,
    unreachable_hint,
)

CloudFormationClient = Any  # boto3 generates client classes at run time

STACK_NAME = re.compile(r"^(?!.*--)[A-Za-z][A-Za-z0-9-]{0,39}(?<!-)$")
"""CloudFormation's rule for a stack's name (a letter, then letters, digits and hyphens), within the names the
template derives from it (e.g. the RDS proxy ``STACK-catalog``: no ``--``, no hyphen at the end), at most 40."""
CAPABILITIES = ["CAPABILITY_IAM"]
# CloudFormation takes a template of at most this many bytes inline; a larger one must go through S3.
TEMPLATE_BODY_LIMIT = 51_200
DEFAULT_POLL_SECONDS = 5.0
_STACK_TYPE = "AWS::CloudFormation::Stack"
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


@dataclass(frozen=True)
class Change:
    """One resource a change set adds, modifies or removes."""

    resource: str
    type: str
    action: str
    replacement: str
    causes: tuple[str, ...] = ()
    """The properties whose change replaces the resource (``Replacement`` ``True`` or ``Conditional``)."""


@dataclass(frozen=True)
class StackEvent:
    """One line of a stack's event history."""

    time: datetime
    resource: str
    type: str
    status: str
    reason: str


@dataclass(frozen=True)
class StackReport:
    """Where a stack stands: its status, the resources that failed lately, its outputs."""

    name: str
    status: str
    reason: str
    failed: list[StackEvent] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` did: the changes it showed and, once executed, the stack's report."""

    changes: list[Change]
    executed: bool
    report: StackReport | None = None


@dataclass(frozen=True)
class DestroyResult:
    """What ``destroy`` deleted, and what the stack leaves behind on purpose."""

    deleted: bool
    retained: list[str]


def parse_parameters(pairs: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict; a pair without ``=`` or with an empty key is a :class:`ConfigError`."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"parameter {pair!r} is not of the form KEY=VALUE")
        values[key.strip()] = value
    return values


# Every Number parameter is a count, a size or a time that AWS takes as an integer. ASCII digits only: int() and
# float() also read "1_0", full-width digits, " 5" and "nan", which the resources refuse once CloudFormation
# creates them (CloudFormation's Number type takes "2.5").
_WHOLE_NUMBER = re.compile(r"0|[1-9][0-9]*")  # no leading zero: the template's rules compare the text


def _whole_number(name: str, value: str) -> int:
    """The value of the Number parameter ``name``; :class:`ConfigError` unless it is written in digits 0-9."""
    if _WHOLE_NUMBER.fullmatch(value) is None:
        raise ConfigError(
            f"parameter {name}={value!r} is not a whole number as CloudFormation compares it: write it with the "
            "digits 0-9, without leading zeros"
        )
    return int(value)


def _check_value(name: str, spec: Mapping[str, Any], value: str) -> None:
    from panopipe.aws.stack.parameters import POSTGRES_NAMES
    from panopipe.catalog.rds import reserved_word

    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise ConfigError(
            f"parameter {name}={value!r} is not allowed: choose one of {', '.join(map(str, allowed))}"
        )
    if spec["Type"] == "Number":
        number = _whole_number(name, value)
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < low) or (high is not None and number > high):
            raise ConfigError(f"parameter {name}={value} is out of range: {low} to {high}")
        return
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        hint = spec.get("ConstraintDescription", f"it must match {pattern}")
        raise ConfigError(f"parameter {name}={value!r} is not valid: {hint}")
    if name in POSTGRES_NAMES and reserved_word(value):
        raise ConfigError(
            f"parameter {name}={value!r} is not valid: a name PostgreSQL reserves or RDS keeps; choose another"
        )


def validate_parameters(
    values: Mapping[str, str], *, require_all: bool = True, current: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``values`` checked against the template's ``Parameters``; with ``require_all`` every parameter without
    a default must be given. The parameters that must agree (input and output prefixes that must not overlap,
    a worker size Fargate offers) are checked with ``current`` for those not given: an updated stack's
    values; ``None``: the template's defaults (a new stack); ``{}``: not known, only given pairs are checked.
    Raises :class:`ConfigError` with one line naming the first problem."""
    from panopipe.aws.stack import PARAMETERS

    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}: see `panopipe cloud template`")
    for name, value in values.items():
        _check_value(name, PARAMETERS[name], value)
    missing = [name for name, spec in PARAMETERS.items() if "Default" not in spec and name not in values]
    if require_all and missing:
        raise ConfigError(f"missing parameter(s) {', '.join(missing)}: pass --param NAME=VALUE")
    old, new = (current or {}).get("DbEngineVersion"), values.get("DbEngineVersion")
    if old is not None and new is not None and int(new) < int(old):
        raise ConfigError(
            f"DbEngineVersion={new} is older than the stack's {old}: RDS cannot downgrade PostgreSQL (dump the "
            "catalog and restore it into a new stack instead)"
        )
    if current is None:
        current = {name: str(spec["Default"]) for name, spec in PARAMETERS.items() if "Default" in spec}
        origin = "the default"
    else:
        origin = "the stack's current value"
    _check_combinations(values, current, origin)
    return dict(values)


def _check_combinations(given: Mapping[str, str], others: Mapping[str, str], origin: str) -> None:
    """The parameters that must agree, each ``given`` or else one of ``others`` (named with its ``origin``)."""
    from panopipe.aws.stack.parameters import FARGATE_MEMORY_MIB, fargate_memory_choices
    from panopipe.aws.stack.storage import check_prefixes

    effective = {**others, **given}

    def shown(name: str) -> str:
        return f"{name}={effective[name]}" + ("" if name in given else f" ({origin})")

    if {"InputPrefix", "OutputPrefix"} <= effective.keys():
        names = ("InputPrefix", "OutputPrefix")
        check_prefixes(effective["InputPrefix"], effective["OutputPrefix"], names)
    if {"WorkerVcpu", "WorkerMemoryMiB"} <= effective.keys():
        vcpu = effective["WorkerVcpu"]
        if _whole_number("WorkerMemoryMiB", effective["WorkerMemoryMiB"]) not in FARGATE_MEMORY_MIB[vcpu]:
            raise ConfigError(
                f"{shown('WorkerVcpu')} and {shown('WorkerMemoryMiB')} are not a Fargate size: with "
                f"{vcpu} vCPU, WorkerMemoryMiB must be {fargate_memory_choices(vcpu)}"
            )


def template_json(values: Mapping[str, str] | None = None, *, compact: bool = False) -> str:
    """The template as JSON, with ``values`` (validated) as the parameters' defaults."""
    from panopipe.aws.stack import build_template

    template = build_template(validate_parameters(values or {}, require_all=False))
    if compact:
        return json.dumps(template, separators=(",", ":"))
    return json.dumps(template, indent=2) + "\n"


def cloudformation_client(settings: Settings | None = None) -> CloudFormationClient:
    """A CloudFormation client for the configured region and profile, with botocore's standard retries
    (throttling is retried with backoff)."""
    client: CloudFormationClient = aws_client(
        "cloudformation", settings, retries={"mode": "standard", "max_attempts": 8}
    )
    _check_region(client)
    return client


def _check_region(client: CloudFormationClient) -> None:
    """:class:`ConfigError` for a region botocore does not know, before retries are spent on a host that does
    not exist (an endpoint URL of one's own, moto's or LocalStack's, takes any region)."""
    import botocore
    import botocore.session

    region = client.meta.region_name
    if ".amazonaws.com" not in client.meta.endpoint_url:
        return
    session = botocore.session.get_session()
    partitions = session.get_available_partitions()
    if any(region in session.get_available_regions("cloudformation", name) for name in partitions):
        return
    raise ConfigError(
        f"AWS region {region!r} is unknown: set AWS_REGION, a region in ~/.aws/config or aws_region in "
        f"[panopipe] to one such as eu-west-1 (a region newer than botocore {botocore.__version__}: upgrade "
        "boto3)"
    )


def stack_not_found(client: CloudFormationClient, stack: str) -> StackNotFoundError:
    """The error of a stack that ``client`` does not find, naming the region it looked in (CloudFormation
    answers alike for a stack of another region or account)."""
    return StackNotFoundError(
        f"stack {stack} does not exist in {client.meta.region_name} for these AWS credentials: check the "
        "name, AWS_REGION and AWS_PROFILE"
    )


@contextmanager
def _aws_errors(client: CloudFormationClient, stack: str) -> Iterator[None]:
    """botocore's errors of calls of ``client`` about ``stack`` as one-line :class:`StackError`\\ s (a stack
    it does not find: :func:`stack_not_found`); no credentials is a :class:`ConfigError` saying what to set,
    an endpoint that cannot be reached an :class:`EndpointUnreachableError` (as S3's, SQS's and Batch's), and
    an answer botocore cannot read (an HTML page of a proxy or of a wrong endpoint) a :class:`StackError`
    saying where to look."""
    import botocore.exceptions
    import botocore.parsers

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if "does not exist" in message and stack in message:
            raise stack_not_found(client, stack) from None
        code = exc.response.get("Error", {}).get("Code", "Error")
        raise StackError(f"CloudFormation: {code}: {message}") from None
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(f"no AWS credentials: {CREDENTIALS_HINT}") from None
    except botocore.exceptions.BotoCoreError as exc:
        if is_endpoint_unreachable(exc):
            raise EndpointUnreachableError(
                f"CloudFormation: {exc}: {unreachable_hint('CloudFormation')}"
            ) from None
        raise StackError(f"CloudFormation: {exc}") from None
    except (botocore.parsers.ResponseParserError, LookupError, TypeError, AttributeError) as exc:
        # ResponseParserError for what is not XML, KeyError or the like for XML that is not CloudFormation's
        if not _raised_in(exc, "botocore.parsers"):
            raise
        raise StackError(
            "CloudFormation: the endpoint's answer is not CloudFormation's (not the XML it answers with): "
            "check AWS_ENDPOINT_URL, the region and any HTTP proxy (HTTPS_PROXY) between here and AWS"
        ) from None


def _raised_in(error: BaseException, module: str) -> bool:
    """Whether ``error`` was raised by code of ``module``."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__") == module


def _check_stack_name(stack: str) -> None:
    if STACK_NAME.fullmatch(stack) is None:
        raise ConfigError(
            f"stack name {stack!r} is not valid: a letter, then up to 39 letters, digits or single hyphens, "
            "not ending with a hyphen (RDS names the stack's database proxy after it)"
        )


def _describe(client: CloudFormationClient, stack: str) -> dict[str, Any] | None:
    try:
        with _aws_errors(client, stack):
            return client.describe_stacks(StackName=stack)["Stacks"][0]
    except StackNotFoundError:
        return None


def _events(
    client: CloudFormationClient, stack: str, *, since: datetime | None = None, operation: bool = False
) -> list[StackEvent]:
    """The stack's events, oldest first: since ``since``, or with ``operation`` those of its last operation
    (from the stack's last ``User Initiated`` event on), or all."""
    events: list[StackEvent] = []
    with _aws_errors(client, stack):
        for page in client.get_paginator("describe_stack_events").paginate(StackName=stack):
            for raw in page["StackEvents"]:  # newest first
                if since is not None and raw["Timestamp"] < since:
                    return events[::-1]
                event = StackEvent(
                    time=raw["Timestamp"],
                    resource=raw.get("LogicalResourceId", ""),
                    type=raw.get("ResourceType", ""),
                    status=raw.get("ResourceStatus", ""),
                    reason=raw.get("ResourceStatusReason", ""),
                )
                events.append(event)
                if operation and event.type == _STACK_TYPE and event.reason == "User Initiated":
                    return events[::-1]
    return events[::-1]


def _report(
    client: CloudFormationClient, stack: str, description: Mapping[str, Any], *, events: bool = True
) -> StackReport:
    """The report of the described stack; with ``events``, the resources that failed in its last operation."""
    history = _events(client, description["StackId"], operation=True) if events else []
    return StackReport(
        name=stack,
        status=description["StackStatus"],
        reason=description.get("StackStatusReason", ""),
        failed=[e for e in history if e.status.endswith("FAILED") and e.type != _STACK_TYPE],
        outputs={o["OutputKey"]: o.get("OutputValue", "") for o in description.get("Outputs", [])},
    )


def status(stack: str, *, client: CloudFormationClient | None = None, events: bool = True) -> StackReport:
    """The stack's status, the resources that failed in its last operation (with their reasons), its outputs.

    Without ``events``, one DescribeStacks call: the status and the outputs only.
    """
    _check_stack_name(stack)
    client = client or cloudformation_client()
    description = _describe(client, stack)
    if description is None:
        raise stack_not_found(client, stack)
    return _report(client, stack, description, events=events)


def _wait(
    client: CloudFormationClient,
    stack_id: str,
    since: datetime,
    on_event: Callable[[StackEvent], None],
    poll_seconds: float,
) -> dict[str, Any]:
    """Poll until the stack leaves its ``*_IN_PROGRESS`` state, passing each new event to ``on_event``."""
    seen = 0
    while True:
        with _aws_errors(client, stack_id):
            description: dict[str, Any] = client.describe_stacks(StackName=stack_id)["Stacks"][0]
        events = _events(client, stack_id, since=since)
        for event in events[seen:]:
            on_event(event)
        seen = len(events)
        if not description["StackStatus"].endswith("IN_PROGRESS"):
            return description
        time.sleep(poll_seconds)


def _changes(
    client: CloudFormationClient, stack: str, change_set: str
) -> tuple[dict[str, Any], list[Change]]:
    """Wait for the change set to be computed; its description and changes."""
    changes: list[Change] = []
    token: str | None = None
    while True:
        with _aws_errors(client, stack):
            page = client.describe_change_set(
                StackName=stack, ChangeSetName=change_set, **({"NextToken": token} if token else {})
            )
        if page["Status"] in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
            time.sleep(1)
            continue
        for item in page.get("Changes", []):
            change = item["ResourceChange"]
            causes = (
                detail["Target"].get("Name") or detail["Target"].get("Attribute", "")
                for detail in change.get("Details", [])
                if detail.get("Target", {}).get("RequiresRecreation", "Never") != "Never"
            )
            changes.append(
                Change(
                    resource=change["LogicalResourceId"],
                    type=change["ResourceType"],
                    action=change["Action"],
                    replacement=change.get("Replacement", ""),
                    causes=tuple(dict.fromkeys(causes)),
                )
            )
        token = page.get("NextToken")
        if not token:
            return page, changes


def _current_values(stack: Mapping[str, Any]) -> dict[str, str]:
    """The stack's parameter values (those an update keeps when they are not given)."""
    return {
        p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", []) if "ParameterValue" in p
    }


def _stack_parameters(values: Mapping[str, str], existing: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Given values, and for an update the stack's current values of every parameter not given."""
    parameters: list[dict[str, Any]] = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    for old in (existing or {}).get("Parameters", []):
        if old["ParameterKey"] not in values:
            parameters.append({"ParameterKey": old["ParameterKey"], "UsePreviousValue": True})
    return parameters


def deploy(
    stack: str,
    values: Mapping[str, str],
    *,
    confirm: Callable[[list[Change]], bool] = lambda changes: True,
    on_event: Callable[[StackEvent], None] = lambda event: None,
    client: CloudFormationClient | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    allow_replacement: bool = False,
) -> DeployResult:
    """Create or update ``stack`` with a change set: validate ``values``, compute the changes, execute them if
    ``confirm(changes)`` says so (otherwise the change set is deleted, and the empty stack a first deploy
    makes; when ``confirm`` raises KeyboardInterrupt too, then :class:`Interrupted`), wait, and report.
    A change set that replaces the database or the bucket is deleted and refused (:class:`ConfigError`)
    unless ``allow_replacement``, before ``confirm`` is asked.

    A new stack needs every required parameter, and names its database ``STACK-catalog`` unless
    ``DbInstanceIdentifier`` is given; an update keeps the current value of those not given.
    """
    _check_stack_name(stack)
    client = client or cloudformation_client()
    existing = _describe(client, stack)
    if existing is not None and existing["StackStatus"] == "REVIEW_IN_PROGRESS":
        existing = None  # created by a change set that was never executed: CloudFormation treats it as new
    current = None if existing is None else _current_values(existing)
    if existing is None:  # an update keeps the stack's identifier: naming an unnamed instance replaces it
        from panopipe.aws.stack.database import instance_identifier

        values = {"DbInstanceIdentifier": instance_identifier(stack), **values}
    validate_parameters(values, require_all=existing is None, current=current)
    if existing is not None:
        current = existing["StackStatus"]
        if current == "ROLLBACK_COMPLETE":
            raise StackError(
                f"stack {stack} failed to create (ROLLBACK_COMPLETE): destroy it, then deploy again"
            )
        if current.endswith("IN_PROGRESS"):
            raise StackError(f"stack {stack} is busy ({current}): wait for it to finish")
    body = template_json(compact=True)
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise StackError(
            f"the template has {len(body.encode())} bytes, over CloudFormation's inline limit of "
            f"{TEMPLATE_BODY_LIMIT}: deploy it from S3 with the AWS CLI (`panopipe cloud template > stack.json`, "
            f"then `aws cloudformation deploy --template-file stack.json --stack-name {stack} --s3-bucket BUCKET "
            f"--capabilities {' '.join(CAPABILITIES)} --parameter-overrides KEY=VALUE ...`)"
        )
    change_set = "panopipe-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kind = "CREATE" if existing is None else "UPDATE"
    try:
        with _aws_errors(client, stack):
            created = client.create_change_set(
                StackName=stack,
                ChangeSetName=change_set,
                ChangeSetType=kind,
                TemplateBody=body,
                Parameters=_stack_parameters(values, existing),
                Capabilities=CAPABILITIES,
                Tags=[{"Key": "panopipe:stack", "Value": stack}],
            )
    except StackError as exc:  # some endpoints refuse an empty change set at once rather than mark it FAILED
        if not _unchanged(str(exc)):
            raise
        return DeployResult(changes=[], executed=False, report=status(stack, client=client))
    stack_id = created["StackId"]
    try:
        description, changes = _changes(client, stack_id, change_set)
        if description["Status"] == "FAILED":
            reason = description.get("StatusReason", "")
            _discard(client, stack_id, change_set, kind)
            if _unchanged(reason):
                return DeployResult(changes=[], executed=False, report=status(stack, client=client))
            raise StackError(f"the change set failed: {reason}")
        losses = _data_replaced(changes)
        if losses and not allow_replacement:
            _discard(client, stack_id, change_set, kind)
            raise ConfigError(
                f"the change set replaces {'; and '.join(losses)}: nothing was changed; "
                "pass --allow-replacement to apply it"
            )
        accepted = confirm(changes)
    except KeyboardInterrupt:  # Ctrl-C while the changes are computed or at the question: nothing stays
        _discard(client, stack_id, change_set, kind)
        left = "the stack is as it was" if kind == "UPDATE" else f"and the empty stack {stack} it had created"
        raise Interrupted(f"interrupted: the change set was deleted, {left}; nothing changed") from None
    if not accepted:
        _discard(client, stack_id, change_set, kind)
        return DeployResult(changes=changes, executed=False)
    started = datetime.now(UTC)
    with _aws_errors(client, stack):
        client.execute_change_set(StackName=stack_id, ChangeSetName=change_set)
    final = _wait(client, stack_id, started, on_event, poll_seconds)
    report = _report(client, stack, final)
    if report.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise _failure(report)
    return DeployResult(changes=changes, executed=True, report=report)


def _data_replaced(changes: Sequence[Change]) -> list[str]:
    """What replacing each data resource among ``changes`` does, naming the properties that cause it."""
    from panopipe.aws.stack import REPLACING_LOSES

    return [
        f"{change.resource} ({', '.join(change.causes) or 'replacement ' + change.replacement}): "
        + REPLACING_LOSES[change.resource]
        for change in changes
        if change.resource in REPLACING_LOSES and change.replacement in ("True", "Conditional")
    ]


def _unchanged(reason: str) -> bool:
    """Whether CloudFormation refused a change set because the stack already is as asked."""
    return any(text in reason for text in _NO_CHANGES)


def _failure(report: StackReport) -> StackError:
    """The error for a stack that ended in a failed state, naming its first failed resource."""
    first = report.failed[0] if report.failed else None
    detail = f": {first.resource}: {first.reason}" if first else f": {report.reason}" if report.reason else ""
    return StackError(f"stack {report.name} ended {report.status}{detail}")


def _discard(client: CloudFormationClient, stack_id: str, change_set: str, kind: str) -> None:
    """Delete an unexecuted change set, and the empty stack a CREATE change set made."""
    with _aws_errors(client, stack_id):
        client.delete_change_set(StackName=stack_id, ChangeSetName=change_set)
        if kind == "CREATE":
            client.delete_stack(StackName=stack_id)


def retained_resources() -> dict[str, str]:
    """The template's resources that outlive the stack, by logical id, with their ``DeletionPolicy``."""
    from panopipe.aws.stack import build_template

    resources = build_template()["Resources"].items()
    return {
        name: spec["DeletionPolicy"]
        for name, spec in resources
        if spec.get("DeletionPolicy") in ("Retain", "Snapshot")
    }


def retained_description(stack: str, *, client: CloudFormationClient | None = None) -> list[str]:
    """One sentence per resource that deleting ``stack`` keeps (the bucket, a final database snapshot)."""
    client = client or cloudformation_client()
    policies = retained_resources()
    with _aws_errors(client, stack):
        resources = client.describe_stack_resources(StackName=stack)["StackResources"]
    lines = []
    for item in resources:
        policy = policies.get(item.get("LogicalResourceId", ""))
        name = item.get("PhysicalResourceId", "")
        if policy == "Retain" and item["ResourceType"] == "AWS::S3::BucketPolicy":
            lines.append(f"the TLS-only policy of bucket {name} is kept with it")
        elif policy == "Retain" and item["ResourceType"] == "AWS::S3::Bucket":
            lines.append(
                f"{item['ResourceType']} {name} is kept, with its contents; its event notifications still name "
                "the deleted queue: remove them with `aws s3api put-bucket-notification-configuration "
                f"--bucket {name} --notification-configuration '{{}}'`; empty and delete it yourself"
            )
        elif policy == "Retain":
            lines.append(
                f"{item['ResourceType']} {name} is kept, with its contents; empty and delete it yourself"
            )
        elif policy == "Snapshot":
            lines.append(f"{item['ResourceType']} {name} is deleted after a final snapshot, which is kept")
    return lines


def destroy(
    stack: str,
    *,
    confirm: Callable[[list[str]], bool] = lambda retained: True,
    on_event: Callable[[StackEvent], None] = lambda event: None,
    client: CloudFormationClient | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> DestroyResult:
    """Delete ``stack`` if ``confirm(retained)`` says so, where ``retained`` says what survives it; wait."""
    _check_stack_name(stack)
    client = client or cloudformation_client()
    description = _describe(client, stack)
    if description is None:
        raise stack_not_found(client, stack)
    protected = _current_values(description).get("DbDeletionProtection") == "true"
    if protected and description["StackStatus"] != "ROLLBACK_COMPLETE":  # a failed creation left no database
        raise ConfigError(
            f"the catalog database of {stack} has deletion protection on, so deleting the stack would fail "
            f"after its other resources: `panopipe cloud deploy --stack {stack} --param "
            "DbDeletionProtection=false` first"
        )
    retained = retained_description(stack, client=client)
    if not confirm(retained):
        return DestroyResult(deleted=False, retained=retained)
    started = datetime.now(UTC)
    with _aws_errors(client, stack):
        client.delete_stack(StackName=description["StackId"])
    final = _wait(client, description["StackId"], started, on_event, poll_seconds)
    if final["StackStatus"] != "DELETE_COMPLETE":
        raise _failure(_report(client, stack, final))
    return DestroyResult(deleted=True, retained=retained)


__all__ = [
    "CAPABILITIES",
    "DEFAULT_POLL_SECONDS",
    "STACK_NAME",
    "TEMPLATE_BODY_LIMIT",
    "Change",
    "CloudFormationClient",
    "DeployResult",
    "DestroyResult",
    "StackEvent",
    "StackReport",
    "cloudformation_client",
    "deploy",
    "destroy",
    "parse_parameters",
    "retained_description",
    "retained_resources",
    "stack_not_found",
    "status",
    "template_json",
    "validate_parameters",
]
