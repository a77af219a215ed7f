"""The AWS side of the plan: network, security groups per role, instance groups, NLB.

Security-group rules follow the reference tables (control-plane group ``<env>-cp`` and worker
group ``<env>-worker``; sources by group where the table says so). Two deliberate defaults
are tighter than the reference: NodePorts are open to ``ingressCidrs`` (or the caller's IP),
not 0.0.0.0/0, unless ``aws.nodePortCidrs`` says otherwise; in private mode SSH is allowed
only from the bastion's group. No I/O.
"""

from __future__ import annotations

import ipaddress

from clusterdeck.model import aws_iam
from clusterdeck.model.plan import (
    InstanceGroupPlan,
    LoadBalancerPlan,
    ResourcePlan,
    RuleSource,
    SecurityGroupPlan,
    SecurityGroupRule,
    SourceKind,
)
from clusterdeck.model.topology import Node, Role, Topology
from clusterdeck.spec.models import AwsSpec, Cni, Environment, NetworkMode, NodeAccess
from clusterdeck.spec.network import SubnetLayout, subnet_layout, zones_in_use

SG_CP = "sg/control-plane"
SG_WORKER = "sg/worker"
SG_BASTION = "sg/bastion"
BASTION_INSTANCE_TYPE = "t3.micro"


def uses_ssm(aws: AwsSpec) -> bool:
    return aws.network.mode is NetworkMode.PRIVATE and aws.network.node_access is NodeAccess.SSM


def wants_bastion(aws: AwsSpec) -> bool:
    return aws.network.mode is NetworkMode.PRIVATE and not uses_ssm(aws)


def iam(env: Environment, aws: AwsSpec) -> list[ResourcePlan]:
    """The role and instance profile every node without a public address gets, so that
    Systems Manager can reach it (AmazonSSMManagedInstanceCore: the agent's own calls only)."""
    if aws.network.mode is not NetworkMode.PRIVATE:
        return []
    name = aws_iam.node_profile_name(env.name, aws.region)
    return [
        ResourcePlan(
            key=aws_iam.ROLE_KEY,
            kind="iam-role",
            name=name,
            details={"trust": "ec2.amazonaws.com", "policy": aws_iam.SSM_POLICY_ARN},
        ),
        ResourcePlan(
            key=aws_iam.PROFILE_KEY,
            kind="instance-profile",
            name=name,
            details={"role": name},
            depends_on=[aws_iam.ROLE_KEY],
        ),
    ]


NLB_HEALTH = "TCP 6443 every 10 s, healthy 2 / unhealthy 2"


def aws_name(text: str, limit: int = 32) -> str:
    """Cut an ELB name to AWS's limit without a trailing hyphen."""
    return text[:limit].rstrip("-")


