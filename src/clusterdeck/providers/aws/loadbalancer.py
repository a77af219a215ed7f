"""The HA endpoint: a network load balancer in front of every control plane on TCP 6443.

Why it exists: with ``highAvailability.enabled`` and ``loadBalancer: nlb`` the plan holds a
target group (TCP 6443, TCP health check every 10 s, 2 healthy / 2 unhealthy), an
internet-facing NLB ``<env>-nlb`` (cut to 32 characters) in the public subnets, and a TCP
6443 listener forwarding to the group. ELBv2 cannot filter by tag, so each is found by its
name and then checked to carry our tags; a name taken by something that is not ours stops
the create instead of adopting or overwriting it. All control planes are registered in one
RegisterTargets call.
"""

from __future__ import annotations

import time
from typing import Any

from clusterdeck.errors import PermanentError
from clusterdeck.model.plan import Plan, ResourcePlan
from clusterdeck.providers.aws import checkpoints, tags
from clusterdeck.providers.aws.errors import EVENTUAL
from clusterdeck.providers.aws.run import LOAD_BALANCER, AwsRun

PORT = 6443
ACTIVE_TIMEOUT = 900.0


def ensure(run: AwsRun, plan: Plan, vpc: str, control_planes: list[str]) -> str | None:
    """Create what is missing; return the NLB's DNS name (None when the plan has no NLB)."""
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
    tg = _target_group(run, res["nlb/target-group"], vpc)
    _register(run, tg, control_planes)
    checkpoints.reached("target-group")
    lb_arn, dns = _load_balancer(run, res["nlb"])
    checkpoints.reached("load-balancer")
    _wait_active(run, lb_arn)
    _listener(run, res["nlb/listener"], lb_arn, tg)
    checkpoints.reached("listener")
    run.done(LOAD_BALANCER, started, dns)
    return dns


def _tag_list(run: AwsRun, r: ResourcePlan) -> list[Any]:
    return tags.tags(run.environment, r.key, r.name, role="control-plane")


def _target_group(run: AwsRun, r: ResourcePlan, vpc: str) -> str:
    found = run.inventory.get(r.key)
    if found is not None:
        run.ids[r.key] = found.id
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
    return arn


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


def _load_balancer(run: AwsRun, r: ResourcePlan) -> tuple[str, str]:
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
        Scheme="internet-facing",
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
