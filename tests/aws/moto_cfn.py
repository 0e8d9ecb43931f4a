"""What moto's CloudFormation lacks for the panopipe stack, added on moto's own backends.

moto models RDS proxies and RDS-managed master secrets, but its CloudFormation does not create a proxy
(``AWS::RDS::DBProxy``, ``AWS::RDS::DBProxyTargetGroup``) nor answer ``ManageMasterUserPassword`` and
``Fn::GetAtt Database.MasterUserSecret.SecretArn``; an executed change set leaves the stack without outputs
(moto 5.2 computes them only in ``create_stack``/``update_stack``); deleting a stack leaves its VPC
endpoints and route tables, so the VPC cannot go; a list item that is ``AWS::NoValue`` stays as ``None``
(CloudFormation drops it); and moto's Batch requires a compute environment's ``ServiceRole``, which AWS Batch
makes optional (it then uses its service-linked role, made if the account has none). :func:`install` binds
these to the backends' real operations (``create_db_proxy``, ``register_db_proxy_targets``, the managed
secret, ``delete_vpc_endpoints``, ``delete_route_table``, ``create_service_linked_role``), drops
``AWS::NoValue`` from lists and computes the outputs after a change set, so the stack deploys and deletes
whole and tests read it back through boto3.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.batch.models import ComputeEnvironment
from moto.cloudformation import parsing
from moto.cloudformation.models import ChangeSet, cloudformation_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.route_tables import RouteTable
from moto.ec2.models.vpcs import VPCEndPoint
from moto.iam.models import iam_backends
from moto.rds.models import DBInstance, MasterUserSecret, rds_backends
from moto.utilities.utils import get_partition

_BATCH = "batch.amazonaws.com"


class _Proxy:
    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::RDS::DBProxy"

    @property
    def physical_resource_id(self) -> str:
        return str(self.proxy.db_proxy_name)

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return {"Endpoint": self.proxy.endpoint, "DBProxyArn": self.proxy.arn, "VpcId": self.proxy.vpc_id}[
            attribute_name
        ]

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _Proxy:
        p = cloudformation_json["Properties"]
        proxy = rds_backends[account_id][region_name].create_db_proxy(
            db_proxy_name=p["DBProxyName"],
            engine_family=p["EngineFamily"],
            auth=p["Auth"],
            role_arn=p["RoleArn"],
            vpc_subnet_ids=p["VpcSubnetIds"],
            vpc_security_group_ids=p.get("VpcSecurityGroupIds"),
            require_tls=p.get("RequireTLS"),
            idle_client_timeout=None,
            debug_logging=None,
            tags=None,
        )
        return cls(proxy)

    def delete(self, account_id: str, region_name: str) -> None:
        rds_backends[account_id][region_name].delete_db_proxy(self.proxy.db_proxy_name)


class _ProxyTargets:
    def __init__(self, name: str, properties: dict[str, Any]) -> None:
        self.name = name
        self.properties = properties

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::RDS::DBProxyTargetGroup"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _ProxyTargets:
        p = cloudformation_json["Properties"]
        rds_backends[account_id][region_name].register_db_proxy_targets(
            db_proxy_name=p["DBProxyName"],
            target_group_name=p["TargetGroupName"],
            db_cluster_identifiers=[],
            db_instance_identifiers=p.get("DBInstanceIdentifiers", []),
        )
        return cls(p["TargetGroupName"], p)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = rds_backends[account_id][region_name]
        if self.properties["DBProxyName"] not in backend.db_proxies:  # moto deletes in no particular order
            return
        backend.deregister_db_proxy_targets(
            db_proxy_name=self.properties["DBProxyName"],
            target_group_name=self.name,
            db_cluster_identifiers=[],
            db_instance_identifiers=self.properties.get("DBInstanceIdentifiers", []),
        )


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the bindings with moto's CloudFormation for one test."""
    original_create = DBInstance.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    original_attribute = DBInstance.get_cfn_attribute
    original_environment = ComputeEnvironment.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        instance = original_create(cls, resource_name, cloudformation_json, *args, **kwargs)
        if cloudformation_json["Properties"].get("ManageMasterUserPassword"):
            instance.master_user_secret = MasterUserSecret(instance, None)
            instance.manage_master_user_password = True
        return instance

    def attribute(self: Any, name: str) -> Any:
        if name == "MasterUserSecret.SecretArn":
            return self.master_user_secret.secret_arn
        return original_attribute(self, name)

    def apply(self: Any) -> None:
        original_apply(self)
        self.stack.template = self.template
        self.stack._parse_template()
        self.stack.output_map = self.stack._create_output_map()

    def delete_endpoint(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        self.route_table_ids = [table for table in self.route_table_ids if table in backend.route_tables]
        backend.delete_vpc_endpoints([self.id])

    def delete_route_table(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        if self.id in backend.route_tables:  # moto retries every deletion after a dependency error
            backend.delete_route_table(self.id)

    def create_compute_environment(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        if "ServiceRole" not in properties:
            iam = iam_backends[account_id][get_partition(region_name)]
            linked = next(
                (role for role in iam.get_roles() if role.path == f"/aws-service-role/{_BATCH}/"), None
            ) or iam.create_service_linked_role(_BATCH, "AWS Batch", "")
            cloudformation_json = {
                **cloudformation_json,
                "Properties": {**properties, "ServiceRole": linked.arn},
            }
        return original_environment(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        cleaned = original_clean_json(resource_json, resources_map)
        if isinstance(resource_json, list):
            return [item for item in cleaned if item is not None]
        return cleaned

    original_clean_json = parsing.clean_json
    original_apply = ChangeSet.apply
    monkeypatch.setattr(VPCEndPoint, "delete", delete_endpoint, raising=False)
    monkeypatch.setattr(RouteTable, "delete", delete_route_table, raising=False)
    monkeypatch.setattr(ChangeSet, "apply", apply)
    monkeypatch.setattr(parsing, "clean_json", clean_json)
    monkeypatch.setattr(DBInstance, "create_from_cloudformation_json", classmethod(create))
    monkeypatch.setattr(DBInstance, "get_cfn_attribute", attribute)
    monkeypatch.setattr(
        ComputeEnvironment, "create_from_cloudformation_json", classmethod(create_compute_environment)
    )
    models = {model.cloudformation_type(): model for model in (_Proxy, _ProxyTargets)}
    model_map = parsing.get_model_map
    monkeypatch.setattr(parsing, "get_model_map", lambda: {**model_map(), **models})


def move_proxies(host: str, region: str = "us-east-1") -> None:
    """Give every RDS proxy of moto's ``region`` the address ``host`` (moto's endpoints are names of servers that
    do not exist), and compute the stacks' outputs again so that ``ProxyEndpoint`` says so."""
    for proxy in rds_backends[DEFAULT_ACCOUNT_ID][region].db_proxies.values():
        proxy.endpoint = host
    for stack in cloudformation_backends[DEFAULT_ACCOUNT_ID][region].stacks.values():
        stack.output_map = stack._create_output_map()


__all__ = ["install", "move_proxies"]
