"""The typed shape of the file users write: ``kind: Environment``.

Each model forbids unknown keys so a typo fails at load time with its path (the loader adds
the YAML line and a "did you mean"). Field-level syntax (names, labels, taints, CIDRs) is
checked here; rules that relate several fields live in :mod:`clusterdeck.spec.rules`.
This module does no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from clusterdeck.spec.k8s_names import (
    dns1123_label_problem,
    label_key_problem,
    label_value_problem,
    parse_taint,
)

API_VERSION = "clusterdeck.dev/v1alpha1"
KIND = "Environment"
DEFAULT_CP_INSTANCE_TYPE = "m5.xlarge"
DEFAULT_WORKER_INSTANCE_TYPE = "g4dn.xlarge"
DEFAULT_KUBERNETES_VERSION = "v1.37.2"
MIN_KUBERNETES_MINOR = 31  # kubeadm's v1beta4 configuration API starts at v1.31


class Strict(BaseModel):
    """Base of every spec model: camelCase keys, no unknown keys, no silent type coercion."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        # validators are built on first use, not at import: `clusterdeck version` and
        # commands that never read a file do not pay for them (bench/startup.py)
        defer_build=True,
    )


def _dns_label(value: str) -> str:
    problem = dns1123_label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like 10.0.0.0/16 ({exc})") from None
    return str(network)


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        problem = label_key_problem(key) or label_value_problem(val)
        if problem:
            raise ValueError(problem)
    return value


def _taints(value: list[str]) -> list[str]:
    for text in value:
        parse_taint(text)
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute path like /var/lib/clusterdeck/shared")
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Taints = Annotated[list[str], AfterValidator(_taints)]
Port = Annotated[int, Field(ge=1, le=65535)]
VolumeSize = Annotated[int, Field(ge=8, le=16384)]


class Provider(StrEnum):
    AWS = "aws"
    SSH = "ssh"


class Metadata(Strict):
    name: DnsLabel = Field(
        description="Environment name: a DNS-1123 label, prefix of every node name."
    )
    labels: Labels = Field(
        default_factory=dict, description="Free-form labels kept in the state store."
    )


class Bastion(Strict):
    """An existing jump host (ssh provider), or the login for the one clusterdeck creates (aws private)."""

    address: str | None = Field(
        default=None, description="Jump host address; for aws private mode leave empty (created)."
    )
    user: str | None = Field(
        default=None, description="Login on the bastion; defaults to auth.username."
    )
    port: Port = Field(default=22, description="SSH port of the bastion.")
    private_key: str | None = Field(
        default=None, description="Key for the bastion; defaults to auth.privateKey."
    )


class HostKeyPolicyKind(StrEnum):
    PINNED = "pinned"
    STRICT = "strict"


class Auth(Strict):
    key_name: str | None = Field(default=None, description="EC2 key pair name (aws).")
    private_key: str | None = Field(
        default=None, description="Path of the SSH private key (ssh-agent is used when empty)."
    )
    username: str = Field(default="ubuntu", description="Login user on every node.")
    bastion: Bastion | None = Field(default=None, description="Jump host used to reach the nodes.")
    host_key_policy: HostKeyPolicyKind = Field(
        default=HostKeyPolicyKind.PINNED,
        description="pinned: trust a host's key on first use, then only that key (kept in the state store); strict: only keys already in knownHosts files.",
    )
    known_hosts: list[str] = Field(
        default_factory=list,
        description="known_hosts files for hostKeyPolicy: strict; default ~/.ssh/known_hosts.",
    )


