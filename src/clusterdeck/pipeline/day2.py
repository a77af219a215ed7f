"""The cluster side of ``apply``: observe what runs, join new nodes, take nodes out.

Why it exists: day-2 changes must be made on the running cluster one safe step at a time.
- Observing asks the API server (through the first control plane that answers) which Nodes
  exist, so a run stopped midway is planned again from what is really there.
- Additions reuse create's node pipeline (:func:`clusterdeck.pipeline.run.bootstrap`) limited
  to the new nodes and the control planes: one executor, one set of phases, for both commands.
  A control plane joins alone, with etcd checked healthy at its size before and one member
  larger after. After each batch the cluster must be healthy again: every node Ready, every
  DaemonSet's and kube-system Deployment's pods ready.
- Removals drain one node at a time (:mod:`clusterdeck.pipeline.scale_down`), then the
  provider releases the machine: aws terminates it, an ssh host is reset and stays the user's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from clusterdeck import etcd
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.events import EventSink
from clusterdeck.model.day2 import RunningNode
from clusterdeck.model.plan import Plan
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.model.topology import Role, Topology
from clusterdeck.pipeline import actions, scale_down
from clusterdeck.pipeline.run import BootstrapResult, bootstrap
from clusterdeck.providers import registry
from clusterdeck.providers.ssh.access import host_key_policy, record_endpoint
from clusterdeck.spec.models import Environment
from clusterdeck.state.journal import recorded_step
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Command, Connections, Endpoint

Log = Callable[[str], None]
HEALTH_TIMEOUT = 600.0


def _node_records(store: StateStore, environment: str) -> list[ResourceRecord]:
    return [r for r in store.resources(environment) if r.key.startswith(NODE_PREFIX)]


def _control_planes(env: Environment, store: StateStore) -> list[Endpoint]:
    return [
        record_endpoint(r, env)
        for r in _node_records(store, env.name)
        if r.data.get("role") == Role.CONTROL_PLANE.value
    ]


async def _first_answer(
    conns: Connections, cps: list[Endpoint], ask: Callable[[Endpoint], Any]
) -> Any:
    errors = []
    for cp in cps:
        try:
            return await ask(cp)
        except (TransientError, PermanentError, ValueError) as exc:
            errors.append(f"{cp.label}: {exc}")
    raise PermanentError("no control plane answered: " + "; ".join(errors))


def observe_running(env: Environment, store: StateStore) -> list[RunningNode]:
    """The recorded nodes, each marked with whether the API server lists its Node."""
    records = _node_records(store, env.name)
    cps = _control_planes(env, store)

    async def go() -> dict[str, Any]:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            nodes: dict[str, Any] = await _first_answer(
                conns, cps, lambda cp: actions.nodes_json(conns, cp, timeout=20)
            )
            return nodes

    listed = {item["metadata"]["name"]: item for item in asyncio.run(go()).get("items", [])}
    ready = actions.ready_nodes({"items": list(listed.values())})
    running = []
    for rec in records:
        name = rec.key.removeprefix(NODE_PREFIX)
        node = listed.get(name, {})
        running.append(
            RunningNode(
                name=name,
                role=str(rec.data.get("role", "")),
                pool=str(rec.data.get("pool", "")),
                provider=str(rec.data.get("provider", "")),
                address=rec.data.get("ssh_host"),
                present=name in listed,
                ready=name in ready,
                kubelet_version=node.get("status", {})
                .get("nodeInfo", {})
                .get("kubeletVersion", ""),
            )
        )
    return running


def budgets_blocking(env: Environment, store: StateStore, nodes: list[str]) -> list[str]:
    """The PodDisruptionBudgets that allow no disruption of a pod on ``nodes`` right now."""
    cps = _control_planes(env, store)

    async def go() -> list[str]:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            cp = await answering_control_plane(conns, cps)
            pdbs = await _kubectl_json(conns, cp, "get", "pdb", "-A")
            pods = await _kubectl_json(conns, cp, "get", "pods", "-A")
            here = {
                "items": [p for p in pods["items"] if p.get("spec", {}).get("nodeName") in nodes]
            }
            return scale_down.blocking_budgets(pdbs, here)

    return asyncio.run(go())


async def _kubectl_json(conns: Connections, cp: Endpoint, *args: str) -> dict[str, Any]:
    res = await conns.run(
        cp, Command([*actions.KUBECTL, *args, "-o", "json"], root=True), timeout=60
    )
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def join_nodes(
    env: Environment,
    store: StateStore,
    topology: Topology,
    plan: Plan,
    names: list[str],
    *,
    events: EventSink,
    log: Log,
) -> BootstrapResult:
    """Bring ``names`` (already recorded by their provider) into the running cluster. A control
    plane joins alone, between etcd checks."""
    joining_cps = [n for n in names if topology.node(n).role is Role.CONTROL_PLANE]
    if len(joining_cps) > 1:
        raise ValueError("control planes join one per call")
    members_now = len(topology.control_planes()) - len(joining_cps)
    if joining_cps:
        step = f"adding {joining_cps[0]}"
        _check_etcd(
            env,
            store,
            expected=members_now,
            step=step,
            when=f"before {step}",
            log=log,
            wait=etcd.BRIEF,
        )
    result = bootstrap(env, store, topology, plan, events=events, only=set(names))
    if result.failed:
        return result
    if joining_cps:
        step = f"{joining_cps[0]} joined"
        _check_etcd(
            env,
            store,
            expected=members_now + 1,
            step=step,
            when="after it",
            log=log,
            wait=etcd.SETTLE,
        )
    wait_healthy(env, store, [n.name for n in topology.nodes], log=log)
    return result


def _check_etcd(
    env: Environment,
    store: StateStore,
    *,
    expected: int,
    step: str,
    when: str,
    log: Log,
    wait: float,
) -> None:
    cps = _control_planes(env, store)

    async def go() -> etcd.Health:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            state: etcd.Health = await _first_answer(
                conns,
                cps,
                lambda cp: etcd.require_healthy(conns, cp, expected=expected, step=step, wait=wait),
            )
            return state

    log(f"etcd {when}: {asyncio.run(go()).describe()}")


def wait_healthy(env: Environment, store: StateStore, expected: list[str], *, log: Log) -> None:
    """Every node Ready, every DaemonSet's pods and kube-system Deployment available."""
    cps = _control_planes(env, store)

    async def go() -> None:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            cp = await answering_control_plane(conns, cps)
            await actions.wait_ready(conns, cp, expected, log, timeout=HEALTH_TIMEOUT)
            deadline = time.monotonic() + HEALTH_TIMEOUT
            while True:
                res = await conns.run(
                    cp,
                    Command(
                        [*actions.KUBECTL, "-n", "kube-system", "get", "deployments", "-o", "json"],
                        root=True,
                    ),
                    timeout=30,
                )
                waiting = unavailable_deployments(json.loads(res.stdout))
                if not waiting:
                    log("health: all nodes Ready, kube-system Deployments available")
                    return
                if time.monotonic() > deadline:
                    raise PermanentError(
                        f"not healthy after {HEALTH_TIMEOUT:g}s: {', '.join(waiting)}"
                    )
                log(f"waiting for {', '.join(waiting)}")
                await asyncio.sleep(2)

    asyncio.run(go())


