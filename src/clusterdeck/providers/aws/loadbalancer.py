"""The HA endpoint: network load balancers in front of every control plane on TCP 6443.

Why it exists: with ``highAvailability.enabled`` and ``loadBalancer: nlb`` the plan holds two
sets of a target group (TCP 6443, TCP health check every 10 s, 2 healthy / 2 unhealthy), an
NLB in the public subnets and a TCP 6443 listener forwarding to the group: ``<env>-nlb``,
internet-facing, for users (client IP preservation on, so the security group admits only
their addresses), and ``<env>-nlb-int``, internal, for the nodes and kubeadm (client IP
preservation off: see ``planner/aws_layout.nlb`` and docs/aws.md for why). ELBv2 cannot
filter by tag, so each is found by its name and then checked to carry our tags; a name
taken by something that is not ours stops the create instead of adopting or overwriting it.
All control planes are registered in one RegisterTargets call per target group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from clusterdeck.errors import PermanentError
from clusterdeck.model.plan import Plan, ResourcePlan
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import EVENTUAL
from clusterdeck.providers.aws.run import LOAD_BALANCER, AwsRun

PORT = 6443
ACTIVE_TIMEOUT = 900.0


PRESERVE_CLIENT_IP = "preserve_client_ip.enabled"


@dataclass(frozen=True)
class Endpoints:
    public: str  # the internet-facing NLB's DNS name: for users (kubeconfig)
    internal: str  # the internal NLB's: for nodes and kubeadm's controlPlaneEndpoint


def ensure(run: AwsRun, plan: Plan, vpc: str, control_planes: list[str]) -> Endpoints | None:
    """Create what is missing; return both NLBs' DNS names (None when the plan has none)."""
    lb_plan = plan.load_balancer
    if lb_plan is None or lb_plan.kind != "nlb":
        return None
    started = time.monotonic()
    if run.inventory.foreign:
        raise PermanentError(
            f"{' and '.join(run.inventory.foreign)} already exist(s) in {run.region} but "
            f"do(es) not belong to environment {run.environment!r}; delete or rename it, or "
            "choose another environment name"
        )
    res = {r.key: r for r in plan.resources}
    made: dict[str, tuple[str, str, str]] = {}
    for key, is_internal in (("nlb", False), ("nlb-internal", True)):
        if key not in res:
            continue
        tg = _target_group(run, res[f"{key}/target-group"], vpc, preserve_client_ip=not is_internal)
        _register(run, tg, control_planes)
        checkpoints.reached("target-group")
        lb_arn, dns = _load_balancer(run, res[key], internal=is_internal)
        checkpoints.reached("load-balancer")
        made[key] = (lb_arn, tg, dns)
    for key, (lb_arn, tg, _) in made.items():  # both become active at the same time
        _wait_active(run, lb_arn)
        _listener(run, res[f"{key}/listener"], lb_arn, tg)
        checkpoints.reached("listener")
    public = made["nlb"][2]
    internal = made["nlb-internal"][2] if "nlb-internal" in made else public
    run.done(LOAD_BALANCER, started, f"{public} (nodes: {internal})")
    return Endpoints(public=public, internal=internal)


def _tag_list(run: AwsRun, r: ResourcePlan) -> list[Any]:
    return tags.tags(run.environment, r.key, r.name, role="control-plane")


def _target_group(run: AwsRun, r: ResourcePlan, vpc: str, *, preserve_client_ip: bool) -> str:
    found = run.inventory.get(r.key)
    if found is not None:
        run.ids[r.key] = found.id
        _client_ip(run, found.id, preserve_client_ip)
        return found.id
    run.info(LOAD_BALANCER, f"creating target group {r.name}")
    out = run.call(
        run.session.elbv2.create_target_group,
        f"target group {r.name}",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        Name=r.name,
        Protocol="TCP",
        Port=PORT,
        VpcId=vpc,
        TargetType="instance",
        HealthCheckProtocol="TCP",
        HealthCheckPort=str(PORT),
        HealthCheckIntervalSeconds=10,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
        Tags=_tag_list(run, r),
    )
    arn = out["TargetGroups"][0]["TargetGroupArn"]
    run.record(r.key, r.kind, arn, name=r.name, port=PORT)
    _client_ip(run, arn, preserve_client_ip)
    return arn


