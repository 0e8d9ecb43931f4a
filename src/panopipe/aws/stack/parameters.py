"""The stack's parameters: what a deployment chooses, each with its default and what values it allows."""

from __future__ import annotations

from panopipe.aws.stack._cfn import Json

# Rules shared by several parameters: keyword arguments of _string.
_PREFIX = {
    "AllowedPattern": r"^[a-zA-Z0-9!_.*'()-]+(/[a-zA-Z0-9!_.*'()-]+)*/$",
    "ConstraintDescription": "a key prefix ending with /",
}
# S3's naming rules: besides the characters, no "..", no IP address, and the prefixes and suffixes S3 reserves.
_BUCKET = {
    "AllowedPattern": r"^(?!xn--|sthree-|amzn-s3-demo-)(?!.*\.\.)(?!(\d{1,3}\.){3}\d{1,3}$)"
    r"(?!.*(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "ConstraintDescription": "3 to 63 lower-case letters, digits, dots and hyphens, without '..', not an IP"
    " address (S3's bucket naming rules)",
}
_IDENTIFIER = {
    "AllowedPattern": r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$",
    "ConstraintDescription": "a letter, then letters, digits or _ (at most 63)",
}
# RDS keeps these role names (and the rds_ and pg_ prefixes) for itself.
_MASTER_USER = {
    "AllowedPattern": r"^(?!(?i:rdsadmin|rdsrepladmin|rdstopmgr|rdsproxyadmin)$|(?i:rds_|pg_))"
    + _IDENTIFIER["AllowedPattern"].removeprefix("^"),
    "ConstraintDescription": _IDENTIFIER["ConstraintDescription"]
    + ", not a name RDS keeps (rdsadmin, rds_*, pg_*)",
}
POSTGRES_NAMES = ("DbName", "DbMasterUsername")
"""The parameters that name something in PostgreSQL, where RDS refuses a word PostgreSQL reserves (``user``)."""
_PATH = {"AllowedPattern": r"^/\S+$", "ConstraintDescription": "an absolute path"}
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
FARGATE_MEMORY_MIB: dict[str, tuple[int, ...]] = {
    "0.25": (512, 1024, 2048),
    "0.5": tuple(range(1024, 4096 + 1, 1024)),
    "1": tuple(range(2048, 8192 + 1, 1024)),
    "2": tuple(range(4096, 16384 + 1, 1024)),
    "4": tuple(range(8192, 30720 + 1, 1024)),
    "8": tuple(range(16384, 61440 + 1, 4096)),
    "16": tuple(range(32768, 122880 + 1, 8192)),
}
"""The memory sizes (MiB) Fargate allows with each vCPU size, the only pairs a Fargate job may ask for (AWS:
"Task CPU and memory" in the Amazon ECS developer guide, which AWS Batch on Fargate follows)."""
FARGATE_VCPUS = tuple(FARGATE_MEMORY_MIB)


def fargate_memory_choices(vcpu: str) -> str:
    """The memory sizes Fargate allows with ``vcpu`` vCPUs, in words ("8192 to 30720 in steps of 1024")."""
    sizes = FARGATE_MEMORY_MIB[vcpu]
    if len(sizes) <= 4:
        return f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]}"
    return f"{sizes[0]} to {sizes[-1]} in steps of {sizes[1] - sizes[0]}"


EGRESS_CHOICES = ("endpoints", "nat")
LAMBDA_RUNTIMES = ("python3.12", "python3.13", "python3.14")


def _string(description: str, default: str | None = None, **rules: object) -> Json:
    spec: Json = {"Type": "String", "Description": description, **rules}
    if default is not None:
        spec["Default"] = default
    return spec


def _number(description: str, default: int, minimum: int, maximum: int) -> Json:
    return {
        "Type": "Number",
        "Description": description,
        "Default": default,
        "MinValue": minimum,
        "MaxValue": maximum,
    }