def network(env: Environment, aws: AwsSpec) -> tuple[list[ResourcePlan], list[SubnetLayout]]:
    name = env.name
    zones = zones_in_use(env)
    layout = subnet_layout(aws.vpc_cidr, aws.network.mode, zones)
    res = [
        ResourcePlan(
            key="vpc",
            kind="vpc",
            name=f"{name}-vpc",
            details={"cidr": aws.vpc_cidr, "region": aws.region},
        ),
        ResourcePlan(key="igw", kind="internet-gateway", name=f"{name}-igw", depends_on=["vpc"]),
    ]
    for sub in layout:
        res.append(
            ResourcePlan(
                key=subnet_key(sub),
                kind="subnet",
                name=f"{name}-{'public' if sub.public else 'private'}-{sub.zone}",
                details={
                    "cidr": sub.cidr,
                    "zone": sub.zone,
                    "public": str(sub.public).lower(),
                    "purpose": sub.purpose,
                },
                depends_on=["vpc"],
            )
        )
    public_subnets = [subnet_key(s) for s in layout if s.public]
    res.append(
        ResourcePlan(
            key="rtb/public",
            kind="route-table",
            name=f"{name}-public",
            details={"route": "0.0.0.0/0 -> internet gateway"},
            depends_on=["igw", *public_subnets],
        )
    )
    if aws.network.mode is NetworkMode.PRIVATE:
        for sub in layout:
            if sub.public:
                continue
            zone = sub.zone
            res.append(
                ResourcePlan(
                    key=f"eip/nat/{zone}",
                    kind="elastic-ip",
                    name=f"{name}-nat-{zone}",
                    depends_on=["vpc"],
                )
            )
            res.append(
                ResourcePlan(
                    key=f"nat/{zone}",
                    kind="nat-gateway",
                    name=f"{name}-nat-{zone}",
                    details={"zone": zone},
                    depends_on=[f"eip/nat/{zone}", f"subnet/public/{zone}", "igw"],
                )
            )
            res.append(
                ResourcePlan(
                    key=f"rtb/private/{zone}",
                    kind="route-table",
                    name=f"{name}-private-{zone}",
                    details={"route": f"0.0.0.0/0 -> NAT gateway in {zone}"},
                    depends_on=[f"nat/{zone}", subnet_key(sub)],
                )
            )
    return res, layout


def subnet_key(sub: SubnetLayout) -> str:
    return f"subnet/{'public' if sub.public else 'private'}/{sub.zone}"


def security_groups(
    env: Environment, aws: AwsSpec, layout: list[SubnetLayout], topology: Topology
) -> list[SecurityGroupPlan]:
    name = env.name
    cp_name, worker_name = f"{name}-cp", f"{name}-worker"
    private = aws.network.mode is NetworkMode.PRIVATE
    ingress = _ingress(aws.ingress_cidrs)
    node_ports = _ingress(aws.node_port_cidrs) if aws.node_port_cidrs else ingress
    # private: SSH only from the bastion, or not at all when SSM sessions reach the nodes
    ssh = (
        []
        if uses_ssm(aws)
        else [RuleSource(kind=SourceKind.SECURITY_GROUP, value=f"{name}-bastion")]
        if private
        else ingress
    )
    self_cp = RuleSource(kind=SourceKind.SELF, value=cp_name)
    cp_sg = RuleSource(kind=SourceKind.SECURITY_GROUP, value=cp_name)
    worker_sg = RuleSource(kind=SourceKind.SECURITY_GROUP, value=worker_name)
    vpc = [RuleSource(kind=SourceKind.CIDR, value=aws.vpc_cidr)]
    lb_subnets = [RuleSource(kind=SourceKind.CIDR, value=s.cidr) for s in layout if s.public]

    def rule(
        proto: str, ports: tuple[int, int], sources: list[RuleSource], purpose: str
    ) -> SecurityGroupRule:
        return SecurityGroupRule(
            protocol=proto, from_port=ports[0], to_port=ports[1], sources=sources, purpose=purpose
        )

    api_sources = [*ingress, *lb_subnets, worker_sg] + ([self_cp] if private else [])
    ssh_rules = [rule("tcp", (22, 22), ssh, "SSH access")] if ssh else []
    cp_rules = [
        *ssh_rules,
        rule("tcp", (6443, 6443), api_sources, "Kubernetes API"),
        rule("tcp", (2379, 2380), [self_cp], "etcd peer/client"),
        rule("tcp", (10250, 10250), [self_cp, worker_sg], "kubelet"),
        rule("tcp", (10259, 10259), [self_cp], "kube-scheduler"),
        rule("tcp", (10257, 10257), [self_cp], "kube-controller-manager"),
    ]
    worker_rules = [
        *ssh_rules,
        rule("tcp", (10250, 10250), [cp_sg], "kubelet (from control-plane only)"),
        rule("tcp", (30000, 32767), node_ports, "NodePort services"),
    ]
    if env.spec.overlay is not None:
        # pod traffic and everything between nodes travels inside WireGuard: its port is the
        # only one the tunnel needs, from the other aws nodes and the hosts the file lists
        # outside NAT (a host behind NAT reaches aws nodes through a relay, a listed host)
        port = env.spec.overlay.port
        peers = _overlay_peer_sources(topology)
        why = "WireGuard overlay"
        cp_rules.append(rule("udp", (port, port), [self_cp, worker_sg, *peers], why))
        worker_rules.append(rule("udp", (port, port), [cp_sg, worker_sg, *peers], why))
    else:
        tunnel = _cni_rules(env.spec.kubernetes.cni)
        cp_rules += [rule(p, r, [self_cp, worker_sg], why) for p, r, why in tunnel]
        worker_rules += [rule(p, r, [cp_sg, worker_sg], why) for p, r, why in tunnel]
    icmp = rule("icmp", (-1, -1), vpc, "Ping / path MTU discovery")
    groups = [
        SecurityGroupPlan(key=SG_CP, name=cp_name, role="control-plane", rules=[*cp_rules, icmp]),
        SecurityGroupPlan(
            key=SG_WORKER, name=worker_name, role="worker", rules=[*worker_rules, icmp]
        ),
    ]
    if wants_bastion(aws):
        groups.insert(
            0,
            SecurityGroupPlan(
                key=SG_BASTION,
                name=f"{name}-bastion",
                role="bastion",
                rules=[rule("tcp", (22, 22), ingress, "SSH access")],
            ),
        )
    return groups


