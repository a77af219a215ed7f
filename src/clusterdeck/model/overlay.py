"""The WireGuard mesh of an overlay, derived from the topology alone.

Why this exists: every node's peer list follows from three facts about each node (its overlay
address, its public key, and whether others can reach its underlay address), so one pure
function decides it, for every node, and a node's configuration can be tested without a node.

The rules:
- nodes that others can reach (not behind NAT) peer with each other directly: a full mesh;
- a node behind NAT has exactly one peer, its home relay, through which it reaches the whole
  overlay (``allowed`` is every range), and it keeps the NAT mapping open with a keepalive;
- its home relay is a relay at its own site if there is one, else the first relay by name;
- every other node reaches a NATed node through that relay: the relay's peer entry carries the
  NATed node's addresses, and the relay forwards between its peers;
- each node's extra ranges (its pod range) go with its own address, so pod traffic is routed by
  WireGuard's allowed IPs and never encapsulated twice.

Addresses are kept once given: a node keeps the address recorded for it, a new node takes the
lowest free one, so adding or removing a node renumbers no other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

WIREGUARD_OVERHEAD = 80  # outer IPv6 (40) + UDP (8) + WireGuard header and tag (32), as wg-quick


@dataclass(frozen=True)
class Member:
    """One node as the mesh sees it."""

    name: str
    address: str  # on the overlay
    public_key: str
    endpoint: str | None  # underlay address every reachable node can send to; None behind NAT
    site: str
    relay: bool = False
    routes: tuple[str, ...] = ()  # further ranges that live on this node (its pod range)

    @property
    def nat(self) -> bool:
        return self.endpoint is None


@dataclass(frozen=True)
class Peer:
    """One ``[Peer]`` section of a node's WireGuard configuration."""

    name: str
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None  # host:port
    keepalive: int | None = None


@dataclass(frozen=True)
class Mesh:
    members: tuple[Member, ...]
    port: int
    keepalive: int
    everything: tuple[str, ...]  # what a NATed node sends to its relay: the overlay, the pods
    relay_of: Mapping[str, str] = field(default_factory=dict)  # NATed node -> home relay

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)


class MeshError(ValueError):
    """The topology cannot form a mesh (a NATed node and no relay, a full range)."""


def assign_addresses(
    cidr: str, names: Sequence[str], recorded: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An overlay address for each of ``names``: its recorded one if that is still in the
    range and not taken twice, else the lowest free host address (the first is skipped: it
    is the range's own network address)."""
    network = ipaddress.ip_network(cidr)
    given: dict[str, str] = {}
    taken: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for name in names:
        old = (recorded or {}).get(name)
        if old is None:
            continue
        address = ipaddress.ip_address(old)
        if address in network and address not in taken:
            given[name] = old
            taken.add(address)
    free = (a for a in network.hosts() if a not in taken)
    for name in names:
        if name in given:
            continue
        spare = next(free, None)
        if spare is None:
            raise MeshError(f"overlay range {cidr} has no free address for node {name}")
        given[name] = str(spare)
        taken.add(spare)
    return {name: given[name] for name in names}


def build_mesh(
    members: Iterable[Member], *, port: int, keepalive: int, everything: Sequence[str]
) -> Mesh:
    """The mesh of ``members``: each NATed member gets its home relay."""
    ordered = tuple(sorted(members, key=lambda m: m.name))
    relays = [m for m in ordered if m.relay and not m.nat]
    relay_of: dict[str, str] = {}
    for member in ordered:
        if not member.nat:
            continue
        if not relays:
            raise MeshError(
                f"node {member.name} is behind NAT and the overlay has no relay to reach it by"
            )
        home = next((r for r in relays if r.site == member.site), relays[0])
        relay_of[member.name] = home.name
    return Mesh(ordered, port, keepalive, tuple(everything), relay_of)


def _own_ranges(member: Member) -> tuple[str, ...]:
    return (f"{member.address}/32", *member.routes)


def peers_of(mesh: Mesh, name: str) -> list[Peer]:
    """The peers of node ``name``, in name order."""
    me = mesh.member(name)
    if me.nat:
        relay = mesh.member(mesh.relay_of[name])
        return [
            Peer(
                relay.name,
                relay.public_key,
                mesh.everything,
                endpoint=_endpoint(relay, mesh.port),
                keepalive=mesh.keepalive,
            )
        ]
    homed: dict[str, list[str]] = {}
    for natted, home in mesh.relay_of.items():
        homed.setdefault(home, []).append(natted)
    peers: list[Peer] = []
    for other in mesh.members:
        if other.name == name:
            continue
        if other.nat:
            if mesh.relay_of[other.name] == name:  # I am its relay: it dials me
                peers.append(Peer(other.name, other.public_key, _own_ranges(other)))
            continue
        allowed = list(_own_ranges(other))
        for natted in homed.get(other.name, ()):
            allowed += _own_ranges(mesh.member(natted))
        peers.append(
            Peer(
                other.name,
                other.public_key,
                tuple(allowed),
                endpoint=_endpoint(other, mesh.port),
            )
        )
    return peers


def forwards(mesh: Mesh, name: str) -> bool:
    """Whether node ``name`` forwards overlay traffic between its peers (a home relay)."""
    return name in mesh.relay_of.values()


def _endpoint(member: Member, port: int) -> str:
    assert member.endpoint is not None
    host = member.endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_peers(peers: Sequence[Peer]) -> str:
    """The ``[Peer]`` sections in ``wg setconf`` syntax (the node adds its own private key)."""
    blocks = []
    for peer in peers:
        lines = [f"# {peer.name}", "[Peer]", f"PublicKey = {peer.public_key}"]
        lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
        if peer.endpoint is not None:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.keepalive is not None:
            lines.append(f"PersistentKeepalive = {peer.keepalive}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def overlay_mtu(underlay_mtu: int) -> int:
    """The overlay MTU for an underlay of ``underlay_mtu`` bytes."""
    return underlay_mtu - WIREGUARD_OVERHEAD
