"""Render every node's bundle: node config, phase scripts and config files, ready for review.

A bundle is a mapping of relative paths to file contents and modes; ``write_bundle`` puts
it on disk (``clusterdeck render``), the node pipeline uploads each node's part. What is
not known yet (an NLB's DNS name, an instance's address before it exists) is rendered with a
``.pending.invalid`` placeholder and listed in the node config's ``pending``. Join material is
never part of a bundle.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from clusterdeck.bootstrap import cni, gpu, kubeadm, osfiles, overlay_paths, scripts, units
from clusterdeck.bootstrap import overlay as overlay_files
from clusterdeck.bootstrap.containerd import PAUSE_IMAGE, ContainerdConfig
from clusterdeck.bootstrap.kubeadm_build import init_documents, join_document
from clusterdeck.bootstrap.lbconfig import Backend, LoadBalancerConfig
from clusterdeck.bootstrap.nodeconfig import (
    DEFAULT_DRIVER_BRANCH,
    PENDING,
    MachineFacts,
    NodeConfig,
    NvidiaSettings,
    cert_sans,
    endpoint,
    hook_settings,
    keepalived_settings,
    kubernetes_settings,
    node_plan,
    offline_settings,
    phase_entries,
    private_address,
)
from clusterdeck.bundle.manifest import BundleError, BundleManifest, no_bundle_for
from clusterdeck.model.overlay import Mesh
from clusterdeck.model.phases import Phase
from clusterdeck.model.plan import Plan
from clusterdeck.model.topology import Node, Role, Topology
from clusterdeck.spec import arch
from clusterdeck.spec.models import Environment

JOIN_NOTE = (
    "# Review copy. The bootstrap token, CA certificate hash and (control planes) the\n"
    "# certificate key are added at join time, in a 0600 file that is removed after.\n"
)


@dataclass(frozen=True)
class Artifact:
    content: str
    mode: int = 0o644


@dataclass
class ClusterFacts:
    """What is known of the machines: addresses per node, and the NLB's DNS name."""

    machines: dict[str, MachineFacts] = field(default_factory=dict)
    nlb_dns: str | None = None  # the internet-facing NLB: users' kubeconfig
    nlb_internal_dns: str | None = None  # the internal NLB: nodes and kubeadm
    # spec.offline: the manifest of each bundle, by architecture
    bundles: dict[str, BundleManifest] = field(default_factory=dict)
    mesh: Mesh | None = None  # spec.overlay: the mesh of these machines, once worked out

    def bundle_for(self, arch: str | None) -> BundleManifest | None:
        """The manifest of the bundle a node of ``arch`` gets (None: online, or no bundle
        for that architecture; an architecture not known yet takes the only one or amd64)."""
        if not self.bundles:
            return None
        if arch is None:
            if len(self.bundles) == 1:
                return next(iter(self.bundles.values()))
            arch = "amd64"
        return self.bundles.get(arch)


@dataclass
class Bundle:
    configs: dict[str, NodeConfig] = field(default_factory=dict)
    files: dict[str, dict[str, Artifact]] = field(default_factory=dict)  # node -> path -> file

    def pending(self) -> dict[str, list[str]]:
        return {n: c.pending for n, c in self.configs.items() if c.pending}


