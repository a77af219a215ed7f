"""Semantic rules: what a well-typed file can still get wrong across several fields.

Each rule yields ``(path, message)`` with the path as a tuple of keys and indexes, so the
loader can attach the YAML line of the offending value. Warnings are for files that are valid
but probably not what the user meant. No I/O.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator
from itertools import combinations
from typing import Any

from clusterdeck.spec import aws_catalog, kubeadm_patches
from clusterdeck.spec.models import Environment as Env
from clusterdeck.spec.models import (
    EtcdTopology,
    Host,
    LoadBalancerKind,
    NetworkMode,
    NodePool,
    Provider,
    WorkerPool,
)
from clusterdeck.spec.network import aws_groups, default_zone, subnet_layout, zones_in_use

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]

CLUSTER: Loc = ("spec", "cluster")
CP: Loc = (*CLUSTER, "controlPlane")
CONTROL_PLANE_POOL = "control-plane"  # the control plane's nodes' clusterdeck.dev/pool label
RESERVED_POOL_NAMES = {
    "cp": "node names <env>-cp-N belong to the control plane",
    CONTROL_PLANE_POOL: "the control plane's nodes carry it as their clusterdeck.dev/pool label",
}
MAX_NODE_NAME = 63


def pools(env: Env) -> list[tuple[Loc, str, WorkerPool]]:
    """Every worker pool with its path in the file and its effective name."""
    found: list[tuple[Loc, str, WorkerPool]] = []
    if env.spec.cluster.workers is not None:
        found.append(((*CLUSTER, "workers"), "workers", env.spec.cluster.workers))
    found.extend(
        ((*CLUSTER, "nodePools", i), p.name, p) for i, p in enumerate(env.spec.cluster.node_pools)
    )
    return found


def pool_count(pool: WorkerPool) -> int:
    """Effective node count: the given count, else the number of hosts (ssh), else 1."""
    if pool.count is not None:
        return pool.count
    return len(pool.hosts) if pool.hosts else 1


def control_plane_count(env: Env) -> int:
    cp = env.spec.cluster.control_plane
    if cp.count is not None:
        return cp.count
    return len(cp.hosts) if cp.hosts else 1


def worker_count(env: Env) -> int:
    return sum(pool_count(p) for _, _, p in pools(env))


def errors(env: Env) -> list[Finding]:
    found: list[Finding] = []
    for rule in (
        _control_plane,
        _pools,
        _hosts,
        _high_availability,
        _aws,
        _cidrs,
        _kubernetes,
        _node_names,
        _ephemeral,
        _kubernetes_config,
        _hooks,
        _overlay,
    ):
        found.extend(rule(env))
    return found


def warnings(env: Env) -> list[Finding]:
    found: list[Finding] = []
    ha = env.spec.cluster.high_availability
    if control_plane_count(env) > 1 and not ha.enabled:
        found.append(
            (
                (*CLUSTER, "highAvailability", "enabled"),
                f"{control_plane_count(env)} control planes without highAvailability: the "
                "API endpoint is the first control plane, a single point of failure",
            )
        )
    if ha.enabled and control_plane_count(env) == 1:
        found.append(
            (
                (*CP, "count"),
                "highAvailability with one control plane: the endpoint is ready for more, "
                "but no failure is tolerated until apply grows it to 3",
            )
        )
    found += _unknown_to_aws(env)
    found += _control_planes_across_sites(env)
    if env.spec.nvidia_container_toolkit.install and not env.spec.container_runtime.install:
        found.append(
            (
                ("spec", "nvidiaContainerToolkit", "install"),
                "the container toolkit configures containerd, which this file does not "
                "install; it must already be on the machines",
            )
        )
    return found


def _unknown_to_aws(env: Env) -> list[Finding]:
    """A region or instance type botocore's data does not list (offline): likely a typo."""
    if env.spec.aws is None or not aws_groups(env):
        return []
    found: list[Finding] = []
    regions = aws_catalog.known_regions()
    region = env.spec.aws.region
    if regions and region not in regions:
        close = difflib.get_close_matches(region, sorted(regions), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        found.append(
            (("spec", "aws", "region"), f"{region!r} is not an AWS region this tool knows{hint}")
        )
    types = aws_catalog.known_instance_types()
    if not types:
        return found
    families = {t.split(".", 1)[0] for t in types}
    for loc, group in _machine_groups(env):
        wanted = group.instance_type
        if not wanted or wanted in types:
            continue
        family = wanted.split(".", 1)[0]
        close = difflib.get_close_matches(wanted, sorted(types), n=1)
        what = "instance type" if family in families else "instance family"
        hint = f"; did you mean {close[0]}?" if close else ""
        found.append(((*loc, "instanceType"), f"{wanted!r}: unknown EC2 {what}{hint}"))
    return found


def _machine_groups(env: Env) -> list[tuple[Loc, Any]]:
    """(location, group) of every aws machine group."""
    spec = env.spec
    return [
        (loc, g)
        for loc, _, g in machine_groups(env)
        if (g.provider or spec.provider) is Provider.AWS
    ]


def _control_plane(env: Env) -> Iterator[Finding]:
    cp = env.spec.cluster.control_plane
    count = control_plane_count(env)
    if count not in (1, 3, 5, 7):
        yield (
            (*CP, "count"),
            f"control-plane count must be odd and between 1 and 7 "
            f"(1, 3, 5 or 7, for etcd quorum); got {count}",
        )
    if cp.dedicated and worker_count(env) == 0:
        yield (
            (*CP, "dedicated"),
            "dedicated: true with no workers leaves nowhere to run "
            "workloads; add workers or nodePools, or set dedicated: false",
        )


def _pools(env: Env) -> Iterator[Finding]:
    seen: dict[str, Loc] = {}
    for loc, name, pool in pools(env):
        name_loc = (*loc, "name") if isinstance(pool, NodePool) else loc
        if name in RESERVED_POOL_NAMES:
            yield (name_loc, f"pool name {name!r} is reserved: {RESERVED_POOL_NAMES[name]}")
        if name in seen:
            shorthand = " (the workers shorthand already defines it)" if name == "workers" else ""
            yield (name_loc, f"duplicate pool name {name!r}{shorthand}")
        seen[name] = loc
        spot = pool.spot
        if spot is not None:
            if spot.max_price_percent is not None and spot.max_price is not None:
                yield ((*loc, "spot"), "set either maxPricePercent or maxPrice, not both")
            if spot.max_price_percent is not None and not 1 <= spot.max_price_percent <= 100:
                yield (
                    (*loc, "spot", "maxPricePercent"),
                    "maxPricePercent must be between 1 "
                    f"and 100 (percent of the on-demand price); got {spot.max_price_percent}",
                )
            if (pool.provider or env.spec.provider) is Provider.SSH:
                yield ((*loc, "spot"), "spot applies to aws pools only")


def _hosts(env: Env) -> Iterator[Finding]:
    groups: list[tuple[Loc, str, int, bool, list[Host]]] = [
        (
            CP,
            "the control plane",
            control_plane_count(env),
            (env.spec.cluster.control_plane.provider or env.spec.provider) is Provider.SSH,
            list(env.spec.cluster.control_plane.hosts),
        )
    ]
    groups.extend(
        (
            loc,
            f"pool {name!r}",
            pool_count(p),
            (p.provider or env.spec.provider) is Provider.SSH,
            list(p.hosts),
        )
        for loc, name, p in pools(env)
    )
    addresses: dict[tuple[str, int], Loc] = {}
    for loc, what, count, is_ssh, hosts in groups:
        if is_ssh and not hosts:
            yield (
                (*loc, "hosts"),
                f"{what} uses the ssh provider and needs hosts: list its "
                "machines as hosts: [{address: 192.0.2.10}]",
            )
        elif is_ssh and len(hosts) != count:
            yield (
                (*loc, "count"),
                f"{what} has count {count} but lists {len(hosts)} hosts; "
                "they must match (or leave count out)",
            )
        elif not is_ssh and hosts:
            yield (
                (*loc, "hosts"),
                f"{what} runs on aws, where clusterdeck creates the "
                "machines; hosts is for provider: ssh",
            )
        for i, host in enumerate(hosts):
            key = (host.address, host.port)
            if key in addresses:
                yield (
                    (*loc, "hosts", i, "address"),
                    f"host {host.address} is listed twice in this environment",
                )
            addresses[key] = (*loc, "hosts", i)


def _high_availability(env: Env) -> Iterator[Finding]:
    ha = env.spec.cluster.high_availability
    loc = (*CLUSTER, "highAvailability")
    cp_provider = env.spec.cluster.control_plane.provider or env.spec.provider
    if not ha.enabled:
        if ha.vip is not None:
            yield ((*loc, "vip"), "vip is set but highAvailability.enabled is false")
        return
    # one control plane is allowed (a warning): the endpoint exists from the first day and
    # apply grows it to 3; an even count is refused for every cluster
    if ha.etcd_topology is EtcdTopology.EXTERNAL:
        yield (
            (*loc, "etcdTopology"),
            "etcdTopology: external is not supported yet; use stacked (etcd on the control planes)",
        )
    if ha.load_balancer is LoadBalancerKind.ALB:
        yield (
            (*loc, "loadBalancer"),
            "loadBalancer: alb is not supported: the API is TCP "
            "with TLS end to end, which needs a network load balancer; use nlb",
        )
    elif ha.load_balancer is LoadBalancerKind.NLB and cp_provider is not Provider.AWS:
        yield (
            (*loc, "loadBalancer"),
            "an NLB needs control planes on aws; for existing "
            "machines use loadBalancer: keepalived with a vip",
        )
    elif ha.load_balancer is LoadBalancerKind.KEEPALIVED:
        if cp_provider is Provider.AWS:
            yield (
                (*loc, "loadBalancer"),
                "keepalived moves a virtual IP over layer 2, which "
                "AWS VPCs do not carry; use loadBalancer: nlb on aws",
            )
        if ha.vip is None:
            yield (
                (*loc, "vip"),
                "keepalived needs a vip: a free address on the control planes' network",
            )
        else:
            taken = {h.address for h in env.spec.cluster.control_plane.hosts}
            taken |= {h.address for _, _, p in pools(env) for h in p.hosts}
            if ha.vip in taken:
                yield ((*loc, "vip"), f"vip {ha.vip} is already a host's address; pick a free one")


def _ephemeral(env: Env) -> Iterator[Finding]:
    """Stateless nodes bootstrap themselves from what ``pxe render`` wrote: offline, on known
    addresses, behind an endpoint that does not depend on which node wins the init election."""
    if env.spec.ephemeral is None:
        return
    loc: Loc = ("spec", "ephemeral")
    if uses_aws(env):
        yield (
            loc,
            "ephemeral nodes are machines that boot from your PXE server; a pool on aws "
            "cannot be stateless (use provider: ssh with the machines' addresses)",
        )
    if env.spec.offline is None:
        yield (
            loc,
            "ephemeral nodes install Kubernetes at every boot, without downloads: "
            "set spec.offline.bundle (clusterdeck bundle create)",
        )
    elif env.spec.offline.bundle is None:
        yield (
            ("spec", "offline", "bundles"),
            "stateless nodes take one bundle, part of their overlay: set spec.offline.bundle",
        )
    ha = env.spec.cluster.high_availability
    if control_plane_count(env) > 1 and not (
        ha.enabled and ha.load_balancer is LoadBalancerKind.KEEPALIVED and ha.vip
    ):
        yield (
            (*CLUSTER, "highAvailability"),
            "stateless control planes elect which of them runs kubeadm init, so the API "
            "endpoint cannot be one of them: set enabled: true, loadBalancer: keepalived "
            "and a vip",
        )


def uses_aws(env: Env) -> bool:
    """Any machine group runs on aws (whether or not the file has its aws block)."""
    spec = env.spec
    providers = [spec.cluster.control_plane.provider] + [p.provider for _, _, p in pools(env)]
    return any((p or spec.provider) is Provider.AWS for p in providers)


def _aws(env: Env) -> Iterator[Finding]:
    spec = env.spec
    if not uses_aws(env):
        return
    if spec.aws is None:
        yield (
            ("spec", "aws"),
            "pools run on aws, so an aws block with a region is needed: aws: {region: us-west-2}",
        )
        return
    region = spec.aws.region
    zone_lists: list[tuple[Loc, list[str]]] = [(("spec", "aws"), spec.aws.availability_zones)]
    zone_lists += [
        (loc, g.availability_zones)
        for loc, _, g in [(CP, "", spec.cluster.control_plane), *pools(env)]
    ]
    for loc, zones in zone_lists:
        for i, zone in enumerate(zones):
            if not (zone.startswith(region) and len(zone) == len(region) + 1):
                yield (
                    (*loc, "availabilityZones", i),
                    f"zone {zone!r} is not in region {region} (zones look like "
                    f"{default_zone(region)})",
                )
    if not spec.auth.key_name:
        yield (("spec", "auth", "keyName"), "aws nodes need an EC2 key pair: set auth.keyName")
    for loc, group in _machine_groups(env):
        if group.instance_type and group.instance_type.startswith(aws_catalog.MAC_PREFIX):
            yield (
                (*loc, "instanceType"),
                f"{group.instance_type} is a macOS instance; nodes run Ubuntu on x86_64 or "
                "arm64 (Graviton) instance types",
            )
    yield from _zone_capacity(env)
    try:
        subnet_layout(spec.aws.vpc_cidr, spec.aws.network.mode, zones_in_use(env))
    except ValueError as exc:
        yield (("spec", "aws", "vpcCidr"), str(exc))
    if (
        spec.aws.network.mode is NetworkMode.PRIVATE
        and spec.auth.bastion
        and spec.auth.bastion.address
    ):
        yield (
            ("spec", "auth", "bastion", "address"),
            "in aws private mode clusterdeck creates the bastion; leave its address empty",
        )


def _zone_capacity(env: Env) -> Iterator[Finding]:
    """Nodes are spread round-robin over a group's zones; each zone's node subnet must hold them."""
    spec = env.spec
    assert spec.aws is not None
    private = spec.aws.network.mode is NetworkMode.PRIVATE
    # AWS keeps 5 addresses of every subnet; one more per zone for the load balancer's interface.
    room = (4096 if private else 256) - 6
    fallback = list(spec.aws.availability_zones) or [default_zone(spec.aws.region)]
    cp = spec.cluster.control_plane
    groups: list[tuple[Loc, int, list[str]]] = []
    if (cp.provider or spec.provider) is Provider.AWS:
        groups.append((CP, control_plane_count(env), list(cp.availability_zones) or fallback))
    groups += [
        (loc, pool_count(p), list(p.availability_zones) or fallback)
        for loc, _, p in pools(env)
        if (p.provider or spec.provider) is Provider.AWS
    ]
    per_zone: dict[str, int] = {}
    blame: dict[str, Loc] = {}
    for loc, count, zones in groups:
        for i in range(count):
            zone = zones[i % len(zones)]
            per_zone[zone] = per_zone.get(zone, 0) + 1
            if per_zone[zone] > room and zone not in blame:
                blame[zone] = loc
    for zone, loc in blame.items():
        subnet = "private /20" if private else "public /24"
        hint = "" if private else ", or use aws.network.mode: private (a /20 per zone)"
        yield (
            (*loc, "count"),
            f"{per_zone[zone]} aws nodes would land in {zone}, more than its "
            f"{subnet} subnet holds ({room}); spread them over more availabilityZones{hint}",
        )


def _cidrs(env: Env) -> Iterator[Finding]:
    k8s = env.spec.kubernetes
    # (where, what, range, written in the file?) so a clash is reported where the user typed.
    ranges: list[tuple[Loc, str, str, bool]] = [
        (
            ("spec", "kubernetes", "podCidr"),
            "pod",
            k8s.pod_cidr,
            "pod_cidr" in k8s.model_fields_set,
        ),
        (
            ("spec", "kubernetes", "serviceCidr"),
            "service",
            k8s.service_cidr,
            "service_cidr" in k8s.model_fields_set,
        ),
    ]
    if env.spec.aws is not None and aws_groups(env):
        ranges.append(
            (
                ("spec", "aws", "vpcCidr"),
                "VPC",
                env.spec.aws.vpc_cidr,
                "vpc_cidr" in env.spec.aws.model_fields_set,
            )
        )
    if env.spec.overlay is not None:
        ranges.append(
            (
                ("spec", "overlay", "cidr"),
                "overlay",
                env.spec.overlay.cidr,
                "cidr" in env.spec.overlay.model_fields_set,
            )
        )
    for first, second in combinations(ranges, 2):
        if not ipaddress.ip_network(first[2]).overlaps(ipaddress.ip_network(second[2])):
            continue
        here, other = (first, second) if first[3] and not second[3] else (second, first)
        yield (
            here[0],
            f"{here[1]} range {here[2]} overlaps the {other[1]} range {other[2]} "
            f"({'.'.join(str(p) for p in other[0])}); pick ranges that do not overlap",
        )


NODE_CIDR_MASK = 24  # kube-controller-manager's default per-node pod range for IPv4


def _kubernetes(env: Env) -> Iterator[Finding]:
    k8s = env.spec.kubernetes
    pod = ipaddress.ip_network(k8s.pod_cidr)
    nodes = control_plane_count(env) + worker_count(env)
    if pod.version == 4:
        ranges = (
            2 ** max(NODE_CIDR_MASK - pod.prefixlen, 0) if pod.prefixlen <= NODE_CIDR_MASK else 0
        )
        if ranges < nodes:
            yield (
                ("spec", "kubernetes", "podCidr"),
                f"podCidr {k8s.pod_cidr} holds {ranges} per-node /{NODE_CIDR_MASK} pod range(s), "
                f"but the cluster has {nodes} nodes; use a larger range (a /16 holds 256 nodes)",
            )
    if k8s.cni.value == "cilium":
        yield (
            ("spec", "kubernetes", "cni"),
            "cni: cilium is not supported yet; use calico (default) or flannel",
        )


def _hooks(env: Env) -> Iterator[Finding]:
    """Unique names, pools that exist, points the file reaches, and a node for each hook."""
    seen: set[str] = set()
    known_pools = {name for _, name, _ in pools(env)} | {CONTROL_PLANE_POOL}
    workers = worker_count(env)
    for i, hook in enumerate(env.spec.hooks):
        loc: Loc = ("spec", "hooks", i)
        if hook.name in seen:
            yield ((*loc, "name"), f"duplicate hook name {hook.name!r}")
        seen.add(hook.name)
        for j, pool in enumerate(hook.pools):
            if pool not in known_pools:
                close = difflib.get_close_matches(pool, sorted(known_pools), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                yield ((*loc, "pools", j), f"no pool named {pool!r} in this file{hint}")
        roles = {r.value for r in hook.roles}
        if roles == {"worker"} and workers == 0:
            yield ((*loc, "roles"), "the hook runs on workers, and this file has none")
        if roles == {"worker"} and CONTROL_PLANE_POOL in hook.pools and len(hook.pools) == 1:
            yield ((*loc, "pools"), "roles [worker] and pools [control-plane] select no node")
        late = hook.at.value in ("afterKubernetes", "clusterReady")
        if late and not env.spec.kubernetes.install:
            yield (
                (*loc, "at"),
                f"{hook.at.value} hooks need Kubernetes, which kubernetes.install: false "
                "leaves out",
            )
        if env.spec.ephemeral is not None and hook.secret_env:
            yield (
                (*loc, "secretEnv"),
                "stateless nodes run their hooks at boot, where clusterdeck's environment is "
                "not: give them no secretEnv",
            )
        if env.spec.ephemeral is not None and hook.at.value == "clusterReady":
            yield (
                (*loc, "at"),
                "clusterReady hooks are not supported on stateless nodes yet (each node "
                "bootstraps itself; nothing waits for the whole cluster); use afterKubernetes",
            )
        for name in sorted(set(hook.secret_env) & set(hook.env)):
            yield ((*loc, "env", name), f"{name} is also in secretEnv; give it once")


def _kubernetes_config(env: Env) -> Iterator[Finding]:
    yield from kubeadm_patches.findings(env.spec.kubernetes.config)


def _node_names(env: Env) -> Iterator[Finding]:
    longest = f"{env.name}-cp-{control_plane_count(env) - 1}"
    if len(longest) > MAX_NODE_NAME:
        yield (
            ("metadata", "name"),
            f"node names like {longest!r} exceed {MAX_NODE_NAME} "
            "characters; use a shorter environment name",
        )
    for loc, name, pool in pools(env):
        longest = f"{env.name}-{name}-{max(pool_count(pool) - 1, 0)}"
        if len(longest) > MAX_NODE_NAME:
            yield (
                loc,
                f"node names like {longest!r} exceed {MAX_NODE_NAME} characters; "
                "use a shorter pool or environment name",
            )


OVERLAY: Loc = ("spec", "overlay")


def machine_groups(env: Env) -> list[tuple[Loc, str, Any]]:
    """The control plane and every worker pool: (path, pool name, group)."""
    return [(CP, CONTROL_PLANE_POOL, env.spec.cluster.control_plane)] + [
        (loc, name, pool) for loc, name, pool in pools(env)
    ]


def _overlay(env: Env) -> Iterator[Finding]:
    """Sites, NAT and relays need the overlay; the overlay needs room, a relay for each host
    behind NAT, and hosts outside its range."""
    overlay = env.spec.overlay
    relays: list[Host] = []
    natted: list[tuple[Loc, Host]] = []
    for loc, _, group in machine_groups(env):
        if overlay is None and group.site is not None:
            yield ((*loc, "site"), "a site places nodes on the overlay: add spec.overlay")
        for i, host in enumerate(group.hosts):
            here: Loc = (*loc, "hosts", i)
            for flag in ("site", "nat", "relay"):
                if overlay is None and flag in host.model_fields_set:
                    yield (
                        (*here, flag),
                        f"{flag} describes the host on the overlay: add spec.overlay "
                        "(type: wireguard)",
                    )
            if host.nat and host.relay:
                yield (
                    (*here, "relay"),
                    f"host {host.address} is behind NAT, so no node can reach it: it "
                    "cannot relay for others",
                )
            elif host.relay:
                relays.append(host)
            if host.nat:
                natted.append((here, host))
    if overlay is None:
        return
    network = ipaddress.ip_network(overlay.cidr)
    nodes = control_plane_count(env) + worker_count(env)
    if network.version != 4:
        yield ((*OVERLAY, "cidr"), f"overlay range {overlay.cidr} must be IPv4")
    elif network.num_addresses - 2 < nodes:
        yield (
            (*OVERLAY, "cidr"),
            f"overlay range {overlay.cidr} holds {max(network.num_addresses - 2, 0)} "
            f"addresses but the cluster has {nodes} nodes; use a larger range",
        )
    if natted and not relays:
        where, host = natted[0]
        yield (
            (*where, "nat"),
            f"host {host.address} is behind NAT and reaches the overlay only through a "
            "relay: mark a host every node can reach with relay: true",
        )
    for loc, _, group in machine_groups(env):
        for i, host in enumerate(group.hosts):
            try:
                address = ipaddress.ip_address(host.address)
            except ValueError:
                continue
            if address in network:
                yield (
                    (*loc, "hosts", i, "address"),
                    f"host {host.address} is inside the overlay range {overlay.cidr}: "
                    "overlay addresses would shadow the network the nodes meet on",
                )
    if control_plane_count(env) > 1:
        yield (
            (*CP, "count"),
            "the overlay takes one control plane for now: an API endpoint that follows "
            "several control planes across sites is not built yet",
        )
    if env.spec.ephemeral is not None:
        yield (
            ("spec", "ephemeral"),
            "stateless nodes on the overlay (a new key at each boot) are not built yet",
        )


def site_of(env: Env, group: Any, host: Host | None) -> str:
    """The site of a node: its host's, else its pool's, else its provider's."""
    if host is not None and host.site is not None:
        return host.site
    if group.site is not None:
        return str(group.site)
    if (group.provider or env.spec.provider) is Provider.AWS and env.spec.aws is not None:
        return f"aws-{env.spec.aws.region}"
    return "onprem"


def _control_planes_across_sites(env: Env) -> list[Finding]:
    if env.spec.overlay is None:
        return []
    cp = env.spec.cluster.control_plane
    sites = {site_of(env, cp, h) for h in cp.hosts} or {site_of(env, cp, None)}
    if len(sites) < 2:
        return []
    return [
        (
            (*CP, "hosts"),
            f"control planes at {len(sites)} sites ({', '.join(sorted(sites))}): etcd "
            "wants low latency between its members; keep them at one site",
        )
    ]
