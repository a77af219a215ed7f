"""A node's overlay files as rendered: its peers, settings, the unit before the kubelet, the
scripts through shellcheck, and Kubernetes on the overlay addresses. The same files run on
real hosts across sites in tests/e2e/test_overlay.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import kubeadm
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import ClusterFacts, render_environment, write_bundle
from clusterdeck.pipeline import graph
from clusterdeck.spec import load_file
from tests.helpers import EXAMPLES

KEYS = {
    "two-sites-cp-0": "Q1BLZXlxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxA=",
    "two-sites-workers-0": "V0tleTBxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxA=",
    "two-sites-workers-1": "TkFUeHh4xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxA=",
}


def facts(pods: bool = False) -> ClusterFacts:
    return ClusterFacts(
        machines={
            name: MachineFacts(
                private_ip=f"172.16.0.{10 + i}",
                overlay_address=f"10.200.0.{1 + i}",
                overlay_public_key=KEYS[name],
                pod_cidr=f"10.244.{i}.0/24" if pods else None,
            )
            for i, name in enumerate(KEYS)
        }
    )


@pytest.fixture(scope="module")
def bundle():  # type: ignore[no-untyped-def]
    env = load_file(EXAMPLES / "two-sites.yaml")
    topology, plan = api.plan(env)
    return render_environment(env, topology, plan, facts(pods=True))


def test_every_node_gets_the_overlay_phase_right_after_the_os(bundle) -> None:  # type: ignore[no-untyped-def]
    for cfg in bundle.configs.values():
        names = [p.name for p in cfg.phases]
        assert names[names.index("os-prep") + 1] == "overlay"


def test_the_natted_worker_peers_with_the_relay_alone(bundle) -> None:  # type: ignore[no-untyped-def]
    peers = bundle.files["two-sites-workers-1"]["files/overlay/peers.conf"].content
    assert peers.count("[Peer]") == 1
    assert f"PublicKey = {KEYS['two-sites-cp-0']}" in peers
    assert "AllowedIPs = 10.200.0.0/16, 10.244.0.0/16" in peers
    assert "Endpoint = 203.0.113.10:51820" in peers and "PersistentKeepalive = 25" in peers
    relay = bundle.configs["two-sites-cp-0"].overlay
    assert relay is not None and relay.forwards and relay.address == "10.200.0.1/16"
    worker = bundle.files["two-sites-workers-0"]["files/overlay/peers.conf"].content
    # the public worker reaches the natted one through the relay: in the relay's allowed IPs
    assert "AllowedIPs = 10.200.0.1/32, 10.244.0.0/24, 10.200.0.3/32, 10.244.2.0/24" in worker
    assert KEYS["two-sites-workers-1"] not in worker
    assert bundle.files["two-sites-workers-1"]["files/overlay/peers.conf"].mode == 0o600


def test_kubernetes_runs_on_the_overlay_addresses(bundle) -> None:  # type: ignore[no-untyped-def]
    init = kubeadm.load_mappings(bundle.files["two-sites-cp-0"]["files/kubeadm-init.yaml"].content)
    init_cfg = next(d for d in init if d["kind"] == "InitConfiguration")
    assert init_cfg["localAPIEndpoint"]["advertiseAddress"] == "10.200.0.1"
    node_ip = {a["name"]: a["value"] for a in init_cfg["nodeRegistration"]["kubeletExtraArgs"]}
    assert node_ip["node-ip"] == "10.200.0.1"
    cluster = next(d for d in init if d["kind"] == "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"].startswith("10.200.0.1:")
    assert "203.0.113.10" in cluster["apiServer"]["certSANs"]  # users still reach it there
    join = bundle.files["two-sites-workers-1"]["files/kubeadm-join.yaml"].content
    assert "10.200.0.3" in join and "10.200.0.1:6443" in join
    cni = bundle.files["two-sites-cp-0"]["files/cni/kustomization.yaml"].content
    assert '"host-gw"' in cni and "vxlan" not in cni  # one tunnel: WireGuard


def test_the_overlay_comes_up_before_the_kubelet(bundle) -> None:  # type: ignore[no-untyped-def]
    files = bundle.files["two-sites-workers-0"]
    unit = files["files/overlay/clusterdeck-overlay.service"].content
    assert "Before=kubelet.service containerd.service" in unit
    assert "WantedBy=multi-user.target" in unit
    dropin = files["files/overlay/kubelet-overlay.conf"].content
    assert "After=clusterdeck-overlay.service" in dropin and "Wants=" in dropin
    env = files["files/overlay/overlay.env"].content
    assert "MTU=auto\n" in env and "PROBE=203.0.113.10\n" in env and "FORWARD=0\n" in env


def test_joins_wait_for_the_mesh_and_ready_for_the_pod_routes(bundle) -> None:  # type: ignore[no-untyped-def]
    specs = {s.id: s for s in graph.build(bundle.configs)}
    sync = specs[graph.OVERLAY_SYNC]
    assert set(sync.needs) == {f"{n}/overlay" for n in KEYS}
    assert graph.OVERLAY_SYNC in specs["two-sites-workers-0/kubeadm-join-worker"].needs
    assert graph.OVERLAY_ROUTES in specs[graph.READY].needs


def test_before_the_keys_are_registered_the_overlay_is_pending() -> None:
    env = load_file(EXAMPLES / "two-sites.yaml")
    topology, plan = api.plan(env)
    cfg = render_environment(env, topology, plan, ClusterFacts()).configs["two-sites-cp-0"]
    assert cfg.overlay is None
    assert "overlay address and peers (each node makes its key at create)" in cfg.pending


def test_the_overlay_scripts_pass_shellcheck(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_bundle(bundle, tmp_path)
    scripts = [
        *tmp_path.glob("*/phases/*overlay*.sh"),
        *tmp_path.glob("*/files/overlay/overlay-up"),
    ]
    assert len(scripts) == 6
    result = subprocess.run(
        ["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]
