"""The pod network add-on: the upstream release manifest, pinned, with clusterdeck's changes.

clusterdeck keeps no copy of Calico's or Flannel's manifest. Online, the first control plane
downloads the release manifest from the URL below and refuses it unless its sha256 is the one
recorded here (the file at that release tag). Offline, the manifest comes from the bundle,
checked against the bundle's own sha256. Either way it is applied through a kustomization that
clusterdeck renders: the upstream file as the only resource, plus strategic-merge patches that
set the cluster's pod range and bind the CNI to the node's own address. The patches are
reviewable beside the other rendered files, and ``kubectl kustomize`` (built into kubectl)
joins them on the node.

A patch that names a container the manifest lacks would add an image-less container; the API
server rejects that at apply, so a mismatch fails loudly instead of changing nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

KUSTOMIZATION = "files/cni/kustomization.yaml"
UPSTREAM_FILE = "upstream.yaml"  # the name the kustomization gives the release manifest


@dataclass(frozen=True)
class UpstreamManifest:
    """A release manifest: where it is published and the sha256 of the file at that tag."""

    cni: str
    version: str
    url: str
    sha256: str


# Calico's VXLAN manifest (no BGP) at the release tag: the docs' "manifest" install. Its
# sha256 is that of manifests/calico-vxlan.yaml at tag v3.32.1 of projectcalico/calico.
CALICO = UpstreamManifest(
    cni="calico",
    version="v3.32.1",
    url="https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico-vxlan.yaml",
    sha256="c2ab4f9a4ecde01d66e6f040d6745cd7f174d5ded573164c809ffb9f40a9d566",
)
# Flannel's Documentation/kube-flannel.yml at tag v0.28.10 of flannel-io/flannel (the same file
# the Go module github.com/flannel-io/flannel@v0.28.10 carries, which the lab's bundle takes).
FLANNEL = UpstreamManifest(
    cni="flannel",
    version="v0.28.10",
    url="https://raw.githubusercontent.com/flannel-io/flannel/v0.28.10/Documentation/kube-flannel.yml",
    sha256="944a3c1f925f117727a1b7272a323c80965da642498397ec7e6ea9bef0f9e6c5",
)
UPSTREAM = {m.cni: m for m in (CALICO, FLANNEL)}


def upstream(cni: str) -> UpstreamManifest:
    try:
        return UPSTREAM[cni]
    except KeyError:
        raise ValueError(f"cni {cni!r} has no pinned manifest (calico, flannel)") from None


def version(cni: str) -> str:
    return UPSTREAM[cni].version if cni in UPSTREAM else ""


def _calico_patches(pod_cidr: str) -> list[dict[str, object]]:
    env: list[dict[str, object]] = [
        {"name": "CALICO_IPV4POOL_CIDR", "value": pod_cidr},
        # the address the kubelet registered (the topology's node IP), not the first found
        {"name": "IP_AUTODETECTION_METHOD", "value": "kubernetes-internal-ip"},
    ]
    return [_daemonset_env("calico-node", "kube-system", "calico-node", env)]


def _flannel_patches(pod_cidr: str) -> list[dict[str, object]]:
    net_conf = {"Network": pod_cidr, "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
        "data": {"net-conf.json": LiteralScalarString(json.dumps(net_conf, indent=2) + "\n")},
    }
    # flanneld takes an address for --iface: the node IP the kubelet reports as the host's
    env: list[dict[str, object]] = [
        {"name": "FLANNELD_IFACE", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    ]
    return [config, _daemonset_env("kube-flannel-ds", "kube-flannel", "kube-flannel", env)]


def _daemonset_env(
    name: str, namespace: str, container: str, env: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}},
    }


def patches(cni: str, pod_cidr: str) -> list[dict[str, object]]:
    """The strategic-merge patches clusterdeck applies over the upstream manifest."""
    if cni == "calico":
        return _calico_patches(pod_cidr)
    if cni == "flannel":
        return _flannel_patches(pod_cidr)
    raise ValueError(f"cni {cni!r} has no manifest (calico, flannel)")


def kustomization(cni: str, pod_cidr: str) -> str:
    """The kustomization.yaml that joins the upstream manifest and clusterdeck's patches."""
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [UPSTREAM_FILE],
        "patches": [{"patch": LiteralScalarString(_dump(p))} for p in patches(cni, pod_cidr)],
    }
    return _dump(doc)


def _dump(doc: object) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
