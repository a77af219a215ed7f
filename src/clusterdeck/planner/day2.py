"""Diff a running environment against its file: the day-2 plan (pure, no I/O).

Why it exists: ``apply`` must show exactly what it will do before it touches a running cluster.
What runs is observed (the store's node records, each marked with whether the API server lists
its Node); what should run is the file expanded with the recorded names, so an ssh host keeps
its node's name however the list is edited. A node that should run but has no Node joins; a
recorded node the file no longer has leaves. Within a pool, a host swapped for another becomes
a replacement: the new one joins before the old one is drained. Changes apply cannot make are
listed as refused, with the reason, and then nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from clusterdeck.model.day2 import ApplyPlan, ChangeKind, NodeChange, RunningNode
from clusterdeck.model.topology import Node, Role, Topology
from clusterdeck.planner.expand import (
    Machine,
    NodeNames,
    expand,
    follows_machine,
    index_of,
)
from clusterdeck.spec import rules
from clusterdeck.spec.models import Environment, Provider
from clusterdeck.spec.rules import CONTROL_PLANE_POOL

# parts of the spec apply may see change: the machines (cluster) and how to log in to them
CHANGEABLE = {"cluster", "auth", "offline"}
# what of spec.aws may change: the image, by replacing the nodes
AWS_CHANGEABLE = {"os", "ami"}
MACHINE_WORDS = {
    "instance_type": "instance type",
    "image": "image",
    "root_volume_gb": "root volume (GiB)",
    "zone": "zone",
    "market": "market",
    "spot_max_price": "spot price limit",
}


def dedicated_for(before: Environment, after: Environment) -> bool | None:
    """The file's ``dedicated``, or the answer recorded at create when the file gives none."""
    given = after.spec.cluster.control_plane.dedicated
    return given if given is not None else before.spec.cluster.control_plane.dedicated


def desired_topology(before: Environment, after: Environment, names: NodeNames) -> Topology:
    return expand(after, dedicated=dedicated_for(before, after), names=names)


def recorded_topology(before: Environment, names: NodeNames) -> Topology:
    """What the recorded file expands to under the recorded names: the nodes that run."""
    return expand(before, dedicated=before.spec.cluster.control_plane.dedicated, names=names)


def diff(
    before: Environment,
    after: Environment,
    names: NodeNames,
    running: list[RunningNode],
    *,
    allow_control_plane_shrink: bool = False,
) -> ApplyPlan:
    old = recorded_topology(before, names)
    new = desired_topology(before, after, names)
    refused = list(_spec_refusals(before, after))
    wanted = {n.name: n for n in new.nodes}
    have = {r.name: r for r in running}
    adds = [n for n in new.nodes if not (n.name in have and have[n.name].present)]
    leaves = sorted((r for r in running if r.name not in wanted), key=_newest_first)
    refused += _kept_node_refusals(old, new, have)
    refused += [
        f"{r.name}: its machine is gone; a control plane's etcd member must be removed before "
        "a new machine takes its place (not supported yet)"
        for r in running
        if r.machine_gone and r.role == Role.CONTROL_PLANE.value and r.name in wanted
    ]
    cp_count = len(new.control_planes())
    # the file keeps the control plane's size (or grows it): a control plane that leaves is
    # replaced. Compared with the recorded file, not with what runs: halfway through a
    # replacement one member more runs than either file has.
    cp_kept_size = cp_count >= rules.control_plane_count(before)
    add_changes: list[NodeChange] = []
    for node in adds:
        if node.role is Role.CONTROL_PLANE:
            why = f"controlPlane grows to {cp_count}: joins as a control plane and etcd member"
        elif node.name in have and have[node.name].machine_gone:
            why = "its machine is gone (terminated outside clusterdeck): a new one joins"
        elif node.name in have:
            why = f"recorded in pool {node.pool} but not in the cluster: joins"
        elif node.pool not in old.pools():
            why = f"pool {node.pool} added"
        else:
            why = f"pool {node.pool} grows to {len(new.pools()[node.pool])}"
        add_changes.append(NodeChange(ChangeKind.ADD, node.name, node.role.value, node.pool, why))
    remove_changes: list[NodeChange] = []
    serving = _serves_the_endpoint(before, running)
    for rec in leaves:
        if rec.name == serving:
            refused.append(
                f"{rec.name}: it serves the API endpoint (the file has no highAvailability, "
                "so every node and kubeconfig reaches the API at its address); it cannot "
                "leave the cluster"
            )
        elif rec.role == Role.CONTROL_PLANE.value:
            if cp_kept_size:
                why = _control_plane_replaced(rec, names, new)
                remove_changes.append(_leave(rec, why))
            elif allow_control_plane_shrink:
                why = (
                    f"controlPlane shrinks to {cp_count}: leaves etcd first, by its member ID, "
                    "while the members that stay keep quorum"
                )
                remove_changes.append(_leave(rec, why))
            else:
                refused.append(
                    f"{rec.name}: the control plane would shrink to {cp_count}; pass "
                    "--allow-control-plane-shrink to remove members one at a time, with "
                    "etcd quorum checked"
                )
        elif rec.pool not in new.pools():
            remove_changes.append(_leave(rec, "pool removed from the file"))
        elif (
            rec.provider == Provider.SSH.value
            and rec.address is not None
            and not _pool_has(new, rec.pool, rec.address)
        ):
            remove_changes.append(_leave(rec, f"host {rec.address} left pool {rec.pool}"))
        elif rec.name in names.leaving:
            remove_changes.append(_leave(rec, "named by --remove"))
        else:
            recorded = names.machines.get(rec.name)
            changed = _machine_change(recorded.machine if recorded else None, new.pools()[rec.pool])
            remove_changes.append(_leave(rec, changed or f"pool {rec.pool} shrinks"))
    rollouts = {
        name: (pool.rollout.max_surge, pool.rollout.max_unavailable)
        for _, name, pool in rules.pools(after)
    }
    sizes = {pool: len(nodes) for pool, nodes in new.pools().items()}
    changes = _order(add_changes, remove_changes, rollouts, sizes)
    old_v, new_v = before.spec.kubernetes.version, after.spec.kubernetes.version
    if old_v != new_v:
        problem = version_step_problem(old_v, new_v)
        if problem is None and changes:
            problem = (
                f"kubernetes.version {old_v} -> {new_v}: an upgrade runs alone; apply the "
                "node changes first, then the new version"
            )
        if problem is None:
            problem = _skew_problem(running, old_v, new_v)
        if problem is not None:
            refused.append(problem)
        else:
            changes = _upgrades(new, running, old_v, new_v)
    return ApplyPlan(after.name, tuple(changes), tuple(dict.fromkeys(refused)))


