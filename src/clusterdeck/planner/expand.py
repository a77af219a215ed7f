"""Expand an Environment into its Topology: every node with name, role, pool, zone, labels, taints.

Deterministic: the same file always gives the same names in the same order, which is what
makes re-runs and day-2 diffs possible. Zones are assigned round-robin within each pool.

Names go by place in a pool (``<env>-<pool>-<i>``), except in a running environment
(``names``, from the store's records):
- a host of an ssh pool keeps the name recorded for it (keyed by pool and address), so removing
  the first host of a pool removes that host's node and renames no other;
- an aws instance (a worker's or a control plane's) keeps its name while its recorded machine
  (instance type, image, root volume, zone, spot) is what the file asks for; a slot no such
  instance fills is a new machine. So a changed instance type makes every old node leave and
  new ones join: a rolling replacement, planned from the records alone, and resumed the same
  way.
A new node takes the index after the highest its pool has recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from clusterdeck.model.topology import HostRef, Node, OverlayPlace, Role, SpotRequest, Topology
from clusterdeck.spec import rules
from clusterdeck.spec.models import (
    DEFAULT_CP_INSTANCE_TYPE,
    DEFAULT_WORKER_INSTANCE_TYPE,
    ControlPlane,
    Environment,
    Host,
    NetworkMode,
    Provider,
    WorkerPool,
)
from clusterdeck.spec.network import default_zone
from clusterdeck.spec.rules import CONTROL_PLANE_POOL

MANAGED = "clusterdeck.dev/managed"
ROLE = "clusterdeck.dev/role"
POOL = "clusterdeck.dev/pool"
WORKER_ROLE_LABEL = "node-role.kubernetes.io/worker"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"

HostIdentity = tuple[str, str, int]  # (pool, address, ssh port): a host's node, across edits
Machine = Mapping[str, str | int | None]  # what :meth:`Node.machine` gives


@dataclass(frozen=True)
class RecordedMachine:
    """An aws node the store records: its pool and the machine it was launched as
    (None for a record older than machine settings: it keeps its name by place)."""

    pool: str
    machine: Machine | None


@dataclass(frozen=True)
class NodeNames:
    """The names a running environment's nodes have (see the module docstring)."""

    hosts: Mapping[HostIdentity, str] = field(default_factory=dict)
    machines: Mapping[str, RecordedMachine] = field(default_factory=dict)
    leaving: frozenset[str] = frozenset()  # aws workers named by ``apply --remove``: not kept

    def taken(self) -> set[str]:
        return {*self.hosts.values(), *self.machines}


def expand(
    env: Environment, *, dedicated: bool | None = None, names: NodeNames | None = None
) -> Topology:
    """Every node of the environment. ``dedicated`` overrides the file (answer to the prompt);
    ``names`` are the recorded names of the hosts a running environment has."""
    spec = env.spec
    cp = spec.cluster.control_plane
    is_dedicated = bool(cp.dedicated if dedicated is None else dedicated)
    worker_total = rules.worker_count(env)
    untainted = not is_dedicated
    if worker_total == 0:
        reason = (
            "single-node/control-plane-only cluster: no workers, so the control planes "
            "stay untainted and run workloads"
        )
    elif untainted:
        reason = "dedicated is false: workloads may also run on the control planes"
    else:
        reason = "dedicated: true keeps the control-plane NoSchedule taint"
    nodes: list[Node] = []
    cp_provider = cp.provider or spec.provider
    cp_zones = _zones(env, cp.availability_zones, cp_provider)
    cp_labels = {**_base_labels(Role.CONTROL_PLANE, CONTROL_PLANE_POOL), **cp.labels}
    cp_taints = ([CONTROL_PLANE_TAINT] if is_dedicated else []) + list(cp.taints)
    for i in range(rules.control_plane_count(env)):
        nodes.append(
            Node(
                name=f"{env.name}-cp-{i}",
                role=Role.CONTROL_PLANE,
                pool=CONTROL_PLANE_POOL,
                index=i,
                provider=cp_provider.value,
                zone=cp_zones[i % len(cp_zones)] if cp_zones else None,
                instance_type=(cp.instance_type or DEFAULT_CP_INSTANCE_TYPE)
                if cp_provider is Provider.AWS
                else None,
                root_volume_gb=cp.root_volume_size_gb if cp_provider is Provider.AWS else None,
                image=_image(env, cp_provider),
                labels=cp_labels,
                taints=cp_taints,
                host=_host(env, cp.hosts[i]) if i < len(cp.hosts) else None,
                first_control_plane=i == 0,
                overlay=_place(env, cp, cp.hosts[i] if i < len(cp.hosts) else None),
            )
        )
    for _, name, pool in rules.pools(env):
        nodes.extend(_pool_nodes(env, name, pool))
    if names is not None and (names.hosts or names.machines):
        nodes = _keep_recorded_names(env.name, nodes, names)
    return Topology(
        environment=env.name,
        nodes=nodes,
        control_plane_untainted=untainted,
        untainted_reason=reason,
    )


