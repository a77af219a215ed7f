"""What a node of a WireGuard overlay gets: its settings, its peers, the unit that brings the
interface up before the kubelet at every boot, and the script that (re)applies it.

Why this exists: the mesh itself is decided in :mod:`clusterdeck.model.overlay` from the
topology; this module turns it into files for one node. The node's private key is made on the
node and stays there (``private.key``, 0600): the peers file holds public keys only, and
``overlay-up`` joins the two into a root-only temporary file for ``wg syncconf``, which
changes only what differs (live tunnels are not dropped when a peer is added or removed).

The interface is the kernel's WireGuard where the kernel has it, else wireguard-go (a
userspace implementation of the same protocol), which the unit then keeps running.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from clusterdeck.bootstrap import scripts
from clusterdeck.bootstrap.nodeconfig import MachineFacts, OverlaySettings
from clusterdeck.bootstrap.overlay_paths import OVERLAY_DIR, UNIT, UP_SCRIPT
from clusterdeck.bootstrap.units import to_text
from clusterdeck.model.overlay import (
    WIREGUARD_OVERHEAD,
    Member,
    Mesh,
    build_mesh,
    forwards,
    peers_of,
    render_peers,
)
from clusterdeck.model.topology import Topology
from clusterdeck.spec.models import Environment


def endpoint_of(node_host: str | None, machine: MachineFacts) -> str | None:
    """Where others send to a node that is not behind NAT: its public address (aws), else the
    address the file gives its host."""
    return machine.public_ip or node_host


def mesh_of(env: Environment, topology: Topology, machines: Mapping[str, MachineFacts]) -> Mesh:
    """The mesh of every node whose key is registered (one not registered yet is left out)."""
    overlay = env.spec.overlay
    assert overlay is not None
    members = []
    for node in topology.nodes:
        facts = machines.get(node.name, MachineFacts())
        place = node.overlay
        if place is None or not facts.overlay_address or not facts.overlay_public_key:
            continue
        members.append(
            Member(
                name=node.name,
                address=facts.overlay_address,
                public_key=facts.overlay_public_key,
                endpoint=None
                if place.nat
                else endpoint_of(node.host.address if node.host else None, facts),
                site=place.site,
                relay=place.relay,
                routes=(facts.pod_cidr,) if facts.pod_cidr else (),
            )
        )
    return build_mesh(
        members,
        port=overlay.port,
        keepalive=overlay.keepalive_seconds,
        everything=(overlay.cidr, env.spec.kubernetes.pod_cidr),
    )


def settings_for(env: Environment, mesh: Mesh, name: str) -> OverlaySettings | None:
    """The node's overlay settings (None until its key is registered)."""
    overlay = env.spec.overlay
    assert overlay is not None
    if name not in {m.name for m in mesh.members}:
        return None
    me = mesh.member(name)
    prefix = ipaddress.ip_network(overlay.cidr).prefixlen
    peers = peers_of(mesh, name)
    return OverlaySettings(
        interface=overlay.interface,
        address=f"{me.address}/{prefix}",
        port=overlay.port,
        mtu=None if overlay.mtu == "auto" else int(overlay.mtu),
        forwards=forwards(mesh, name),
        peers=[mesh.member(p.name).address for p in peers],
        underlay_probe=next((p.endpoint.rsplit(":", 1)[0] for p in peers if p.endpoint), None),
    )


def peers_file(mesh: Mesh, name: str) -> str:
    return f"# WireGuard peers of {name} (clusterdeck); public keys only\n\n" + render_peers(
        peers_of(mesh, name)
    )


def env_file(settings: OverlaySettings) -> str:
    """Shell assignments ``overlay-up`` reads (values are plain words: no quoting needed)."""
    values = {
        "IFACE": settings.interface,
        "ADDRESS": settings.address,
        "PORT": str(settings.port),
        "MTU": str(settings.mtu) if settings.mtu else "auto",
        "FORWARD": "1" if settings.forwards else "0",
        "PROBE": settings.underlay_probe or "",
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def unit() -> str:
    """Up before the kubelet, at every boot; down (the interface removed) when stopped."""
    return to_text(
        [
            (
                "Unit",
                [
                    ("Description", "clusterdeck WireGuard overlay"),
                    ("Wants", "network-online.target"),
                    ("After", "network-online.target"),
                    ("Before", "kubelet.service containerd.service"),
                ],
            ),
            (
                "Service",
                [
                    ("Type", "oneshot"),
                    ("RemainAfterExit", "yes"),
                    ("ExecStart", UP_SCRIPT),
                    ("ExecStop", f"{UP_SCRIPT} --down"),
                ],
            ),
            ("Install", [("WantedBy", "multi-user.target")]),
        ]
    )


def kubelet_dropin() -> str:
    """The kubelet starts only once the overlay (its node IP) is up."""
    return to_text(
        [("Unit", [("Wants", UNIT), ("After", UNIT)])],
    )


def up_script() -> str:
    """``overlay-up``: the unit's start (and stop, with --down), and what applies a new peer
    list on a running node."""
    return scripts.render_file("overlay-up.sh.j2", dir=OVERLAY_DIR, overhead=WIREGUARD_OVERHEAD)
