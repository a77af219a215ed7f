"""Full lab hosts laid out over sites, some behind NAT: the network an overlay must cross.

Test support, not product code. The layout (``python -m tests.lab up N --full --sites S
--nat K``):
- the lab's own bridge is the "internet": the clusterdeck host (this machine, the lab's
  gateway) and every host that is not behind NAT sit on it, on their public address
  (``address``), and reach each other only by it;
- each site has a bridge of its own (``cdlab<slot>s<i>``) with a private range
  (172.(16+i).0.0/16) that exists only inside the hosts' namespaces: nothing routes between
  sites, and this machine has no address on any of them;
- host 0 is at the first site, the others are spread over the rest in turn;
- the last K hosts are behind NAT: their only interface is on their site's bridge, and their
  default route goes through a NAT router of their own (a namespace ``<bridge>-r<index>``)
  that masquerades them behind its public address. Nothing outside reaches such a host,
  except SSH: the router forwards its TCP port 22 to the host, as an edge site's router
  forwards the operator's SSH; so the host's ``address`` is the router's public address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from tests.lab.full import (
    DEFAULT_PACKAGES,
    LOGIN_USER,
    boot_full_hosts,
    require_full_tools,
)
from tests.lab.light import HOST_INTERFACE, SLOT_PREFIX, Lab, LabHost, link_names, run

SITE_INTERFACE = "ens6"  # a public host's second interface, on its site's own network
MAX_SITES = 16


def site_name(index: int) -> str:
    return f"site{index + 1}"


def site_network(index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((f"172.{16 + index}.0.0", 16))


def site_of(host_index: int, sites: int) -> int:
    """Host 0 at the first site; the others over the rest in turn (all at one if one)."""
    if host_index == 0 or sites == 1:
        return 0
    return 1 + (host_index - 1) % (sites - 1)


def check_layout(count: int, sites: int, nat: int) -> str | None:
    if count < 1:
        return "at least one host"
    if not 1 <= sites <= min(MAX_SITES, count):
        return f"--sites must be 1 to {min(MAX_SITES, count)} for {count} host(s)"
    if not 0 <= nat < count:
        return f"--nat must be 0 to {count - 1}: host 0 is never behind NAT"
    return None


def add_site_hosts(
    lab: Lab,
    count: int,
    sites: int,
    nat: int,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    boot_timeout: float = 90,
    nspawn_args: Sequence[str] = (),
    *,
    persistent: bool = True,
) -> list[LabHost]:
    """Boot ``count`` full hosts over ``sites`` sites, the last ``nat`` behind NAT; each keeps
    what it wrote across a reboot (tests/lab/full.py), as machines at a site do."""
    problem = require_full_tools() or check_layout(count, sites, nat)
    if problem:
        raise RuntimeError(problem)
    hosts = reserve_site_hosts(lab, count, sites, nat)
    boot_full_hosts(lab, hosts, packages, boot_timeout, nspawn_args, persistent=persistent)
    return hosts


def reserve_site_hosts(lab: Lab, count: int, sites: int, nat: int) -> list[LabHost]:
    """The namespaces, bridges, routers and addresses of the layout; nothing booted."""
    bridges = [f"{lab.bridge}s{i}" for i in range(sites)]
    lab.site_bridges = bridges
    lab.save()
    batch = []
    # veths a deleted namespace still holds (see Lab.make_namespaces) go first
    existing = link_names()
    for bridge in bridges:
        if bridge in existing:
            batch.append(f"link del {bridge}")
        batch += [f"link add {bridge} type bridge", f"link set {bridge} up"]
    hosts = [lab.prepare(None) for _ in range(count)]
    setups: list[tuple[str, str]] = []  # (namespace, ip -batch lines inside it)
    routers: list[tuple[str, list[list[str]]]] = []  # (router namespace, its rules)
    for position, host in enumerate(hosts):
        host.full = True
        host.user = LOGIN_USER
        site = site_of(position, sites)
        host.site = site_name(site)
        host.nat = position >= count - nat
        lan = site_network(site)
        local = lan.network_address + 10 + host.index
        bridge = bridges[site]
        batch.append(f"netns add {host.netns}")
        if not host.nat:
            batch += _leg(
                f"{lab.bridge}v{host.index}", HOST_INTERFACE, host.netns, lab.bridge, existing
            )
            batch += _leg(
                f"{lab.bridge}l{host.index}", SITE_INTERFACE, host.netns, bridge, existing
            )
            host.local_address = host.address
            setups.append(
                (
                    host.netns,
                    f"link set lo up\naddr add {host.address}/{SLOT_PREFIX} dev {HOST_INTERFACE}\n"
                    f"link set {HOST_INTERFACE} up\naddr add {local}/16 dev {SITE_INTERFACE}\n"
                    f"link set {SITE_INTERFACE} up\nroute add default via {lab.gateway}\n",
                )
            )
            continue
        router = f"{lab.bridge}-r{host.index}"
        routers.append((router, router_rules(str(local))))
        inside = lan.network_address + 0x8000 + host.index
        host.local_address = str(local)
        batch.append(f"netns add {router}")
        batch += _leg(f"{lab.bridge}v{host.index}", HOST_INTERFACE, host.netns, bridge, existing)
        batch += _leg(f"{lab.bridge}w{host.index}", "wan", router, lab.bridge, existing)
        batch += _leg(f"{lab.bridge}n{host.index}", "lan", router, bridge, existing)
        setups.append(
            (
                host.netns,
                f"link set lo up\naddr add {local}/16 dev {HOST_INTERFACE}\n"
                f"link set {HOST_INTERFACE} up\nroute add default via {inside}\n",
            )
        )
        setups.append(
            (
                router,
                f"link set lo up\naddr add {host.address}/{SLOT_PREFIX} dev wan\n"
                f"link set wan up\naddr add {inside}/16 dev lan\nlink set lan up\n"
                f"route add default via {lab.gateway}\n",
            )
        )
    for host in hosts:
        lab.hosts[host.name] = host
    lab.save()
    run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
    for namespace, lines in setups:
        run(["ip", "-n", namespace, "-batch", "-"], input=lines)
    for router, rules in routers:
        for argv in rules:
            run(["ip", "netns", "exec", router, *argv])
    return hosts


def _leg(outside: str, inside: str, namespace: str, bridge: str, existing: set[str]) -> list[str]:
    return [
        *([f"link del {outside}"] if outside in existing else []),
        f"link add {outside} type veth peer name {inside} netns {namespace}",
        f"link set {outside} master {bridge} up",
    ]


def router_rules(host: str) -> list[list[str]]:
    """Masquerade the host behind the router's public address; let in SSH and replies only."""
    return [
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"],
        [
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            "wan",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "DNAT",
            "--to-destination",
            f"{host}:22",
        ],
        # nothing else in from outside: only replies to what the host sent out, and SSH
        [
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            "wan",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
        [
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            "wan",
            "-p",
            "tcp",
            "-d",
            host,
            "--dport",
            "22",
            "-j",
            "ACCEPT",
        ],
        ["iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP"],
    ]