class NetworkMode(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class NodeAccess(StrEnum):
    BASTION = "bastion"
    SSM = "ssm"


class AwsNetwork(Strict):
    mode: NetworkMode = Field(
        default=NetworkMode.PUBLIC,
        description="public: nodes with public IPs, no NAT; private: NAT per AZ, a bastion, no public IPs on nodes.",
    )
    node_access: NodeAccess = Field(
        default=NodeAccess.BASTION,
        description="How private-mode nodes are reached: bastion (an SSH jump host is created) or ssm (Systems Manager sessions: no bastion, no SSH port open). Every node without a public address gets an instance profile for SSM either way.",
    )


class OsImage(StrEnum):
    UBUNTU_2204 = "ubuntu-22.04"
    UBUNTU_2404 = "ubuntu-24.04"


class AwsSpec(Strict):
    region: str = Field(description="AWS region of every aws node, e.g. us-west-2.")
    network: AwsNetwork = Field(
        default_factory=AwsNetwork, description="Network layout (public or private)."
    )
    availability_zones: list[str] = Field(
        default_factory=list,
        description="Zones used by pools that name none; default: the region's 'a' zone.",
    )
    vpc_cidr: Cidr = Field(default="10.0.0.0/16", description="VPC address range.")
    ingress_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="Sources allowed to SSH and reach the API; empty: the caller's public IP found at run time.",
    )
    node_port_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="Sources allowed to reach NodePorts 30000-32767; empty: same as ingressCidrs.",
    )
    os: OsImage = Field(default=OsImage.UBUNTU_2204, description="Node operating system image.")
    ami: str | None = Field(
        default=None, pattern=r"^ami-[0-9a-f]{8,17}$", description="Explicit AMI ID; overrides os."
    )

    @field_validator("region")
    @classmethod
    def _region_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", value):
            raise ValueError(f"{value!r} is not an AWS region name like us-west-2")
        return value


class Host(Strict):
    address: str = Field(description="IP address or DNS name of an existing machine.")
    user: str | None = Field(default=None, description="Login user; defaults to auth.username.")
    port: Port = Field(default=22, description="SSH port.")
    key: str | None = Field(
        default=None, description="Private key path for this host; defaults to auth.privateKey."
    )
    site: DnsLabel | None = Field(
        default=None,
        description="Site (data centre, cloud region, edge location) of this host; defaults "
        "to its pool's site. Needs spec.overlay.",
    )
    nat: bool = Field(
        default=False,
        description="Behind NAT: nothing outside reaches it, so its address is not its overlay "
        "endpoint; it joins the overlay through a relay. Needs spec.overlay.",
    )
    relay: bool = Field(
        default=False,
        description="Relay of the overlay: forwards for the hosts behind NAT, which peer with "
        "it alone. Its address must be reachable by every node. Needs spec.overlay.",
    )


class Spot(Strict):
    """Spot capacity. ``{}`` caps the price at on-demand."""

    max_price_percent: int | None = Field(
        default=None, description="Maximum price as a percentage (1-100) of the on-demand price."
    )
    max_price: str | None = Field(
        default=None, description='Maximum price in USD per hour, e.g. "0.42".'
    )

    @field_validator("max_price")
    @classmethod
    def _price(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            price = Decimal(value)
        except InvalidOperation:
            raise ValueError(f'{value!r} is not a price in USD per hour like "0.42"') from None
        if not price.is_finite() or price <= 0:
            raise ValueError(f"{value!r} must be a positive price in USD per hour")
        return value


class Rollout(Strict):
    """How ``apply`` replaces a pool's nodes (a changed instance type, image, volume or spot
    setting; on ssh, a host swapped for another): new nodes join and turn Ready before old ones
    are drained, within these bounds."""

    max_surge: int = Field(
        default=1, ge=0, le=100, description="Nodes above the pool's count while replacing."
    )
    max_unavailable: int = Field(
        default=0, ge=0, le=100, description="Nodes below the pool's count while replacing."
    )

    @model_validator(mode="after")
    def _moves(self) -> Rollout:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "maxSurge and maxUnavailable cannot both be 0: a replacement could never start"
            )
        return self


class _MachineGroup(Strict):
    """Fields shared by the control plane and worker pools."""

    provider: Provider | None = Field(
        default=None, description="aws or ssh; defaults to spec.provider."
    )
    instance_type: str | None = Field(default=None, description="EC2 instance type (aws).")
    labels: Labels = Field(
        default_factory=dict, description="Kubernetes labels added to these nodes."
    )
    taints: Taints = Field(
        default_factory=list, description="Kubernetes taints, key[=value]:Effect."
    )
    availability_zones: list[str] = Field(
        default_factory=list,
        description="Zones to spread over (aws); default: aws.availabilityZones.",
    )
    root_volume_size_gb: VolumeSize = Field(
        default=64, alias="rootVolumeSizeGB", description="Root volume size in GiB (aws)."
    )
    hosts: list[Host] = Field(default_factory=list, description="Existing machines (ssh provider).")
    site: DnsLabel | None = Field(
        default=None,
        description="Site of these nodes (needs spec.overlay); default: the provider's, e.g. "
        "aws-us-west-2 for aws nodes, onprem for ssh hosts.",
    )


