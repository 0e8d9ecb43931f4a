"""The network: a VPC with private subnets in two zones, security groups, and the way out to AWS APIs
(VPC endpoints or a NAT gateway, chosen by the ``Egress`` parameter)."""

from __future__ import annotations

from panopipe.aws.stack._cfn import DB_PORT, Json, get_att, ref, resource, sub

VPC_CIDR = "10.42.0.0/16"
PRIVATE_SUBNETS = {"PrivateSubnetA": ("10.42.0.0/20", 0), "PrivateSubnetB": ("10.42.16.0/20", 1)}
PUBLIC_SUBNET_CIDR = "10.42.128.0/24"
INTERFACE_ENDPOINTS = {
    "SecretsManagerEndpoint": ("secretsmanager", "the proxy reads the database secret"),
    "EcrApiEndpoint": ("ecr.api", "Fargate authenticates to ECR"),
    "EcrDkrEndpoint": ("ecr.dkr", "Fargate pulls the worker image"),
    "LogsEndpoint": ("logs", "Fargate sends the worker's logs"),
    "BatchEndpoint": ("batch", "the dispatcher submits and follows the workers' jobs"),
}
PRIVATE_SUBNET_IDS = [ref(name) for name in PRIVATE_SUBNETS]
CONDITIONS: dict[str, Json] = {
    "UseNat": {"Fn::Equals": [ref("Egress"), "nat"]},
    "UseEndpoints": {"Fn::Equals": [ref("Egress"), "endpoints"]},
}


def _rule(description: str, *, port: int, **peer: object) -> Json:
    return {"Description": description, "IpProtocol": "tcp", "FromPort": port, "ToPort": port, **peer}


def _security_group(purpose: str, *, ingress: list[Json], egress: list[Json]) -> Json:
    properties: Json = {"GroupDescription": purpose, "VpcId": ref("Vpc"), "SecurityGroupEgress": egress}
    if ingress:
        properties["SecurityGroupIngress"] = ingress
    return resource("AWS::EC2::SecurityGroup", purpose, properties)


_NO_EGRESS = {"Description": "no outbound traffic", "IpProtocol": "-1", "CidrIp": "127.0.0.1/32"}
_HTTPS_OUT = _rule("AWS APIs over HTTPS (endpoints or NAT)", port=443, CidrIp="0.0.0.0/0")


