"""Boot material for stateless nodes: what a PXE server (Warewulf or another) serves each node.

Stateless nodes keep nothing across a reboot, so clusterdeck does not push phases to them:
each node's agent (``clusterdeck agent``) runs them at boot. This module decides what the agent
finds on the node, as a tree of files that ``pxe render`` writes:

- ``overlay/``: the same for every node: the agent's systemd unit (enabled through the
  ``multi-user.target.wants`` link), the agent's config (``etc/clusterdeck/agent.json``) and
  the hosts entry that names the VIP (``etc/clusterdeck/hosts``, merged into ``/etc/hosts``);
- ``nodes/<name>/``: one node's own files, in the same layout: its identity and the node
  bundles ``render`` writes for the SSH path (typed node config and phase scripts), once as the
  node that runs ``kubeadm init`` (control planes only) and once as a node that joins. Which
  one runs is decided at boot, by the init election.

Nothing here is secret: join material is made at boot and exchanged through the coordination
directory, 0600, with its expiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from clusterdeck.bootstrap import units
from clusterdeck.bootstrap.render import Artifact, ClusterFacts, node_config, node_files
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
from clusterdeck.planner import build_plan
from clusterdeck.spec.models import Environment

AGENT_UNIT = "clusterdeck-agent.service"
AGENT_CONFIG = "/etc/clusterdeck/agent.json"
IDENTITY = "/etc/clusterdeck/identity.json"
HOSTS_ENTRY = "/etc/clusterdeck/hosts"
VARIANTS = "/var/lib/clusterdeck/variants"  # <variant>/node.json, phases/, files/
AGENT_BIN = f"{units.BIN}/clusterdeck"
INIT = "init"
JOIN = "join"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentConfig(_Model):
    """What every node's agent needs to know of the cluster (``agent.json``)."""

    schema_version: str = "clusterdeck.dev/agent/v1alpha1"
    environment: str
    shared_directory: str
    lease_seconds: int
    bundle_url: str | None  # None: the bundle is in the overlay, under OFFLINE_ON_NODE
    api_name: str | None  # the VIP's name in the hosts entry
    api_endpoint: str  # host:port every node reaches the API through
    control_planes: list[str]
    workers: list[str]


class NodeIdentity(_Model):
    """Who a node is (``identity.json``): compared whole at boot, never by a part of it."""

    name: str
    role: Role
    address: str
    variants: list[str]  # "init" (control planes) and "join"


@dataclass
class BootTree:
    overlay: dict[str, Artifact] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # overlay path -> symlink target
    nodes: dict[str, dict[str, Artifact]] = field(default_factory=dict)
    identities: dict[str, NodeIdentity] = field(default_factory=dict)


def api_name(env: Environment) -> str:
    return f"{env.name}-api"


def agent_unit(config_path: str = AGENT_CONFIG) -> str:
    """The agent's unit: once per boot, after the network and the shared directory's mount."""
    return units.to_text(
        [
            (
                "Unit",
                [
                    ("Description", "clusterdeck node agent: bootstrap this stateless node"),
                    ("Documentation", "https://clusterdeck.dev/docs/stateless"),
                    ("Wants", "network-online.target"),
                    ("After", "network-online.target remote-fs.target"),
                ],
            ),
            (
                "Service",
                [
                    ("Type", "exec"),
                    ("ExecStart", f"{AGENT_BIN} agent --config {config_path}"),
                    ("Restart", "on-failure"),
                    ("RestartSec", "5"),
                    ("UMask", "0077"),
                ],
            ),
            ("Install", [("WantedBy", "multi-user.target")]),
        ]
    )


def agent_config(env: Environment, topology: Topology, plan: Plan) -> AgentConfig:
    eph = env.spec.ephemeral
    if eph is None:
        raise ValueError(f"{env.name} has no spec.ephemeral")
    vip = env.spec.cluster.high_availability.vip
    return AgentConfig(
        environment=env.name,
        shared_directory=eph.shared_directory,
        lease_seconds=eph.lease_seconds,
        bundle_url=eph.bundle_url,
        api_name=api_name(env) if vip else None,
        api_endpoint=f"{plan.endpoint.host}:{plan.endpoint.port}",
        control_planes=[n.name for n in topology.control_planes()],
        workers=[n.name for n in topology.workers()],
    )


def as_initializer(topology: Topology, name: str) -> Topology:
    """The topology in which control plane ``name`` is the one that runs ``kubeadm init``."""
    nodes = [n.model_copy(update={"first_control_plane": n.name == name}) for n in topology.nodes]
    return topology.model_copy(update={"nodes": nodes})


def render_boot_tree(
    env: Environment, topology: Topology, plan: Plan, facts: ClusterFacts
) -> BootTree:
    tree = BootTree()
    config = agent_config(env, topology, plan)
    tree.overlay[f"etc/systemd/system/{AGENT_UNIT}"] = Artifact(agent_unit())
    tree.links[f"etc/systemd/system/multi-user.target.wants/{AGENT_UNIT}"] = f"../{AGENT_UNIT}"
    tree.overlay[AGENT_CONFIG.lstrip("/")] = Artifact(config.model_dump_json(indent=2) + "\n")
    vip = env.spec.cluster.high_availability.vip
    if vip and config.api_name:
        tree.overlay[HOSTS_ENTRY.lstrip("/")] = Artifact(f"{vip} {config.api_name}\n")
    for node in topology.nodes:
        if node.host is None:
            raise ValueError(f"{node.name} has no address")
        files: dict[str, Artifact] = {}
        variants = {JOIN: (topology, plan)}
        if node.role is Role.CONTROL_PLANE:
            first = as_initializer(topology, node.name)
            variants = {INIT: (first, build_plan(env, first)), JOIN: variants[JOIN]}
            if node.first_control_plane:  # the file's first control plane joins as the others
                joiner = as_initializer(topology, "")
                variants[JOIN] = (joiner, build_plan(env, joiner))
        for variant, (topo, the_plan) in variants.items():
            cfg = node_config(env, topo, the_plan, topo.node(node.name), facts)
            for rel, artifact in node_files(env, topo, cfg, facts).items():
                files[f"{VARIANTS.lstrip('/')}/{variant}/{rel}"] = artifact
        identity = NodeIdentity(
            name=node.name, role=node.role, address=node.host.address, variants=list(variants)
        )
        files[IDENTITY.lstrip("/")] = Artifact(identity.model_dump_json(indent=2) + "\n")
        tree.nodes[node.name] = files
        tree.identities[node.name] = identity
    return tree


def index(tree: BootTree) -> str:
    """``nodes.json``: which directory of ``nodes/`` belongs to which address."""
    rows = {i.address: {"node": i.name, "role": i.role.value} for i in tree.identities.values()}
    return json.dumps({"nodes": rows}, indent=2) + "\n"
