"""The typed node config: everything one node's phases need, in one file (``node.json``).

It is built from the spec, the topology, the plan and what is known about the machines
(addresses from the store, the NLB's DNS name). The same file serves phases pushed over SSH
today and phases pulled by a node agent at boot later. It never holds join material (token,
CA hash, certificate key): those reach a node at join time only, as a 0600 file.

Supported operating systems: Ubuntu 22.04 and 24.04 (the packages come from Ubuntu's archive,
pkgs.k8s.io and NVIDIA's repository). Debian 12 is accepted by the scripts (same apt
packages) but has only been exercised in the lab.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from clusterdeck.bootstrap import cni
from clusterdeck.bundle.manifest import BundleManifest, FileKind
from clusterdeck.model.phases import Phase, hook_phase
from clusterdeck.model.plan import NodePlan, Plan
from clusterdeck.model.topology import Node, Role, Topology
from clusterdeck.spec.models import Environment, KubernetesConfig, LoadBalancerKind

NODE_CONFIG_SCHEMA = "clusterdeck.dev/node/v1alpha1"
SUPPORTED_OS = {"ubuntu": ["22.04", "24.04"], "debian": ["12"]}
PKGS_REVISION = "1.1"  # pkgs.k8s.io Debian revision of every current kubeadm/kubelet/kubectl
PENDING = "pending.invalid"  # RFC 6761: a name that never resolves, marks "known after create"
LOCAL_API = "https://127.0.0.1:6443"
JOIN_FILE = "/run/clusterdeck/kubeadm-join.yaml"
INIT_FILE = "/run/clusterdeck/kubeadm-init.yaml"  # the init config with its token, 0600
BUNDLE_ON_NODE = "/var/lib/clusterdeck/bundle"
DEFAULT_INTERFACE = "eth0"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineFacts(Model):
    """What is known of one machine: from the provider's ``node/<name>`` record."""

    private_ip: str | None = None
    public_ip: str | None = None
    arch: str | None = None  # as the host reports it (uname -m); aws: from the instance type
    public_name: str | None = None
    interface: str | None = None
    cgroup: Literal["v1", "v2"] | None = None  # None: not probed (v2 on current Ubuntu)
    # False on container-like machines (no CAP_SYS_RESOURCE): runc must not lower OOM scores
    can_lower_oom_score: bool | None = None
    nvidia_gpus: int | None = None  # None: not probed (aws: known from the instance type)
    # False where the conntrack limit is read-only (a container-like machine): kube-proxy
    # must leave it as it is
    conntrack_max_writable: bool | None = None
    # spec.overlay: the node's address on it and the public half of the key the node made
    # (the private half never leaves the node), from its ``overlay/<name>`` record
    overlay_address: str | None = None
    overlay_public_key: str | None = None
    pod_cidr: str | None = None  # the pod range Kubernetes gave the node, once it joined


class CniManifest(Model):
    """Where the first control plane takes the CNI's release manifest, and its sha256."""

    url: str | None = None  # online: the upstream release URL
    file: str | None = None  # offline: the path inside the bundle (under OFFLINE_ON_NODE)
    sha256: str


class KubernetesSettings(Model):
    version: str  # v1.33.4
    minor: str  # v1.33
    package_version: str  # 1.33.4-1.1
    cni: str
    cni_version: str
    cni_manifest: CniManifest
    pod_cidr: str
    service_cidr: str
    # some node runs cgroup v1 (from its facts): kubelets must be told to accept it
    allow_cgroup_v1: bool = False
    keep_conntrack_limit: bool = False  # some node's conntrack limit is read-only
    # the user's own kubeadm and kubelet settings, laid over the rendered documents (also at
    # join time, on the node)
    config: KubernetesConfig | None = None


class EndpointSettings(Model):
    kind: Literal["nlb", "vip", "control-plane"]
    host: str
    port: int
    known: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Ubuntu's current server branch (its 570-server module packages now lead to 580-server)
DEFAULT_DRIVER_BRANCH = "580"


class NvidiaSettings(Model):
    driver: bool = False
    driver_branch: str = DEFAULT_DRIVER_BRANCH
    toolkit: bool = False
    toolkit_version: str | None = None
    cdi: bool = True


class KeepalivedSettings(Model):
    vip: str
    api_port: int
    router_id: int
    priority: int
    peers: list[str]
    interface: str
    interface_known: bool


OFFLINE_ON_NODE = "/var/lib/clusterdeck/offline"  # the verified bundle files, root's only
# images only control planes run (static pods); every node gets the rest
CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


class OverlaySettings(Model):
    """The node on the WireGuard overlay (bootstrap/overlay.py)."""

    interface: str
    address: str  # its overlay address with the overlay's prefix: 10.200.0.1/16
    port: int
    mtu: int | None  # None: the underlay's less WireGuard's overhead
    forwards: bool  # a relay for nodes behind NAT
    peers: list[str]  # its peers' overlay addresses: checked with a don't-fragment ping
    underlay_probe: str | None = None  # a peer's endpoint: the underlay route to size the MTU


