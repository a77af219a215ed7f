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
from typing import Any

from pydantic import BaseModel, ConfigDict

from clusterdeck.bootstrap import units
from clusterdeck.bootstrap.render import Artifact
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
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
    spec: dict[str, Any]  # the Environment as the file gave it: the agent renders from it


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
        spec=env.model_dump(mode="json", by_alias=True),
    )


def index(tree: BootTree) -> str:
    """``nodes.json``: which directory of ``nodes/`` belongs to which address."""
    rows = {i.address: {"node": i.name, "role": i.role.value} for i in tree.identities.values()}
    return json.dumps({"nodes": rows}, indent=2) + "\n"
