"""The template: every group's resources, the parameters, conditions and outputs, in one document."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from panopipe.aws.stack._cfn import DB_PORT, get_att, ref
from panopipe.aws.stack.alarms import CONDITIONS as ALARM_CONDITIONS
from panopipe.aws.stack.alarms import alarm_resources
from panopipe.aws.stack.batch import CONDITIONS as BATCH_CONDITIONS
from panopipe.aws.stack.batch import batch_resources
from panopipe.aws.stack.database import CONDITIONS as DATABASE_CONDITIONS
from panopipe.aws.stack.database import DB_SECRET_ARN, catalog_url, database_resources
from panopipe.aws.stack.function import function_resources
from panopipe.aws.stack.network import CONDITIONS as NETWORK_CONDITIONS
from panopipe.aws.stack.network import network_resources
from panopipe.aws.stack.parameters import PARAMETERS, RULES
from panopipe.aws.stack.storage import storage_resources

CATALOG_OUTPUTS = ("ProxyEndpoint", "ProxyPort", "CatalogDatabase", "CatalogUser")
"""The outputs a ``cloudformation://STACK`` catalog URL is resolved with (host, port, database, IAM user)."""

DESCRIPTION = (
    "panopipe: image bucket, event queue and function, catalog database behind a proxy, Batch workers."
)

REPLACING_LOSES = {
    "Database": "a new, empty catalog database takes its place (the old one is deleted after a final snapshot)",
    "Bucket": "a new, empty bucket takes its place (the old one is kept with its images, no longer notified)",
}
"""The data resources an update must not replace unless asked to, and what replacing each does."""

OUTPUTS: dict[str, tuple[str, Any]] = {
    "BucketName": ("The image bucket", ref("Bucket")),
    "QueueUrl": ("The event queue", ref("EventQueue")),
    "DeadLetterQueueUrl": ("The dead-letter queue", ref("DeadLetterQueue")),
    "FunctionName": ("The event function", ref("Function")),
    "ProxyEndpoint": ("Host name of the RDS Proxy (the catalog's address)", get_att("Proxy", "Endpoint")),
    "ProxyPort": ("Port of the RDS Proxy", str(DB_PORT)),
    "CatalogDatabase": ("Name of the catalog database", ref("DbName")),
    "CatalogUser": (
        "Database user that connects through the proxy with IAM authentication",
        ref("DbMasterUsername"),
    ),
    "CatalogUrl": (
        "PANOPIPE_CATALOG of the workers (its sslrootcert is WorkerSslRootCert)",
        catalog_url("WorkerSslRootCert"),
    ),
    "DatabaseSecretArn": ("Secret holding the database's master password (kept by RDS)", DB_SECRET_ARN),
    "JobQueueArn": ("The workers' Batch job queue", ref("JobQueue")),
    "JobDefinitionArn": ("The worker job definition", ref("WorkerJobDefinition")),
    "AlarmTopicArn": ("Topic of the alarms", ref("AlarmTopic")),
}


def build_template(defaults: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template; ``defaults`` replace parameters' default values (validate them first)."""
    parameters = copy.deepcopy(PARAMETERS)
    for name, value in (defaults or {}).items():
        parameters[name]["Default"] = value
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": DESCRIPTION,
        "Parameters": parameters,
        "Rules": RULES,
        "Conditions": {
            **NETWORK_CONDITIONS,
            **DATABASE_CONDITIONS,
            **BATCH_CONDITIONS,
            **ALARM_CONDITIONS,
        },
        "Resources": {
            **storage_resources(),
            **function_resources(),
            **network_resources(),
            **database_resources(),
            **batch_resources(),
            **alarm_resources(),
        },
        "Outputs": {
            name: {"Description": description, "Value": value}
            for name, (description, value) in OUTPUTS.items()
        },
    }


__all__ = ["CATALOG_OUTPUTS", "DESCRIPTION", "OUTPUTS", "REPLACING_LOSES", "build_template"]
