"""The shape of a cluster bootstrap as a dependency graph, with no I/O.

Each node's phases form a chain that starts at once (a worker installs its packages while the
first control plane initialises). The cross-node edges are only the real ones:
- join material is fetched once, after ``kubeadm init`` on the first control plane;
- control planes join one at a time (etcd membership changes one by one), each after the
  previous one;
- a worker joins as soon as the join material exists and its own packages are in;
- with an offline bundle, a node's bundle files are sent alongside its first phases (the
  first control plane's before the others'), and only the phases that install from them wait;
- labels and taints follow each node's own join, run with the admin credentials of the first
  control plane;
- the cluster is checked Ready after every node is labelled (and has run its afterKubernetes
  hooks) and the CNI is applied; clusterReady hooks run after that check;
- on an overlay, every node's peer list is brought up to date (and each tunnel checked) once
  every node has its overlay interface, before any node joins; once every node is in the
  cluster, the pod ranges are routed through the overlay, before the Ready check.

A day-2 run that only adds workers leaves out the control planes' own steps
(:func:`without_nodes`): their work is done and nothing of theirs changes, so the new workers
wait only for the join material, which the first control plane still makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clusterdeck.bootstrap.nodeconfig import NodeConfig
from clusterdeck.model.phases import Phase
from clusterdeck.model.topology import Role
from clusterdeck.spec.models import HookPoint

Kind = Literal[
    "upload",
    "offline",
    "phase",
    "join-material",
    "ready",
    "kubeconfig",
    "overlay-sync",
    "overlay-routes",
]
JOIN_MATERIAL = "join-material"
OVERLAY_SYNC = "cluster/overlay-sync"
OVERLAY_ROUTES = "cluster/overlay-routes"
READY = "cluster/ready"
KUBECONFIG = "cluster/kubeconfig"
JOIN_PHASES = {Phase.KUBEADM_JOIN_CONTROL_PLANE.value, Phase.KUBEADM_JOIN_WORKER.value}
# phases that install from the offline bundle: they wait for its files to be on the node
OFFLINE_PHASES = {Phase.CONTAINERD.value, Phase.KUBE_PACKAGES.value}


@dataclass(frozen=True)
class StepSpec:
    id: str
    kind: Kind
    subject: str
    node: str  # the node whose phase it is ("" for cluster-wide steps)
    phase: str = ""
    runs_on: str = ""  # node the commands run on
    needs: tuple[str, ...] = field(default_factory=tuple)


def step_id(node: str, phase: str) -> str:
    return f"{node}/{phase}"


def build(configs: dict[str, NodeConfig]) -> list[StepSpec]:
    cps = sorted(
        (c for c in configs.values() if c.role is Role.CONTROL_PLANE),
        key=lambda c: (not c.first_control_plane, c.name),
    )
    if not cps or not cps[0].first_control_plane:
        raise ValueError("the topology has no first control plane")
    first = cps[0].name
    has_kubernetes = any(p.name == Phase.KUBEADM_INIT.value for p in cps[0].phases)
    specs: list[StepSpec] = []
    previous_cp_join: str | None = None
    label_steps: list[str] = []
    overlay_steps = [
        step_id(c.name, Phase.OVERLAY.value)
        for c in configs.values()
        if any(p.name == Phase.OVERLAY.value for p in c.phases)
    ]
    for cfg in [*cps, *(c for c in configs.values() if c.role is Role.WORKER)]:
        upload = step_id(cfg.name, "upload")
        specs.append(StepSpec(upload, "upload", cfg.name, cfg.name, runs_on=cfg.name))
        before = upload
        offline = step_id(cfg.name, "offline")
        if cfg.offline is not None:
            # the first control plane's files go first, alone: its init is on the critical
            # path, and five nodes sharing the uplink would each take five times as long
            first_offline = () if cfg.name == first else (step_id(first, "offline"),)
            specs.append(
                StepSpec(
                    offline, "offline", cfg.name, cfg.name, runs_on=cfg.name, needs=first_offline
                )
            )
        for entry in cfg.phases:
            needs = [before]
            if cfg.offline is not None and entry.name in OFFLINE_PHASES:
                needs.append(offline)
            if entry.name in JOIN_PHASES:
                needs.append(JOIN_MATERIAL)
                if overlay_steps:
                    needs.append(OVERLAY_SYNC)
                if entry.name == Phase.KUBEADM_JOIN_CONTROL_PLANE.value and previous_cp_join:
                    needs.append(previous_cp_join)
            if entry.name == Phase.NODE_LABELS_TAINTS.value:
                needs.append(step_id(first, Phase.KUBEADM_INIT.value))
                label_steps.append(step_id(cfg.name, entry.name))
            hook = cfg.hook(entry.name)
            if hook is not None and hook.at == HookPoint.AFTER_KUBERNETES.value:
                label_steps.append(step_id(cfg.name, entry.name))  # the Ready check waits
            if hook is not None and hook.at == HookPoint.CLUSTER_READY.value:
                needs.append(READY)
            runs_on = first if entry.runs_on == "control-plane" else cfg.name
            sid = step_id(cfg.name, entry.name)
            specs.append(
                StepSpec(
                    sid,
                    "phase",
                    cfg.name,
                    cfg.name,
                    entry.name,
                    runs_on,
                    tuple(dict.fromkeys(needs)),
                )
            )
            if entry.name == Phase.KUBEADM_JOIN_CONTROL_PLANE.value:
                previous_cp_join = sid
            before = sid
    if not has_kubernetes:
        return specs
    init = step_id(first, Phase.KUBEADM_INIT.value)
    specs.append(
        StepSpec(JOIN_MATERIAL, "join-material", first, first, runs_on=first, needs=(init,))
    )
    specs.append(StepSpec(KUBECONFIG, "kubeconfig", first, first, runs_on=first, needs=(init,)))
    cni = (
        [step_id(first, Phase.CNI.value)]
        if any(p.name == Phase.CNI.value for p in cps[0].phases)
        else []
    )
    before_ready = [*label_steps, *cni]
    if overlay_steps:
        specs.append(
            StepSpec(
                OVERLAY_SYNC,
                "overlay-sync",
                "overlay",
                "",
                runs_on=first,
                needs=tuple(overlay_steps),
            )
        )
        specs.append(
            StepSpec(
                OVERLAY_ROUTES,
                "overlay-routes",
                "overlay",
                "",
                runs_on=first,
                needs=(OVERLAY_SYNC, *label_steps),
            )
        )
        before_ready.append(OVERLAY_ROUTES)
    specs.append(StepSpec(READY, "ready", "cluster", "", runs_on=first, needs=tuple(before_ready)))
    return specs


NODE_KINDS = ("upload", "offline", "phase")


def without_nodes(specs: list[StepSpec], settled: set[str]) -> list[StepSpec]:
    """``specs`` without the upload, offline and phase steps of ``settled`` nodes (whose work
    is done), and without the edges to them. Cluster-wide steps stay: join material, the admin
    kubeconfig, the Ready check, and other nodes' phases that run on a settled node."""
    gone = {s.id for s in specs if s.kind in NODE_KINDS and s.node in settled}
    return [
        StepSpec(
            s.id,
            s.kind,
            s.subject,
            s.node,
            s.phase,
            s.runs_on,
            tuple(n for n in s.needs if n not in gone),
        )
        for s in specs
        if s.id not in gone
    ]
