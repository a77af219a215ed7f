"""Find everything of one environment that exists in AWS, by our tags alone.

Why it exists: create (to resume without duplicates), delete and ``cleanup`` (to leave
nothing behind) and ``observe`` all start from the same picture, taken with a fixed number
of batched describe calls (one paginated call per resource type, whatever the node count).
EC2 resources are filtered by tag server-side; load balancers and target groups, which
ELBv2 cannot filter by tag, are looked up by name when the name is known, or else listed and
checked with DescribeTags in batches of 20. The nodes' IAM role and instance profile (IAM
has no tag filter) are looked up by their fixed name and kept only when tagged as ours. This
module only reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clusterdeck.model import aws_iam
from clusterdeck.providers.aws import tags
from clusterdeck.providers.aws.errors import AwsNotFound, call, collect
from clusterdeck.providers.aws.session import AwsSession

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
LIVE_NAT_STATES = ["pending", "available"]
ELB_TAG_BATCH = 20
PAGE = 1000


@dataclass
class Found:
    """One resource we own: its logical key (from the tag), kind, ID and describe output."""

    key: str
    kind: str
    id: str
    tags: dict[str, str]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Instance:
    id: str
    key: str
    state: str
    zone: str
    instance_type: str
    private_ip: str | None
    public_ip: str | None
    launch_index: int
    launch_time: datetime | None
    lifecycle: str
    tags: dict[str, str]
    interfaces: list[tuple[str, bool]]  # (ENI ID, source/dest check on)

    @property
    def order(self) -> tuple[str, int, str]:
        return (
            self.launch_time.isoformat() if self.launch_time else "",
            self.launch_index,
            self.id,
        )


@dataclass
class Inventory:
    """What exists now. ``by_key`` keeps every match so duplicates can be seen and deleted."""

    environment: str
    by_key: dict[str, list[Found]] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # names we want, taken by someone else

    def add(self, found: Found) -> None:
        self.by_key.setdefault(found.key, []).append(found)

    def get(self, key: str) -> Found | None:
        items = self.by_key.get(key)
        return items[0] if items else None

    def all(self, kind: str | None = None) -> list[Found]:
        return [
            f for items in self.by_key.values() for f in items if kind is None or f.kind == kind
        ]

    def live_instances(self) -> list[Instance]:
        return [i for i in self.instances if i.state not in ("shutting-down", "terminated")]

    def is_empty(self) -> bool:
        return not self.by_key and not self.live_instances()

    def describe(self) -> list[str]:
        lines = [f"{f.kind} {f.id} ({f.key})" for f in self.all()]
        lines += [f"instance {i.id} ({i.key}, {i.state})" for i in self.live_instances()]
        return lines


def _key(tag_map: dict[str, str], fallback: str) -> str:
    return tag_map.get(tags.KEY) or fallback


def discover(
    session: AwsSession,
    environment: str,
    *,
    lb_names: Iterable[str] = (),
    tg_names: Iterable[str] = (),
    scan_load_balancers: bool = False,
) -> Inventory:
    """Everything tagged for ``environment`` in the session's region."""
    inv = Inventory(environment)
    ec2 = session.ec2
    flt = tags.env_filter(environment)
    what = f"listing resources of environment {environment!r} in {session.region}"

    def pages(op: str, result_key: str, **kwargs: Any) -> list[dict[str, Any]]:
        return collect(ec2, op, result_key, what, **kwargs)

    for vpc in pages("describe_vpcs", "Vpcs", Filters=flt):
        t = tags.as_dict(vpc.get("Tags"))
        inv.add(Found(_key(t, "vpc"), "vpc", vpc["VpcId"], t, vpc))
    for sub in pages("describe_subnets", "Subnets", Filters=flt):
        t = tags.as_dict(sub.get("Tags"))
        inv.add(Found(_key(t, f"subnet/?/{sub['SubnetId']}"), "subnet", sub["SubnetId"], t, sub))
    for igw in pages("describe_internet_gateways", "InternetGateways", Filters=flt):
        t = tags.as_dict(igw.get("Tags"))
        inv.add(Found(_key(t, "igw"), "internet-gateway", igw["InternetGatewayId"], t, igw))
    for rtb in pages("describe_route_tables", "RouteTables", Filters=flt):
        t = tags.as_dict(rtb.get("Tags"))
        inv.add(
            Found(
                _key(t, f"rtb/?/{rtb['RouteTableId']}"), "route-table", rtb["RouteTableId"], t, rtb
            )
        )
    nat_filter = [*flt, {"Name": "state", "Values": LIVE_NAT_STATES}]
    for nat in pages("describe_nat_gateways", "NatGateways", Filter=nat_filter):
        t = tags.as_dict(nat.get("Tags"))
        inv.add(
            Found(
                _key(t, f"nat/?/{nat['NatGatewayId']}"), "nat-gateway", nat["NatGatewayId"], t, nat
            )
        )
    addresses = call(lambda: ec2.describe_addresses(Filters=flt), what)
    for eip in addresses.get("Addresses", []):
        t = tags.as_dict(eip.get("Tags"))
        inv.add(
            Found(
                _key(t, f"eip/?/{eip.get('AllocationId')}"),
                "elastic-ip",
                str(eip.get("AllocationId")),
                t,
                dict(eip),
            )
        )
    for sg in pages("describe_security_groups", "SecurityGroups", Filters=flt):
        t = tags.as_dict(sg.get("Tags"))
        inv.add(Found(_key(t, f"sg/?/{sg['GroupId']}"), "security-group", sg["GroupId"], t, sg))
    instance_filter = [*flt, {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    for res in pages(
        "describe_instances",
        "Reservations",
        Filters=instance_filter,
        PaginationConfig={"PageSize": PAGE},
    ):
        inv.instances.extend(_instance(i) for i in res.get("Instances", []))
    _load_balancers(session, inv, list(lb_names), list(tg_names), scan_load_balancers)
    _iam(session, inv)
    return inv


def _iam(session: AwsSession, inv: Inventory) -> None:
    """Add the role and the profile to ``inv`` when they exist and are this environment's."""
    name = aws_iam.node_profile_name(inv.environment, session.region)
    what = f"looking up IAM role {name}"
    try:
        role = call(lambda: session.iam.get_role(RoleName=name), what)["Role"]
    except AwsNotFound:
        role = None
    if role is not None:
        t = tags.as_dict(role.get("Tags"))
        if tags.owned_by(t, inv.environment):
            inv.add(Found(aws_iam.ROLE_KEY, "iam-role", name, t, dict(role)))
        else:
            inv.foreign.append(f"IAM role {name}")
    try:
        profile = call(
            lambda: session.iam.get_instance_profile(InstanceProfileName=name),
            f"looking up instance profile {name}",
        )["InstanceProfile"]
    except AwsNotFound:
        return
    t = tags.as_dict(profile.get("Tags"))
    if tags.owned_by(t, inv.environment):
        inv.add(Found(aws_iam.PROFILE_KEY, "instance-profile", name, t, dict(profile)))
    else:
        inv.foreign.append(f"instance profile {name}")


def _instance(raw: Mapping[str, Any]) -> Instance:
    t = tags.as_dict(raw.get("Tags"))
    return Instance(
        id=raw["InstanceId"],
        key=t.get(tags.KEY, ""),
        state=raw["State"]["Name"],
        zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        instance_type=raw.get("InstanceType", ""),
        private_ip=raw.get("PrivateIpAddress"),
        public_ip=raw.get("PublicIpAddress"),
        launch_index=int(raw.get("AmiLaunchIndex", 0)),
        launch_time=raw.get("LaunchTime"),
        lifecycle=raw.get("InstanceLifecycle", "on-demand"),
        tags=t,
        interfaces=[
            (n["NetworkInterfaceId"], bool(n.get("SourceDestCheck", True)))
            for n in raw.get("NetworkInterfaces", [])
        ],
    )


def instances_from(reservations: Iterable[Mapping[str, Any]]) -> list[Instance]:
    return [_instance(i) for r in reservations for i in r.get("Instances", [])]


def _load_balancers(
    session: AwsSession, inv: Inventory, lb_names: list[str], tg_names: list[str], scan: bool
) -> None:
    elb = session.elbv2
    what = f"listing load balancers of environment {inv.environment!r}"
    lbs: list[dict[str, Any]] = []
    tgs: list[dict[str, Any]] = []
    if scan:
        lbs = collect(elb, "describe_load_balancers", "LoadBalancers", what)
        tgs = collect(elb, "describe_target_groups", "TargetGroups", what)
    else:
        for name in lb_names:
            with contextlib.suppress(AwsNotFound):
                lbs += [
                    dict(x)
                    for x in call(lambda n=name: elb.describe_load_balancers(Names=[n]), what)[
                        "LoadBalancers"
                    ]
                ]
        for name in tg_names:
            with contextlib.suppress(AwsNotFound):
                tgs += [
                    dict(x)
                    for x in call(lambda n=name: elb.describe_target_groups(Names=[n]), what)[
                        "TargetGroups"
                    ]
                ]
    arns = [x["LoadBalancerArn"] for x in lbs] + [x["TargetGroupArn"] for x in tgs]
    tag_maps: dict[str, dict[str, str]] = {}
    for start in range(0, len(arns), ELB_TAG_BATCH):
        batch = arns[start : start + ELB_TAG_BATCH]
        described = call(lambda b=batch: elb.describe_tags(ResourceArns=b), what)
        for desc in described.get("TagDescriptions", []):
            tag_maps[desc["ResourceArn"]] = tags.as_dict(desc.get("Tags"))
    for lb in lbs:
        t = tag_maps.get(lb["LoadBalancerArn"], {})
        if not tags.owned_by(t, inv.environment):
            if not scan:
                inv.foreign.append(f"load balancer {lb['LoadBalancerName']}")
        else:
            inv.add(
                Found(_key(t, "nlb"), "network-load-balancer", lb["LoadBalancerArn"], t, dict(lb))
            )
            listeners = call(
                lambda a=lb["LoadBalancerArn"]: elb.describe_listeners(LoadBalancerArn=a), what
            ).get("Listeners", [])
            for lst in listeners:  # a listener carries the key of its load balancer
                inv.add(
                    Found(
                        f"{_key(t, 'nlb')}/listener", "listener", lst["ListenerArn"], {}, dict(lst)
                    )
                )
    for tg in tgs:
        t = tag_maps.get(tg["TargetGroupArn"], {})
        if not tags.owned_by(t, inv.environment):
            if not scan:
                inv.foreign.append(f"target group {tg['TargetGroupName']}")
        else:
            inv.add(
                Found(
                    _key(t, "nlb/target-group"), "target-group", tg["TargetGroupArn"], t, dict(tg)
                )
            )
