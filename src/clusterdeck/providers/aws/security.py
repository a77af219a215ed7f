"""Security groups per role and their rules, exactly as the plan's tables say.

Why it exists: the plan (``plan.security_groups``) holds every rule with its sources: CIDRs,
the caller's public IP, another of our groups by name, or the group itself. This module
creates the groups first (in plan order: the control-plane group before the worker group),
then adds the rules, which is when cross-references between groups are added back. Each
group's missing rules go in ONE AuthorizeSecurityGroupIngress call; rules that already exist
are left alone, so a re-run adds only what a crash left out. Rules the plan no longer holds
(a former caller IP, a removed ``ingressCidrs`` entry, a port the CNI does not use) go in ONE
RevokeSecurityGroupIngress call: the groups are exactly the plan's tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from clusterdeck.errors import PermanentError
from clusterdeck.model.plan import Plan, SecurityGroupPlan, SourceKind
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import EVENTUAL, aws_code
from clusterdeck.providers.aws.run import SECURITY_GROUPS, AwsRun

# (protocol, from port, to port, source kind: cidr | cidr6 | group, source value)
Perm = tuple[str, int, int, str, str]


def ensure(run: AwsRun, plan: Plan, vpc: str, caller: str | None) -> None:
    started = time.monotonic()
    by_name = {g.name: g for g in plan.security_groups}
    for group in plan.security_groups:
        _group(run, group, vpc)
    checkpoints.reached("security-groups")
    ids = {g.name: run.ids[g.key] for g in plan.security_groups}
    for group in plan.security_groups:
        wanted = desired(group, ids, caller)
        _authorize(run, group, run.ids[group.key], wanted, by_name)
    checkpoints.reached("security-group-rules")
    run.done(SECURITY_GROUPS, started, f"{len(plan.security_groups)} groups")


def _group(run: AwsRun, group: SecurityGroupPlan, vpc: str) -> None:
    found = run.inventory.get(group.key)
    if found is not None:
        run.ids[group.key] = found.id
        return
    run.info(SECURITY_GROUPS, f"creating {group.name}")
    out = run.call(
        run.session.ec2.create_security_group,
        f"security group {group.name}",
        SECURITY_GROUPS,
        settle=tuple(EVENTUAL),
        GroupName=group.name,
        VpcId=vpc,
        Description=f"clusterdeck {run.environment} {group.role} nodes",
        TagSpecifications=[
            tags.spec(
                "security-group", tags.tags(run.environment, group.key, group.name, role=group.role)
            )
        ],
    )
    run.record(group.key, "security-group", out["GroupId"], name=group.name, vpc=vpc)


def desired(group: SecurityGroupPlan, ids: dict[str, str], caller: str | None) -> dict[Perm, str]:
    """Every (protocol, ports, source) the plan wants on ``group``, with its purpose."""
    wanted: dict[Perm, str] = {}
    for rule in group.rules:
        ports = (-1, -1) if rule.protocol == "icmp" else (rule.from_port, rule.to_port)
        for source in rule.sources:
            if source.kind is SourceKind.CIDR:
                value = source.value
            elif source.kind is SourceKind.CALLER:
                if caller is None:
                    raise PermanentError(
                        f"security group {group.name}: the caller's public "
                        "IP is needed but was not resolved"
                    )
                value = caller
            else:
                value = ids[group.name] if source.kind is SourceKind.SELF else ids[source.value]
                wanted[(rule.protocol, *ports, "group", value)] = rule.purpose
                continue
            kind = "cidr6" if ":" in value else "cidr"
            wanted[(rule.protocol, *ports, kind, value)] = rule.purpose
    return wanted


def existing(ip_permissions: Iterable[Mapping[str, Any]]) -> set[Perm]:
    have: set[Perm] = set()
    for perm in ip_permissions:
        proto = str(perm.get("IpProtocol"))
        ports = (int(perm.get("FromPort", -1)), int(perm.get("ToPort", -1)))
        if proto == "icmp":
            ports = (-1, -1)
        have.update((proto, *ports, "cidr", r["CidrIp"]) for r in perm.get("IpRanges", []))
        have.update((proto, *ports, "cidr6", r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", []))
        have.update(
            (proto, *ports, "group", p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])
        )
    return have


def ip_permissions(perms: dict[Perm, str]) -> list[dict[str, Any]]:
    """AWS IpPermissions for ``perms``, one entry per (protocol, ports)."""
    grouped: dict[tuple[str, int, int], dict[str, Any]] = {}
    for (proto, low, high, kind, value), purpose in sorted(perms.items()):
        entry = grouped.setdefault(
            (proto, low, high), {"IpProtocol": proto, "FromPort": low, "ToPort": high}
        )
        if kind == "cidr":
            entry.setdefault("IpRanges", []).append({"CidrIp": value, "Description": purpose})
        elif kind == "cidr6":
            entry.setdefault("Ipv6Ranges", []).append({"CidrIpv6": value, "Description": purpose})
        else:
            entry.setdefault("UserIdGroupPairs", []).append(
                {"GroupId": value, "Description": purpose}
            )
    return list(grouped.values())


def _without_descriptions(perms: dict[Perm, str]) -> list[dict[str, Any]]:
    """IpPermissions to revoke: matched by protocol, ports and source; no descriptions."""
    out = []
    for entry in ip_permissions(perms):
        for key in ("IpRanges", "Ipv6Ranges", "UserIdGroupPairs"):
            for item in entry.get(key, []):
                item.pop("Description", None)
        out.append(entry)
    return out


def _authorize(
    run: AwsRun,
    group: SecurityGroupPlan,
    group_id: str,
    wanted: dict[Perm, str],
    by_name: dict[str, SecurityGroupPlan],
) -> None:
    ec2 = run.session.ec2
    found = run.inventory.get(group.key)
    have = existing(found.raw.get("IpPermissions", [])) if found is not None else set()
    stale = {p: "" for p in have if p not in wanted}
    if stale:
        shown = ", ".join(f"{p[0]} {p[1]}-{p[2]} from {p[4]}" for p in sorted(stale))
        run.info(
            SECURITY_GROUPS,
            f"revoking {len(stale)} rules of {group.name} no longer wanted: {shown}",
        )
        run.call(
            ec2.revoke_security_group_ingress,
            f"stale rules of security group {group.name}",
            SECURITY_GROUPS,
            settle=tuple(EVENTUAL),
            GroupId=group_id,
            IpPermissions=_without_descriptions(stale),
        )
        have -= set(stale)
    for attempt in range(2):
        missing = {p: why for p, why in wanted.items() if p not in have}
        if not missing:
            return
        run.info(SECURITY_GROUPS, f"adding {len(missing)} rules to {group.name}")
        try:
            run.call(
                ec2.authorize_security_group_ingress,
                f"rules of security group {group.name}",
                SECURITY_GROUPS,
                settle=tuple(EVENTUAL),
                GroupId=group_id,
                IpPermissions=ip_permissions(missing),
            )
            return
        except PermanentError as exc:
            if aws_code(exc) != "InvalidPermission.Duplicate" or attempt:
                raise
        described = run.call(
            ec2.describe_security_groups,
            f"security group {group.name}",
            SECURITY_GROUPS,
            GroupIds=[group_id],
        )
        have = existing(described["SecurityGroups"][0].get("IpPermissions", []))
