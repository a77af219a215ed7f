"""Helpers for the AWS tests: independent leak checks and running the real CLI.

``tagged`` deliberately does not use clusterdeck's own discovery code: it asks the (moto)
cloud directly, so a bug in our observe cannot hide a leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

from clusterdeck import api
from clusterdeck.events import Collector
from clusterdeck.spec.models import Environment
from clusterdeck.state import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).parent / "fixtures"
ENV_TAG = "clusterdeck.dev/environment"


def tagged(environment: str, region: str = "us-west-2") -> dict[str, list[str]]:
    """Every live resource carrying our environment tag, by type (empty lists dropped)."""
    ec2 = boto3.client("ec2", region_name=region)
    elb = boto3.client("elbv2", region_name=region)
    flt = [{"Name": f"tag:{ENV_TAG}", "Values": [environment]}]
    found: dict[str, list[str]] = {
        "vpc": [v["VpcId"] for v in ec2.describe_vpcs(Filters=flt)["Vpcs"]],
        "subnet": [s["SubnetId"] for s in ec2.describe_subnets(Filters=flt)["Subnets"]],
        "igw": [
            g["InternetGatewayId"]
            for g in ec2.describe_internet_gateways(Filters=flt)["InternetGateways"]
        ],
        "rtb": [r["RouteTableId"] for r in ec2.describe_route_tables(Filters=flt)["RouteTables"]],
        "sg": [g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]],
        "eip": [a["AllocationId"] for a in ec2.describe_addresses(Filters=flt)["Addresses"]],
        "nat": [
            n["NatGatewayId"]
            for n in ec2.describe_nat_gateways(Filter=flt)["NatGateways"]
            if n["State"] not in ("deleted", "deleting")
        ],
        "instance": [
            i["InstanceId"]
            for r in ec2.describe_instances(Filters=flt)["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
        "volume": [v["VolumeId"] for v in ec2.describe_volumes(Filters=flt)["Volumes"]],
    }
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    tgs = elb.describe_target_groups()["TargetGroups"]
    arns = [x["LoadBalancerArn"] for x in lbs] + [x["TargetGroupArn"] for x in tgs]
    owned = set()
    for start in range(0, len(arns), 20):
        for desc in elb.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            if any(t["Key"] == ENV_TAG and t["Value"] == environment for t in desc["Tags"]):
                owned.add(desc["ResourceArn"])
    iam = boto3.client("iam", region_name=region)

    def ours(tag_list: list[dict[str, str]]) -> bool:
        return any(t["Key"] == ENV_TAG and t["Value"] == environment for t in tag_list)

    found["iam-role"] = [
        r["RoleName"]
        for r in iam.list_roles()["Roles"]
        if ours(iam.list_role_tags(RoleName=r["RoleName"])["Tags"])
    ]
    found["instance-profile"] = [
        p["InstanceProfileName"]
        for p in iam.list_instance_profiles()["InstanceProfiles"]
        # GetInstanceProfile carries the tags (moto has no ListInstanceProfileTags)
        if ours(
            iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])[
                "InstanceProfile"
            ].get("Tags", [])
        )
    ]
    found["load-balancer"] = [x["LoadBalancerArn"] for x in lbs if x["LoadBalancerArn"] in owned]
    found["target-group"] = [x["TargetGroupArn"] for x in tgs if x["TargetGroupArn"] in owned]
    return {k: v for k, v in found.items() if v}


def counts(environment: str, region: str = "us-west-2") -> dict[str, int]:
    return {k: len(v) for k, v in tagged(environment, region).items()}


def create(env: Environment, store: SqliteStore) -> tuple[api.CreateResult, Collector]:
    events = Collector()
    return api.create(env, store, infra_only=True, events=events), events


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real ``clusterdeck`` entry point in a child process (so it can be killed)."""
    code = "from clusterdeck.cli.main import run; run()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=timeout,
        check=False,
    )


def instances(environment: str, region: str = "us-west-2") -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name=region)
    flt = [
        {"Name": f"tag:{ENV_TAG}", "Values": [environment]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    return [i for r in ec2.describe_instances(Filters=flt)["Reservations"] for i in r["Instances"]]
