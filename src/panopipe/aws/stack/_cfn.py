"""Small helpers that spell CloudFormation's JSON: references, functions, resources, IAM policies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Json = dict[str, Any]

DB_PORT = 5432


def ref(name: str) -> Json:
    """``{"Ref": name}``: a parameter's value or a resource's id."""
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    """``Fn::GetAtt`` in its long form (moto reads only that one)."""
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str, **variables: Any) -> Json:
    """``Fn::Sub``: ``${Name}`` and ``${Resource.Attribute}`` replaced, and ``${Variable}`` by ``variables``."""
    return {"Fn::Sub": [text, variables] if variables else text}


def select(index: int, items: Any) -> Json:
    """``Fn::Select``: the item at ``index`` (from 0) of a list."""
    return {"Fn::Select": [index, items]}


def split(delimiter: str, text: Any) -> Json:
    """``Fn::Split``: ``text`` cut at each ``delimiter`` (a plain string: CloudFormation takes no function)."""
    return {"Fn::Split": [delimiter, text]}


def if_(condition: str, then: Any, otherwise: Any) -> Json:
    """``Fn::If``."""
    return {"Fn::If": [condition, then, otherwise]}


def equals(left: Any, right: Any) -> Json:
    """``Fn::Equals``."""
    return {"Fn::Equals": [left, right]}


def resource(
    kind: str,
    purpose: str,
    properties: Json,
    *,
    skips: Iterable[tuple[str, str]] = (),
    **attributes: Any,
) -> Json:
    """A resource of type ``kind``; ``purpose`` says what it is for (in its ``Metadata``).

    ``skips`` are checkov checks that do not apply, as ``(check id, why)``; ``attributes`` are the resource
    attributes besides ``Properties`` (``Condition``, ``DependsOn``, ``DeletionPolicy``...).
    """
    metadata: Json = {"Purpose": purpose}
    skipped = [{"id": check, "comment": why} for check, why in skips]
    if skipped:
        metadata["checkov"] = {"skip": skipped}
    return {"Type": kind, "Metadata": metadata, "Properties": properties, **attributes}


def statement(sid: str, actions: Sequence[str], resources: Sequence[Any], **condition: Any) -> Json:
    """One ``Allow`` statement of an IAM policy; ``condition`` keyword arguments form its ``Condition``."""
    result: Json = {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if condition:
        result["Condition"] = condition
    return result


def policy_document(statements: Sequence[Json]) -> Json:
    """An IAM policy document."""
    return {"Version": "2012-10-17", "Statement": list(statements)}


def role(
    service: str,
    purpose: str,
    statements: Sequence[Json],
    *,
    skips: Iterable[tuple[str, str]] = (),
) -> Json:
    """An IAM role that ``service`` (e.g. ``lambda.amazonaws.com``) assumes, with ``statements`` inline."""
    trust = policy_document(
        [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    )
    properties: Json = {"AssumeRolePolicyDocument": trust}
    if statements:
        properties["Policies"] = [
            {"PolicyName": "least-privilege", "PolicyDocument": policy_document(statements)}
        ]
    return resource("AWS::IAM::Role", purpose, properties, skips=skips)


def log_group(name: Any, purpose: str, **attributes: Any) -> Json:
    """A log group whose events are kept for the ``LogRetentionDays`` parameter; ``attributes`` as
    :func:`resource`'s."""
    return resource(
        "AWS::Logs::LogGroup",
        purpose,
        {"LogGroupName": name, "RetentionInDays": ref("LogRetentionDays")},
        skips=[
            ("CKV_AWS_158", "CloudWatch Logs encrypts log data at rest by default; no secrets are logged")
        ],
        **attributes,
    )


__all__ = [
    "DB_PORT",
    "Json",
    "equals",
    "get_att",
    "if_",
    "log_group",
    "policy_document",
    "ref",
    "resource",
    "role",
    "select",
    "split",
    "statement",
    "sub",
]
