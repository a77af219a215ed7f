"""The pod network add-on: the upstream release manifest, pinned, with clusterdeck's changes.

clusterdeck keeps no copy of Calico's or Flannel's manifest. Online, the first control plane
downloads the release manifest from its pinned URL and refuses it unless its sha256 is the one
recorded in ``model/releases.py`` (the file at that release tag). Offline, the manifest comes
from the bundle, checked against the bundle's own sha256. Either way it is applied through a
kustomization that clusterdeck renders: the upstream file as the only resource, plus
strategic-merge patches that set the cluster's pod range and bind the CNI to the node's own
address. The patches are reviewable beside the other rendered files, and ``kubectl kustomize``
(built into kubectl) joins them on the node.

A patch that names a container the manifest lacks would add an image-less container; the API
server rejects that at apply, so a mismatch fails loudly instead of changing nothing.
"""

from __future__ import annotations

import json

from clusterdeck.bootstrap.kustomize import daemonset_patch, literal
from clusterdeck.bootstrap.kustomize import kustomization as _kustomization
from clusterdeck.model.releases import CALICO, FLANNEL, UpstreamManifest

KUSTOMIZATION = "files/cni/kustomization.yaml"

UPSTREAM = {m.name: m for m in (CALICO, FLANNEL)}


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
    return [_env_patch("calico-node", "kube-system", "calico-node", env)]


def _flannel_patches(pod_cidr: str, on_overlay: bool) -> list[dict[str, object]]:
    # on the WireGuard overlay, host-gw: each node's pod range is routed to its overlay
    # address, and WireGuard (whose allowed IPs carry the pod ranges) is the only tunnel;
    # VXLAN inside WireGuard would encapsulate every pod packet twice
    backend = "host-gw" if on_overlay else "vxlan"
    net_conf = {"Network": pod_cidr, "EnableNFTables": False, "Backend": {"Type": backend}}
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
        "data": {"net-conf.json": literal(json.dumps(net_conf, indent=2) + "\n")},
    }
    # flanneld takes an address for --iface: the node IP the kubelet reports as the host's
    env: list[dict[str, object]] = [
        {"name": "FLANNELD_IFACE", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    ]
    return [config, _env_patch("kube-flannel-ds", "kube-flannel", "kube-flannel", env)]


def _env_patch(
    name: str, namespace: str, container: str, env: list[dict[str, object]]
) -> dict[str, object]:
    return daemonset_patch(name, namespace, {"containers": [{"name": container, "env": env}]})


def patches(cni: str, pod_cidr: str, *, on_overlay: bool = False) -> list[dict[str, object]]:
    """The strategic-merge patches clusterdeck applies over the upstream manifest. Both bind
    the CNI to the node IP the kubelet registered: on an overlay, its overlay address, so
    pod traffic between nodes goes over the overlay interface."""
    if cni == "calico":
        return _calico_patches(pod_cidr)
    if cni == "flannel":
        return _flannel_patches(pod_cidr, on_overlay)
    raise ValueError(f"cni {cni!r} has no manifest (calico, flannel)")


def kustomization(cni: str, pod_cidr: str, *, on_overlay: bool = False) -> str:
    """The kustomization.yaml that joins the upstream manifest and clusterdeck's patches."""
    return _kustomization(patches(cni, pod_cidr, on_overlay=on_overlay))