class ControlPlane(_MachineGroup):
    count: int | None = Field(
        default=None, description="1, 3, 5 or 7; for ssh, defaults to the number of hosts."
    )
    dedicated: bool | None = Field(
        default=None,
        description="Keep the NoSchedule taint so no workloads run on control planes (default false).",
    )


class WorkerPool(_MachineGroup):
    count: int | None = Field(
        default=None,
        ge=0,
        description="Nodes in the pool; for ssh, defaults to the number of hosts.",
    )
    spot: Spot | None = Field(default=None, description="Run the pool on spot instances (aws).")
    rollout: Rollout = Field(
        default_factory=Rollout,
        description="Replacement bounds for apply: by default one new node at a time, "
        "none taken away first.",
    )


class NodePool(WorkerPool):
    name: DnsLabel = Field(description="Pool name: a DNS-1123 label, unique in the environment.")


class EtcdTopology(StrEnum):
    STACKED = "stacked"
    EXTERNAL = "external"


class LoadBalancerKind(StrEnum):
    NLB = "nlb"
    ALB = "alb"
    KEEPALIVED = "keepalived"


class HighAvailability(Strict):
    enabled: bool = Field(
        default=False, description="Put the API behind a load balancer; needs 3+ control planes."
    )
    etcd_topology: EtcdTopology = Field(
        default=EtcdTopology.STACKED,
        description="stacked: etcd on the control planes (external is not supported yet).",
    )
    load_balancer: LoadBalancerKind = Field(
        default=LoadBalancerKind.NLB,
        description="nlb (AWS) or keepalived (a virtual IP on existing machines).",
    )
    vip: IpAddress | None = Field(
        default=None, description="Virtual IP held by keepalived (keepalived only)."
    )
    api_port: Port = Field(
        default=8443, description="Port HAProxy serves the API on behind the VIP (keepalived only)."
    )
    vrrp_router_id: Annotated[int, Field(ge=1, le=255)] | None = Field(
        default=None,
        description="VRRP virtual router id, 1-255, unique on the network (keepalived only); default: derived from the environment name.",
    )


class Cluster(Strict):
    control_plane: ControlPlane = Field(
        default_factory=ControlPlane, description="The control-plane nodes (stacked etcd)."
    )
    workers: WorkerPool | None = Field(
        default=None, description="Shorthand for one pool named 'workers'."
    )
    node_pools: list[NodePool] = Field(default_factory=list, description="Named worker pools.")
    high_availability: HighAvailability = Field(
        default_factory=HighAvailability, description="A load-balanced API over 3+ control planes."
    )


class NvidiaDriver(Strict):
    install: bool = Field(default=False, description="Install the driver on GPU nodes.")
    version: str | None = Field(
        default=None,
        description="Driver branch of Ubuntu's server drivers, e.g. 580 (the default).",
    )


class NvidiaContainerToolkit(Strict):
    install: bool = Field(
        default=False,
        description="Install the toolkit and register the NVIDIA runtime with containerd.",
    )
    version: str | None = Field(
        default=None, description="Toolkit version; default: the pinned one."
    )
    enable_cdi: bool = Field(
        default=True, alias="enableCDI", description="Generate CDI specs for the GPUs."
    )


class ContainerRuntime(Strict):
    install: bool = Field(default=True, description="Install and configure the runtime.")
    name: Literal["containerd"] = Field(default="containerd", description="Only containerd.")
    version: str | None = Field(
        default=None, description="containerd version; default: the pinned one."
    )


class Cni(StrEnum):
    CALICO = "calico"
    FLANNEL = "flannel"
    CILIUM = "cilium"


