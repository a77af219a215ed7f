"""End to end: one real cluster across two sites and a NAT, over the WireGuard overlay that
clusterdeck builds itself.

The hosts (tests/lab/sites.py): h0 at the first site, h1 and h2 at the second, h2 behind a
masquerading NAT router that lets in nothing but SSH. The sites' networks have no route
between them; h0 and h1 reach each other only by their public addresses. The kernel has no
WireGuard module, so the nodes run wireguard-go, as a node whose kernel lacks it would.
Nothing is a double: the real kubeadm, kubelet, containerd and Flannel run over the overlay.
"""

from __future__ import annotations

import calendar
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import cluster as real
from tests.e2e.client import cli
from tests.lab import full, sites
from tests.lab.light import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME = "e2esites"
OVERLAY = "10.200.0.0/16"


@dataclass
class Sites:
    hosts: list[LabHost]
    spec: Path
    state: Path
    kubectl: real.Kubectl
    seconds: float


def _spec(lab: Lab, hosts: list[LabHost], bundle: Path) -> str:
    cp, public, natted = hosts
    return f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: {NAME}}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {cp.user}}}
  overlay: {{type: wireguard, cidr: {OVERLAY}}}
  cluster:
    controlPlane:
      site: {cp.site}
      hosts: [{{address: {cp.address}, relay: true}}]
    workers:
      site: {public.site}
      hosts: [{{address: {public.address}}}, {{address: {natted.address}, nat: true}}]
  kubernetes: {{cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


@pytest.fixture(scope="module")
def across(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)
    bundle = real.build_bundle()
    home = tmp_path_factory.mktemp("sites")
    hosts = sites.add_site_hosts(lab, 3, 2, 1)
    try:
        spec = home / f"{NAME}.yaml"
        spec.write_text(_spec(lab, hosts, bundle))
        state = home / "state.db"
        kubeconfig = home / f"{NAME}.conf"
        started = time.monotonic()
        result = cli(state, "create", "-f", str(spec), "--yes", "-k", str(kubeconfig), timeout=900)
        seconds = time.monotonic() - started
        print(f"\ncreate across 2 sites and a NAT (3 hosts): {seconds:.1f} s")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        real.import_test_image(hosts, real.test_image(bundle))
        yield Sites(
            hosts, spec, state, real.Kubectl(bundle / "bin" / "kubectl", kubeconfig), seconds
        )
    finally:
        for host in hosts:
            lab.remove_host(host)


def _internal_ips(kubectl: real.Kubectl) -> dict[str, str]:
    return {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in kubectl.json("get", "nodes")["items"]
    }


def test_the_lab_sites_are_apart_and_the_natted_host_is_unreachable(across: Sites) -> None:
    cp, public, natted = across.hosts
    # no route from one site's network to the other's
    lan = public.exec(["ip", "-o", "-4", "addr", "show", "dev", sites.SITE_INTERFACE]).stdout
    assert "172.17." in lan
    assert (
        cp.exec(["ping", "-c", "1", "-W", "1", natted.local_address], check=False).returncode != 0
    )
    # the natted host reaches out (through its router), nobody reaches in but SSH
    assert natted.exec(["ping", "-c", "1", "-W", "2", cp.address], check=False).returncode == 0
    # its router answers SSH only: a TCP port other than 22 at its address is not reached
    probe = cp.exec(["nc", "-z", "-w", "2", natted.address, "6443"], check=False)
    assert probe.returncode != 0


def test_every_node_is_ready_on_its_overlay_address(across: Sites) -> None:
    ips = _internal_ips(across.kubectl)
    assert sorted(ips) == [f"{NAME}-cp-0", f"{NAME}-workers-0", f"{NAME}-workers-1"]
    for name, ip in ips.items():
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(OVERLAY), (name, ip)
    for node in across.kubectl.json("get", "nodes")["items"]:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", node["metadata"]["name"]


def test_the_natted_node_goes_through_the_relay(across: Sites) -> None:
    cp, public, natted = across.hosts
    peers = natted.exec(["wg", "show", "wg0", "endpoints"]).stdout.split("\n")
    endpoints = [line.split()[1] for line in peers if line.strip()]
    assert endpoints == [f"{cp.address}:51820"], endpoints
    keepalive = natted.exec(["wg", "show", "wg0", "persistent-keepalive"]).stdout.split()
    assert keepalive[-1] == "25"
    # the public worker has no peer entry for it: its packets for it go to the relay
    ips = _internal_ips(across.kubectl)
    natted_ip = ips[f"{NAME}-workers-1"]
    allowed = public.exec(["wg", "show", "wg0", "allowed-ips"]).stdout
    relay_line = next(line for line in allowed.splitlines() if f"{ips[f'{NAME}-cp-0']}/32" in line)
    assert f"{natted_ip}/32" in relay_line
    # and it reaches it, through the relay, with a full-size packet that may not fragment
    link = public.exec(["ip", "-o", "link", "show", "dev", "wg0"]).stdout.split()
    mtu = int(link[link.index("mtu") + 1])
    assert mtu == 1500 - 80
    ping = public.exec(
        ["ping", "-c", "1", "-W", "3", "-M", "do", "-s", str(mtu - 28), natted_ip], check=False
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_pods_reach_pods_across_sites_and_a_service_answers_from_both(across: Sites) -> None:
    kubectl = across.kubectl
    nodes = sorted(_internal_ips(kubectl))
    for i, node in enumerate(nodes):
        kubectl.apply(real.web_pod(f"web-{i}", node))
    pods = real.wait_for("web pods running", lambda: real.pods_running(kubectl, "app=web"))
    by_node = {p["spec"]["nodeName"]: (p["metadata"]["name"], p["status"]["podIP"]) for p in pods}
    for source_node, (source, _) in by_node.items():
        for target_node, (target, ip) in by_node.items():
            if source_node == target_node:
                continue
            request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"
            body = kubectl.run("exec", source, "--", "sh", "-c", request)
            assert body.strip().splitlines()[-1] == target, f"{source} -> {target} ({ip})"
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    cluster_ip = kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    for source, _ in by_node.values():
        answers = set()
        for _ in range(30):
            request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {cluster_ip} 80"
            answers.add(
                kubectl.run("exec", source, "--", "sh", "-c", request).strip().splitlines()[-1]
            )
        assert len(answers) >= 2, f"the Service answered {source} from {answers} only"


def test_pod_traffic_is_not_encapsulated_twice(across: Sites) -> None:
    cp = across.hosts[0]
    links = cp.exec(["ip", "-o", "link", "show"]).stdout
    assert "flannel.1" not in links, "no VXLAN device: WireGuard carries the pod ranges"
    routes = cp.exec(["ip", "-o", "route", "show"]).stdout
    assert any("10.244." in line and "dev wg0" in line for line in routes.splitlines()), routes


def _wg_public_key(host: LabHost) -> str:
    res = host.exec(["wg", "show", "wg0", "public-key"], check=False)
    if res.returncode != 0:
        unit = host.exec(
            ["systemctl", "status", "--no-pager", "clusterdeck-overlay"], check=False
        ).stdout
        raise AssertionError(f"{host.name}: no wg0 ({res.stderr.strip()}); {unit[-1500:]}")
    return res.stdout.strip()


def _started_at(host: LabHost, unit: str) -> float:
    """When ``unit`` last became active on ``host`` (seconds since the epoch; 0: not yet)."""
    out = host.exec(
        ["systemctl", "show", "-p", "ActiveEnterTimestamp", "--timestamp=unix", unit], check=False
    ).stdout.strip()
    value = out.partition("=")[2].lstrip("@")
    return float(value) if value else 0.0


def test_a_rebooted_node_comes_back_on_the_overlay_and_turns_ready(across: Sites, lab: Lab) -> None:
    public = across.hosts[1]
    name = f"{NAME}-workers-0"
    key_before = _wg_public_key(public)
    started = time.monotonic()
    full.reboot(lab, public)

    def ready() -> bool:
        # Ready as reported by the kubelet this boot started (its first report is after it)
        kubelet = _started_at(public, "kubelet")
        if not kubelet:
            return False
        node = across.kubectl.json("get", "node", name)
        cond = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        beat = calendar.timegm(time.strptime(cond["lastHeartbeatTime"], "%Y-%m-%dT%H:%M:%SZ"))
        return bool(cond["status"] == "True" and beat >= int(kubelet))

    real.wait_for(f"{name} Ready after its reboot", ready, timeout=240, every=2)
    print(f"\nworker rebooted, back on the overlay and Ready in {time.monotonic() - started:.1f} s")
    # the overlay came up before the kubelet, with the key it had
    assert _wg_public_key(public) == key_before
    overlay_up = _started_at(public, "clusterdeck-overlay")
    assert 0 < overlay_up <= _started_at(public, "kubelet")


def test_a_node_removed_from_the_file_leaves_every_peer_list_and_its_key_is_dead(
    across: Sites,
) -> None:
    cp, public, natted = across.hosts
    name = f"{NAME}-workers-1"
    old_ip = _internal_ips(across.kubectl)[name]
    old_key = natted.exec(["cat", "/etc/clusterdeck/overlay/private.key"]).stdout.strip()
    old_public = _wg_public_key(natted)
    old_peers = natted.exec(["cat", "/etc/clusterdeck/overlay/peers.conf"]).stdout
    # the test's own bare pods would block the drain (no controller to recreate them)
    across.kubectl.run("delete", "pods", "-l", "app=web", "--wait=true", timeout=120)
    smaller = across.spec.with_name("smaller.yaml")
    smaller.write_text(
        across.spec.read_text().replace(f", {{address: {natted.address}, nat: true}}", "")
    )
    done = cli(across.state, "apply", "-f", str(smaller), "--yes", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert name not in _internal_ips(across.kubectl)
    for host in (cp, public):
        peers = host.exec(["wg", "show", "wg0", "peers"]).stdout.split()
        assert old_public not in peers, host.name
        assert f"{old_ip}/32" not in host.exec(["wg", "show", "wg0", "allowed-ips"]).stdout
    # the host left the overlay: no interface, no key
    assert natted.exec(["ip", "link", "show", "wg0"], check=False).returncode != 0
    assert natted.exec(
        ["test", "-e", "/etc/clusterdeck/overlay/private.key"], check=False
    ).returncode
    # brought up again with the old key and the old peers, it gets no handshake from the relay
    conf = f"[Interface]\nPrivateKey = {old_key}\n\n{old_peers}"
    natted.exec(["sh", "-c", f"umask 077; printf '%s' '{conf}' > /run/old.conf"])
    natted.exec(["sh", "-c", "env -u WG_PROCESS_FOREGROUND wireguard-go wgold >/dev/null 2>&1"])
    try:
        natted.exec(["wg", "setconf", "wgold", "/run/old.conf"])
        natted.exec(["ip", "address", "add", f"{old_ip}/16", "dev", "wgold"])
        natted.exec(["ip", "link", "set", "wgold", "up"])
        relay_ip = _internal_ips(across.kubectl)[f"{NAME}-cp-0"]
        ping = natted.exec(["ping", "-c", "6", "-i", "1", "-W", "1", relay_ip], check=False)
        assert ping.returncode != 0, "the old key still reaches the relay"
        shakes = natted.exec(["wg", "show", "wgold", "latest-handshakes"]).stdout.split()
        assert shakes[-1] == "0", "the relay answered a handshake from the old key"
    finally:
        natted.exec(["ip", "link", "del", "wgold"], check=False)