def join_step(
    before: Environment,
    after: Environment,
    names: NodeNames,
    there: set[str],
    *,
    with_leaving: bool = True,
) -> Topology:
    """The topology a join step works on: the nodes of ``there`` (recorded, or joining now)
    that the file wants, and (``with_leaving``) those it no longer wants that still run: old
    members of a replacement stay load balancer backends and etcd peers until they leave. Its
    first control plane, where join material is made, is one that runs, never a node that
    joins."""
    wanted = desired_topology(before, after, names)
    kept = {n.name for n in wanted.nodes}
    nodes = [n for n in wanted.nodes if n.name in there]
    if with_leaving:
        old = recorded_topology(before, names)
        nodes += [n for n in old.nodes if n.name in there and n.name not in kept]
    ran = names.taken()
    first = next((n for n in nodes if n.first_control_plane), None)
    if first is None or first.name not in ran:
        # the ones that stay first
        running = [n for n in nodes if n.role is Role.CONTROL_PLANE and n.name in ran]
        if running:
            nodes = [
                n.model_copy(update={"first_control_plane": n.name == running[0].name})
                if n.role is Role.CONTROL_PLANE
                else n
                for n in nodes
            ]
    return wanted.model_copy(update={"nodes": nodes})


def parse_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = text.removeprefix("v").split(".")[:3]
    return int(major), int(minor), int(patch.split("-")[0])


def version_step_problem(old: str, new: str) -> str | None:
    """None when ``old -> new`` is a patch release or the next minor; otherwise why not."""
    (a, b, c), (x, y, z) = parse_version(old), parse_version(new)
    where = f"kubernetes.version {old} -> {new}"
    if (x, y, z) < (a, b, c):
        return f"{where}: downgrades are not supported (kubeadm cannot go back)"
    if x != a or y > b + 1:
        return (
            f"{where}: one minor version at a time; upgrade to v{a}.{b + 1}.x first "
            "(kubeadm supports no skipped minor)"
        )
    return None


def _skew_problem(running: list[RunningNode], old: str, new: str) -> str | None:
    """Every kubelet must run the old version (or already the new one, when an upgrade
    resumes): a kubelet of another version would fall outside the supported skew."""
    odd = [
        f"{r.name} ({r.kubelet_version})"
        for r in running
        if r.present and r.kubelet_version and r.kubelet_version not in (old, new)
    ]
    if odd:
        return (
            f"kubernetes.version {old} -> {new}: kubelets at other versions: {', '.join(odd)}; "
            f"bring them to {old} first"
        )
    return None


