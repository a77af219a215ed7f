"""Upgrade a running cluster's Kubernetes by one patch or minor release, node by node.

Why it exists: an upgrade must keep the API answering and never let a kubelet run newer than
the API servers. The order is kubeadm's:
1. preflight: every etcd member healthy, and a snapshot of etcd saved on this machine (0600:
   it holds the cluster's Secrets);
2. every node gets the new version's files at once (its bundle, the offline bundle's binaries
   and images, imported into containerd): nothing changes on the node yet;
3. ``kubeadm upgrade apply`` on the first control plane, then ``kubeadm upgrade node`` on the
   other control planes, one at a time;
4. the kubelets of the control planes, one at a time;
5. each worker in turn: drained through the eviction API, ``kubeadm upgrade node``, its
   kubelet, Ready at the new version, uncordoned.
While it runs, a probe asks the API through the cluster's endpoint every quarter second and
reports the longest time it went unanswered. Only the nodes that do not yet run the new
kubelet are visited, so a stopped upgrade resumes where it was when apply runs again.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from clusterdeck import etcd
from clusterdeck.bootstrap.render import Bundle, upgrade_scripts
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.model.phases import Phase
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
from clusterdeck.pipeline import actions, offline, scale_down
from clusterdeck.pipeline.day2 import answering_control_plane
from clusterdeck.pipeline.run import PHASE_DEADLINE, rendered
from clusterdeck.pipeline.targets import Target
from clusterdeck.providers.ssh.access import host_key_policy
from clusterdeck.spec.models import Environment
from clusterdeck.state.journal import recorded_step
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Connections, Endpoint

Log = Callable[[str], None]
NODE_READY_TIMEOUT = 300.0


@dataclass
class UpgradeReport:
    snapshot: Path
    probe_longest_gap: float
    probes: int


class Probe:
    """GET /readyz through the endpoint every 0.25 s (TLS checked against the cluster's CA);
    the longest stretch without an answer."""

    def __init__(self, server: str, ca_pem: str) -> None:
        self.url = server.rstrip("/") + "/readyz"
        self.context = ssl.create_default_context(cadata=ca_pem)
        self.longest = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)

    def _ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2, context=self.context) as res:  # noqa: S310
                return bool(res.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _run(self) -> None:
        answered = time.monotonic()
        while not self._stop.is_set():
            self.count += 1
            if self._ok():
                answered = time.monotonic()
            else:
                self.longest = max(self.longest, time.monotonic() - answered)
            self._stop.wait(0.25)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cluster_ca(admin_conf: str) -> str:
    data: Any = YAML(typ="safe").load(admin_conf)
    encoded = data["clusters"][0]["cluster"]["certificate-authority-data"]
    return base64.b64decode(encoded).decode()


def save_snapshot(data: bytes, directory: Path, environment: str, version: str) -> Path:
    """Write the snapshot where only this user can read it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{environment}-{stamp}-{version}.db"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def upgrade(
    env: Environment,
    store: StateStore,
    topology: Topology,
    plan: Plan,
    nodes: list[str],
    *,
    server: str,
    snapshot_dir: Path,
    from_version: str,
    drain_timeout: float,
    force: bool,
    log: Log,
) -> UpgradeReport:
    """Upgrade ``nodes`` (control planes first, in the order given) to ``env``'s version."""
    bundle, tgt, offline_bundle = rendered(env, store, topology, plan)
    first = topology.control_planes()[0].name
    cps = [t.endpoint for t in tgt.values() if t.node.role is Role.CONTROL_PLANE]
    version = env.spec.kubernetes.version

    async def go() -> UpgradeReport:
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            api_cp = tgt[first].endpoint
            state = await etcd.require_healthy(
                conns, api_cp, expected=len(cps), step=f"an upgrade to {version}", wait=etcd.BRIEF
            )
            log(f"etcd before the upgrade: {state.describe()}")
            path = save_snapshot(
                await etcd.snapshot(conns, api_cp), snapshot_dir, env.name, from_version
            )
            log(f"etcd snapshot saved to {path} ({path.stat().st_size} bytes, mode 0600)")
            ca = _cluster_ca(await actions.read_admin_conf(conns, api_cp))
            with Probe(server, ca) as probe:
                await asyncio.gather(
                    *(_prepare(conns, tgt[n], bundle, offline_bundle, log) for n in nodes)
                )
                order = [n for n in nodes if tgt[n].node.role is Role.CONTROL_PLANE]
                workers = [n for n in nodes if tgt[n].node.role is Role.WORKER]
                for name in order:
                    await _step(
                        conns, tgt[name], bundle, Phase.KUBEADM_UPGRADE, log, store, env.name
                    )
                for name in order:
                    await _step(
                        conns, tgt[name], bundle, Phase.KUBELET_UPGRADE, log, store, env.name
                    )
                    await _ready_at(conns, cps, name, version, log)
                for name in workers:
                    with recorded_step(store, env.name, name, "drain"):
                        await scale_down.drain(
                            conns,
                            await answering_control_plane(conns, cps, wait=60),
                            name,
                            drain_timeout=drain_timeout,
                            force=force,
                            log=log,
                        )
                    await _step(
                        conns, tgt[name], bundle, Phase.KUBEADM_UPGRADE, log, store, env.name
                    )
                    await _step(
                        conns, tgt[name], bundle, Phase.KUBELET_UPGRADE, log, store, env.name
                    )
                    await _ready_at(conns, cps, name, version, log)
                    await scale_down.uncordon(
                        conns, await answering_control_plane(conns, cps, wait=60), name, log
                    )
            after = await etcd.require_healthy(
                conns,
                await answering_control_plane(conns, cps, wait=60),
                expected=len(cps),
                step="the end of the upgrade",
                wait=etcd.SETTLE,
            )
            log(f"etcd after the upgrade: {after.describe()}")
            log(
                f"API through {server}: longest unanswered {probe.longest:.1f} s "
                f"({probe.count} probes)"
            )
            return UpgradeReport(path, probe.longest, probe.count)

    return asyncio.run(go())