_FEATURE_GATE = re.compile(r"[A-Z][A-Za-z0-9]*")
_ARG_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def _feature_gates(value: dict[str, bool]) -> dict[str, bool]:
    for name in value:
        if not _FEATURE_GATE.fullmatch(name):
            raise ValueError(f"{name!r} is not a feature gate name like DynamicResourceAllocation")
    return value


def _extra_args(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if name.startswith("-") or not _ARG_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a flag name: write it without dashes, like audit-log-path"
            )
    return value


FeatureGates = Annotated[dict[str, bool], AfterValidator(_feature_gates)]
ExtraArgs = Annotated[dict[str, str], AfterValidator(_extra_args)]
Fragment = dict[str, Any]


class ComponentArgs(Strict):
    extra_args: ExtraArgs = Field(
        default_factory=dict,
        description="Command-line flags, name (without dashes) to value, e.g. "
        '{audit-log-maxage: "30"}.',
    )


class KubernetesConfig(Strict):
    """The user's own kubeadm and kubelet settings, merged into what clusterdeck renders.

    What clusterdeck must own (the endpoint, certificate names, pod and service ranges, node
    names and taints, join discovery) cannot be set here: each such key is an error naming
    it. The merged documents pass the real ``kubeadm config validate`` before they are used."""

    cluster_configuration: Fragment = Field(
        default_factory=dict,
        description="Merged into kubeadm's ClusterConfiguration (v1beta4 field names).",
    )
    init_configuration: Fragment = Field(
        default_factory=dict,
        description="Merged into the first control plane's InitConfiguration.",
    )
    join_configuration: Fragment = Field(
        default_factory=dict,
        description="Merged into every joining node's JoinConfiguration.",
    )
    kubelet_configuration: Fragment = Field(
        default_factory=dict,
        description="Merged into the KubeletConfiguration every node's kubelet runs with.",
    )
    feature_gates: FeatureGates = Field(
        default_factory=dict,
        description="Kubernetes feature gates, set on kube-apiserver, kube-controller-manager, "
        "kube-scheduler, every kubelet and kube-proxy.",
    )
    api_server: ComponentArgs = Field(
        default_factory=ComponentArgs, description="kube-apiserver flags."
    )
    controller_manager: ComponentArgs = Field(
        default_factory=ComponentArgs, description="kube-controller-manager flags."
    )
    scheduler: ComponentArgs = Field(
        default_factory=ComponentArgs, description="kube-scheduler flags."
    )
    etcd: ComponentArgs = Field(default_factory=ComponentArgs, description="etcd flags.")
    kubelet: ComponentArgs = Field(
        default_factory=ComponentArgs, description="kubelet flags on every node."
    )


