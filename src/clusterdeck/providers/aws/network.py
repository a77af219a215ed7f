"""The environment's network: VPC, subnets, internet gateway, NAT gateways, route tables.

Why it exists: to create exactly the network resources of the plan (``plan.resources`` of
kinds vpc, subnet, internet-gateway, elastic-ip, nat-gateway, route-table), each only if the
inventory does not already hold it under its logical key, each tagged in its create call and
recorded the moment AWS returns its ID. Calls are per resource (AWS has no batch form for
these) and their number depends on the zones, never on the node count.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from clusterdeck.errors import PermanentError
from clusterdeck.events import EventKind
from clusterdeck.model.plan import Plan, ResourcePlan
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import EVENTUAL, aws_code
from clusterdeck.providers.aws.run import NETWORK, AwsRun

NAT_TIMEOUT = 900.0
ALREADY = ("Resource.AlreadyAssociated", "RouteAlreadyExists")


def ensure(run: AwsRun, plan: Plan) -> None:
    started = time.monotonic()
    res = {r.key: r for r in plan.resources}
    vpc = _vpc(run, res["vpc"])
    checkpoints.reached("vpc")
    for r in plan.resources:
        if r.kind == "subnet":
            _subnet(run, r, vpc)
    checkpoints.reached("subnets")
    igw = _igw(run, res["igw"], vpc)
    checkpoints.reached("internet-gateway")
    nats = _nat_gateways(
        run, [r for r in plan.resources if r.kind in ("elastic-ip", "nat-gateway")]
    )
    checkpoints.reached("nat-gateways")
    for r in plan.resources:
        if r.kind != "route-table":
            continue
        if r.key == "rtb/public":
            subnets = [k for k in r.depends_on if k.startswith("subnet/")]
            _route_table(run, r, vpc, subnets, {"GatewayId": igw})
        else:
            zone = r.key.rsplit("/", 1)[1]
            _route_table(
                run, r, vpc, [f"subnet/private/{zone}"], {"NatGatewayId": nats[f"nat/{zone}"]}
            )
    checkpoints.reached("route-tables")
    run.done(NETWORK, started, f"VPC {vpc}")


def _existing(run: AwsRun, key: str) -> str | None:
    found = run.inventory.get(key)
    if found is None:
        return None
    run.ids[key] = found.id
    return found.id


def _tag(run: AwsRun, r: ResourcePlan, **extra: str) -> list[Any]:
    return tags.tags(run.environment, r.key, r.name, **extra)


def _vpc(run: AwsRun, r: ResourcePlan) -> str:
    found = run.inventory.get(r.key)
    if found is not None:
        run.ids[r.key] = found.id
        record = {x.key: x for x in run.store.resources(run.environment)}.get(r.key)
        if record is None or not record.data.get("dns_hostnames"):
            _vpc_dns(run, found.id)
            run.record(r.key, r.kind, found.id, cidr=r.details["cidr"], dns_hostnames=True)
        return found.id
    run.info(NETWORK, "creating VPC", r.details["cidr"])
    out = run.call(
        run.session.ec2.create_vpc,
        f"VPC {r.name}",
        NETWORK,
        CidrBlock=r.details["cidr"],
        TagSpecifications=[tags.spec("vpc", _tag(run, r))],
    )
    vpc_id = out["Vpc"]["VpcId"]
    run.record(r.key, r.kind, vpc_id, cidr=r.details["cidr"])
    _vpc_dns(run, vpc_id)
    run.record(r.key, r.kind, vpc_id, cidr=r.details["cidr"], dns_hostnames=True)
    return vpc_id


def _vpc_dns(run: AwsRun, vpc_id: str) -> None:
    """DNS hostnames on, so instances get public DNS names (DNS support is on by default)."""
    run.call(
        run.session.ec2.modify_vpc_attribute,
        f"VPC {vpc_id} DNS hostnames",
        NETWORK,
        settle=tuple(EVENTUAL),
        VpcId=vpc_id,
        EnableDnsHostnames={"Value": True},
    )


def _subnet(run: AwsRun, r: ResourcePlan, vpc: str) -> str:
    existing = _existing(run, r.key)
    if existing:
        return existing
    run.info(NETWORK, f"creating subnet {r.details['cidr']}", r.details["zone"])
    out = run.call(
        run.session.ec2.create_subnet,
        f"subnet {r.name} ({r.details['cidr']})",
        NETWORK,
        settle=tuple(EVENTUAL),
        VpcId=vpc,
        CidrBlock=r.details["cidr"],
        AvailabilityZone=r.details["zone"],
        TagSpecifications=[tags.spec("subnet", _tag(run, r))],
    )
    subnet_id = out["Subnet"]["SubnetId"]
    run.record(
        r.key,
        r.kind,
        subnet_id,
        cidr=r.details["cidr"],
        zone=r.details["zone"],
        public=r.details["public"] == "true",
    )
    return subnet_id


def _igw(run: AwsRun, r: ResourcePlan, vpc: str) -> str:
    found = run.inventory.get(r.key)
    ec2 = run.session.ec2
    if found is not None:
        igw_id = found.id
        run.ids[r.key] = igw_id
        attached = [a.get("VpcId") for a in found.raw.get("Attachments", [])]
    else:
        run.info(NETWORK, "creating internet gateway")
        out = run.call(
            ec2.create_internet_gateway,
            f"internet gateway {r.name}",
            NETWORK,
            TagSpecifications=[tags.spec("internet-gateway", _tag(run, r))],
        )
        igw_id = out["InternetGateway"]["InternetGatewayId"]
        run.record(r.key, r.kind, igw_id, vpc=vpc)
        attached = []
    if vpc not in attached:
        try:
            run.call(
                ec2.attach_internet_gateway,
                f"internet gateway {r.name}",
                NETWORK,
                settle=tuple(EVENTUAL),
                InternetGatewayId=igw_id,
                VpcId=vpc,
            )
        except PermanentError as exc:
            if aws_code(exc) != "Resource.AlreadyAssociated":
                raise
    return igw_id


def _nat_gateways(run: AwsRun, plans: list[ResourcePlan]) -> dict[str, str]:
    """An Elastic IP and a NAT gateway per private zone; then wait for all of them at once."""
    ec2 = run.session.ec2
    nats: dict[str, str] = {}
    pending: list[str] = []
    for r in plans:
        if r.kind == "elastic-ip":
            if not _existing(run, r.key):
                out = run.call(
                    ec2.allocate_address,
                    f"Elastic IP {r.name}",
                    NETWORK,
                    Domain="vpc",
                    TagSpecifications=[tags.spec("elastic-ip", _tag(run, r))],
                )
                run.record(r.key, r.kind, out["AllocationId"], public_ip=out.get("PublicIp"))
            continue
        zone = r.details["zone"]
        found = run.inventory.get(r.key)
        if found is not None:
            nats[r.key] = found.id
            run.ids[r.key] = found.id
            if found.raw.get("State") != "available":
                pending.append(found.id)
            continue
        run.info(NETWORK, "creating NAT gateway", zone)
        token = hashlib.sha256(f"{run.ids['vpc']}/{r.key}".encode()).hexdigest()[:32]
        out2 = run.call(
            ec2.create_nat_gateway,
            f"NAT gateway {r.name}",
            NETWORK,
            settle=tuple(EVENTUAL),
            SubnetId=run.ids[f"subnet/public/{zone}"],
            AllocationId=run.ids[f"eip/nat/{zone}"],
            ClientToken=token,
            TagSpecifications=[tags.spec("natgateway", _tag(run, r))],
        )
        nat_id = out2["NatGateway"]["NatGatewayId"]
        run.record(r.key, r.kind, nat_id, zone=zone)
        nats[r.key] = nat_id
        if out2["NatGateway"].get("State") != "available":
            pending.append(nat_id)
    if pending:
        _wait_nat(run, pending)
    return nats


def _wait_nat(run: AwsRun, nat_ids: list[str]) -> None:
    run.info(NETWORK, f"waiting for {len(nat_ids)} NAT gateway(s)")
    deadline = time.monotonic() + NAT_TIMEOUT
    delay = 2.0
    while True:
        out = run.call(
            run.session.ec2.describe_nat_gateways,
            "NAT gateways",
            NETWORK,
            settle=tuple(EVENTUAL),
            NatGatewayIds=nat_ids,
        )
        states = {n["NatGatewayId"]: n for n in out["NatGateways"]}
        for nat_id, nat in states.items():
            if nat.get("State") == "failed":
                raise PermanentError(
                    f"NAT gateway {nat_id} failed: {nat.get('FailureMessage', 'no reason given')}"
                )
        if all(states.get(n, {}).get("State") == "available" for n in nat_ids):
            return
        if time.monotonic() > deadline:
            raise PermanentError(
                f"NAT gateways {', '.join(nat_ids)} not available after {int(NAT_TIMEOUT)} s"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 15.0)


def _route_table(
    run: AwsRun, r: ResourcePlan, vpc: str, subnet_keys: list[str], target: dict[str, str]
) -> None:
    ec2 = run.session.ec2
    found = run.inventory.get(r.key)
    if found is not None:
        rtb = found.id
        run.ids[r.key] = rtb
        routes = {x.get("DestinationCidrBlock") for x in found.raw.get("Routes", [])}
        associated = {a.get("SubnetId") for a in found.raw.get("Associations", [])}
    else:
        run.info(NETWORK, f"creating route table {r.name}")
        out = run.call(
            ec2.create_route_table,
            f"route table {r.name}",
            NETWORK,
            settle=tuple(EVENTUAL),
            VpcId=vpc,
            TagSpecifications=[tags.spec("route-table", _tag(run, r))],
        )
        rtb = out["RouteTable"]["RouteTableId"]
        run.record(r.key, r.kind, rtb, subnets=subnet_keys)
        routes, associated = set(), set()
    if "0.0.0.0/0" not in routes:
        _tolerate(
            run,
            ec2.create_route,
            f"default route of {r.name}",
            RouteTableId=rtb,
            DestinationCidrBlock="0.0.0.0/0",
            **target,
        )
    for key in subnet_keys:
        subnet = run.ids[key]
        if subnet not in associated:
            _tolerate(
                run,
                ec2.associate_route_table,
                f"route table {r.name} for {key}",
                RouteTableId=rtb,
                SubnetId=subnet,
            )


def _tolerate(run: AwsRun, fn: Any, what: str, **kwargs: Any) -> None:
    try:
        run.call(fn, what, NETWORK, settle=tuple(EVENTUAL), **kwargs)
    except PermanentError as exc:
        if aws_code(exc) not in ALREADY:
            raise
    run.emit(EventKind.INFO, NETWORK, what, "configured")