def _client_ip(run: AwsRun, arn: str, preserve: bool) -> None:
    """Client IP preservation as the plan wants it (instance targets default to on)."""
    elb = run.session.elbv2
    current = run.call(
        elb.describe_target_group_attributes,
        "target group attributes",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        TargetGroupArn=arn,
    )
    want = "true" if preserve else "false"
    have = {a["Key"]: a["Value"] for a in current.get("Attributes", [])}
    if have.get(PRESERVE_CLIENT_IP, "true") == want:
        return
    run.call(
        elb.modify_target_group_attributes,
        "client IP preservation",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        TargetGroupArn=arn,
        Attributes=[{"Key": PRESERVE_CLIENT_IP, "Value": want}],
    )


def _register(run: AwsRun, tg: str, instance_ids: list[str]) -> None:
    elb = run.session.elbv2
    health = run.call(
        elb.describe_target_health,
        "target group members",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        TargetGroupArn=tg,
    )
    registered = {d["Target"]["Id"] for d in health.get("TargetHealthDescriptions", [])}
    missing = [i for i in instance_ids if i not in registered]
    stale = [i for i in registered if i not in instance_ids]
    if missing:
        run.info(LOAD_BALANCER, f"registering {len(missing)} control plane(s)")
        run.call(
            elb.register_targets,
            "control planes as targets",
            LOAD_BALANCER,
            settle=tuple(EVENTUAL),
            TargetGroupArn=tg,
            Targets=[{"Id": i, "Port": PORT} for i in missing],
        )
    if stale:
        run.call(
            elb.deregister_targets,
            "replaced control planes",
            LOAD_BALANCER,
            TargetGroupArn=tg,
            Targets=[{"Id": i, "Port": PORT} for i in stale],
        )


def _load_balancer(run: AwsRun, r: ResourcePlan, *, internal: bool) -> tuple[str, str]:
    found = run.inventory.get(r.key)
    if found is not None:
        run.ids[r.key] = found.id
        return found.id, str(found.raw.get("DNSName", ""))
    subnets = [run.ids[k] for k in r.depends_on if k.startswith("subnet/public/")]
    run.info(LOAD_BALANCER, f"creating network load balancer {r.name}")
    out = run.call(
        run.session.elbv2.create_load_balancer,
        f"load balancer {r.name}",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        Name=r.name,
        Type="network",
        Scheme="internal" if internal else "internet-facing",
        IpAddressType="ipv4",
        Subnets=subnets,
        Tags=_tag_list(run, r),
    )
    lb = out["LoadBalancers"][0]
    arn, dns = lb["LoadBalancerArn"], lb["DNSName"]
    run.record(r.key, r.kind, arn, name=r.name, dns_name=dns)
    return arn, dns


def _wait_active(run: AwsRun, arn: str) -> None:
    """Wait until the NLB is active (AWS takes a few minutes); one describe per poll."""
    deadline = time.monotonic() + ACTIVE_TIMEOUT
    delay = 2.0
    announced = False
    while True:
        out = run.call(
            run.session.elbv2.describe_load_balancers,
            "load balancer state",
            LOAD_BALANCER,
            settle=tuple(EVENTUAL),
            LoadBalancerArns=[arn],
        )
        state = out["LoadBalancers"][0].get("State", {})
        code = state.get("Code", "active")
        if code == "active":
            return
        if code in ("failed", "active_impaired") or time.monotonic() > deadline:
            raise PermanentError(
                f"load balancer {arn} is {code}: {state.get('Reason', 'no reason given')}"
            )
        if not announced:
            run.info(LOAD_BALANCER, "waiting for the load balancer to become active")
            announced = True
        time.sleep(delay)
        delay = min(delay * 1.5, 15.0)


def _listener(run: AwsRun, r: ResourcePlan, lb_arn: str, tg: str) -> None:
    for found in run.inventory.by_key.get(r.key, []):
        if found.raw.get("Port") == PORT and found.raw.get("LoadBalancerArn") == lb_arn:
            run.ids[r.key] = found.id
            return
    out = run.call(
        run.session.elbv2.create_listener,
        f"listener {r.name}",
        LOAD_BALANCER,
        settle=tuple(EVENTUAL),
        LoadBalancerArn=lb_arn,
        Protocol="TCP",
        Port=PORT,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        Tags=_tag_list(run, r),
    )
    run.record(r.key, r.kind, out["Listeners"][0]["ListenerArn"], port=PORT, load_balancer=lb_arn)