async def _prepare(
    conns: Connections,
    target: Target,
    bundle: Bundle,
    offline_bundle: Any,
    log: Log,
) -> None:
    """The new version's files on the node, its images imported; nothing else changes."""
    name = target.node.name
    await actions.upload_bundle(conns, target.endpoint, bundle.files[name], log)
    cfg = bundle.configs[name]
    if cfg.offline is not None and offline_bundle is not None:
        await offline.upload_offline(
            conns, target.endpoint, offline_bundle.for_arch(cfg.offline.arch), cfg.offline, log
        )
    script = _script(bundle, name, Phase.CONTAINERD.value)
    if script is not None:
        await actions.run_phase(
            conns,
            target.endpoint,
            name,
            Phase.CONTAINERD.value,
            script,
            log,
            timeout=PHASE_DEADLINE,
        )


def _script(bundle: Bundle, node: str, phase: str) -> str | None:
    cfg = bundle.configs[node]
    entry = next((p for p in cfg.phases if p.name == phase), None)
    return bundle.files[node][entry.script].content if entry is not None else None


async def _step(
    conns: Connections,
    target: Target,
    bundle: Bundle,
    phase: Phase,
    log: Log,
    store: StateStore,
    environment: str,
) -> None:
    name = target.node.name
    script = upgrade_scripts(bundle.configs[name])[phase.value]
    with recorded_step(store, environment, name, phase.value):
        await actions.run_phase(
            conns, target.endpoint, name, phase.value, script, log, timeout=PHASE_DEADLINE
        )


async def _ready_at(
    conns: Connections, cps: list[Endpoint], name: str, version: str, log: Log
) -> None:
    """Wait for ``name`` Ready at ``version``, asking whichever control plane answers (a
    kubelet that restarts may restart its own node's API server too)."""
    deadline = time.monotonic() + NODE_READY_TIMEOUT
    got = "?"
    while True:
        for cp in cps:
            try:
                data = await actions.nodes_json(conns, cp, timeout=20)
            except (TransientError, PermanentError, ValueError):
                continue
            items = data.get("items", [])
            node = next((i for i in items if i["metadata"]["name"] == name), None)
            got = (node or {}).get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
            if got == version and name in actions.ready_nodes(data):
                log(f"{name}: Ready at {version}")
                return
            break
        if time.monotonic() > deadline:
            raise PermanentError(
                f"{name}: not Ready at {version} after {NODE_READY_TIMEOUT:g}s (kubelet {got})"
            )
        await asyncio.sleep(2)
