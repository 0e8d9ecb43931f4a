"""The catalog database: RDS for PostgreSQL behind an RDS Proxy that takes IAM authentication over TLS."""

from __future__ import annotations

from panopipe.aws.stack._cfn import (
    DB_PORT,
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
from panopipe.aws.stack.network import PRIVATE_SUBNET_IDS

DB_SECRET_ARN = get_att("Database", "MasterUserSecret.SecretArn")
# rds-db:connect names the proxy by its resource id (prx-...), the last field of its ARN.
PROXY_USER_ARN = {
    "Fn::Join": [
        "",
        [
            sub("arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:"),
            {"Fn::Select": [6, {"Fn::Split": [":", get_att("Proxy", "DBProxyArn")]}]},
            sub("/${DbMasterUsername}"),
        ],
    ]
}


CONDITIONS: dict[str, Json] = {"DatabaseNamed": {"Fn::Not": [equals(ref("DbInstanceIdentifier"), "")]}}
# The instance's identifier is read back from its log group's name (/aws/rds/instance/ID/postgresql), so that
# CloudFormation makes the log group first: RDS would otherwise make it on its own, keeping its events forever.
_NAME_FROM_LOG_GROUP = select(4, split("/", ref("DatabaseLogGroup")))


def instance_identifier(stack: str) -> str:
    """The ``DbInstanceIdentifier`` of a new stack named ``stack`` (valid for RDS when ``stack`` is valid for
    ``cloud deploy``; lower case, as RDS stores it and names its log group)."""
    return f"{stack.lower()}-catalog"


def catalog_url(sslrootcert_parameter: str) -> Json:
    """The ``PANOPIPE_CATALOG`` URL of the proxy (IAM token, TLS verified with the parameter's CA file)."""
    return sub(
        f"postgresql://${{DbMasterUsername}}@${{Proxy.Endpoint}}:{DB_PORT}/${{DbName}}"
        f"?iam=true&sslmode=verify-full&sslrootcert=${{{sslrootcert_parameter}}}"
    )


def database_resources() -> dict[str, Json]:
    """The DB subnet group, the instance (its master password kept by RDS in Secrets Manager) and its log
    group, the proxy."""
    return {
        "DatabaseSubnets": resource(
            "AWS::RDS::DBSubnetGroup",
            "The private subnets the database may be placed in.",
            {
                "DBSubnetGroupDescription": "panopipe catalog: private subnets",
                "SubnetIds": PRIVATE_SUBNET_IDS,
            },
        ),
        "Database": resource(
            "AWS::RDS::DBInstance",
            "The catalog: PostgreSQL, encrypted, private, IAM authentication on; RDS keeps the password in a secret.",
            {
                "DBInstanceIdentifier": if_("DatabaseNamed", _NAME_FROM_LOG_GROUP, ref("AWS::NoValue")),
                "Engine": "postgres",
                "EngineVersion": ref("DbEngineVersion"),
                "DBInstanceClass": ref("DbInstanceClass"),
                "AllocatedStorage": ref("DbAllocatedStorage"),
                "StorageType": "gp3",
                "StorageEncrypted": True,
                "PubliclyAccessible": False,
                "EnableIAMDatabaseAuthentication": True,
                "ManageMasterUserPassword": True,
                "MasterUsername": ref("DbMasterUsername"),
                "DBName": ref("DbName"),
                "Port": str(DB_PORT),
                "DBSubnetGroupName": ref("DatabaseSubnets"),
                "VPCSecurityGroups": [get_att("DatabaseSecurityGroup", "GroupId")],
                "BackupRetentionPeriod": 7,
                "AutoMinorVersionUpgrade": True,
                "AllowMajorVersionUpgrade": True,  # a greater DbEngineVersion (a lower one is refused first)
                "CopyTagsToSnapshot": True,
                "EnableCloudwatchLogsExports": ["postgresql"],
                "MultiAZ": ref("DbMultiAZ"),
                "DeletionProtection": ref("DbDeletionProtection"),
            },
            skips=[
                (
                    "CKV_AWS_157",
                    "one zone by default keeps the idle cost down; DbMultiAZ=true for production",
                ),
                ("CKV_AWS_118", "enhanced monitoring costs per instance; CloudWatch basic metrics suffice"),
            ],
            DeletionPolicy="Snapshot",
            UpdateReplacePolicy="Snapshot",
        ),
        "DatabaseLogGroup": log_group(
            sub("/aws/rds/instance/${DbInstanceIdentifier}/postgresql"),
            "The database's PostgreSQL log, which RDS exports (EnableCloudwatchLogsExports) to this group.",
            Condition="DatabaseNamed",
        ),
        "ProxyRole": role(
            "rds.amazonaws.com",
            "The proxy reads the database's secret to log in on behalf of its IAM-authenticated clients.",
            [statement("ReadDatabaseSecret", ["secretsmanager:GetSecretValue"], [DB_SECRET_ARN])],
        ),
        "Proxy": resource(
            "AWS::RDS::DBProxy",
            "Pools the connections of the function and the workers; IAM authentication and TLS required.",
            {
                "DBProxyName": sub("${AWS::StackName}-catalog"),
                "EngineFamily": "POSTGRESQL",
                "RequireTLS": True,
                "RoleArn": get_att("ProxyRole", "Arn"),
                "Auth": [
                    {
                        "AuthScheme": "SECRETS",
                        "SecretArn": DB_SECRET_ARN,
                        "IAMAuth": "REQUIRED",
                        "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
                    }
                ],
                "VpcSubnetIds": PRIVATE_SUBNET_IDS,
                "VpcSecurityGroupIds": [get_att("ProxySecurityGroup", "GroupId")],
            },
        ),
        "ProxyTargets": resource(
            "AWS::RDS::DBProxyTargetGroup",
            "Points the proxy at the database.",
            {
                "DBProxyName": ref("Proxy"),
                "TargetGroupName": "default",
                "DBInstanceIdentifiers": [ref("Database")],
            },
        ),
    }


__all__ = [
    "CONDITIONS",
    "DB_SECRET_ARN",
    "PROXY_USER_ARN",
    "catalog_url",
    "database_resources",
    "instance_identifier",
]
