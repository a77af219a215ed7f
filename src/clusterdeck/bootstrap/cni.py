"""The pod network add-on manifest: Calico (VXLAN, the default) or Flannel, pinned.

The manifests are vendored in ``manifests/`` (no download at run time, versions pinned in
the images); this module loads them as data, sets the pod CIDR at its known place, adds
Calico's CustomResourceDefinitions, and serializes the result. Calico's CRDs are generated
from the table below with open schemas (``x-kubernetes-preserve-unknown-fields``): the
upstream CRDs carry full OpenAPI schemas, which could not be vendored on the build machine.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

CALICO_VERSION = "v3.29.3"
FLANNEL_VERSION = "v0.26.7"
CALICO_GROUP = "crd.projectcalico.org"

# (kind, plural, namespaced)
CALICO_CRDS: list[tuple[str, str, bool]] = [
    ("BGPConfiguration", "bgpconfigurations", False),
    ("BGPFilter", "bgpfilters", False),
    ("BGPPeer", "bgppeers", False),
    ("BlockAffinity", "blockaffinities", False),
    ("CalicoNodeStatus", "caliconodestatuses", False),
    ("ClusterInformation", "clusterinformations", False),
    ("FelixConfiguration", "felixconfigurations", False),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", False),
    ("GlobalNetworkSet", "globalnetworksets", False),
    ("HostEndpoint", "hostendpoints", False),
    ("IPAMBlock", "ipamblocks", False),
    ("IPAMConfig", "ipamconfigs", False),
    ("IPAMHandle", "ipamhandles", False),
    ("IPPool", "ippools", False),
    ("IPReservation", "ipreservations", False),
    ("KubeControllersConfiguration", "kubecontrollersconfigurations", False),
    ("NetworkPolicy", "networkpolicies", True),
    ("NetworkSet", "networksets", True),
    ("Tier", "tiers", False),
]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps the vendored key order and block scalars
    yaml.default_flow_style = False
    yaml.width = 120
    return yaml


def _load(name: str) -> list[dict[str, Any]]:
    text = resources.files("clusterdeck.bootstrap").joinpath("manifests", name).read_text()
    return [doc for doc in _yaml().load_all(text) if doc]


def _crd(kind: str, plural: str, namespaced: bool) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    version: dict[str, Any] = {"name": "v1", "served": True, "storage": True, "schema": schema}
    if kind == "CalicoNodeStatus":
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CALICO_GROUP}"},
        "spec": {
            "group": CALICO_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [version],
        },
    }


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise LookupError(f"the CNI manifest has no {kind} {name}")


def _set_calico_pool(docs: list[dict[str, Any]], pod_cidr: str) -> None:
    node = _find(docs, "DaemonSet", "calico-node")
    container = node["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if env["name"] == "CALICO_IPV4POOL_CIDR":
            env["value"] = pod_cidr
            break
    else:
        container["env"].append({"name": "CALICO_IPV4POOL_CIDR", "value": pod_cidr})


def calico(pod_cidr: str) -> list[dict[str, Any]]:
    docs = _load("calico.yaml")
    _set_calico_pool(docs, pod_cidr)
    return [_crd(*row) for row in CALICO_CRDS] + docs


def _set_flannel_network(docs: list[dict[str, Any]], pod_cidr: str) -> None:
    cfg = _find(docs, "ConfigMap", "kube-flannel-cfg")
    net = json.loads(cfg["data"]["net-conf.json"])
    net["Network"] = pod_cidr
    cfg["data"]["net-conf.json"] = LiteralScalarString(json.dumps(net) + "\n")


def _bind_to_node_ip(docs: list[dict[str, Any]], cni: str) -> None:
    """Use the interface that carries the node's own IP (the kubelet's node IP, which the
    topology decides), not the one of the default route, which a node may not even have."""
    if cni == "flannel":
        ds = _find(docs, "DaemonSet", "kube-flannel-ds")
        container = next(
            c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "kube-flannel"
        )
        env = container.setdefault("env", [])
        env[:] = [e for e in env if e.get("name") != "FLANNELD_IFACE"]
        env.append(
            {"name": "FLANNELD_IFACE", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
        )
    else:
        node = _find(docs, "DaemonSet", "calico-node")
        container = node["spec"]["template"]["spec"]["containers"][0]
        env = container.setdefault("env", [])
        env[:] = [e for e in env if e.get("name") != "IP_AUTODETECTION_METHOD"]
        env.append({"name": "IP_AUTODETECTION_METHOD", "value": "kubernetes-internal-ip"})


def flannel(pod_cidr: str) -> list[dict[str, Any]]:
    docs = _load("flannel.yaml")
    _set_flannel_network(docs, pod_cidr)
    return docs


def from_bundle(text: str, cni: str, pod_cidr: str) -> str:
    """The release manifest an offline bundle carries, with the cluster's pod range set where
    the CNI reads it (Flannel: net-conf.json's Network; Calico: CALICO_IPV4POOL_CIDR)."""
    docs = [doc for doc in _yaml().load_all(text) if doc]
    if cni == "flannel":
        _set_flannel_network(docs, pod_cidr)
    elif cni == "calico":
        _set_calico_pool(docs, pod_cidr)
    else:
        raise ValueError(f"cni {cni!r} cannot come from a bundle (calico, flannel)")
    _bind_to_node_ip(docs, cni)
    out = io.StringIO()
    _yaml().dump_all(docs, out)
    return out.getvalue()


def manifest(cni: str, pod_cidr: str) -> str:
    """The complete multi-document manifest for ``cni`` (calico or flannel)."""
    if cni == "calico":
        docs = calico(pod_cidr)
    elif cni == "flannel":
        docs = flannel(pod_cidr)
    else:
        raise ValueError(f"cni {cni!r} has no manifest (calico, flannel)")
    out = io.StringIO()
    _yaml().dump_all(docs, out)
    return out.getvalue()


def version(cni: str) -> str:
    return {"calico": CALICO_VERSION, "flannel": FLANNEL_VERSION}.get(cni, "")
