"""Checks and look-ups made before anything is created, so bad input leaves nothing half-made.

Why it exists: an instance type that does not exist, one not offered in a zone, a missing key
pair, an AMI of the wrong architecture or a spot percentage without a price would otherwise
fail after the VPC, subnets and gateways exist. All of these are read-only calls, batched
(one DescribeInstanceTypes, one DescribeInstanceTypeOfferings, one or two image look-ups),
and each failure names the field of the file to fix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from clusterdeck.errors import ClusterdeckError, PermanentError
from clusterdeck.model.plan import InstanceGroupPlan, Plan
from clusterdeck.model.topology import Topology
from clusterdeck.providers.aws import images, pricing
from clusterdeck.providers.aws.errors import AwsNotFound, aws_code, call, collect
from clusterdeck.providers.aws.images import Image
from clusterdeck.providers.aws.session import AwsSession
from clusterdeck.spec import aws_catalog, rules
from clusterdeck.spec.models import Environment

TYPES_PER_CALL = 100


@dataclass
class Prepared:
    images: dict[str, Image] = field(default_factory=dict)  # architecture -> image
    architecture: dict[str, str] = field(default_factory=dict)  # instance type -> arch
    spot_limits: dict[str, str | None] = field(default_factory=dict)  # group key -> MaxPrice

    def image_for(self, instance_type: str) -> Image:
        return self.images[self.architecture[instance_type]]


def field_of(env: Environment, group: InstanceGroupPlan) -> str:
    """Where the group's instance type comes from in the file, for error messages."""
    if group.role == "bastion":
        return f"the bastion ({group.instance_type}, chosen by clusterdeck)"
    if group.role == "control-plane":
        return "spec.cluster.controlPlane.instanceType"
    for loc, name, _ in rules.pools(env):
        if name == group.pool:
            return (
                "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
                + ".instanceType"
            )
    return f"pool {group.pool}"


def prepare(session: AwsSession, env: Environment, plan: Plan, topology: Topology) -> Prepared:
    groups = plan.instance_groups
    out = Prepared()
    if not groups:
        return out
    subnet_room(plan)
    _key_pair(session, env)
    out.architecture = _instance_types(session, env, groups)
    _architecture_as_planned(env, groups, out.architecture)
    _offerings(session, env, groups)
    aws = env.spec.aws
    assert aws is not None
    out.images = images.resolve(session, aws.os, aws.ami, set(out.architecture.values()))
    cache: dict[str, Decimal] = {}
    for group in groups:
        node = next((n for n in topology.nodes if n.name in group.nodes), None)
        if node is not None and node.spot is not None:
            out.spot_limits[group.key] = pricing.spot_limit(
                session, node.spot, group.instance_type, group.pool, cache
            )
    return out


def subnet_room(plan: Plan) -> None:
    """Refuse a plan that puts more instances in a subnet than it has addresses for.

    AWS keeps 5 addresses of every subnet; public subnets also hold a load-balancer and a
    NAT-gateway interface."""
    cidrs = {r.key: r.details.get("cidr", "") for r in plan.resources if r.kind == "subnet"}
    wanted: dict[str, int] = {}
    for group in plan.instance_groups:
        wanted[group.subnet] = wanted.get(group.subnet, 0) + group.count
    for key, count in wanted.items():
        if key not in cidrs:
            continue
        network = ipaddress.ip_network(cidrs[key])
        room = network.num_addresses - 5 - (2 if key.startswith("subnet/public/") else 0)
        if count > room:
            zone = key.rsplit("/", 1)[1]
            raise PermanentError(
                f"availability zone {zone}: {count} instances do not fit in subnet "
                f"{network} ({room} usable addresses); spread the pools over more "
                "availabilityZones, or use spec.aws.network.mode: private (a /20 per zone)"
            )


def _key_pair(session: AwsSession, env: Environment) -> None:
    name = env.spec.auth.key_name
    if not name:
        return
    try:
        call(session.ec2.describe_key_pairs, f"EC2 key pair {name}", KeyNames=[name])
    except AwsNotFound as exc:
        raise PermanentError(
            f"spec.auth.keyName: EC2 key pair {name!r} does not exist in "
            f"{session.region}; create or import it there first"
        ) from exc


def _architecture_as_planned(
    env: Environment, groups: list[InstanceGroupPlan], reported: dict[str, str]
) -> None:
    """AWS's own answer confirms the architecture the plan showed (from the instance-family
    table): the image and the offline bundle were chosen by it."""
    for group in groups:
        said = reported.get(group.instance_type)
        planned = aws_catalog.EC2_ARCH[aws_catalog.architecture(group.instance_type)]
        if said is not None and said != planned:
            raise PermanentError(
                f"{field_of(env, group)}: AWS reports {group.instance_type} as {said}, but "
                f"clusterdeck's instance-family table (which the plan showed) says {planned}; "
                "nothing was created. Please report this: the table needs the family"
            )


def _instance_types(
    session: AwsSession, env: Environment, groups: list[InstanceGroupPlan]
) -> dict[str, str]:
    wanted = sorted({g.instance_type for g in groups})
    arch: dict[str, str] = {}
    for start in range(0, len(wanted), TYPES_PER_CALL):
        batch = wanted[start : start + TYPES_PER_CALL]
        try:
            found: list[dict[str, Any]] = [
                dict(x)
                for x in call(
                    session.ec2.describe_instance_types, "instance types", InstanceTypes=batch
                )["InstanceTypes"]
            ]
        except ClusterdeckError as exc:
            if not aws_code(exc).startswith("InvalidInstanceType"):
                raise
            found = _one_by_one(session, env, groups, batch)
        for item in found:
            supported = item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
            arch[item["InstanceType"]] = (
                "x86_64" if "x86_64" in supported or not supported else str(supported[0])
            )
    return arch


def _one_by_one(
    session: AwsSession, env: Environment, groups: list[InstanceGroupPlan], batch: list[str]
) -> list[dict[str, Any]]:
    """Find which of ``batch`` AWS rejects, to name the field; raise for the first one."""
    found: list[dict[str, Any]] = []
    for instance_type in batch:
        try:
            found += [
                dict(x)
                for x in call(
                    session.ec2.describe_instance_types,
                    f"instance type {instance_type}",
                    InstanceTypes=[instance_type],
                )["InstanceTypes"]
            ]
        except ClusterdeckError as exc:
            if not aws_code(exc).startswith("InvalidInstanceType"):
                raise
            group = next(g for g in groups if g.instance_type == instance_type)
            raise PermanentError(
                f"{field_of(env, group)}: instance type {instance_type!r} does "
                f"not exist in {session.region}"
            ) from exc
    return found


def _offerings(session: AwsSession, env: Environment, groups: list[InstanceGroupPlan]) -> None:
    types = sorted({g.instance_type for g in groups})
    zones = sorted({g.zone for g in groups})
    offered = collect(
        session.ec2,
        "describe_instance_type_offerings",
        "InstanceTypeOfferings",
        "instance type offerings",
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": types}, {"Name": "location", "Values": zones}],
    )
    have = {(o["InstanceType"], o["Location"]) for o in offered}
    for group in groups:
        if (group.instance_type, group.zone) not in have:
            raise PermanentError(
                f"{field_of(env, group)}: instance type {group.instance_type!r} is not offered "
                f"in availability zone {group.zone!r} (or that zone does not exist in "
                f"{session.region}); pick another type or set availabilityZones"
            )