class OfflineImage(Model):
    reference: str
    file: str  # path inside the bundle (and under OFFLINE_ON_NODE)


class OfflineSettings(Model):
    """What this node takes from the offline bundle: nothing is downloaded."""

    kubernetes_version: str
    arch: str  # the bundle's architecture: the node's own
    files: list[str]  # every bundle file this node gets (uploaded once, checked by sha256)
    binaries: list[str]  # bin/<name>
    cni_plugins: list[str]  # cni/<name>
    images: list[OfflineImage]
    pause_image: str
    # the tags the bundle's CoreDNS and etcd images carry: kubeadm is told to use them
    coredns_tag: str | None = None
    etcd_tag: str | None = None


def offline_settings(manifest: BundleManifest, role: Role) -> OfflineSettings:
    images = [
        OfflineImage(reference=i.reference, file=i.file)
        for i in manifest.images
        if role is Role.CONTROL_PLANE or image_short_name(i.reference) not in CONTROL_PLANE_IMAGES
    ]
    binaries = [f.path for f in manifest.of_kind(FileKind.BINARY)]
    plugins = [f.path for f in manifest.of_kind(FileKind.CNI_PLUGIN)]
    tags = {image_short_name(i.reference): i.reference.rsplit(":", 1)[1] for i in manifest.images}
    # the CNI manifest: applied from the first control plane (any control plane may be first)
    manifests = [manifest.cni.manifest] if role is Role.CONTROL_PLANE else []
    return OfflineSettings(
        coredns_tag=tags.get("coredns"),
        etcd_tag=tags.get("etcd"),
        kubernetes_version=manifest.kubernetes_version,
        arch=manifest.arch,
        files=[*binaries, *plugins, *sorted({i.file for i in images}), *manifests],
        binaries=binaries,
        cni_plugins=plugins,
        images=images,
        pause_image=manifest.pause_image,
    )


def image_short_name(reference: str) -> str:
    return reference.rsplit(":", 1)[0].rsplit("/", 1)[-1]


class HookSettings(Model):
    """One of the file's hooks as this node runs it (the script is a bundle file)."""

    name: str
    at: str
    script: str  # path inside the bundle
    sha256: str  # of the script: a hook counts as done for this exact script
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: list[str] = Field(default_factory=list)  # names only: values come at run time
    timeout_seconds: int
    continue_on_error: bool = False


def hook_settings(env: Environment, phases: Sequence[str]) -> list[HookSettings]:
    """The hooks among ``phases``, in their order."""
    by_name = {hook_phase(h.name): h for h in env.spec.hooks}
    out = []
    for phase in phases:
        hook = by_name.get(phase)
        if hook is None or hook.inline is None:
            continue
        out.append(
            HookSettings(
                name=hook.name,
                at=hook.at.value,
                script=f"files/hooks/{hook.name}.sh",
                sha256=hashlib.sha256(hook.inline.encode()).hexdigest(),
                env=dict(hook.env),
                secret_env=list(hook.secret_env),
                timeout_seconds=hook.timeout_seconds,
                continue_on_error=hook.continue_on_error,
            )
        )
    return out


class PhaseEntry(Model):
    name: str
    script: str  # path inside the bundle
    runs_on: Literal["self", "control-plane"] = "self"


class NodeConfig(Model):
    schema_: Literal["clusterdeck.dev/node/v1alpha1"] = Field(
        default="clusterdeck.dev/node/v1alpha1", alias="schema"
    )
    environment: str
    name: str
    role: Role
    pool: str
    provider: str
    first_control_plane: bool
    machine: MachineFacts
    kubernetes: KubernetesSettings
    endpoint: EndpointSettings
    containerd_version: str | None = None
    nvidia: NvidiaSettings
    keepalived: KeepalivedSettings | None = None
    overlay: OverlaySettings | None = None
    offline: OfflineSettings | None = None
    labels: dict[str, str]
    taints: list[str]
    remove_control_plane_taint: bool
    phases: list[PhaseEntry]
    hooks: list[HookSettings] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)
    supported_os: dict[str, list[str]] = Field(default_factory=lambda: dict(SUPPORTED_OS))

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"

    def hook(self, phase: str) -> HookSettings | None:
        return next((h for h in self.hooks if hook_phase(h.name) == phase), None)