def _pool_nodes(env: Environment, name: str, pool: WorkerPool) -> list[Node]:
    provider = pool.provider or env.spec.provider
    zones = _zones(env, pool.availability_zones, provider)
    labels = {**_base_labels(Role.WORKER, name), WORKER_ROLE_LABEL: "", **pool.labels}
    spot = None
    if pool.spot is not None and provider is Provider.AWS:
        spot = SpotRequest(
            max_price_percent=pool.spot.max_price_percent, max_price=pool.spot.max_price
        )
    return [
        Node(
            name=f"{env.name}-{name}-{i}",
            role=Role.WORKER,
            pool=name,
            index=i,
            provider=provider.value,
            zone=zones[i % len(zones)] if zones else None,
            instance_type=(pool.instance_type or DEFAULT_WORKER_INSTANCE_TYPE)
            if provider is Provider.AWS
            else None,
            root_volume_gb=pool.root_volume_size_gb if provider is Provider.AWS else None,
            image=_image(env, provider),
            spot=spot,
            labels=labels,
            taints=list(pool.taints),
            host=_host(env, pool.hosts[i]) if i < len(pool.hosts) else None,
            overlay=_place(env, pool, pool.hosts[i] if i < len(pool.hosts) else None),
        )
        for i in range(rules.pool_count(pool))
    ]


def _place(
    env: Environment, group: ControlPlane | WorkerPool, host: Host | None
) -> OverlayPlace | None:
    """The node's site and NAT/relay role on the overlay (None without one). An aws node in
    private mode has no public address: it is behind NAT like a flagged host."""
    if env.spec.overlay is None:
        return None
    private_aws = (
        (group.provider or env.spec.provider) is Provider.AWS
        and env.spec.aws is not None
        and env.spec.aws.network.mode is NetworkMode.PRIVATE
    )
    return OverlayPlace(
        site=rules.site_of(env, group, host),
        nat=private_aws or (host is not None and host.nat),
        relay=host is not None and host.relay,
    )


def _image(env: Environment, provider: Provider) -> str | None:
    aws = env.spec.aws
    if provider is not Provider.AWS or aws is None:
        return None
    return aws.ami or aws.os.value


def _base_labels(role: Role, pool: str) -> dict[str, str]:
    return {MANAGED: "true", ROLE: role.value, POOL: pool}


def _zones(env: Environment, own: list[str], provider: Provider) -> list[str]:
    if provider is not Provider.AWS or env.spec.aws is None:
        return []
    return list(own) or list(env.spec.aws.availability_zones) or [default_zone(env.spec.aws.region)]


def _host(env: Environment, host: Host) -> HostRef:
    return HostRef(
        address=host.address,
        user=host.user or env.spec.auth.username,
        port=host.port,
        key=host.key or env.spec.auth.private_key,
    )


