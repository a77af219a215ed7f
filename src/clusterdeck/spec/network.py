"""Where every AWS subnet goes, derived from the VPC range and the zones in use.

Pure arithmetic shared by the semantic rules (does it fit?) and the planner (what to create),
so both always agree. Public mode follows the reference layout: public subnets are the
VPC's /24 number 1, 2, ... (10.0.1.0/24 for the first zone) and /24 number 0 (10.0.0.0/24) is
reserved as a private subnet. Private mode keeps the public /24s for NAT gateways, the bastion
and the load balancer, and gives each zone a private /20 (10.0.16.0/20, 10.0.32.0/20, ...).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from clusterdeck.spec.models import Environment, NetworkMode, Provider


@dataclass(frozen=True)
class SubnetLayout:
    zone: str
    cidr: str
    public: bool
    purpose: str


def default_zone(region: str) -> str:
    return f"{region}a"


def aws_groups(env: Environment) -> list[tuple[str, list[str]]]:
    """(group name, zones) for every machine group that runs on AWS."""
    spec = env.spec
    if spec.aws is None:
        return []
    fallback = list(spec.aws.availability_zones) or [default_zone(spec.aws.region)]
    groups: list[tuple[str, list[str]]] = []
    cp = spec.cluster.control_plane
    if (cp.provider or spec.provider) is Provider.AWS:
        groups.append(("control-plane", list(cp.availability_zones) or fallback))
    pools = ([("workers", spec.cluster.workers)] if spec.cluster.workers else []) + [
        (p.name, p) for p in spec.cluster.node_pools
    ]
    for name, pool in pools:
        if (pool.provider or spec.provider) is Provider.AWS:
            groups.append((name, list(pool.availability_zones) or fallback))
    return groups


def zones_in_use(env: Environment) -> list[str]:
    """Every zone an aws group uses, in a stable order (declared zones first)."""
    ordered: list[str] = []
    if env.spec.aws is not None:
        ordered.extend(env.spec.aws.availability_zones)
    for _, zones in aws_groups(env):
        ordered.extend(z for z in sorted(zones) if z not in ordered)
    if not ordered and env.spec.aws is not None:
        ordered.append(default_zone(env.spec.aws.region))
    return list(dict.fromkeys(ordered))


def subnet_layout(vpc_cidr: str, mode: NetworkMode, zones: list[str]) -> list[SubnetLayout]:
    """The subnets of the VPC; raise ValueError when the range cannot hold them."""
    vpc = ipaddress.ip_network(vpc_cidr)
    if vpc.version != 4 or vpc.prefixlen > 22:
        raise ValueError(f"VPC range {vpc_cidr} is too small: use an IPv4 /16 to /22")
    slash24 = list(vpc.subnets(new_prefix=24))
    if len(zones) + 1 > len(slash24):
        raise ValueError(f"VPC range {vpc_cidr} has no room for {len(zones)} public subnets")
    layout = [
        SubnetLayout(
            zone,
            str(slash24[i + 1]),
            True,
            "nodes, load balancer"
            if mode is NetworkMode.PUBLIC
            else "NAT gateway, bastion, load balancer",
        )
        for i, zone in enumerate(zones)
    ]
    if mode is NetworkMode.PUBLIC:
        first = zones[0] if zones else ""
        layout.append(SubnetLayout(first, str(slash24[0]), False, "reserved (no instances)"))
        return layout
    if vpc.prefixlen > 20:
        raise ValueError(f"VPC range {vpc_cidr} is too small for private mode: use /20 or larger")
    slash20 = list(vpc.subnets(new_prefix=20))
    if len(zones) + 1 > len(slash20):
        raise ValueError(
            f"VPC range {vpc_cidr} has no room for {len(zones)} private /20 subnets; "
            "use a larger range such as /16"
        )
    layout.extend(
        SubnetLayout(zone, str(slash20[i + 1]), False, "nodes") for i, zone in enumerate(zones)
    )
    return layout