def node_config(
    env: Environment, topology: Topology, plan: Plan, node: Node, facts: ClusterFacts
) -> NodeConfig:
    spec = env.spec
    machine = facts.machines.get(node.name, MachineFacts())
    overlay = None
    if spec.overlay is not None:  # the cluster knows the node by its overlay address
        machine = machine.model_copy(update={"private_ip": machine.overlay_address})
        overlay = overlay_files.settings_for(env, _mesh(env, topology, facts), node.name)
    elif machine.private_ip is None and node.host is not None:
        machine = machine.model_copy(update={"private_ip": private_address(node, machine)})
    entries = phase_entries(node_plan(plan, node.name))
    names = {e.name for e in entries}
    ep = endpoint(env, topology, facts.machines, facts.nlb_internal_dns or facts.nlb_dns)
    pending = []
    if not ep.known:
        pending.append(f"control-plane endpoint ({ep.host})")
    if spec.overlay is not None and overlay is None:
        pending.append("overlay address and peers (each node makes its key at create)")
    elif machine.private_ip is None:
        pending.append("private address (kubelet node-ip and advertise address left to detection)")
    lb = keepalived_settings(env, topology, node, facts.machines)
    if lb is not None and not lb.interface_known:
        pending.append(f"network interface for the VIP (assumed {lb.interface})")
    node_arch = arch.of_node(node.provider, node.instance_type, machine.arch)
    manifest = facts.bundle_for(node_arch)
    if facts.bundles and manifest is None:
        wanted = node_arch or "amd64"
        raise BundleError(no_bundle_for(f"{node.name} is {wanted}", wanted, facts.bundles))
    if node_arch is None and len(facts.bundles) > 1:
        pending.append("architecture (known from the host's facts; amd64 assumed)")
    return NodeConfig(
        environment=env.name,
        name=node.name,
        role=node.role,
        pool=node.pool,
        provider=node.provider,
        first_control_plane=node.first_control_plane,
        machine=machine,
        kubernetes=kubernetes_settings(env, manifest).model_copy(
            update={
                "allow_cgroup_v1": any(m.cgroup == "v1" for m in facts.machines.values()),
                "keep_conntrack_limit": any(
                    m.conntrack_max_writable is False for m in facts.machines.values()
                ),
            }
        ),
        endpoint=ep,
        containerd_version=spec.container_runtime.version,
        nvidia=NvidiaSettings(
            driver=Phase.NVIDIA_DRIVER.value in names,
            driver_branch=spec.nvidia_driver.version or DEFAULT_DRIVER_BRANCH,
            toolkit=Phase.NVIDIA_TOOLKIT.value in names,
            toolkit_version=spec.nvidia_container_toolkit.version,
            cdi=spec.nvidia_container_toolkit.enable_cdi,
        ),
        keepalived=lb,
        overlay=overlay,
        offline=offline_settings(manifest, node.role) if manifest else None,
        labels=dict(node.labels) | gpu_labels(node, machine),
        taints=list(node.taints),
        remove_control_plane_taint=node.role is Role.CONTROL_PLANE
        and topology.control_plane_untainted,
        phases=entries,
        hooks=hook_settings(env, [e.name for e in entries]),
        pending=pending,
    )


def gpu_labels(node: Node, machine: MachineFacts) -> dict[str, str]:
    """The GPU label NVIDIA's device plugin selects: aws GPU instance types, and ssh hosts
    whose facts found an NVIDIA display controller."""
    has_gpu = node.gpu_instance or bool(machine.nvidia_gpus)
    return {gpu.GPU_LABEL: "true"} if has_gpu else {}


def _yaml_text(data: object) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def node_files(
    env: Environment, topology: Topology, cfg: NodeConfig, facts: ClusterFacts
) -> dict[str, Artifact]:
    """Every file of one node's bundle, by path inside the bundle."""
    phases = [p.name for p in cfg.phases]
    files: dict[str, Artifact] = {}
    ha = env.spec.cluster.high_availability
    if Phase.OS_PREP.value in phases:
        files["files/modules-k8s.conf"] = Artifact(osfiles.modules_load())
        files["files/sysctl-k8s.conf"] = Artifact(osfiles.sysctl_conf())
    if Phase.OVERLAY.value in phases and cfg.overlay is not None:
        mesh = _mesh(env, topology, facts)
        files["files/overlay/peers.conf"] = Artifact(
            overlay_files.peers_file(mesh, cfg.name), 0o600
        )
        files["files/overlay/overlay.env"] = Artifact(overlay_files.env_file(cfg.overlay))
        files["files/overlay/overlay-up"] = Artifact(overlay_files.up_script(), 0o755)
        files[f"files/overlay/{overlay_paths.UNIT}"] = Artifact(overlay_files.unit())
        files["files/overlay/kubelet-overlay.conf"] = Artifact(overlay_files.kubelet_dropin())
    if Phase.CONTAINERD.value in phases:
        toml = ContainerdConfig(
            nvidia_runtime=cfg.nvidia.toolkit,
            enable_cdi=cfg.nvidia.toolkit and cfg.nvidia.cdi,
            sandbox_image=cfg.offline.pause_image if cfg.offline else PAUSE_IMAGE,
            restrict_oom_score_adj=cfg.machine.can_lower_oom_score is False,
        ).to_toml()
        files["files/containerd.toml"] = Artifact(toml)
        if cfg.offline is not None:
            files["files/containerd.service"] = Artifact(units.containerd_service())
            files["files/crictl.yaml"] = Artifact(osfiles.crictl_yaml())
    if Phase.NVIDIA_TOOLKIT.value in phases:
        files["files/nvidia-container-toolkit.list"] = Artifact(osfiles.nvidia_source().line())
    if Phase.KUBE_PACKAGES.value in phases and cfg.offline is None:
        files["files/kubernetes.list"] = Artifact(
            osfiles.kubernetes_source(cfg.kubernetes.minor).line()
        )
    if Phase.KUBE_PACKAGES.value in phases and cfg.offline is not None:
        files["files/kubelet.service"] = Artifact(units.kubelet_service())
        files["files/10-kubeadm.conf"] = Artifact(units.kubelet_kubeadm_dropin())
    if cfg.keepalived is not None:
        lb = LoadBalancerConfig(
            node=cfg.name,
            vip=cfg.keepalived.vip,
            api_port=cfg.keepalived.api_port,
            router_id=cfg.keepalived.router_id,
            interface=cfg.keepalived.interface,
            own_address=cfg.machine.private_ip or f"{cfg.name}.{PENDING}",
            peers=cfg.keepalived.peers,
            priority=cfg.keepalived.priority,
            backends=[
                Backend(name=cp.name, address=addr)
                for cp in topology.control_planes()
                for addr in [private_address(cp, facts.machines.get(cp.name))]
                if addr
            ],
        )
        files["files/keepalived.conf"] = Artifact(lb.keepalived_conf())
        files["files/haproxy.cfg"] = Artifact(lb.haproxy_cfg())
    if Phase.KUBEADM_INIT.value in phases:
        # the users' NLB name too: their kubeconfig reaches the API servers through it
        sans = cert_sans(topology, facts.machines, cfg.endpoint, also=[facts.nlb_dns])
        docs = init_documents(cfg, sans)
        files["files/kubeadm-init.yaml"] = Artifact(kubeadm.to_yaml(*docs), 0o600)
    if Phase.CNI.value in phases:
        text = cni.kustomization(
            cfg.kubernetes.cni, cfg.kubernetes.pod_cidr, on_overlay=env.spec.overlay is not None
        )
        files[cni.KUSTOMIZATION] = Artifact(text)
    if Phase.NVIDIA_DEVICE_PLUGIN.value in phases:
        files[gpu.KUSTOMIZATION] = Artifact(gpu.device_plugin_kustomization())
        files[f"files/nvidia/{gpu.RUNTIME_CLASS_FILE}"] = Artifact(gpu.runtime_class())
    if {Phase.KUBEADM_JOIN_WORKER.value, Phase.KUBEADM_JOIN_CONTROL_PLANE.value} & set(phases):
        files["files/kubeadm-join.yaml"] = Artifact(
            JOIN_NOTE + kubeadm.to_yaml(join_document(cfg)), 0o600
        )
    for hook in cfg.hooks:
        source = next(h.inline for h in env.spec.hooks if h.name == hook.name)
        files[hook.script] = Artifact(source or "", 0o700)
    upload_certs = ha.enabled and len(topology.control_planes()) > 1
    for entry in cfg.phases:
        files[entry.script] = Artifact(
            scripts.render_phase(cfg, entry.name, upload_certs=upload_certs), 0o755
        )
    cfg = cfg.model_copy(update={"files": {path: path for path in files}})
    files["node.json"] = Artifact(cfg.to_json())
    return files


