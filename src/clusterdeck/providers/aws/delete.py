"""Delete everything of an environment, in dependency order, from tags and the state store.

Why it exists: deletes that hang on leftover ENIs, load balancers or security-group
cross-references, and resources forgotten because the state file was lost, are how clusters
leak money. The order is: listener, load balancer, target group -> instances (NAT gateways
are started too, as nothing but subnets and EIPs depend on them) -> wait for instances and
network interfaces to drain -> revoke cross-references between our security groups ->
security groups -> NAT gateways finished, Elastic IPs released -> route tables, subnets,
internet gateway -> VPC. "Not found" counts as done, "still in use" is waited out with
jittered backoff, and the run ends by listing whatever still carries our tags.

What it must not do: delete anything that does not carry our environment's tags (store
records are only used to mark rows deleted, and as IDs to try when AWS already lost them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from clusterdeck.errors import ClusterdeckError, PermanentError
from clusterdeck.events import EventKind
from clusterdeck.model.records import ResourceRecord
from clusterdeck.providers.aws import iam, observe, tags
from clusterdeck.providers.aws.errors import BUSY, AwsNotFound, collect
from clusterdeck.providers.aws.observe import Inventory
from clusterdeck.providers.aws.run import (
    INSTANCES,
    LOAD_BALANCER,
    NETWORK,
    SECURITY_GROUPS,
    AwsRun,
)

TERMINATE_BATCH = 1000
DRAIN_TIMEOUT = 600.0
BUSY_TIMEOUT = 600.0


def delete_all(run: AwsRun, records: list[ResourceRecord]) -> list[str]:
    """Delete the environment; return a line per resource still there afterwards."""
    inv = run.inventory
    started = time.monotonic()
    _load_balancers(run, inv)
    run.done(LOAD_BALANCER, started)
    started = time.monotonic()
    terminating, already = _terminate(run, inv)
    nats = _start_nat_deletes(run, inv)
    if not already:
        _wait_terminated(run, terminating)
    for vpc in inv.all("vpc"):
        _drain_interfaces(run, vpc.id, set(terminating))
    run.done(INSTANCES, started, f"{len(terminating)} terminated")
    iam.delete(run, _gone)
    started = time.monotonic()
    _security_groups(run, inv)
    run.done(SECURITY_GROUPS, started)
    started = time.monotonic()
    _finish_nat(run, nats)
    _network(run, inv)
    final = observe.discover(run.session, run.environment, scan_load_balancers=True)
    _mark_deleted(run, records, final)
    left = final.describe()
    run.done(NETWORK, started, f"{len(left)} left" if left else "nothing left")
    return left


def _gone(
    run: AwsRun,
    group: str,
    what: str,
    fn: Callable[..., Any],
    *,
    settle: tuple[str, ...] = (),
    **kwargs: Any,
) -> None:
    """Delete one thing; not found counts as done, busy is retried until BUSY_TIMEOUT.

    Any other failure is shown and the delete goes on: what could not be deleted is listed
    at the end by the final look-up, so one stubborn resource does not hide the rest."""
    try:
        run.call(fn, what, group, settle=settle, timeout=BUSY_TIMEOUT, **kwargs)
    except AwsNotFound:
        pass
    except ClusterdeckError as exc:
        run.emit(EventKind.FAILED, group, what, "delete", str(exc))
        return
    run.emit(EventKind.INFO, group, what, "deleted")


def _load_balancers(run: AwsRun, inv: Inventory) -> None:
    elb = run.session.elbv2
    for lst in inv.all("listener"):
        _gone(run, LOAD_BALANCER, f"listener {lst.id}", elb.delete_listener, ListenerArn=lst.id)
    for lb in inv.all("network-load-balancer"):
        run.info(LOAD_BALANCER, f"deleting load balancer {lb.raw.get('LoadBalancerName')}")
        _gone(
            run,
            LOAD_BALANCER,
            f"load balancer {lb.id}",
            elb.delete_load_balancer,
            LoadBalancerArn=lb.id,
        )
    for tg in inv.all("target-group"):
        _gone(
            run,
            LOAD_BALANCER,
            f"target group {tg.id}",
            elb.delete_target_group,
            settle=("ResourceInUse",),
            TargetGroupArn=tg.id,
        )


def _terminate(run: AwsRun, inv: Inventory) -> tuple[list[str], bool]:
    """Terminate every live instance; return their IDs and whether AWS already says all of
    them are terminated (then there is nothing to wait for)."""
    ids = [i.id for i in inv.live_instances()]
    done = True
    if ids:
        run.info(INSTANCES, f"terminating {len(ids)} instance(s)")
    for start in range(0, len(ids), TERMINATE_BATCH):
        batch = ids[start : start + TERMINATE_BATCH]
        try:
            out = run.call(
                run.session.ec2.terminate_instances,
                f"{len(batch)} instance(s)",
                INSTANCES,
                InstanceIds=batch,
            )
            states = [x.get("CurrentState", {}).get("Name") for x in out["TerminatingInstances"]]
            done = done and all(state == "terminated" for state in states)
        except AwsNotFound:
            done = False
            for one in batch:  # one of them vanished meanwhile: go one by one
                _gone(
                    run,
                    INSTANCES,
                    f"instance {one}",
                    run.session.ec2.terminate_instances,
                    InstanceIds=[one],
                )
    return ids, done


def _wait_terminated(run: AwsRun, ids: list[str]) -> None:
    if not ids:
        return
    run.info(INSTANCES, f"waiting for {len(ids)} instance(s) to terminate")
    deadline = time.monotonic() + DRAIN_TIMEOUT
    delay = 1.0
    flt = [
        *tags.env_filter(run.environment),
        {"Name": "instance-state-name", "Values": observe.LIVE_INSTANCE_STATES},
    ]
    while True:
        left = collect(
            run.session.ec2,
            "describe_instances",
            "Reservations",
            "waiting for instances to terminate",
            Filters=flt,
            PaginationConfig={"PageSize": 1000},
        )
        if not any(r.get("Instances") for r in left):
            return
        if time.monotonic() > deadline:
            raise PermanentError(
                f"instances of {run.environment} still not terminated after "
                f"{int(DRAIN_TIMEOUT)} s; run delete again later"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def _drain_interfaces(run: AwsRun, vpc: str, terminated: set[str]) -> None:
    """Wait until no load balancer or live instance holds an interface in the VPC; delete
    detached ones (left by add-ons), which would block the subnets. Instances we terminated
    and waited for are known to be gone, so only others are looked up."""
    ec2 = run.session.ec2
    deadline = time.monotonic() + DRAIN_TIMEOUT
    delay = 2.0
    announced = False
    while True:
        enis = collect(
            ec2,
            "describe_network_interfaces",
            "NetworkInterfaces",
            f"network interfaces in {vpc}",
            Filters=[{"Name": "vpc-id", "Values": [vpc]}],
        )
        attached_to = {e.get("Attachment", {}).get("InstanceId") for e in enis}
        attached_to -= {None, *terminated}
        live: set[str] = set()
        if attached_to:
            described = collect(
                ec2,
                "describe_instances",
                "Reservations",
                "instances holding interfaces",
                Filters=[
                    {"Name": "instance-id", "Values": sorted(attached_to)},
                    {"Name": "instance-state-name", "Values": observe.LIVE_INSTANCE_STATES},
                ],
            )
            live = {i.id for i in observe.instances_from(described)}
        busy = []
        for eni in enis:
            if eni.get("Status") == "available" and not eni.get("RequesterManaged"):
                _gone(
                    run,
                    INSTANCES,
                    f"network interface {eni['NetworkInterfaceId']}",
                    ec2.delete_network_interface,
                    NetworkInterfaceId=eni["NetworkInterfaceId"],
                )
            elif (
                str(eni.get("Description", "")).startswith("ELB ")
                or eni.get("Attachment", {}).get("InstanceId") in live
            ):
                busy.append(eni["NetworkInterfaceId"])
        if not busy:
            return
        if time.monotonic() > deadline:
            run.emit(
                EventKind.INFO, INSTANCES, vpc, "interfaces still attached", ", ".join(busy[:5])
            )
            return
        if not announced:
            run.info(INSTANCES, f"waiting for {len(busy)} network interface(s) to drain")
            announced = True
        time.sleep(delay)
        delay = min(delay * 1.5, 15.0)


def _security_groups(run: AwsRun, inv: Inventory) -> None:
    """Revoke rules that point at other groups first: AWS refuses to delete a referenced
    group. One revoke call per group carries all of them."""
    groups = inv.all("security-group")
    if not groups:
        return
    ec2 = run.session.ec2
    ids = [g.id for g in groups]
    try:
        described = run.call(
            ec2.describe_security_groups, "security groups", SECURITY_GROUPS, GroupIds=ids
        )
        current: list[dict[str, Any]] = [dict(x) for x in described["SecurityGroups"]]
    except AwsNotFound:
        current = collect(
            ec2,
            "describe_security_groups",
            "SecurityGroups",
            "security groups",
            Filters=tags.env_filter(run.environment),
        )
    run.info(SECURITY_GROUPS, "revoking cross-references")
    for sg in current:
        refs = [_only_foreign_pairs(p, sg["GroupId"]) for p in sg.get("IpPermissions", [])]
        refs = [p for p in refs if p is not None]
        if refs:
            _gone(
                run,
                SECURITY_GROUPS,
                f"cross-references of {sg['GroupId']}",
                ec2.revoke_security_group_ingress,
                GroupId=sg["GroupId"],
                IpPermissions=refs,
            )
    for sg in current:
        _gone(
            run,
            SECURITY_GROUPS,
            f"security group {sg.get('GroupName', sg['GroupId'])}",
            ec2.delete_security_group,
            settle=tuple(BUSY),
            GroupId=sg["GroupId"],
        )


def _only_foreign_pairs(perm: Mapping[str, Any], own: str) -> dict[str, Any] | None:
    pairs = [
        {"GroupId": p["GroupId"]}
        for p in perm.get("UserIdGroupPairs", [])
        if p.get("GroupId") != own
    ]
    if not pairs:
        return None
    out = {"IpProtocol": perm["IpProtocol"], "UserIdGroupPairs": pairs}
    if "FromPort" in perm:
        out.update(FromPort=perm["FromPort"], ToPort=perm["ToPort"])
    return out


def _start_nat_deletes(run: AwsRun, inv: Inventory) -> list[str]:
    nats = [n.id for n in inv.all("nat-gateway")]
    for nat in nats:
        _gone(
            run, NETWORK, f"NAT gateway {nat}", run.session.ec2.delete_nat_gateway, NatGatewayId=nat
        )
    return nats


def _finish_nat(run: AwsRun, nats: list[str]) -> None:
    ec2 = run.session.ec2
    if nats:
        run.info(NETWORK, f"waiting for {len(nats)} NAT gateway(s) to be deleted")
        deadline = time.monotonic() + DRAIN_TIMEOUT
        delay = 2.0
        while True:
            try:
                out = run.call(
                    ec2.describe_nat_gateways, "NAT gateways", NETWORK, NatGatewayIds=nats
                )["NatGateways"]
            except AwsNotFound:
                break
            if all(n.get("State") in ("deleted", "failed") for n in out):
                break
            if time.monotonic() > deadline:
                break  # EIP release below then fails clearly, and is listed as left
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)


def _network(run: AwsRun, inv: Inventory) -> None:
    ec2 = run.session.ec2
    for eip in inv.all("elastic-ip"):
        if eip.raw.get("AssociationId") and not eip.raw.get("NetworkInterfaceOwnerId"):
            _gone(
                run,
                NETWORK,
                f"Elastic IP {eip.id} association",
                ec2.disassociate_address,
                AssociationId=eip.raw["AssociationId"],
            )
        _gone(
            run,
            NETWORK,
            f"Elastic IP {eip.id}",
            ec2.release_address,
            settle=(*BUSY, "AuthFailure"),
            AllocationId=eip.id,
        )
    for rtb in inv.all("route-table"):
        for assoc in rtb.raw.get("Associations", []):
            if not assoc.get("Main") and assoc.get("RouteTableAssociationId"):
                _gone(
                    run,
                    NETWORK,
                    f"association {assoc['RouteTableAssociationId']}",
                    ec2.disassociate_route_table,
                    AssociationId=assoc["RouteTableAssociationId"],
                )
        _gone(
            run,
            NETWORK,
            f"route table {rtb.id}",
            ec2.delete_route_table,
            settle=tuple(BUSY),
            RouteTableId=rtb.id,
        )
    for sub in inv.all("subnet"):
        _gone(
            run, NETWORK, f"subnet {sub.id}", ec2.delete_subnet, settle=tuple(BUSY), SubnetId=sub.id
        )
    for igw in inv.all("internet-gateway"):
        for att in igw.raw.get("Attachments", []):
            if att.get("VpcId"):
                _gone(
                    run,
                    NETWORK,
                    f"internet gateway {igw.id} attachment",
                    ec2.detach_internet_gateway,
                    settle=tuple(BUSY),
                    InternetGatewayId=igw.id,
                    VpcId=att["VpcId"],
                )
        _gone(
            run,
            NETWORK,
            f"internet gateway {igw.id}",
            ec2.delete_internet_gateway,
            settle=tuple(BUSY),
            InternetGatewayId=igw.id,
        )
    for vpc in inv.all("vpc"):
        _gone(run, NETWORK, f"VPC {vpc.id}", ec2.delete_vpc, settle=tuple(BUSY), VpcId=vpc.id)


def _mark_deleted(run: AwsRun, records: list[ResourceRecord], final: Inventory) -> None:
    remaining = {f.id for f in final.all()} | {i.id for i in final.live_instances()}
    for rec in records:
        if rec.provider_id not in remaining:
            run.store.mark_deleted(run.environment, rec.key)
