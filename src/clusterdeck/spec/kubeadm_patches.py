"""The user's kubeadm and kubelet settings (``spec.kubernetes.config``): what they may set,
and how it is merged into what clusterdeck renders.

One module holds both halves of that decision, so the check at ``validate`` and the merge at
render time cannot disagree:
- :func:`findings` refuses every key clusterdeck must own (the endpoint, certificate names,
  the pod and service ranges, node names and taints, join discovery and its secrets, the
  flags that carry the node's address or the ranges), and every shortcut (``featureGates``,
  ``apiServer.extraArgs`` and its kin) that gives a key a different value than a fragment;
- :func:`merge` lays the fragments, then the shortcuts, over one rendered document.

Fragments use kubeadm v1beta4 field names; extra-args lists (``[{name, value}]``) merge by
name, other lists are replaced. Whatever is left unchecked here (a misspelt field, a value of
the wrong type) is the real ``kubeadm config validate``'s to refuse. No I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from clusterdeck.spec.models import ComponentArgs, KubernetesConfig

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]
CONFIG: Loc = ("spec", "kubernetes", "config")

# document kind -> the fragment field laid over it
FRAGMENT_FIELD = {
    "ClusterConfiguration": "clusterConfiguration",
    "InitConfiguration": "initConfiguration",
    "JoinConfiguration": "joinConfiguration",
    "KubeletConfiguration": "kubeletConfiguration",
}
_NODE = "the node's own name, taints and container runtime, from the file's pools"
OWNED: dict[str, dict[tuple[str, ...], str]] = {
    "clusterConfiguration": {
        (
            "controlPlaneEndpoint",
        ): "the API endpoint (highAvailability, or the first control plane)",
        ("apiServer", "certSANs"): "the API server's certificate names (the endpoint and "
        "every control plane's addresses)",
        ("networking", "podSubnet"): "spec.kubernetes.podCidr",
        ("networking", "serviceSubnet"): "spec.kubernetes.serviceCidr",
        ("kubernetesVersion",): "spec.kubernetes.version",
        ("clusterName",): "metadata.name",
        ("etcd", "external"): "stacked etcd (spec.cluster.highAvailability.etcdTopology)",
    },
    "initConfiguration": {
        ("nodeRegistration", "name"): _NODE,
        ("nodeRegistration", "taints"): _NODE,
        ("nodeRegistration", "criSocket"): _NODE,
        ("localAPIEndpoint",): "the first control plane's own address and port",
        ("bootstrapTokens",): "the join token clusterdeck chooses for each run (a secret)",
        ("certificateKey",): "the certificate key clusterdeck chooses for each run (a secret)",
    },
    "joinConfiguration": {
        ("nodeRegistration", "name"): _NODE,
        ("nodeRegistration", "taints"): _NODE,
        ("nodeRegistration", "criSocket"): _NODE,
        ("discovery",): "the join discovery (endpoint, token and CA hash, given at join time)",
        ("controlPlane",): "the control-plane join (address and certificate key)",
    },
    "kubeletConfiguration": {
        ("cgroupDriver",): "containerd's cgroup driver (systemd)",
        ("failCgroupV1",): "the machines' cgroup version (from their facts)",
    },
}
ALWAYS_OWNED: dict[tuple[str, ...], str] = {
    ("apiVersion",): "clusterdeck",
    ("kind",): "clusterdeck",
}

# shortcut field -> (where its flags live in a fragment, flags clusterdeck owns)
_ADDRESS = "the node's own address"
COMPONENTS: dict[str, tuple[tuple[str, tuple[str, ...]], dict[str, str]]] = {
    "apiServer": (
        ("clusterConfiguration", ("apiServer", "extraArgs")),
        {
            "advertise-address": _ADDRESS,
            "secure-port": "the API port the endpoint forwards to (6443)",
            "service-cluster-ip-range": "spec.kubernetes.serviceCidr",
            "etcd-servers": "stacked etcd",
        },
    ),
    "controllerManager": (
        ("clusterConfiguration", ("controllerManager", "extraArgs")),
        {
            "cluster-cidr": "spec.kubernetes.podCidr",
            "service-cluster-ip-range": "spec.kubernetes.serviceCidr",
            "cluster-name": "metadata.name",
        },
    ),
    "scheduler": (("clusterConfiguration", ("scheduler", "extraArgs")), {}),
    "etcd": (
        ("clusterConfiguration", ("etcd", "local", "extraArgs")),
        {
            "name": "the node's name (members are matched by it)",
            "initial-cluster": "kubeadm's stacked etcd",
            "initial-cluster-state": "kubeadm's stacked etcd",
            "advertise-client-urls": _ADDRESS,
            "initial-advertise-peer-urls": _ADDRESS,
        },
    ),
    "kubelet": (
        ("initConfiguration", ("nodeRegistration", "kubeletExtraArgs")),
        {"node-ip": _ADDRESS, "hostname-override": "the node's name"},
    ),
}
# the kubelet's flags sit in two fragments: init (first control plane) and join (the rest)
KUBELET_ARGS = [
    ("initConfiguration", ("nodeRegistration", "kubeletExtraArgs")),
    ("joinConfiguration", ("nodeRegistration", "kubeletExtraArgs")),
]
GATED = ("apiServer", "controllerManager", "scheduler")  # take --feature-gates
ARG_LISTS = {"extraArgs", "kubeletExtraArgs"}


def fragment(config: KubernetesConfig, name: str) -> dict[str, Any]:
    value: dict[str, Any] = getattr(config, _snake(name))
    return value


def args_of(config: KubernetesConfig, component: str) -> dict[str, str]:
    value: ComponentArgs = getattr(config, _snake(component))
    return value.extra_args


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _lookup(tree: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False, None
        tree = tree[key]
    return True, tree


def _arg_map(value: Any) -> dict[str, str]:
    """A v1beta4 ``[{name, value}]`` list as a map (entries of another shape are left to
    kubeadm to refuse)."""
    found: dict[str, str] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                found[item["name"]] = str(item.get("value", ""))
    return found


def parse_gates(text: str) -> dict[str, bool]:
    gates: dict[str, bool] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip():
            gates[name.strip()] = value.strip().lower() == "true"
    return gates


def gates_flag(gates: dict[str, bool]) -> str:
    return ",".join(f"{name}={str(on).lower()}" for name, on in sorted(gates.items()))


def findings(config: KubernetesConfig | None) -> Iterator[Finding]:
    """Every key the user may not set, and every shortcut that contradicts a fragment."""
    if config is None:
        return
    for name, owned in OWNED.items():
        tree = fragment(config, name)
        for path, owner in {**ALWAYS_OWNED, **owned}.items():
            present, _ = _lookup(tree, path)
            if present:
                yield (
                    (*CONFIG, name, *path),
                    f"{'.'.join(path)} is set by clusterdeck from {owner}; remove it here",
                )
    for component, ((frag_name, path), owned_flags) in COMPONENTS.items():
        short = args_of(config, component)
        places = KUBELET_ARGS if component == "kubelet" else [(frag_name, path)]
        if "feature-gates" in short:
            yield (
                (*CONFIG, component, "extraArgs", "feature-gates"),
                "feature gates go in spec.kubernetes.config.featureGates (set on every "
                "component that takes them), not in a flag",
            )
        for flag in owned_flags:
            if flag in short:
                yield (
                    (*CONFIG, component, "extraArgs", flag),
                    f"--{flag} is set by clusterdeck from {owned_flags[flag]}; remove it here",
                )
        for place, place_path in places:
            _, raw = _lookup(fragment(config, place), place_path)
            in_fragment = _arg_map(raw)
            for flag in owned_flags:
                if flag in in_fragment:
                    yield (
                        (*CONFIG, place, *place_path),
                        f"--{flag} is set by clusterdeck from {owned_flags[flag]}; remove it here",
                    )
            for flag, value in short.items():
                if flag in in_fragment and in_fragment[flag] != value:
                    yield (
                        (*CONFIG, component, "extraArgs", flag),
                        f"--{flag}={value} contradicts {place}.{'.'.join(place_path)} "
                        f"({flag}={in_fragment[flag]}); set it in one place",
                    )
            if component in GATED or component == "kubelet":
                yield from _gate_conflicts(
                    config, in_fragment.get("feature-gates"), (*CONFIG, place, *place_path)
                )
    _, kubelet_gates = _lookup(config.kubelet_configuration, ("featureGates",))
    if isinstance(kubelet_gates, dict):
        text = gates_flag({str(k): bool(v) for k, v in kubelet_gates.items()})
        yield from _gate_conflicts(config, text, (*CONFIG, "kubeletConfiguration", "featureGates"))


def _gate_conflicts(config: KubernetesConfig, flag: str | None, loc: Loc) -> Iterator[Finding]:
    if flag is None:
        return
    for gate, on in parse_gates(flag).items():
        wanted = config.feature_gates.get(gate)
        if wanted is not None and wanted != on:
            yield (
                (*CONFIG, "featureGates", gate),
                f"{gate}={str(wanted).lower()} contradicts {'.'.join(str(p) for p in loc[3:])} "
                f"({gate}={str(on).lower()}); set it in one place",
            )


def merge(kind: str, rendered: dict[str, Any], config: KubernetesConfig | None) -> dict[str, Any]:
    """``rendered`` (one kubeadm or kubelet document as a mapping) with the user's settings
    laid over it: its fragment, then the shortcut flags and feature gates."""
    if config is None:
        return rendered
    out = copy.deepcopy(rendered)
    name = FRAGMENT_FIELD.get(kind)
    if name is not None:
        _lay_over(out, copy.deepcopy(fragment(config, name)))
    gates = config.feature_gates
    if kind == "ClusterConfiguration":
        for component, ((_, path), _) in COMPONENTS.items():
            if component == "kubelet":
                continue
            flags = dict(args_of(config, component))
            if gates and component in GATED:
                _, raw = _lookup(out, path)
                already = parse_gates(_arg_map(raw).get("feature-gates", ""))
                flags["feature-gates"] = gates_flag({**already, **gates})
            _set_args(out, path, flags)
    elif kind in ("InitConfiguration", "JoinConfiguration"):
        _set_args(out, ("nodeRegistration", "kubeletExtraArgs"), args_of(config, "kubelet"))
    elif kind in ("KubeletConfiguration", "KubeProxyConfiguration") and gates:
        current = out.get("featureGates")
        merged = dict(current) if isinstance(current, dict) else {}
        out["featureGates"] = {**merged, **gates}
    return out


def _lay_over(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        here = base.get(key)
        if isinstance(here, dict) and isinstance(value, dict):
            _lay_over(here, value)
        elif key in ARG_LISTS and isinstance(here, list) and isinstance(value, list):
            base[key] = _merge_args(here, value)
        else:
            base[key] = value


def _merge_args(base: list[Any], over: list[Any]) -> list[Any]:
    names = {item.get("name"): i for i, item in enumerate(base) if isinstance(item, dict)}
    out = list(base)
    for item in over:
        at = names.get(item.get("name")) if isinstance(item, dict) else None
        if at is None:
            out.append(item)
        else:
            out[at] = item
    return out


def _set_args(doc: dict[str, Any], path: tuple[str, ...], flags: dict[str, str]) -> None:
    if not flags:
        return
    tree = doc
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    current = tree.get(path[-1])
    base = current if isinstance(current, list) else []
    tree[path[-1]] = _merge_args(base, [{"name": k, "value": v} for k, v in flags.items()])


def wants_proxy_config(config: KubernetesConfig | None) -> bool:
    """kube-proxy takes the feature gates through a KubeProxyConfiguration document."""
    return config is not None and bool(config.feature_gates)
