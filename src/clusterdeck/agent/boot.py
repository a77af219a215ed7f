"""One boot of a stateless node: who it is, which of init or join it runs, and running it.

- The node knows the cluster from ``agent.json`` (the file's spec, as ``pxe render`` saw it)
  and itself from ``identity.json``; it checks that its machine really has that address.
- Its node config and phase scripts are rendered here with its own machine's facts (the
  interface that carries its address, the cgroup version), by the same code as the SSH path.
- A control plane claims the ``init`` lease unless the cluster already exists. The holder
  renews the lease while ``kubeadm init`` runs; if it dies, its lease expires and another
  claims it. After init it publishes the join material (0600, with its expiry) and records
  that the cluster exists; only then does it release the lease.
- Control planes join one at a time (the ``join-control-plane`` lease: one etcd member change
  at a time); workers join at once. Afterwards each control plane keeps its HAProxy servers in
  step with etcd's voting members (:mod:`clusterdeck.agent.backends`). A worker's labels are
  set by the control plane holding the ``steward`` lease (a kubelet may not set its own role
  labels).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clusterdeck.agent import material, rejoin
from clusterdeck.agent.backends import BackendSync
from clusterdeck.agent.local import Log, run_script
from clusterdeck.bootstrap import kubeadm, pxe
from clusterdeck.bootstrap.kubeadm_build import (
    init_config_with,
    join_document,
    new_join_material,
)
from clusterdeck.bootstrap.nodeconfig import INIT_FILE, JOIN_FILE, MachineFacts, NodeConfig
from clusterdeck.bootstrap.render import (
    Artifact,
    ClusterFacts,
    node_config,
    node_files,
    write_artifact,
)
from clusterdeck.bootstrap.scripts import render_phase
from clusterdeck.bundle.manifest import load as load_bundle
from clusterdeck.coordination import reports
from clusterdeck.coordination.base import Coordinator, Lease
from clusterdeck.errors import PermanentError
from clusterdeck.model.phases import Phase
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Role, Topology
from clusterdeck.planner import build_plan, expand
from clusterdeck.planner.expand import as_initializer
from clusterdeck.providers.ssh import facts as facts_probe
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment
from clusterdeck.transport import Endpoint

BUNDLES = Path("/run/clusterdeck/agent")  # the rendered node bundles of this boot, root's only
OFFLINE = Path("/var/lib/clusterdeck/offline")  # the offline bundle, from the overlay
INITIALIZED = "initialized"
POLL = 1.0
JOIN_PHASES = {Phase.KUBEADM_JOIN_CONTROL_PLANE.value, Phase.KUBEADM_JOIN_WORKER.value}


@dataclass
class NodeView:
    config: pxe.AgentConfig
    identity: pxe.NodeIdentity
    env: Environment
    topology: Topology
    plan: Plan
    facts: ClusterFacts


def load(
    config_path: Path, identity_path: Path, probe: Callable[[], str], offline: Path = OFFLINE
) -> NodeView:
    config = pxe.AgentConfig.model_validate_json(config_path.read_text())
    identity = pxe.NodeIdentity.model_validate_json(identity_path.read_text())
    env = from_recorded(config.spec)
    topology = expand(env)
    plan = build_plan(env, topology)
    found = facts_probe.parse(probe())
    interfaces: dict[str, str] = found.get("interfaces", {})
    if identity.address not in interfaces:
        raise PermanentError(
            f"{identity.name}: this machine has no address {identity.address} (it has "
            f"{', '.join(sorted(interfaces)) or 'none'}): the per-node overlay is another node's"
        )
    machine = MachineFacts(
        private_ip=identity.address,
        interface=interfaces[identity.address],
        cgroup="v1" if found.get("cgroup") == "v1" else "v2",
        can_lower_oom_score=found.get("can_lower_oom_score"),
        conntrack_max_writable=found.get("conntrack_max_writable"),
    )
    machines = {identity.name: machine}
    for node in topology.nodes:  # the others: their addresses, and the lab's shared facts
        if node.name != identity.name and node.host is not None:
            machines[node.name] = MachineFacts(
                private_ip=node.host.address,
                cgroup=machine.cgroup,
                conntrack_max_writable=machine.conntrack_max_writable,
            )
    manifest = load_bundle(offline).manifest
    facts = ClusterFacts(machines=machines, bundles={manifest.arch: manifest})
    return NodeView(config, identity, env, topology, plan, facts)


def render(view: NodeView, variant: str) -> tuple[NodeConfig, Path]:
    """This node's config and bundle as the initializer (``init``) or a joiner (``join``)."""
    name = view.identity.name
    topology = as_initializer(view.topology, name if variant == pxe.INIT else "")
    plan = build_plan(view.env, topology)
    cfg = node_config(view.env, topology, plan, topology.node(name), view.facts)
    root = BUNDLES / variant
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for rel, artifact in node_files(view.env, topology, cfg, view.facts).items():
        write_artifact(root / rel, artifact)
    return cfg, root