def _overlay_peer_sources(topology: Topology) -> list[RuleSource]:
    """The listed hosts that send WireGuard from their own address: not behind NAT."""
    found: list[RuleSource] = []
    for node in topology.nodes:
        if node.host is None or node.overlay is None or node.overlay.nat:
            continue
        try:
            address = ipaddress.ip_address(node.host.address)
        except ValueError:
            continue  # a DNS name: its address is not known without a lookup
        source = RuleSource(kind=SourceKind.CIDR, value=f"{address}/{address.max_prefixlen}")
        if source not in found:
            found.append(source)
    return found


def _ingress(cidrs: list[str]) -> list[RuleSource]:
    if cidrs:
        return [RuleSource(kind=SourceKind.CIDR, value=c) for c in cidrs]
    return [RuleSource(kind=SourceKind.CALLER, value="caller public IP (found at create time)")]


def _cni_rules(cni: Cni) -> list[tuple[str, tuple[int, int], str]]:
    if cni is Cni.FLANNEL:
        return [("udp", (8472, 8472), "Flannel VXLAN")]
    # clusterdeck's Calico is VXLAN only, without BGP (no BIRD) and without Typha: port 179
    # and 5473 stay closed
    return [("udp", (4789, 4789), "Calico VXLAN")]


def instance_groups(env: Environment, aws: AwsSpec, topology: Topology) -> list[InstanceGroupPlan]:
    private = aws.network.mode is NetworkMode.PRIVATE
    profile = aws_iam.node_profile_name(env.name, aws.region) if private else None
    grouped: dict[tuple[str, str], list[Node]] = {}
    for node in topology.nodes:
        if node.provider == "aws" and node.zone is not None:
            grouped.setdefault((node.pool, node.zone), []).append(node)
    groups = []
    for (pool, zone), nodes in grouped.items():
        first = nodes[0]
        spot = first.spot
        price = None
        if spot is not None:
            price = (
                f"{spot.max_price} USD/h"
                if spot.max_price
                else f"{spot.max_price_percent}% of on-demand"
                if spot.max_price_percent
                else "capped at on-demand"
            )
        groups.append(
            InstanceGroupPlan(
                key=f"instances/{pool}/{zone}",
                pool=pool,
                role=first.role.value,
                zone=zone,
                instance_type=first.instance_type or "",
                count=len(nodes),
                nodes=[n.name for n in nodes],
                market="spot" if spot else "on-demand",
                spot_price=price,
                root_volume_gb=first.root_volume_gb or 64,
                public_ip=not private,
                instance_profile=profile,
                reach="ssm" if uses_ssm(aws) else "ssh",
                subnet=f"subnet/{'private' if private else 'public'}/{zone}",
                security_group=SG_CP if first.role is Role.CONTROL_PLANE else SG_WORKER,
                machine=first.machine(),
            )
        )
    return groups


