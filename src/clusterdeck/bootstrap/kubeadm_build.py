"""Build the kubeadm documents for one node from its node config.

``init_documents`` gives the first control plane's ``--config`` (InitConfiguration,
ClusterConfiguration, KubeletConfiguration). ``join_document`` gives a joining node's
JoinConfiguration; with ``material`` it carries the secrets and is meant only for the 0600
file uploaded at join time, without it it is the review copy written by ``render``.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Any

from clusterdeck.bootstrap import kubeadm
from clusterdeck.bootstrap.kubeadm import (
    DNS,
    APIEndpoint,
    APIServer,
    Arg,
    BootstrapToken,
    BootstrapTokenDiscovery,
    ClusterConfiguration,
    Discovery,
    Etcd,
    InitConfiguration,
    JoinConfiguration,
    JoinControlPlane,
    K8sModel,
    KubeletConfiguration,
    KubeProxyConfiguration,
    KubeProxyConntrack,
    LocalEtcd,
    Networking,
    NodeRegistration,
    Taint,
)
from clusterdeck.bootstrap.nodeconfig import NodeConfig
from clusterdeck.model.topology import Role
from clusterdeck.spec.k8s_names import parse_taint
from clusterdeck.spec.kubeadm_patches import merge, wants_proxy_config


@dataclass(frozen=True)
class JoinMaterial:
    """What a node needs to join: secrets, so ``repr`` never shows them."""

    token: str
    ca_cert_hash: str
    certificate_key: str | None = None

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.ca_cert_hash, self.certificate_key) if s]

    def __repr__(self) -> str:
        return "JoinMaterial(token=***, ca_cert_hash=***, certificate_key=***)"


def _taints(cfg: NodeConfig) -> list[Taint]:
    taints = []
    for text in cfg.taints:
        parsed = parse_taint(text)
        taints.append(Taint(key=parsed.key, value=parsed.value or None, effect=parsed.effect))
    return taints


def registration(cfg: NodeConfig) -> NodeRegistration:
    kubelet_args = []
    if cfg.machine.private_ip:
        kubelet_args.append(Arg(name="node-ip", value=cfg.machine.private_ip))
    # On cgroup v1 kubeadm's SystemVerification check fails for kubelets from v1.35 on; the
    # kubelet runs there once failCgroupV1 is false (KEP-5573 asks for both), so on such a
    # node, and only there, that one check is skipped.
    ignore = ["SystemVerification"] if cfg.machine.cgroup == "v1" else None
    # an explicit list, even when empty: [] means "no taint", absent would mean kubeadm's default
    return NodeRegistration(
        name=cfg.name,
        taints=_taints(cfg),
        kubelet_extra_args=kubelet_args or None,
        ignore_preflight_errors=ignore,
    )


def new_join_material(*, certificate_key: bool) -> JoinMaterial:
    """A bootstrap token and (HA) certificate key chosen here, before init, so the joins can
    start the moment init ends; the CA hash is only known after init (``ca_cert_hash``)."""
    alphabet = string.ascii_lowercase + string.digits
    token = "".join(secrets.choice(alphabet) for _ in range(6))
    token += "." + "".join(secrets.choice(alphabet) for _ in range(16))
    key = secrets.token_hex(32) if certificate_key else None
    return JoinMaterial(token=token, ca_cert_hash="", certificate_key=key)


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA certificate's SubjectPublicKeyInfo (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(ca_pem).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def init_documents(
    cfg: NodeConfig, cert_sans: list[str], material: JoinMaterial | None = None
) -> list[dict[str, Any]]:
    """The init config, with the user's settings (``kubernetes.config``) laid over it; with
    ``material`` it carries its token and certificate key (secret: only for the 0600 file
    uploaded at init time, never the rendered review copy)."""
    init = InitConfiguration(
        node_registration=registration(cfg),
        local_api_endpoint=APIEndpoint(advertise_address=cfg.machine.private_ip),
        bootstrap_tokens=[BootstrapToken(token=material.token)] if material else None,
        certificate_key=material.certificate_key if material else None,
    )
    cluster = ClusterConfiguration(
        cluster_name=cfg.environment,
        kubernetes_version=cfg.kubernetes.version,
        control_plane_endpoint=cfg.endpoint.address,
        networking=Networking(
            service_subnet=cfg.kubernetes.service_cidr, pod_subnet=cfg.kubernetes.pod_cidr
        ),
        api_server=APIServer(cert_sans=cert_sans),
        # offline, the images are the bundle's: the tags kubeadm asks for are the ones it holds
        etcd=Etcd(local=LocalEtcd(image_tag=cfg.offline.etcd_tag if cfg.offline else None)),
        dns=DNS(image_tag=cfg.offline.coredns_tag) if cfg.offline else None,
    )
    kubelet = KubeletConfiguration(fail_cgroup_v1=False if cfg.kubernetes.allow_cgroup_v1 else None)
    docs: list[K8sModel] = [init, cluster, kubelet]
    user = cfg.kubernetes.config
    if cfg.kubernetes.keep_conntrack_limit:
        # a node whose conntrack limit is read-only (measured: v1.36's kube-proxy then fails
        # to start, "open /proc/sys/net/netfilter/nf_conntrack_max: permission denied")
        docs.append(
            KubeProxyConfiguration(
                cluster_cidr=cfg.kubernetes.pod_cidr, conntrack=KubeProxyConntrack(max_per_core=0)
            )
        )
    elif wants_proxy_config(user):
        docs.append(KubeProxyConfiguration(cluster_cidr=cfg.kubernetes.pod_cidr))
    mappings = [kubeadm.as_mapping(doc) for doc in docs]
    return [merge(str(m["kind"]), m, user) for m in mappings]


def init_config_with(rendered: str, material: JoinMaterial) -> str:
    """The rendered init config plus the token (and certificate key) chosen for this init:
    the text of the 0600 file the init phase uses and removes."""
    docs = kubeadm.load_mappings(rendered)
    for doc in docs:
        if doc.get("kind") == "InitConfiguration":
            doc["bootstrapTokens"] = [kubeadm.as_mapping(BootstrapToken(token=material.token))]
            if material.certificate_key:
                doc["certificateKey"] = material.certificate_key
    return kubeadm.to_yaml(*docs)


def join_document(cfg: NodeConfig, material: JoinMaterial | None = None) -> dict[str, Any]:
    """The JoinConfiguration of one node, with the user's settings laid over it."""
    discovery = Discovery(
        bootstrap_token=BootstrapTokenDiscovery(
            api_server_endpoint=cfg.endpoint.address,
            token=material.token if material else None,
            ca_cert_hashes=[material.ca_cert_hash] if material else None,
        )
    )
    control_plane = None
    if cfg.role is Role.CONTROL_PLANE:
        control_plane = JoinControlPlane(
            local_api_endpoint=APIEndpoint(advertise_address=cfg.machine.private_ip),
            certificate_key=material.certificate_key if material else None,
        )
    join = JoinConfiguration(
        node_registration=registration(cfg), discovery=discovery, control_plane=control_plane
    )
    return merge("JoinConfiguration", kubeadm.as_mapping(join), cfg.kubernetes.config)