def unavailable_deployments(data: dict[str, Any]) -> list[str]:
    waiting = []
    for item in data.get("items", []):
        want = item.get("spec", {}).get("replicas", 1)
        status = item.get("status", {})
        fresh = status.get("observedGeneration", 0) >= item["metadata"].get("generation", 0)
        if not fresh or status.get("availableReplicas", 0) < want:
            waiting.append(f"deployment {item['metadata']['name']}")
    return waiting


def remove_nodes(
    env: Environment,
    store: StateStore,
    names: list[str],
    *,
    drain_timeout: float,
    force: bool,
    log: Log,
    events: EventSink,
    cluster: bool = True,
) -> None:
    """Take ``names`` out, one at a time: drain and delete the Node (with ``cluster``), reset
    an ssh host, then let the provider release the machine (aws terminates it). A record is
    forgotten only once its node has left, so a stopped run finds it again and carries on.
    Without ``cluster`` (an --infra-only environment) the machines are released together."""
    records = {r.key.removeprefix(NODE_PREFIX): r for r in _node_records(store, env.name)}
    leaving = [records[n] for n in names]
    if not cluster:
        by_provider: dict[str, list[ResourceRecord]] = {}
        for rec in leaving:
            by_provider.setdefault(str(rec.data.get("provider")), []).append(rec)
        for provider, recs in sorted(by_provider.items()):
            registry.get(provider).release(env.name, store, events, recs)
        return
    cps = _control_planes(env, store)

    async def _remove_one(
        conns: Connections, cp: Endpoint, cps: list[Endpoint], rec: ResourceRecord, name: str
    ) -> None:
        control_plane = rec.data.get("role") == Role.CONTROL_PLANE.value
        lb = ("keepalived", "haproxy") if control_plane and _keepalived(env) else ()
        node = scale_down.Leaving(
            name,
            record_endpoint(rec, env),
            services=lb,
            overlay=env.spec.overlay is not None,
        )
        if cp.name == name:  # the etcd and kubectl calls go through a control plane that stays
            cp = await answering_control_plane(conns, [c for c in cps if c.name != name])

        async def leave_etcd() -> None:
            await etcd.remove_member(conns, cp, name, rec.data.get("private_ip"), log)

        with recorded_step(store, env.name, name, "remove"):
            await scale_down.remove_node(
                conns,
                cp,
                node,
                drain_timeout=drain_timeout,
                force=force,
                log=log,
                reset=rec.data.get("provider") == "ssh",
                before_delete=leave_etcd if control_plane else None,
            )
            provider = registry.get(str(rec.data.get("provider")))
            await asyncio.to_thread(provider.release, env.name, store, events, [rec])

    async def go() -> None:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            cp = await answering_control_plane(conns, cps)
            for rec in leaving:
                name = rec.key.removeprefix(NODE_PREFIX)
                await _remove_one(conns, cp, cps, rec, name)

    asyncio.run(go())


def _keepalived(env: Environment) -> bool:
    ha = env.spec.cluster.high_availability
    return ha.enabled and ha.load_balancer.value == "keepalived"


async def answering_control_plane(
    conns: Connections, cps: list[Endpoint], *, wait: float = 0
) -> Endpoint:
    """The first of ``cps`` whose API server answers; with ``wait``, tried again for that long
    (a control plane restarting its API server during an upgrade)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            found: Endpoint = await _first_answer(conns, cps, lambda c: _listed(conns, c))
            return found
        except PermanentError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(2)


async def _listed(conns: Connections, cp: Endpoint) -> Endpoint:
    await actions.nodes_json(conns, cp, timeout=20)
    return cp