class Kubernetes(Strict):
    install: bool = Field(
        default=True, description="Install Kubernetes (false: machines and runtime only)."
    )
    installer: Literal["kubeadm"] = Field(default="kubeadm", description="Only kubeadm.")
    version: str = Field(
        default=DEFAULT_KUBERNETES_VERSION, description="Kubernetes version, v1.31 or newer."
    )
    cni: Cni = Field(
        default=Cni.CALICO,
        description="Pod network: calico (VXLAN) or flannel; cilium is not supported yet.",
    )
    pod_cidr: Cidr = Field(default="192.168.0.0/16", description="Pod address range.")
    service_cidr: Cidr = Field(default="10.96.0.0/12", description="Service address range.")
    config: KubernetesConfig | None = Field(
        default=None,
        description="Your own kubeadm and kubelet settings (fragments, feature gates, flags), "
        "merged into what clusterdeck renders and checked by the real kubeadm.",
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        match = re.fullmatch(r"v?1\.(\d+)\.(\d+)", value)
        if not match:
            raise ValueError(f"{value!r} is not a Kubernetes version like v1.33.4")
        if int(match.group(1)) < MIN_KUBERNETES_MINOR:
            raise ValueError(
                f"Kubernetes {value} is not supported: clusterdeck renders kubeadm "
                f"v1beta4 configuration, which needs v1.{MIN_KUBERNETES_MINOR} or newer"
            )
        return value if value.startswith("v") else f"v{value}"


class Offline(Strict):
    """Install without any download: every node gets its binaries, images and CNI manifest from
    a bundle (``clusterdeck bundle create``)."""

    bundle: str | None = Field(
        default=None,
        description="Offline bundle: a directory or tar archive made by `clusterdeck bundle "
        "create`; no node downloads anything. Every node must be of its architecture.",
    )
    bundles: dict[Literal["amd64", "arm64"], str] = Field(
        default_factory=dict,
        description="One bundle per architecture, for clusters that mix amd64 and arm64 "
        "nodes: each node gets the bundle of its own architecture. Instead of bundle.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Offline:
        if (self.bundle is None) == (not self.bundles):
            raise ValueError("give either bundle (one architecture) or bundles (per architecture)")
        return self


class Ephemeral(Strict):
    """Stateless nodes: booted from the network into RAM, with no disk that survives a
    reboot. clusterdeck does not log in to them: ``clusterdeck pxe render`` writes what the
    PXE server serves, and ``clusterdeck agent`` bootstraps each node at boot."""

    shared_directory: AbsolutePath = Field(
        default="/var/lib/clusterdeck/shared",
        description="Where every node mounts the directory the nodes coordinate through "
        "(an NFS export in production); the agent elects the node that runs kubeadm init there.",
    )
    lease_seconds: Annotated[int, Field(ge=10, le=600)] = Field(
        default=30,
        description="How long a claim (the init leader) lasts unless renewed; a leader that "
        "dies mid-init is replaced after this.",
    )
    bundle_url: HttpUrl | None = Field(
        default=None,
        description="Where nodes fetch the offline bundle at boot; default: the bundle is part "
        "of the node overlay.",
    )


class OverlayKind(StrEnum):
    WIREGUARD = "wireguard"


WIREGUARD_MIN_MTU = 1280  # the smallest MTU WireGuard's IPv6 underlay allows, and IPv6's own
WIREGUARD_MAX_MTU = 9000


class Overlay(Strict):
    """One WireGuard network across sites, clouds and NAT; Kubernetes runs on it.

    Every node gets an address on the mesh, and its node IP, the API, etcd and the CNI use it."""

    type: OverlayKind = Field(default=OverlayKind.WIREGUARD, description="Only wireguard.")
    cidr: Cidr = Field(
        default="10.200.0.0/16",
        description="Overlay address range: each node gets one address in it. Must overlap "
        "no pod, service, VPC or host network.",
    )
    port: Port = Field(default=51820, description="UDP port WireGuard listens on, every node.")
    mtu: Literal["auto"] | int = Field(
        default="auto",
        description=f"Overlay MTU ({WIREGUARD_MIN_MTU}-{WIREGUARD_MAX_MTU}); auto: the "
        "underlay's MTU minus WireGuard's overhead (80 bytes), checked with a don't-fragment "
        "ping.",
    )
    interface: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,14}$")] = Field(
        default="wg0", description="Name of the overlay interface on every node."
    )
    keepalive_seconds: Annotated[int, Field(ge=1, le=600)] = Field(
        default=25,
        description="PersistentKeepalive of a host behind NAT towards its relay: keeps the "
        "NAT mapping open.",
    )

    @field_validator("mtu", mode="before")
    @classmethod
    def _mtu(cls, value: Any) -> Any:
        if value == "auto" or (
            isinstance(value, int)
            and not isinstance(value, bool)
            and WIREGUARD_MIN_MTU <= value <= WIREGUARD_MAX_MTU
        ):
            return value
        raise ValueError(
            f"mtu is auto or a number from {WIREGUARD_MIN_MTU} to {WIREGUARD_MAX_MTU}; "
            f"got {value!r}"
        )


class HookPoint(StrEnum):
    BEFORE_INSTALL = "beforeInstall"
    AFTER_RUNTIME = "afterRuntime"
    AFTER_KUBERNETES = "afterKubernetes"
    CLUSTER_READY = "clusterReady"


