"""Build the Plan: diff the topology against what exists and describe every change.

Before anything exists (``Observed.nothing()``) every resource and node is a create. Later
runs see what the providers and the store report and only list what is missing, changed
(immutable fields become Replace) or gone from the file. No I/O.
"""

from __future__ import annotations

from clusterdeck.model.observed import Observed
from clusterdeck.model.plan import (
    Action,
    ActionKind,
    Endpoint,
    LoadBalancerPlan,
    NodePlan,
    Plan,
    ResourcePlan,
)
from clusterdeck.model.topology import Topology
from clusterdeck.planner import aws_layout
from clusterdeck.planner.phases import phases_for, wants_device_plugin
from clusterdeck.spec import arch, rules
from clusterdeck.spec.models import Environment, LoadBalancerKind, NetworkMode
from clusterdeck.spec.network import aws_groups


def pod_traffic_unencapsulated(env: Environment) -> bool:
    """Whether pod packets cross the VPC with pod addresses (so EC2's source/destination check
    must be off on every node interface). Not for any mode clusterdeck sets up: Calico here
    is VXLAN (CALICO_IPV4POOL_VXLAN Always) and Flannel's backend is vxlan; both wrap pod
    packets in UDP between the nodes' own addresses, which the check lets through (Calico's
    AWS guidance asks for the check off only for unencapsulated or cross-subnet-only modes)."""
    return False


def build_plan(env: Environment, topology: Topology, observed: Observed | None = None) -> Plan:
    observed = observed or Observed.nothing()
    resources: list[ResourcePlan] = []
    security_groups = []
    instance_groups = []
    load_balancer: LoadBalancerPlan | None = None
    aws = env.spec.aws
    ha = env.spec.cluster.high_availability
    if aws is not None and aws_groups(env):
        net, layout = aws_layout.network(env, aws)
        resources += net + aws_layout.iam(env, aws)
        security_groups = aws_layout.security_groups(env, aws, layout, topology)
        instance_groups = aws_layout.instance_groups(env, aws, topology)
        if aws_layout.wants_bastion(aws):
            instance_groups.insert(0, aws_layout.bastion(env, layout))
        if ha.enabled and ha.load_balancer is LoadBalancerKind.NLB:
            load_balancer, lb_resources = aws_layout.nlb(env, topology)
            resources += lb_resources
    if ha.enabled and ha.load_balancer is LoadBalancerKind.KEEPALIVED and ha.vip:
        load_balancer = LoadBalancerPlan(
            kind="keepalived",
            name=f"VIP {ha.vip}",
            listener_port=ha.api_port,
            target_port=6443,
            targets=[n.name for n in topology.control_planes()],
            health_check="HAProxy tcp-check on 6443 every 2 s",
        )
    device_plugin = wants_device_plugin(env, topology.nodes)
    nodes = [
        NodePlan(
            name=n.name,
            role=n.role.value,
            pool=n.pool,
            provider=n.provider,
            zone=n.zone,
            address=n.host.address if n.host else None,
            labels=n.labels,
            taints=n.taints,
            phases=phases_for(env, n, device_plugin=device_plugin),
            arch=arch.of_node(n.provider, n.instance_type),
            site=n.overlay.site if n.overlay else None,
            overlay=(
                ("nat" if n.overlay.nat else "relay" if n.overlay.relay else "direct")
                if n.overlay
                else None
            ),
        )
        for n in topology.nodes
    ]
    warnings = [msg for _, msg in rules.warnings(env)]
    return Plan(
        environment=env.name,
        provider=env.spec.provider.value,
        endpoint=endpoint(env, topology),
        control_plane_untainted=topology.control_plane_untainted,
        untainted_reason=topology.untainted_reason,
        network_mode=aws.network.mode.value if aws is not None and aws_groups(env) else None,
        source_dest_check_off=pod_traffic_unencapsulated(env),
        resources=resources,
        security_groups=security_groups,
        instance_groups=instance_groups,
        load_balancer=load_balancer,
        nodes=nodes,
        actions=_actions(
            topology, observed, [r.key for r in resources] + [s.key for s in security_groups]
        ),
        warnings=warnings,
    )


def endpoint(env: Environment, topology: Topology) -> Endpoint:
    ha = env.spec.cluster.high_availability
    if ha.enabled and ha.load_balancer is LoadBalancerKind.NLB:
        name = aws_layout.aws_name(f"{env.name}-nlb")
        return Endpoint(
            kind="nlb", host=f"DNS name of {name} (known after create)", port=6443, known=False
        )
    if ha.enabled and ha.load_balancer is LoadBalancerKind.KEEPALIVED and ha.vip:
        return Endpoint(kind="vip", host=ha.vip, port=ha.api_port, known=True)
    first = topology.control_planes()[0]
    if first.host is not None:
        return Endpoint(kind="control-plane", host=first.host.address, port=6443, known=True)
    which = (
        "private" if env.spec.aws and env.spec.aws.network.mode is NetworkMode.PRIVATE else "public"
    )
    return Endpoint(
        kind="control-plane",
        host=f"{which} IP of {first.name} (known after create)",
        port=6443,
        known=False,
    )


def _actions(topology: Topology, observed: Observed, resource_keys: list[str]) -> list[Action]:
    actions: list[Action] = []
    for key in resource_keys:
        if key in observed.resources:
            actions.append(
                Action(
                    kind=ActionKind.NOOP, target=key, reason=f"exists as {observed.resources[key]}"
                )
            )
        else:
            actions.append(Action(kind=ActionKind.CREATE, target=key, reason="does not exist yet"))
    wanted = {n.name for n in topology.nodes}
    for node in topology.nodes:
        seen = observed.nodes.get(node.name)
        if seen is None:
            actions.append(
                Action(
                    kind=ActionKind.CREATE,
                    target=node.name,
                    reason=f"new {node.role.value} node in pool {node.pool}",
                )
            )
        elif node.instance_type and seen.instance_type and seen.instance_type != node.instance_type:
            actions.append(
                Action(
                    kind=ActionKind.REPLACE,
                    target=node.name,
                    reason=f"instance type {seen.instance_type} -> "
                    f"{node.instance_type} cannot change in place",
                )
            )
        else:
            actions.append(
                Action(
                    kind=ActionKind.NOOP,
                    target=node.name,
                    reason=f"exists ({seen.provider_id or seen.state})",
                )
            )
    actions.extend(
        Action(kind=ActionKind.DELETE, target=name, reason="no longer in the file")
        for name in sorted(set(observed.nodes) - wanted)
    )
    return actions
