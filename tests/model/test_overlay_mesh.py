"""The WireGuard mesh derived from the topology: who peers with whom, through which relay,
carrying which ranges. What the nodes do with it runs for real in tests/e2e/test_overlay.py."""

from __future__ import annotations

import pytest

from clusterdeck.model.overlay import (
    Member,
    MeshError,
    assign_addresses,
    build_mesh,
    forwards,
    peers_of,
    render_peers,
)

EVERYTHING = ("10.200.0.0/16", "10.244.0.0/16")


def member(
    name: str, n: int, *, endpoint: str | None = "", site: str = "a", relay: bool = False
) -> Member:
    return Member(
        name=name,
        address=f"10.200.0.{n}",
        public_key=f"key-{name}",
        endpoint=f"203.0.113.{n}" if endpoint == "" else endpoint,
        site=site,
        relay=relay,
        routes=(f"10.244.{n}.0/24",),
    )


def mesh(*members: Member):  # type: ignore[no-untyped-def]
    return build_mesh(members, port=51820, keepalive=25, everything=EVERYTHING)


def test_reachable_nodes_form_a_full_mesh() -> None:
    m = mesh(member("a", 1), member("b", 2), member("c", 3))
    for name in ("a", "b", "c"):
        peers = peers_of(m, name)
        assert sorted(p.name for p in peers) == sorted({"a", "b", "c"} - {name})
        assert all(
            p.endpoint and p.endpoint.endswith(":51820") and p.keepalive is None for p in peers
        )
    b = next(p for p in peers_of(m, "a") if p.name == "b")
    assert b.allowed_ips == ("10.200.0.2/32", "10.244.2.0/24")  # its pods routed by WireGuard


def test_a_natted_node_peers_with_its_relay_alone_for_everything() -> None:
    m = mesh(
        member("cp", 1, relay=True, site="dc1"),
        member("w", 2, site="edge"),
        member("n", 3, endpoint=None, site="edge"),
    )
    (only,) = peers_of(m, "n")
    assert (only.name, only.endpoint, only.allowed_ips, only.keepalive) == (
        "cp",
        "203.0.113.1:51820",
        EVERYTHING,
        25,
    )
    # the relay reaches it without an endpoint (it dials in); others reach it via the relay
    relay_side = {p.name: p for p in peers_of(m, "cp")}
    assert relay_side["n"].endpoint is None and relay_side["n"].allowed_ips == (
        "10.200.0.3/32",
        "10.244.3.0/24",
    )
    via = {p.name: p for p in peers_of(m, "w")}
    assert "n" not in via
    assert via["cp"].allowed_ips == (
        "10.200.0.1/32",
        "10.244.1.0/24",
        "10.200.0.3/32",
        "10.244.3.0/24",
    )
    assert forwards(m, "cp") and not forwards(m, "w") and not forwards(m, "n")


def test_a_natted_node_prefers_a_relay_at_its_own_site() -> None:
    m = mesh(
        member("r1", 1, relay=True, site="dc1"),
        member("r2", 2, relay=True, site="edge"),
        member("n", 3, endpoint=None, site="edge"),
    )
    assert m.relay_of == {"n": "r2"}
    assert [p.name for p in peers_of(m, "n")] == ["r2"]
    r1 = {p.name: p for p in peers_of(m, "r1")}
    assert "10.200.0.3/32" in r1["r2"].allowed_ips  # r1 reaches n through r2


def test_no_relay_for_a_natted_node_is_an_error() -> None:
    with pytest.raises(MeshError, match="node n is behind NAT"):
        mesh(member("a", 1), member("n", 2, endpoint=None))


def test_addresses_are_kept_once_given() -> None:
    first = assign_addresses("10.200.0.0/16", ["a", "b", "c"])
    assert first == {"a": "10.200.0.1", "b": "10.200.0.2", "c": "10.200.0.3"}
    # b leaves, d joins: nobody is renumbered, d takes the freed address
    again = assign_addresses("10.200.0.0/16", ["a", "c", "d"], first)
    assert again == {"a": "10.200.0.1", "c": "10.200.0.3", "d": "10.200.0.2"}
    # a recorded address outside a changed range is given again
    assert assign_addresses("10.201.0.0/30", ["a"], first) == {"a": "10.201.0.1"}
    with pytest.raises(MeshError, match="no free address for node c"):
        assign_addresses("10.201.0.0/30", ["a", "b", "c"])


def test_the_rendered_peers_read_as_wg_setconf_sections() -> None:
    m = mesh(member("cp", 1, relay=True), member("n", 3, endpoint=None))
    assert render_peers(peers_of(m, "n")) == (
        "# cp\n[Peer]\nPublicKey = key-cp\nAllowedIPs = 10.200.0.0/16, 10.244.0.0/16\n"
        "Endpoint = 203.0.113.1:51820\nPersistentKeepalive = 25\n"
    )
    assert render_peers(peers_of(m, "cp")) == (
        "# n\n[Peer]\nPublicKey = key-n\nAllowedIPs = 10.200.0.3/32, 10.244.3.0/24\n"
    )