def kubernetes_settings(env: Environment, bundle: BundleManifest | None) -> KubernetesSettings:
    """The cluster's Kubernetes settings; the CNI manifest from the bundle when offline, else
    the pinned upstream release."""
    k8s = env.spec.kubernetes
    if bundle is not None:
        entry = next(f for f in bundle.files if f.path == bundle.cni.manifest)
        cni_version = bundle.cni.version
        manifest = CniManifest(file=entry.path, sha256=entry.sha256)
    else:
        pinned = cni.upstream(k8s.cni.value)
        cni_version = pinned.version
        manifest = CniManifest(url=pinned.url, sha256=pinned.sha256)
    major_minor = ".".join(k8s.version.split(".")[:2])
    return KubernetesSettings(
        version=k8s.version,
        minor=major_minor,
        package_version=f"{k8s.version.removeprefix('v')}-{PKGS_REVISION}",
        cni=k8s.cni.value,
        cni_version=cni_version,
        cni_manifest=manifest,
        pod_cidr=k8s.pod_cidr,
        service_cidr=k8s.service_cidr,
        config=k8s.config,
    )


def endpoint(
    env: Environment, topology: Topology, facts: dict[str, MachineFacts], nlb_dns: str | None
) -> EndpointSettings:
    """The control-plane endpoint every node and kubeconfig uses (HA: NLB or VIP)."""
    ha = env.spec.cluster.high_availability
    if ha.enabled and ha.load_balancer is LoadBalancerKind.NLB:
        return EndpointSettings(
            kind="nlb",
            host=nlb_dns or f"{env.name}-nlb.{PENDING}",
            port=6443,
            known=nlb_dns is not None,
        )
    if ha.enabled and ha.load_balancer is LoadBalancerKind.KEEPALIVED and ha.vip:
        return EndpointSettings(kind="vip", host=ha.vip, port=ha.api_port, known=True)
    first = topology.control_planes()[0]
    address = private_address(first, facts.get(first.name))
    return EndpointSettings(
        kind="control-plane",
        host=address or f"{first.name}.{PENDING}",
        port=6443,
        known=address is not None,
    )


def private_address(node: Node, facts: MachineFacts | None) -> str | None:
    """The address the cluster knows the node by (node IP, advertise address, etcd peer URL):
    its overlay address on an overlay, else its private address."""
    if facts is not None and facts.overlay_address:
        return facts.overlay_address
    if facts is not None and facts.private_ip:
        return facts.private_ip
    return node.host.address if node.host is not None else None


def cert_sans(
    topology: Topology,
    facts: dict[str, MachineFacts],
    ep: EndpointSettings,
    also: Sequence[str | None] = (),
) -> list[str]:
    """API server certificate names: endpoint, every control plane's public address and name,
    and the loopback names the control planes' own kubeconfigs use."""
    sans: list[str] = []
    candidates: list[str | None] = [ep.host if ep.known else None, *also]
    for cp in topology.control_planes():
        f = facts.get(cp.name, MachineFacts())
        candidates += [f.public_ip, f.public_name, cp.host.address if cp.host else None]
    candidates += ["127.0.0.1", "localhost"]
    for item in candidates:
        if item and item not in sans:
            sans.append(item)
    return sans


def keepalived_settings(
    env: Environment, topology: Topology, node: Node, facts: dict[str, MachineFacts]
) -> KeepalivedSettings | None:
    ha = env.spec.cluster.high_availability
    if (
        node.role is not Role.CONTROL_PLANE
        or not ha.enabled
        or ha.load_balancer is not LoadBalancerKind.KEEPALIVED
        or ha.vip is None
    ):
        return None
    peers = [
        addr
        for cp in topology.control_planes()
        if cp.name != node.name
        for addr in [private_address(cp, facts.get(cp.name))]
        if addr
    ]
    own = facts.get(node.name, MachineFacts())
    return KeepalivedSettings(
        vip=ha.vip,
        api_port=ha.api_port,
        router_id=ha.vrrp_router_id or vrrp_router_id(env.name),
        priority=200 - node.index * 10,
        peers=peers,
        interface=own.interface or DEFAULT_INTERFACE,
        interface_known=own.interface is not None,
    )


def vrrp_router_id(environment: str) -> int:
    """1-255 from the environment's name, so two environments on one network (each with its
    own VIP) do not share a VRRP router id by default; ``vrrpRouterId`` sets it."""
    return int.from_bytes(hashlib.sha256(environment.encode()).digest()[:2], "big") % 255 + 1


def phase_entries(plan_node: NodePlan) -> list[PhaseEntry]:
    entries = []
    for i, name in enumerate(plan_node.phases, start=1):
        runs_on: Literal["self", "control-plane"] = "self"
        if name == Phase.NODE_LABELS_TAINTS.value and plan_node.role != Role.CONTROL_PLANE.value:
            runs_on = "control-plane"
        entries.append(PhaseEntry(name=name, script=f"phases/{i:02d}-{name}.sh", runs_on=runs_on))
    return entries


def node_plan(plan: Plan, name: str) -> NodePlan:
    for item in plan.nodes:
        if item.name == name:
            return item
    raise LookupError(f"node {name} is not in the plan")