class HookRole(StrEnum):
    CONTROL_PLANE = "controlPlane"
    WORKER = "worker"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV_PREFIX = "CLUSTERDECK_"


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an environment variable name like MY_SETTING")
    if name.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{name!r}: names beginning with {RESERVED_ENV_PREFIX} are clusterdeck's")
    return name


def _env_map(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        _env_name(name)
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
EnvMap = Annotated[dict[str, str], AfterValidator(_env_map)]


class Hook(Strict):
    """A script of yours run on the nodes at a named point of the install, as root."""

    name: DnsLabel = Field(description="Hook name: a DNS-1123 label, unique in the file.")
    at: HookPoint = Field(
        description="beforeInstall (before anything is installed), afterRuntime (after "
        "containerd and the NVIDIA toolkit), afterKubernetes (after the node joined), "
        "clusterReady (once every node is Ready)."
    )
    inline: str | None = Field(default=None, description="The script itself (bash).")
    file: str | None = Field(
        default=None,
        description="A bash script file, relative to this Environment file; read when the "
        "file is loaded.",
    )
    roles: list[HookRole] = Field(
        default_factory=list,
        description="Run only on these roles (controlPlane, worker). clusterReady hooks run "
        "on the first control plane unless roles or pools are given.",
    )
    pools: list[DnsLabel] = Field(
        default_factory=list,
        description="Run only on these pools (control-plane is the control plane's).",
    )
    env: EnvMap = Field(
        default_factory=dict, description="Environment variables for the script (not secret)."
    )
    secret_env: list[EnvName] = Field(
        default_factory=list,
        description="Names of variables taken from clusterdeck's own environment when it "
        "runs: never written to the file, the store or the node; masked in every log.",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=86400)] = Field(
        default=600, description="The script is stopped after this long (and fails)."
    )
    continue_on_error: bool = Field(
        default=False,
        description="A failure is logged and the install goes on (the hook runs again on the "
        "next run); default: the failure stops the node's install.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Hook:
        if (self.inline is None) == (self.file is None):
            raise ValueError("give the script either inline or as a file, not both or neither")
        return self


class EnvironmentSpec(Strict):
    provider: Provider = Field(default=Provider.AWS, description="Default provider of every pool.")
    auth: Auth = Field(default_factory=Auth, description="How clusterdeck logs in to the nodes.")
    aws: AwsSpec | None = Field(
        default=None, description="AWS settings; needed when any pool runs on aws."
    )
    cluster: Cluster = Field(
        default_factory=Cluster, description="Control plane, worker pools and high availability."
    )
    nvidia_driver: NvidiaDriver = Field(
        default_factory=NvidiaDriver, description="NVIDIA driver on GPU nodes."
    )
    nvidia_container_toolkit: NvidiaContainerToolkit = Field(
        default_factory=NvidiaContainerToolkit, description="NVIDIA container toolkit on GPU nodes."
    )
    container_runtime: ContainerRuntime = Field(
        default_factory=ContainerRuntime, description="Container runtime on every node."
    )
    kubernetes: Kubernetes = Field(
        default_factory=Kubernetes,
        description="Kubernetes version, installer, CNI and address ranges.",
    )
    offline: Offline | None = Field(
        default=None, description="Install from an offline bundle instead of downloading."
    )
    ephemeral: Ephemeral | None = Field(
        default=None,
        description="Every node is stateless (PXE-booted) and bootstraps itself at boot; "
        "needs offline and ssh-style host addresses.",
    )
    hooks: list[Hook] = Field(
        default_factory=list,
        description="Your own scripts at named points of the install, in the order listed.",
    )
    overlay: Overlay | None = Field(
        default=None,
        description="A WireGuard overlay that joins nodes across sites, clouds and NAT into "
        "one cluster network.",
    )


class Environment(Strict):
    api_version: Literal["clusterdeck.dev/v1alpha1"] = Field(
        alias="apiVersion", description="Always clusterdeck.dev/v1alpha1."
    )
    kind: Literal["Environment"] = Field(description="Always Environment.")
    metadata: Metadata = Field(description="Name (and labels) of the environment.")
    spec: EnvironmentSpec = Field(description="What to build.")

    @property
    def name(self) -> str:
        return self.metadata.name