def bastion(env: Environment, layout: list[SubnetLayout]) -> InstanceGroupPlan:
    zone = next(s.zone for s in layout if s.public)
    return InstanceGroupPlan(
        key="instances/bastion",
        pool="bastion",
        role="bastion",
        zone=zone,
        instance_type=BASTION_INSTANCE_TYPE,
        count=1,
        nodes=[f"{env.name}-bastion"],
        root_volume_gb=16,
        public_ip=True,
        subnet=f"subnet/public/{zone}",
        security_group=SG_BASTION,
    )


def nlb(env: Environment, topology: Topology) -> tuple[LoadBalancerPlan, list[ResourcePlan]]:
    """Two NLBs in front of the control planes, as kOps has them. Users reach the API through
    the internet-facing one, which keeps their address (client IP preservation, the default
    for instance targets), so the control planes' security group admits only ingressCidrs.
    Nodes, and kubeadm's controlPlaneEndpoint, use an internal one with client IP preservation
    off: a node's traffic to a public NLB arrives from its public (or NAT) address, which no
    rule admits, and with preservation on a target reaching itself through the NLB is dropped
    (no hairpin), which breaks kubeadm init on the first control plane. With preservation off
    the sources are the internal NLB's own addresses in its subnets, which the rules admit."""
    lb_name = aws_name(f"{env.name}-nlb")
    tg_name = aws_name(f"{env.name}-cp")
    internal_name = aws_name(f"{env.name}-nlb-int")
    internal_tg = aws_name(f"{env.name}-cp-int")
    plan = LoadBalancerPlan(
        kind="nlb",
        name=lb_name,
        listener_port=6443,
        target_port=6443,
        targets=[n.name for n in topology.control_planes()],
        health_check=NLB_HEALTH,
        target_group=tg_name,
        internal_name=internal_name,
        internal_target_group=internal_tg,
    )
    public = [f"subnet/public/{z}" for z in zones_in_use(env)]
    res = [
        ResourcePlan(
            key="nlb",
            kind="network-load-balancer",
            name=lb_name,
            details={"scheme": "internet-facing", "type": "network"},
            depends_on=public,
        ),
        ResourcePlan(
            key="nlb/target-group",
            kind="target-group",
            name=tg_name,
            details={"protocol": "TCP", "port": "6443", "health": NLB_HEALTH},
            depends_on=["vpc"],
        ),
        ResourcePlan(
            key="nlb/listener",
            kind="listener",
            name=f"{lb_name}:6443",
            details={"protocol": "TCP", "port": "6443"},
            depends_on=["nlb", "nlb/target-group"],
        ),
        ResourcePlan(
            key="nlb-internal",
            kind="network-load-balancer",
            name=internal_name,
            details={"scheme": "internal", "type": "network", "for": "nodes and kubeadm"},
            depends_on=public,
        ),
        ResourcePlan(
            key="nlb-internal/target-group",
            kind="target-group",
            name=internal_tg,
            details={
                "protocol": "TCP",
                "port": "6443",
                "health": NLB_HEALTH,
                "client IP preservation": "off",
            },
            depends_on=["vpc"],
        ),
        ResourcePlan(
            key="nlb-internal/listener",
            kind="listener",
            name=f"{internal_name}:6443",
            details={"protocol": "TCP", "port": "6443"},
            depends_on=["nlb-internal", "nlb-internal/target-group"],
        ),
    ]
    return plan, res
