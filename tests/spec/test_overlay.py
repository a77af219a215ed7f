"""``spec.overlay``: sites, NAT and relays on hosts, and the rules that keep the overlay sound."""

from __future__ import annotations

import pytest

from clusterdeck.planner.expand import expand
from clusterdeck.spec import check_bytes
from clusterdeck.spec.models import Environment

BASE = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: ov}
spec:
  provider: ssh
  overlay: {type: wireguard, cidr: 10.200.0.0/16}
  cluster:
    controlPlane:
      site: dc1
      hosts: [{address: 203.0.113.10, relay: true}]
    nodePools:
      - name: edge
        site: edge
        hosts:
          - {address: 198.51.100.20}
          - {address: 198.51.100.21, nat: true}
"""


def report(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    found = check_bytes(text.encode())
    return [(i.path, i.message) for i in found.errors], [
        (i.path, i.message) for i in found.warnings
    ]


def env_of(text: str) -> Environment:
    found = check_bytes(text.encode())
    assert found.environment is not None and not found.errors, found.errors
    return found.environment


def test_a_two_site_file_is_valid_and_places_every_node() -> None:
    topology = expand(env_of(BASE))
    places = {n.name: n.overlay for n in topology.nodes}
    assert {k: (p.site, p.nat, p.relay) for k, p in places.items() if p} == {
        "ov-cp-0": ("dc1", False, True),
        "ov-edge-0": ("edge", False, False),
        "ov-edge-1": ("edge", True, False),
    }


def test_without_an_overlay_nodes_have_no_place() -> None:
    text = BASE.replace("  overlay: {type: wireguard, cidr: 10.200.0.0/16}\n", "")
    errors, _ = report(text)
    assert (
        "spec.cluster.controlPlane.site",
        "a site places nodes on the overlay: add spec.overlay",
    ) in errors
    assert any(p == "spec.cluster.nodePools[0].hosts[1].nat" for p, _ in errors)
    assert any(p == "spec.cluster.controlPlane.hosts[0].relay" for p, _ in errors)


def test_a_host_behind_nat_needs_a_relay() -> None:
    errors, _ = report(BASE.replace(", relay: true", ""))
    assert [(p, m) for p, m in errors if "relay" in m] == [
        (
            "spec.cluster.nodePools[0].hosts[1].nat",
            "host 198.51.100.21 is behind NAT and reaches the overlay only through a relay: "
            "mark a host every node can reach with relay: true",
        )
    ]


def test_a_relay_cannot_be_behind_nat() -> None:
    errors, _ = report(
        BASE.replace(
            "{address: 198.51.100.21, nat: true}",
            "{address: 198.51.100.21, nat: true, relay: true}",
        )
    )
    assert [p for p, m in errors] == ["spec.cluster.nodePools[0].hosts[1].relay"]


@pytest.mark.parametrize(
    ("cidr", "clash"),
    [
        ("192.168.0.0/16", "pod range 192.168.0.0/16"),
        ("10.100.0.0/16", "service range 10.96.0.0/12"),
    ],
)
def test_the_overlay_range_overlaps_no_cluster_range(cidr: str, clash: str) -> None:
    errors, _ = report(BASE.replace("10.200.0.0/16", cidr))
    assert any(p == "spec.overlay.cidr" and clash in m for p, m in errors), errors


def test_the_overlay_range_holds_no_host() -> None:
    errors, _ = report(BASE.replace("198.51.100.20", "10.200.3.4"))
    assert (
        "spec.cluster.nodePools[0].hosts[0].address",
        "host 10.200.3.4 is inside the overlay range 10.200.0.0/16: overlay addresses "
        "would shadow the network the nodes meet on",
    ) in errors


def test_the_overlay_range_must_hold_every_node() -> None:
    errors, _ = report(BASE.replace("10.200.0.0/16", "10.200.0.0/31"))
    assert any(p == "spec.overlay.cidr" and "holds 0 addresses" in m for p, m in errors), errors


def test_the_vpc_range_is_checked_against_the_overlay() -> None:
    text = BASE.replace("10.200.0.0/16", "10.0.0.0/16") + (
        "      - name: burst\n        provider: aws\n        count: 1\n"
        "        spot: {}\n  aws: {region: us-west-2}\n"
    )
    errors, _ = report(text)
    assert any(p == "spec.overlay.cidr" and "VPC range 10.0.0.0/16" in m for p, m in errors), errors


def test_aws_nodes_sit_at_their_region_and_private_ones_behind_nat() -> None:
    text = BASE + (
        "      - name: burst\n        provider: aws\n        count: 1\n"
        "        spot: {}\n  aws: {region: us-west-2, network: {mode: private}}\n"
        "  auth: {keyName: ops}\n"
    )
    burst = [n for n in expand(env_of(text)).nodes if n.pool == "burst"]
    assert burst[0].overlay is not None
    assert (burst[0].overlay.site, burst[0].overlay.nat) == ("aws-us-west-2", True)


def test_control_planes_across_sites_get_a_warning() -> None:
    text = BASE.replace(
        "hosts: [{address: 203.0.113.10, relay: true}]",
        "hosts: [{address: 203.0.113.10, relay: true}, {address: 203.0.113.11, site: dc2},"
        " {address: 203.0.113.12}]",
    ).replace("controlPlane:\n", "controlPlane:\n      count: 3\n")
    errors, warnings = report(text)
    assert any("etcd wants low latency" in m and "dc1, dc2" in m for _, m in warnings), warnings
    # and, for now, one control plane only: named as not built yet
    assert any(p == "spec.cluster.controlPlane.count" and "not built yet" in m for p, m in errors)


def test_the_mtu_is_auto_or_a_number_wireguard_takes() -> None:
    errors, _ = report(BASE.replace("cidr: 10.200.0.0/16}", "cidr: 10.200.0.0/16, mtu: 900}"))
    assert [(p, m) for p, m in errors if p.startswith("spec.overlay")] == [
        ("spec.overlay.mtu", "mtu is auto or a number from 1280 to 9000; got 900")
    ]
    assert env_of(BASE.replace("cidr: 10.200.0.0/16}", "cidr: 10.200.0.0/16, mtu: 1380}"))
