"""Typed kubeadm v1beta4 configuration (Init, Cluster, Join) and kubelet configuration.

Field names follow the published ``kubeadm.k8s.io/v1beta4`` API: in v1beta4 every extra-args
field (``apiServer.extraArgs``, ``nodeRegistration.kubeletExtraArgs``, ...) is a list of
``{name, value}`` pairs, not a map. Models forbid unknown keys, so a misspelt field fails here
and never reaches a node. ``nodeRegistration.taints`` keeps the difference between *absent*
(kubeadm adds the control-plane taint) and *empty* (no taint at all): clusterdeck writes ``[]``
for untainted control planes.

Secrets (bootstrap token, CA hash, certificate key) are fields here only so the pipeline can
build the complete file in memory at join time; :func:`to_yaml` is called on them only for
files that go to a node as 0600, never into the render directory.
"""

from __future__ import annotations

import io
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
KUBELET_API = "kubelet.config.k8s.io/v1beta1"
KUBEPROXY_API = "kubeproxy.config.k8s.io/v1alpha1"
CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
CA_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CERT_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


class K8sModel(BaseModel):
    """camelCase keys as in the Go types; unknown keys are an error."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class Arg(K8sModel):
    """One ``--name=value`` command-line argument (v1beta4 ``Arg``)."""

    name: str
    value: str


class Taint(K8sModel):
    key: str
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeRegistration(K8sModel):
    name: str | None = None
    cri_socket: str = CRI_SOCKET
    # None: kubeadm's default (control-plane taint on control planes); []: no taint at all.
    taints: list[Taint] | None = None
    kubelet_extra_args: list[Arg] | None = None
    ignore_preflight_errors: list[str] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


class APIEndpoint(K8sModel):
    advertise_address: str | None = None
    bind_port: int = 6443


class BootstrapToken(K8sModel):
    token: str
    ttl: str = "2h0m0s"
    usages: list[str] = Field(default_factory=lambda: ["signing", "authentication"])
    groups: list[str] = Field(
        default_factory=lambda: ["system:bootstrappers:kubeadm:default-node-token"]
    )
    description: str | None = None

    @field_validator("token")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not TOKEN_RE.match(value):
            raise ValueError("bootstrap token must look like [a-z0-9]{6}.[a-z0-9]{16}")
        return value


class InitConfiguration(K8sModel):
    api_version: Literal["kubeadm.k8s.io/v1beta4"] = "kubeadm.k8s.io/v1beta4"
    kind: Literal["InitConfiguration"] = "InitConfiguration"
    bootstrap_tokens: list[BootstrapToken] | None = None
    node_registration: NodeRegistration
    local_api_endpoint: APIEndpoint = Field(default_factory=APIEndpoint, alias="localAPIEndpoint")
    certificate_key: str | None = None
    skip_phases: list[str] | None = None


class Networking(K8sModel):
    service_subnet: str
    pod_subnet: str
    dns_domain: str = "cluster.local"


class ControlPlaneComponent(K8sModel):
    extra_args: list[Arg] | None = None


class APIServer(ControlPlaneComponent):
    cert_sans: list[str] = Field(default_factory=list, alias="certSANs")


class LocalEtcd(K8sModel):
    data_dir: str = "/var/lib/etcd"
    image_tag: str | None = None


class DNS(K8sModel):
    image_tag: str | None = None


class Etcd(K8sModel):
    local: LocalEtcd = Field(default_factory=LocalEtcd)


class ClusterConfiguration(K8sModel):
    api_version: Literal["kubeadm.k8s.io/v1beta4"] = "kubeadm.k8s.io/v1beta4"
    kind: Literal["ClusterConfiguration"] = "ClusterConfiguration"
    cluster_name: str
    kubernetes_version: str
    control_plane_endpoint: str
    networking: Networking
    api_server: APIServer = Field(default_factory=APIServer)
    controller_manager: ControlPlaneComponent = Field(default_factory=ControlPlaneComponent)
    scheduler: ControlPlaneComponent = Field(default_factory=ControlPlaneComponent)
    etcd: Etcd = Field(default_factory=Etcd)
    dns: DNS | None = None
    certificates_dir: str = "/etc/kubernetes/pki"
    image_repository: str = "registry.k8s.io"

    @field_validator("kubernetes_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"v1\.\d+\.\d+", value):
            raise ValueError(f"{value!r} is not a Kubernetes version like v1.33.4")
        return value


class BootstrapTokenDiscovery(K8sModel):
    api_server_endpoint: str
    token: str | None = None
    ca_cert_hashes: list[str] | None = None

    @field_validator("ca_cert_hashes")
    @classmethod
    def _hashes(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if not CA_HASH_RE.match(item):
                raise ValueError("CA certificate hash must look like sha256:<64 hex digits>")
        return value


class Discovery(K8sModel):
    bootstrap_token: BootstrapTokenDiscovery
    tls_bootstrap_token: str | None = None


class JoinControlPlane(K8sModel):
    local_api_endpoint: APIEndpoint = Field(default_factory=APIEndpoint, alias="localAPIEndpoint")
    certificate_key: str | None = None

    @field_validator("certificate_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not CERT_KEY_RE.match(value):
            raise ValueError("certificate key must be 64 hex digits")
        return value


class JoinConfiguration(K8sModel):
    api_version: Literal["kubeadm.k8s.io/v1beta4"] = "kubeadm.k8s.io/v1beta4"
    kind: Literal["JoinConfiguration"] = "JoinConfiguration"
    node_registration: NodeRegistration
    discovery: Discovery
    control_plane: JoinControlPlane | None = None
    skip_phases: list[str] | None = None


class KubeletConfiguration(K8sModel):
    api_version: Literal["kubelet.config.k8s.io/v1beta1"] = "kubelet.config.k8s.io/v1beta1"
    kind: Literal["KubeletConfiguration"] = "KubeletConfiguration"
    cgroup_driver: Literal["systemd", "cgroupfs"] = "systemd"
    server_tls_bootstrap: bool = Field(default=False, alias="serverTLSBootstrap")
    # v1.35+ kubelets refuse cgroup v1 unless this is false (KEP-5573)
    fail_cgroup_v1: bool | None = Field(default=None, alias="failCgroupV1")


class KubeProxyConntrack(K8sModel):
    # 0: leave the kernel's limit as it is (and ignore min)
    max_per_core: int | None = Field(default=None, alias="maxPerCore")


class KubeProxyConfiguration(K8sModel):
    api_version: Literal["kubeproxy.config.k8s.io/v1alpha1"] = "kubeproxy.config.k8s.io/v1alpha1"
    kind: Literal["KubeProxyConfiguration"] = "KubeProxyConfiguration"
    mode: Literal["iptables", "ipvs", "nftables"] = "iptables"
    cluster_cidr: str = Field(alias="clusterCIDR")
    conntrack: KubeProxyConntrack | None = None


KINDS: dict[str, type[K8sModel]] = {
    "InitConfiguration": InitConfiguration,
    "ClusterConfiguration": ClusterConfiguration,
    "JoinConfiguration": JoinConfiguration,
    "KubeletConfiguration": KubeletConfiguration,
    "KubeProxyConfiguration": KubeProxyConfiguration,
}


def _dump_doc(doc: K8sModel) -> dict[str, Any]:
    # exclude_none drops absent fields but keeps an explicit empty taint list ("no taints")
    return doc.model_dump(mode="json", by_alias=True, exclude_none=True)


def to_yaml(*docs: K8sModel | dict[str, Any]) -> str:
    """Serialize documents as one multi-document YAML file (the ``--config`` kubeadm reads);
    a mapping is a document already laid over with the user's settings."""
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump_all([d if isinstance(d, dict) else _dump_doc(d) for d in docs], out)
    return out.getvalue()


def as_mapping(doc: K8sModel) -> dict[str, Any]:
    """One document as the mapping kubeadm reads (absent fields left out)."""
    return _dump_doc(doc)


def load_mappings(text: str) -> list[dict[str, Any]]:
    """A kubeadm config file as plain mappings, for files that may carry the user's own
    fields (which the typed models here do not know)."""
    yaml = YAML(typ="safe")
    return [raw for raw in yaml.load_all(text) if isinstance(raw, dict)]


def parse(text: str) -> list[K8sModel]:
    """Read a kubeadm config file back into typed documents (tests and ``render`` checks)."""
    yaml = YAML(typ="safe")
    docs: list[K8sModel] = []
    for raw in yaml.load_all(text):
        if raw is None:
            continue
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind not in KINDS:
            raise ValueError(f"unknown kubeadm document kind {kind!r}")
        docs.append(KINDS[kind].model_validate(raw))
    return docs