def _upgrades(new: Topology, running: list[RunningNode], old: str, target: str) -> list[NodeChange]:
    have = {r.name: r for r in running}
    order = sorted(
        new.nodes, key=lambda n: (n.role is not Role.CONTROL_PLANE, not n.first_control_plane)
    )
    changes = []
    for node in order:
        rec = have.get(node.name)
        if rec is None or not rec.present or rec.kubelet_version == target:
            continue  # not there, or already upgraded (a resumed upgrade)
        if node.first_control_plane:
            how = f"kubeadm upgrade apply {target}, then its kubelet"
        elif node.role is Role.CONTROL_PLANE:
            how = "kubeadm upgrade node, then its kubelet"
        else:
            how = "drain, kubeadm upgrade node, kubelet, uncordon"
        changes.append(
            NodeChange(
                ChangeKind.UPGRADE,
                node.name,
                node.role.value,
                node.pool,
                f"{rec.kubelet_version or old} -> {target}: {how}",
            )
        )
    return changes


def _newest_first(rec: RunningNode) -> tuple[str, int]:
    """Within a pool, the highest index (the node made last) leaves first."""
    return (rec.pool, -index_of(rec.name)[1])


def _leave(rec: RunningNode, why: str) -> NodeChange:
    return NodeChange(ChangeKind.REMOVE, rec.name, rec.role, rec.pool, why)


def _serves_the_endpoint(before: Environment, running: list[RunningNode]) -> str | None:
    """Without highAvailability the endpoint is the address of the control plane kubeadm init
    ran on (the one of lowest index: later ones join, and none of them moves it)."""
    if before.spec.cluster.high_availability.enabled:
        return None
    control_planes = [r for r in running if r.role == Role.CONTROL_PLANE.value]
    return min(control_planes, key=lambda r: index_of(r.name)[1]).name if control_planes else None


def _control_plane_replaced(rec: RunningNode, names: NodeNames, new: Topology) -> str:
    """Why a control plane leaves a control plane that keeps its size: its host or machine
    left the file, and a new member takes its place (it leaves etcd by its member ID after
    the new one has joined)."""
    if rec.provider == Provider.SSH.value and rec.address is not None:
        changed = f"host {rec.address} left controlPlane.hosts"
    else:
        recorded = names.machines.get(rec.name)
        pool = new.pools().get(CONTROL_PLANE_POOL, [])
        changed = (
            _machine_change(recorded.machine if recorded else None, pool) or ""
        ).removeprefix("replaced: ") or "its machine is no longer in the file"
    return f"{changed}; leaves etcd by its member ID once its replacement has joined"


def _pool_has(topology: Topology, pool: str, address: str) -> bool:
    return any(n.host is not None and n.host.address == address for n in topology.pools()[pool])


def _machine_change(recorded: Machine | None, pool: list[Node]) -> str | None:
    """Why a recorded aws machine leaves a pool that stays: what the file changed of it (None
    when a node of the pool still has its settings: the pool only shrinks)."""
    if recorded is None or not pool or not follows_machine(pool[0]):
        return None
    if any(dict(recorded) == n.machine() for n in pool):
        return None
    zone = recorded.get("zone")
    like = next((n for n in pool if n.zone == zone), pool[0]).machine()
    parts = [
        f"{MACHINE_WORDS[key]} {recorded.get(key)} -> {like[key]}"
        for key in MACHINE_WORDS
        if recorded.get(key) != like[key] and (key != "zone" or all(n.zone != zone for n in pool))
    ]
    return "replaced: " + ", ".join(parts) if parts else None


def _order(
    adds: list[NodeChange],
    removes: list[NodeChange],
    rollouts: dict[str, tuple[int, int]],
    sizes: dict[str, int],
) -> list[NodeChange]:
    """Additions alone first (they join together), then each pool that both gains and loses
    nodes as a rolling replacement within its maxSurge and maxUnavailable (the control
    plane's: one new member joins, then one old member leaves), then the other removals one
    by one."""
    alone: list[NodeChange] = []
    rolled: list[NodeChange] = []
    spare = list(removes)
    pools: dict[str, list[NodeChange]] = {}
    for add in adds:  # the control plane is a pool of its own (its name is reserved)
        pools.setdefault(add.pool, []).append(add)
    wave = 0
    for pool, joining in pools.items():
        leaving = [r for r in spare if r.pool == pool and r.role == joining[0].role]
        if not leaving:
            alone.extend(joining)
            continue
        spare = [r for r in spare if r not in leaving]
        surge, unavailable = rollouts.get(pool, (1, 0))
        steps, wave = _rolling(joining, leaving, sizes.get(pool, 0), surge, unavailable, wave)
        rolled.extend(steps)
    return [*alone, *rolled, *spare]