PARAMETERS: dict[str, Json] = {
    "BucketName": _string(
        "Name of the bucket the stack creates for images (globally unique, lower case).",
        **_BUCKET,
    ),
    "InputPrefix": _string(
        "Key prefix under which uploaded images notify the queue.",
        "incoming/",
        **_PREFIX,
    ),
    "OutputPrefix": _string(
        "Key prefix where pipeline outputs go; it never notifies. Must not overlap the input prefix.",
        "panopipe-out/",
        **_PREFIX,
    ),
    "LambdaCodeBucket": _string(
        "Bucket holding the zip that `panopipe cloud package-lambda` builds.",
        **_BUCKET,
    ),
    "LambdaCodeKey": _string(
        "Key of that zip, e.g. releases/panopipe-lambda-0.1.0.zip.",
        AllowedPattern=r"^\S+\.zip$",
        ConstraintDescription="a key ending with .zip",
    ),
    "LambdaArchitecture": _string(
        "Architecture the zip was built for (`package-lambda --arch`).",
        "x86_64",
        AllowedValues=["x86_64", "arm64"],
    ),
    "LambdaRuntime": _string(
        "Lambda runtime; the zip must be built for its Python (`package-lambda --python`).",
        "python3.12",
        AllowedValues=list(LAMBDA_RUNTIMES),
    ),
    "LambdaMaxConcurrency": _number(
        "Most concurrent invocations the queue drives, so the database is not stormed.", 5, 2, 1000
    ),
    "LambdaSslRootCert": _string(
        "CA file the function verifies the proxy's certificate with (the Lambda runtime's trust store).",
        "/etc/pki/tls/certs/ca-bundle.crt",
        **_PATH,
    ),
    "MaxReceiveCount": _number("Receives of a message before it moves to the dead-letter queue.", 5, 1, 1000),
    "LogRetentionDays": {
        "Type": "Number",
        "Description": "Days the log groups keep events.",
        "Default": "30",
        "AllowedValues": [str(days) for days in LOG_RETENTION_DAYS],
    },
    "Egress": _string(
        "How private subnets reach AWS APIs: VPC interface endpoints, or one NAT gateway.",
        "endpoints",
        AllowedValues=list(EGRESS_CHOICES),
    ),
    "DbInstanceIdentifier": _string(
        "RDS identifier of the catalog database; its log group is then the stack's (LogRetentionDays). Empty:"
        " CloudFormation names it, and RDS keeps its log forever (stacks made before this parameter: naming"
        " their database replaces it).",
        "",
        AllowedPattern=r"^$|^(?!.*--)[a-z][a-z0-9-]{0,62}(?<!-)$",
        ConstraintDescription="empty, or a lower-case letter, then up to 62 lower-case letters, digits or"
        " single hyphens, not ending with one (RDS's rules; RDS names the log group in lower case)",
    ),
    "DbInstanceClass": _string(
        "RDS instance class of the catalog database.",
        "db.t4g.micro",
        AllowedPattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$",
        ConstraintDescription="an RDS instance class such as db.t4g.micro",
    ),
    "DbAllocatedStorage": _number("Storage of the catalog database, in GiB (gp3).", 20, 20, 16384),
    "DbEngineVersion": _string(
        "PostgreSQL major version of the catalog database.", "16", AllowedValues=["15", "16", "17"]
    ),
    "DbMultiAZ": _string(
        "Whether RDS keeps a standby of the catalog database in a second zone (production availability; it"
        " doubles the instance's cost).",
        "false",
        AllowedValues=["true", "false"],
    ),
    "DbDeletionProtection": _string(
        "Whether RDS refuses to delete the catalog database (`cloud destroy` then asks to turn it off first).",
        "false",
        AllowedValues=["true", "false"],
    ),
    "DbName": _string(
        "Name of the catalog database.",
        "panopipe",
        **_IDENTIFIER,
    ),
    "DbMasterUsername": _string(
        "Master user of the database; the proxy logs in as it, clients reach the proxy as it with IAM.",
        "panopipe_admin",
        **_MASTER_USER,
    ),
    "WorkerImage": _string(
        "Container image URI of the worker (panopipe with its imaging libraries).",
        # No @ before the end: an invalid digest (@sha256:ABC) had passed as the tag ABC of an image "p@sha256".
        AllowedPattern=r"^[^\s@]+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$",
        ConstraintDescription="an image URI ending in :TAG or @sha256: and the 64 lower-case hex digits of a "
        "digest, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/panopipe:0.1.0",
    ),
    "WorkerVcpu": _string("vCPUs of a worker job (Fargate sizes).", "2", AllowedValues=list(FARGATE_VCPUS)),
    "WorkerMemoryMiB": _number(
        "Memory of a worker job in MiB (a Fargate combination with WorkerVcpu; it runs one job per vCPU, and a"
        " first production-size stitch peaks near 3 GiB).",
        8192,
        512,
        122880,
    ),
    "WorkerTimeoutSeconds": _number(
        "A worker attempt still running after this long is stopped.", 3600, 60, 1209600
    ),
    "WorkerSslRootCert": _string(
        "CA file the worker verifies the proxy's certificate with (the image's trust store).",
        "/etc/ssl/certs/ca-certificates.crt",
        **_PATH,
    ),
    "RunnableTimeoutSeconds": _number(
        "A job that cannot get capacity for this long while RUNNABLE is cancelled.", 3600, 600, 86400
    ),
    "BatchMaxVcpus": _number("Most vCPUs each Batch compute environment runs at once.", 16, 1, 4096),
    "AlarmEmail": _string(
        "E-mail address told of dead-lettered messages and failed jobs (empty: no subscription).",
        "",
        AllowedPattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
        ConstraintDescription="an e-mail address, or empty",
    ),
}

RULES: dict[str, Json] = {
    f"FargateSize{vcpu.replace('.', 'p')}vCpu": {
        "RuleCondition": {"Fn::Equals": [{"Ref": "WorkerVcpu"}, vcpu]},
        "Assertions": [
            {
                "Assert": {"Fn::Contains": [[str(size) for size in sizes], {"Ref": "WorkerMemoryMiB"}]},
                "AssertDescription": f"with {vcpu} vCPU, WorkerMemoryMiB must be {fargate_memory_choices(vcpu)}",
            }
        ],
    }
    for vcpu, sizes in FARGATE_MEMORY_MIB.items()
}
"""Checks CloudFormation makes before it creates or updates the stack, however it is deployed (the console
too): the worker's vCPU and memory are a pair Fargate offers. ``cloud deploy`` checks the same first."""

__all__ = [
    "EGRESS_CHOICES",
    "FARGATE_MEMORY_MIB",
    "FARGATE_VCPUS",
    "LAMBDA_RUNTIMES",
    "LOG_RETENTION_DAYS",
    "PARAMETERS",
    "POSTGRES_NAMES",
    "RULES",
    "fargate_memory_choices",
]