def _vpc() -> dict[str, Json]:
    resources: dict[str, Json] = {
        "Vpc": resource(
            "AWS::EC2::VPC",
            "The private network of the database, the proxy, the function and the workers.",
            {"CidrBlock": VPC_CIDR, "EnableDnsSupport": True, "EnableDnsHostnames": True},
        ),
        "PrivateRouteTable": resource(
            "AWS::EC2::RouteTable", "Routes of the private subnets.", {"VpcId": ref("Vpc")}
        ),
    }
    for name, (cidr, zone) in PRIVATE_SUBNETS.items():
        resources[name] = resource(
            "AWS::EC2::Subnet",
            f"Private subnet in availability zone {zone + 1} of 2 (no internet address).",
            {
                "VpcId": ref("Vpc"),
                "CidrBlock": cidr,
                "AvailabilityZone": {"Fn::Select": [zone, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
            },
        )
        resources[f"{name}Routes"] = resource(
            "AWS::EC2::SubnetRouteTableAssociation",
            f"Gives {name} the private routes.",
            {"SubnetId": ref(name), "RouteTableId": ref("PrivateRouteTable")},
        )
    return resources


def _security_groups() -> dict[str, Json]:
    app = get_att("AppSecurityGroup", "GroupId")
    proxy = get_att("ProxySecurityGroup", "GroupId")
    db = get_att("DatabaseSecurityGroup", "GroupId")
    return {
        "AppSecurityGroup": _security_group(
            "The function and the workers: out to the proxy and to AWS APIs only.",
            ingress=[],
            egress=[_HTTPS_OUT],
        ),
        "AppToProxy": resource(
            "AWS::EC2::SecurityGroupEgress",
            "The function and the workers reach the proxy.",
            {"GroupId": app, "DestinationSecurityGroupId": proxy, **_rule("to the proxy", port=DB_PORT)},
        ),
        "ProxySecurityGroup": _security_group(
            "The RDS Proxy: in from the function and the workers, out to the database and Secrets Manager.",
            ingress=[_rule("from the function and the workers", port=DB_PORT, SourceSecurityGroupId=app)],
            egress=[_HTTPS_OUT],
        ),
        "ProxyToDatabase": resource(
            "AWS::EC2::SecurityGroupEgress",
            "The proxy reaches the database.",
            {"GroupId": proxy, "DestinationSecurityGroupId": db, **_rule("to the database", port=DB_PORT)},
        ),
        "DatabaseSecurityGroup": _security_group(
            "The database: in from the proxy only, nothing out.",
            ingress=[_rule("from the proxy", port=DB_PORT, SourceSecurityGroupId=proxy)],
            egress=[_NO_EGRESS],
        ),
    }


def _endpoints() -> dict[str, Json]:
    resources: dict[str, Json] = {
        "S3Endpoint": resource(
            "AWS::EC2::VPCEndpoint",
            "S3 gateway endpoint (free): the function, the workers and image pulls reach S3 privately.",
            {
                "VpcId": ref("Vpc"),
                "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
                "VpcEndpointType": "Gateway",
                "RouteTableIds": [ref("PrivateRouteTable")],
            },
        ),
        "EndpointSecurityGroup": _security_group(
            "Interface endpoints: HTTPS in from the function, the workers and the proxy.",
            ingress=[
                _rule(
                    "from the function and the workers",
                    port=443,
                    SourceSecurityGroupId=get_att("AppSecurityGroup", "GroupId"),
                ),
                _rule(
                    "from the proxy", port=443, SourceSecurityGroupId=get_att("ProxySecurityGroup", "GroupId")
                ),
            ],
            egress=[_NO_EGRESS],
        )
        | {"Condition": "UseEndpoints"},
    }
    for name, (service, why) in INTERFACE_ENDPOINTS.items():
        resources[name] = resource(
            "AWS::EC2::VPCEndpoint",
            f"Interface endpoint for {service}: {why} without a NAT gateway.",
            {
                "VpcId": ref("Vpc"),
                "ServiceName": sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                "VpcEndpointType": "Interface",
                "PrivateDnsEnabled": True,
                "SubnetIds": PRIVATE_SUBNET_IDS,
                "SecurityGroupIds": [get_att("EndpointSecurityGroup", "GroupId")],
            },
            Condition="UseEndpoints",
        )
    return resources


def _nat() -> dict[str, Json]:
    nat = {
        "InternetGateway": resource("AWS::EC2::InternetGateway", "The NAT gateway's way out.", {}),
        "InternetGatewayAttachment": resource(
            "AWS::EC2::VPCGatewayAttachment",
            "Attaches the internet gateway to the VPC.",
            {"VpcId": ref("Vpc"), "InternetGatewayId": ref("InternetGateway")},
        ),
        "PublicSubnet": resource(
            "AWS::EC2::Subnet",
            "Public subnet that holds only the NAT gateway.",
            {
                "VpcId": ref("Vpc"),
                "CidrBlock": PUBLIC_SUBNET_CIDR,
                "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
            },
        ),
        "PublicRouteTable": resource(
            "AWS::EC2::RouteTable", "Routes of the public subnet.", {"VpcId": ref("Vpc")}
        ),
        "PublicDefaultRoute": resource(
            "AWS::EC2::Route",
            "The public subnet reaches the internet.",
            {
                "RouteTableId": ref("PublicRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref("InternetGateway"),
            },
            DependsOn="InternetGatewayAttachment",
        ),
        "PublicSubnetRoutes": resource(
            "AWS::EC2::SubnetRouteTableAssociation",
            "Gives the public subnet its routes.",
            {"SubnetId": ref("PublicSubnet"), "RouteTableId": ref("PublicRouteTable")},
        ),
        "NatAddress": resource(
            "AWS::EC2::EIP",
            "The NAT gateway's public address.",
            {"Domain": "vpc"},
            DependsOn="InternetGatewayAttachment",
        ),
        "NatGateway": resource(
            "AWS::EC2::NatGateway",
            "One NAT gateway (one zone, to keep the cost down) for the private subnets' AWS API calls.",
            {"SubnetId": ref("PublicSubnet"), "AllocationId": get_att("NatAddress", "AllocationId")},
        ),
        "PrivateDefaultRoute": resource(
            "AWS::EC2::Route",
            "The private subnets reach AWS APIs through the NAT gateway.",
            {
                "RouteTableId": ref("PrivateRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "NatGatewayId": ref("NatGateway"),
            },
        ),
    }
    return {name: spec | {"Condition": "UseNat"} for name, spec in nat.items()}


def network_resources() -> dict[str, Json]:
    """The VPC, its subnets, security groups, endpoints and (with ``Egress=nat``) the NAT gateway."""
    return _vpc() | _security_groups() | _endpoints() | _nat()


__all__ = [
    "CONDITIONS",
    "INTERFACE_ENDPOINTS",
    "PRIVATE_SUBNETS",
    "PRIVATE_SUBNET_IDS",
    "PUBLIC_SUBNET_CIDR",
    "VPC_CIDR",
    "network_resources",
]