def _rolling(
    joining: list[NodeChange],
    leaving: list[NodeChange],
    size: int,
    surge: int,
    unavailable: int,
    wave: int,
) -> tuple[list[NodeChange], int]:
    """A pool's replacement in waves: as many new nodes join as keep the pool within
    ``size + surge``, then as many old ones leave as keep it at ``size - unavailable`` or more.
    Each new node names the old one it takes the place of; the numbers count nodes Ready."""
    steps: list[NodeChange] = []
    up = size - len(joining) + len(leaving)  # nodes there now: the kept and the old ones
    joining, leaving = list(joining), list(leaving)
    while joining or leaving:
        count = max(0, min(len(joining), size + surge - up))
        if not leaving:
            count = len(joining)
        wave += 1
        for add, old in zip(joining[:count], [*leaving, *[None] * count], strict=False):
            steps.append(
                replace(
                    add,
                    reason=f"replaces {old.node} ({old.reason})" if old else add.reason,
                    replaces=old.node if old else None,
                    wave=wave,
                )
            )
        up += count
        joining = joining[count:]
        going = max(0, min(len(leaving), up - (size - unavailable)))
        if not joining:
            going = len(leaving)
        if count == 0 and going == 0:  # bounds that cannot move (validation forbids 0 and 0)
            going = 1
        for old in leaving[:going]:
            after = next((s.node for s in steps if s.replaces == old.node), None)
            steps.append(replace(old, reason=f"replaced by {after}") if after else old)
        up -= going
        leaving = leaving[going:]
    return steps, wave


def _spec_refusals(before: Environment, after: Environment) -> Iterator[str]:
    was, now = before.spec, after.spec
    old_k8s = was.kubernetes.model_dump(exclude={"version"})
    if old_k8s != now.kubernetes.model_dump(exclude={"version"}):
        yield "spec.kubernetes: only the version may change in a running cluster"
    if was.cluster.high_availability != now.cluster.high_availability:
        yield (
            "spec.cluster.highAvailability: the API endpoint is fixed at create (the "
            "certificates and every kubeconfig name it); it cannot change in a running cluster"
        )
    if (was.cluster.control_plane.provider or was.provider) != (
        now.cluster.control_plane.provider or now.provider
    ):
        yield "spec.cluster.controlPlane.provider cannot change in a running cluster"
    dumped_was: dict[str, Any] = was.model_dump(by_alias=True)
    dumped_now: dict[str, Any] = now.model_dump(by_alias=True)
    for key in sorted(set(dumped_was) | set(dumped_now)):
        if key in CHANGEABLE or key == "kubernetes" or key == "provider":
            continue
        was_part, now_part = dumped_was.get(key), dumped_now.get(key)
        if key == "aws" and isinstance(was_part, dict) and isinstance(now_part, dict):
            was_part = {k: v for k, v in was_part.items() if k not in AWS_CHANGEABLE}
            now_part = {k: v for k, v in now_part.items() if k not in AWS_CHANGEABLE}
            if was_part != now_part:
                yield (
                    "spec.aws: only os and ami may change in a running environment (the "
                    "nodes are then replaced)"
                )
            continue
        if was_part != now_part:
            yield f"spec.{key}: changing it in a running environment is not supported yet"


def _kept_node_refusals(old: Topology, new: Topology, have: dict[str, RunningNode]) -> list[str]:
    found = []
    old_by_name = {n.name: n for n in old.nodes}
    for node in new.nodes:
        was: Node | None = old_by_name.get(node.name)
        if was is None or node.name not in have:
            continue
        if was.machine() != node.machine():
            changed = ", ".join(
                f"{MACHINE_WORDS[k]} {v} -> {node.machine()[k]}"
                for k, v in was.machine().items()
                if v != node.machine()[k]
            )
            found.append(
                f"{node.name}: {changed} (its record predates machine settings, so apply "
                "cannot tell its machine from the file's; recreate the environment)"
            )
        if was.labels != node.labels or was.taints != node.taints:
            found.append(
                f"{node.name}: its labels or taints change (changing them on running "
                "nodes is not supported yet)"
            )
    return found


def drained_in_turn(planned: ApplyPlan) -> list[str]:
    """The nodes a rolling step drains: the old nodes of replacements, and the workers of an
    upgrade. Such a run must not start while a budget allows no disruption (a plain removal
    instead waits out its drain timeout and then names the budget)."""
    replaced = {c.replaces for c in planned.changes if c.replaces}
    upgraded = {
        c.node
        for c in planned.changes
        if c.kind is ChangeKind.UPGRADE and c.role == Role.WORKER.value
    }
    return sorted(replaced | upgraded)