def _mesh(env: Environment, topology: Topology, facts: ClusterFacts) -> Mesh:
    """The overlay's mesh, worked out once per render (facts.mesh caches it)."""
    if facts.mesh is None:
        facts.mesh = overlay_files.mesh_of(env, topology, facts.machines)
    return facts.mesh


def render_environment(
    env: Environment, topology: Topology, plan: Plan, facts: ClusterFacts | None = None
) -> Bundle:
    facts = facts or ClusterFacts()
    bundle = Bundle()
    for node in topology.nodes:
        cfg = node_config(env, topology, plan, node, facts)
        bundle.configs[node.name] = cfg
        bundle.files[node.name] = node_files(env, topology, cfg, facts)
    return bundle


def write_artifact(path: Path, artifact: Artifact) -> None:
    """Write one file whole (a reader never sees half of it), created with its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, artifact.mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(artifact.content)
    tmp.chmod(artifact.mode)
    tmp.replace(path)


def write_bundle(bundle: Bundle, directory: str | Path) -> list[Path]:
    """Write every node's files under ``directory/<node>/``; return the paths written."""
    root = Path(directory)
    written: list[Path] = []
    for node, files in bundle.files.items():
        for rel, artifact in sorted(files.items()):
            path = root / node / rel
            write_artifact(path, artifact)
            written.append(path)
    index = {
        "nodes": {n: [p.name for p in c.phases] for n, c in bundle.configs.items()},
        "pending": bundle.pending(),
    }
    (root / "bundle.json").write_text(json.dumps(index, indent=2) + "\n")
    written.append(root / "bundle.json")
    return written


def upgrade_scripts(cfg: NodeConfig) -> dict[str, str]:
    """The two upgrade steps of one node (day-2, rendered from the new version's config):
    ``kubeadm upgrade apply`` on the first control plane, ``kubeadm upgrade node`` elsewhere,
    then the kubelet."""
    mode = "apply" if cfg.first_control_plane else "node"
    return {
        Phase.KUBEADM_UPGRADE.value: scripts.render_phase(
            cfg, Phase.KUBEADM_UPGRADE.value, upgrade_mode=mode
        ),
        Phase.KUBELET_UPGRADE.value: scripts.render_phase(cfg, Phase.KUBELET_UPGRADE.value),
    }