def _private_file(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_artifact(Path(path), Artifact(text, 0o600))


class Renewer:
    """Keeps a lease while work runs; ``lost`` once another holder took it over."""

    def __init__(self, coord: Coordinator, lease: Lease, ttl: float) -> None:
        self.coord, self.lease, self.ttl = coord, lease, ttl
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost:
            self.coord.release(self.lease)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            renewed = self.coord.renew(self.lease, self.ttl)
            if renewed is None:
                self.lost = True
                return
            self.lease = renewed


PHASE_DONE = "phase {name}: done in {seconds:.1f} s"  # in the journal, where bench/boot.py reads it


def run_phases(cfg: NodeConfig, bundle: Path, names: list[str], log: Log) -> None:
    scripts = {p.name: p.script for p in cfg.phases}
    for name in names:
        started = time.monotonic()
        run_script((bundle / scripts[name]).read_text(), name=name, bundle=bundle, log=log)
        log(PHASE_DONE.format(name=name, seconds=time.monotonic() - started))


RUNNING = "running"  # boot's answer when the agent restarted in a boot that had completed


def boot(
    view: NodeView,
    coord: Coordinator,
    log: Log,
    *,
    join_wait: float = 1800,
    boot_mark: Path = rejoin.BOOT_MARK,
) -> str:
    """Bootstrap this node; returns ``init`` or ``join``, whichever it ran, or ``running``
    when the agent was restarted in a boot that had already completed."""
    name = view.identity.name
    ttl = float(view.config.lease_seconds)
    boot_id, restarted = rejoin.this_boot(boot_mark)
    report, had_joined = rejoin.start_boot(coord, name, boot_id)
    if restarted and report.state in ("joined", "initialised"):
        log(f"{name}: the agent restarted; this boot had already {report.state}")
        return RUNNING
    join_cfg, join_bundle = render(view, pxe.JOIN)
    ha = len(view.topology.control_planes()) > 1
    before = [p.name for p in join_cfg.phases]
    cut = next(i for i, p in enumerate(before) if p in JOIN_PHASES)
    log(f"{name}: preparing ({', '.join(before[:cut])})")
    run_phases(join_cfg, join_bundle, before[:cut], log)
    if view.identity.role is Role.CONTROL_PLANE:
        while coord.get(INITIALIZED) is None:
            lease = coord.claim("init", name, ttl)
            if lease is None:
                time.sleep(POLL)
                continue
            if coord.get(INITIALIZED) is not None:  # it was made while we claimed
                coord.release(lease)
                break
            log(f"{name}: elected to initialise the cluster (lease generation {lease.generation})")
            report.state = "initialising"
            reports.save(coord, report)
            with Renewer(coord, lease, ttl) as keeper:
                _init(view, coord, keeper, log, certificate_key=ha)
            if keeper.lost:
                raise PermanentError(f"{name}: lost the init lease during kubeadm init")
            rejoin.joined(coord, report, rejoin=False, state="initialised")
            return pxe.INIT
    if had_joined:
        rejoin.ask_cleanup(coord, report, view.identity.address, log, lease_seconds=ttl)
    after = before[cut:]

    def join_with_material(phases: list[str]) -> None:
        found = material.wait_for(coord, name, log, join_wait)
        _private_file(JOIN_FILE, kubeadm.to_yaml(join_document(join_cfg, found)))
        report.state = "joining"
        reports.save(coord, report)
        run_phases(join_cfg, join_bundle, phases, log)

    if view.identity.role is Role.CONTROL_PLANE:
        while (lease := coord.claim("join-control-plane", name, ttl)) is None:
            time.sleep(POLL)
        # the material is read under the lease: the steward does not upload the certificates
        # again (a new key) while a control plane holds it
        with Renewer(coord, lease, ttl):
            join_with_material(after)
    else:
        join_with_material([p for p in after if p != Phase.NODE_LABELS_TAINTS.value])
        coord.put(f"joined-{name}", report.boot.encode())  # the steward labels this boot
    rejoin.joined(coord, report, rejoin=had_joined)
    return pxe.JOIN


def _init(
    view: NodeView, coord: Coordinator, keeper: Renewer, log: Log, *, certificate_key: bool
) -> None:
    cfg, bundle = render(view, pxe.INIT)
    fresh = new_join_material(certificate_key=certificate_key)
    rendered = (bundle / "files" / "kubeadm-init.yaml").read_text()
    _private_file(INIT_FILE, init_config_with(rendered, fresh))
    names = [p.name for p in cfg.phases]
    start = names.index(Phase.KUBEADM_INIT.value)
    run_phases(cfg, bundle, [names[start]], log)
    if keeper.lost:
        return
    material.publish(coord, fresh, material.CA.read_bytes())
    coord.put(INITIALIZED, json.dumps({"by": view.identity.name, "at": time.time()}).encode())
    log(f"{view.identity.name}: cluster initialised; join material published (0600, 110 min)")
    run_phases(cfg, bundle, names[start + 1 :], log)


def steward_once(view: NodeView, coord: Coordinator, log: Log) -> list[str]:
    """Label and taint every worker whose latest boot reported its join; the names done."""
    done = []
    for node in view.topology.workers():
        boot_joined = coord.get(f"joined-{node.name}")
        if boot_joined is None or coord.get(f"labelled-{node.name}") == boot_joined:
            continue
        cfg = node_config(view.env, view.topology, view.plan, node, view.facts)
        script = render_phase(cfg, Phase.NODE_LABELS_TAINTS.value)
        run_script(script, name=f"labels-and-taints {node.name}", bundle=BUNDLES, log=log)
        coord.put(f"labelled-{node.name}", boot_joined)
        done.append(node.name)
    return done


def steward_round(
    view: NodeView,
    coord: Coordinator,
    log: Log,
    keeper: Renewer,
    backends: BackendSync | None = None,
) -> None:
    """One round of the steward's work: rejoin requests, the join material, worker labels;
    each change is made only while the steward lease is still this node's."""
    me = view.identity.name
    others = {
        n.name: (n.host.address, n.role is Role.CONTROL_PLANE)
        for n in view.topology.nodes
        if n.name != me and n.host is not None
    }
    local = Endpoint(host=view.identity.address, name=me)

    def still_steward() -> bool:
        return not keeper.lost

    cleaned = rejoin.serve_requests(others, coord, local, log, still_steward)
    if backends is not None and any(others[name][1] for name in cleaned):
        backends.sync()  # a member was removed: its server out now, not at the next round
    if still_steward():
        material.renew_if_due(
            coord,
            log,
            certificate_key=len(view.topology.control_planes()) > 1,
            address=view.identity.address,
            version=view.env.spec.kubernetes.version,
        )
    if still_steward():
        steward_once(view, coord, log)


def serve(view: NodeView, coord: Coordinator, log: Log, stop: threading.Event) -> None:
    """A control plane's agent after its boot: the steward while it holds that lease, which
    is renewed while a round runs (a round can outlast a lease period)."""
    ttl = float(view.config.lease_seconds)
    every = min(5.0, ttl / 3)
    control_planes = [n.name for n in view.topology.control_planes()]
    local = Endpoint(host=view.identity.address, name=view.identity.name)
    backends = BackendSync(control_planes, local, log) if len(control_planes) > 1 else None

    def sync_backends() -> None:
        if backends is not None:
            try:
                backends.sync()
            except (OSError, PermanentError) as exc:
                log(f"HAProxy: servers not synced with etcd this round: {exc}")

    while not stop.is_set():
        sync_backends()
        lease = coord.claim("steward", view.identity.name, ttl)
        if lease is None:
            stop.wait(every)
            continue
        log(f"steward: this node is the steward (lease generation {lease.generation})")
        with Renewer(coord, lease, ttl) as keeper:
            while not stop.is_set() and not keeper.lost:
                try:
                    steward_round(view, coord, log, keeper, backends)
                except Exception as exc:  # the steward must outlive one bad round
                    log(f"steward: this round failed: {type(exc).__name__}: {exc}")
                stop.wait(every)
                sync_backends()
        if keeper.lost:
            log("steward: the lease passed to another control plane")