def host_identity(node: Node) -> HostIdentity | None:
    return (node.pool, node.host.address, node.host.port) if node.host is not None else None


def _keep_recorded_names(environment: str, nodes: list[Node], names: NodeNames) -> list[Node]:
    """Recorded hosts and matching recorded machines keep their names; other nodes take the
    index after their pool's highest recorded one. The first control plane stays one that
    exists (init never runs again on a new machine)."""
    kept: dict[int, str] = {}
    for i, node in enumerate(nodes):
        key = host_identity(node)
        if key is not None and key in names.hosts:
            kept[i] = names.hosts[key]
    kept.update(_matching_machines(nodes, names.machines, names.leaving))
    taken = names.taken()  # a recorded node not in the file any more may still run
    renamed: list[Node] = []
    for i, node in enumerate(nodes):
        name = kept.get(i)
        if name is None and _follows_records(node, names):
            stem = (
                f"{environment}-cp"
                if node.role is Role.CONTROL_PLANE
                else f"{environment}-{node.pool}"
            )
            name = f"{stem}-{_next_index(stem, taken)}"
            taken.add(name)
        renamed.append(node if name is None else node.model_copy(update={"name": name}))
    control_planes = [i for i, n in enumerate(renamed) if n.role is Role.CONTROL_PLANE]
    first = next(
        (i for i in control_planes if i in kept), control_planes[0] if control_planes else None
    )
    return [
        n.model_copy(update={"first_control_plane": i == first})
        if n.role is Role.CONTROL_PLANE
        else n
        for i, n in enumerate(renamed)
    ]


def follows_machine(node: Node) -> bool:
    """An aws node: its name follows its recorded machine (a control plane's too: a new
    machine is a new etcd member, which joins before the old one leaves)."""
    return node.provider == Provider.AWS.value


def _follows_records(node: Node, names: NodeNames) -> bool:
    if host_identity(node) is not None:
        return True
    if not follows_machine(node):
        return False
    recorded = names.machines.get(node.name)
    # a record without machine settings (older) keeps the node at its place
    return not (recorded is not None and recorded.machine is None)


def _matching_machines(
    nodes: list[Node], machines: Mapping[str, RecordedMachine], leaving: frozenset[str]
) -> dict[int, str]:
    """Slot -> recorded name, for aws slots a recorded machine of the same settings
    fills; the lowest recorded indexes first, so a shrinking pool loses its newest nodes."""
    free = sorted(
        (name for name, rec in machines.items() if rec.machine is not None and name not in leaving),
        key=index_of,
    )
    kept: dict[int, str] = {}
    for i, node in enumerate(nodes):
        if not follows_machine(node):
            continue
        legacy = machines.get(node.name)
        if legacy is not None and legacy.machine is None:
            continue
        wanted = node.machine()
        match = next(
            (
                n
                for n in free
                if machines[n].pool == node.pool and dict(machines[n].machine or {}) == wanted
            ),
            None,
        )
        if match is not None:
            free.remove(match)
            kept[i] = match
    return kept


def _next_index(stem: str, taken: set[str]) -> int:
    """One past the highest index ``stem`` has among the recorded names. Not the lowest free
    one: a rolling replacement frees an index after each wave, and the waves planned after it
    must still find the names the plan showed."""
    indexes = [index_of(n)[1] for n in taken if index_of(n)[0] == stem]
    return max(indexes, default=-1) + 1


def index_of(name: str) -> tuple[str, int]:
    """(stem, index) of a node name ``<stem>-<i>`` (index 0 when it has none)."""
    stem, _, index = name.rpartition("-")
    return (stem, int(index) if index.isdigit() else 0)


def as_initializer(topology: Topology, name: str) -> Topology:
    """The topology in which control plane ``name`` is the one that runs ``kubeadm init``."""
    nodes = [n.model_copy(update={"first_control_plane": n.name == name}) for n in topology.nodes]
    return topology.model_copy(update={"nodes": nodes})
