"""The WireGuard overlay measured on a real cluster across two sites and a NAT.

Nothing is simulated: the lab lays out full hosts over two sites, the last behind a NAT router
(tests/lab/sites.py), and ``clusterdeck create`` builds the cluster of examples/two-sites.yaml
on them, from the bundle ``scripts/kubernetes-artifacts.sh`` builds. The nodes run
wireguard-go (this kernel has no WireGuard module), so the throughput here is the userspace
implementation's on this machine's cores. Figures, each beside what it compares to:

- throughput between two hosts at different sites, over the overlay against the underlay
  (their public addresses), with iperf3 (Debian's);
- pod to pod across the sites against host to host over the same tunnel: iperf3 run in the
  two pods' network namespaces (the host's binary, entered by the pod's PID). Target: at
  least 90 %; Flannel's host-gw puts pod traffic straight into WireGuard, encapsulated once;
- latency (ping) from the public worker to the NATed one, which goes through the relay,
  against the same worker to the relay directly;
- the time to bring the mesh up, from the create's events: the first node's key until every
  node reaches every other node (the sync step's end).

Run as root on the lab machine (``--hosts N`` for a larger mesh, at least 3):

    .venv/bin/python bench/overlay.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e import cluster as real  # noqa: E402
from tests.e2e.client import cli  # noqa: E402
from tests.lab import sites  # noqa: E402
from tests.lab.light import Lab, LabHost  # noqa: E402

SECONDS = 5
TARGET = 0.90


def spec(lab: Lab, hosts: list[LabHost], bundle: Path) -> str:
    cp, *workers = hosts
    listed = ", ".join(
        f"{{address: {h.address}{', nat: true' if h.nat else ''}, site: {h.site}}}" for h in workers
    )
    return f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: bench-overlay}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {cp.user}}}
  overlay: {{type: wireguard, cidr: 10.200.0.0/16}}
  cluster:
    controlPlane:
      hosts: [{{address: {cp.address}, relay: true, site: {cp.site}}}]
    workers:
      hosts: [{listed}]
  kubernetes: {{cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


def iperf(client: LabHost, server: LabHost, address: str, netns: tuple[int, int] = (0, 0)) -> float:
    """Gbit/s from ``client`` to ``server`` at ``address`` (in the pods' namespaces: the PIDs)."""

    def inside(pid: int) -> list[str]:
        return ["nsenter", "-t", str(pid), "-n"] if pid else []

    server.exec([*inside(netns[1]), "iperf3", "-s", "-D", "-1", "-p", "5201"])
    time.sleep(0.5)
    out = client.exec(
        [*inside(netns[0]), "iperf3", "-c", address, "-p", "5201", "-t", str(SECONDS), "-J"],
        timeout=SECONDS + 30,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


def ping_ms(host: LabHost, address: str, count: int = 20) -> float:
    out = host.exec(["ping", "-q", "-n", "-c", str(count), "-i", "0.2", address]).stdout
    line = next(line for line in out.splitlines() if "min/avg/max" in line)
    return float(line.split("=")[1].split("/")[1])


def pod_pid(host: LabHost, pod: str) -> int:
    """The PID of ``pod``'s sandbox as its machine numbers it (``host.exec`` runs there)."""
    ids = host.exec(["crictl", "pods", "--name", pod, "-q"]).stdout.split()
    info = json.loads(host.exec(["crictl", "inspectp", ids[0]]).stdout)
    return int(info["info"]["pid"])


def mesh_seconds(state: Path, name: str) -> float:
    res = cli(state, "events", name, "-o", "json")
    events = json.loads(res.stdout)
    starts = [e["started_at"] for e in events if e.get("step") in ("overlay key", "overlay")]
    ends = [e["ended_at"] for e in events if e.get("step") == "overlay-sync" and e.get("ended_at")]
    return max(ends) - min(starts) if starts and ends else float("nan")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args(argv)
    if args.hosts < 3:
        parser.error("--hosts must be at least 3 (a relay, a public worker, a NATed one)")
    bundle = real.build_bundle()
    lab = Lab.create()
    try:
        hosts = sites.add_site_hosts(lab, args.hosts, 2, 1)
        home = Path(tempfile.mkdtemp(prefix="bench-overlay-"))
        (home / "env.yaml").write_text(spec(lab, hosts, bundle))
        state, kubeconfig = home / "state.db", home / "kc"
        started = time.monotonic()
        res = cli(state, "create", "-f", str(home / "env.yaml"), "--yes", "-k", str(kubeconfig))
        created = time.monotonic() - started
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            return 1
        real.import_test_image(hosts, real.test_image(bundle))
        kubectl = real.Kubectl(bundle / "bin" / "kubectl", kubeconfig)
        ips = {
            n["metadata"]["name"]: next(
                a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
            )
            for n in kubectl.json("get", "nodes")["items"]
        }
        cp, public = hosts[0], hosts[1]
        names = sorted(ips)
        cp_name, public_name = names[0], names[1]
        natted_name = names[-1]
        under = iperf(public, cp, cp.address)
        over = iperf(public, cp, ips[cp_name])
        for pod, node in (("bench-a", public_name), ("bench-b", cp_name)):
            manifest = real.web_pod(pod, node)
            manifest["metadata"]["labels"] = {"app": "bench"}
            kubectl.apply(manifest)
        pods = real.wait_for("bench pods", lambda: real.pods_running(kubectl, "app=bench"))
        by_name = {p["metadata"]["name"]: p for p in pods}
        pod_b_ip = by_name["bench-b"]["status"]["podIP"]
        pid_a = pod_pid(public, "bench-a")
        pid_b = pod_pid(cp, "bench-b")
        pod_to_pod = iperf(public, cp, pod_b_ip, (pid_a, pid_b))
        direct = ping_ms(public, ips[cp_name])
        relayed = ping_ms(public, ips[natted_name])
        underlay_ping = ping_ms(public, cp.address)
        mesh = mesh_seconds(state, "bench-overlay")
    finally:
        lab.down()
    ratio = pod_to_pod / over if over else 0.0
    print(f"overlay bench: {args.hosts} hosts over 2 sites, 1 behind NAT (wireguard-go)")
    print(f"  create, whole cluster:                 {created:7.1f} s")
    print(f"  mesh up (first key to all tunnels):    {mesh:7.1f} s")
    print(f"  throughput host->host, underlay:       {under:7.2f} Gbit/s")
    print(f"  throughput host->host, overlay:        {over:7.2f} Gbit/s ({over / under:.0%})")
    print(
        f"  throughput pod->pod across sites:      {pod_to_pod:7.2f} Gbit/s "
        f"({ratio:.0%} of host->host over the tunnel; target {TARGET:.0%})"
    )
    print(f"  latency, underlay:                     {underlay_ping:7.3f} ms")
    print(f"  latency over the overlay, direct:      {direct:7.3f} ms")
    print(f"  latency over the overlay, via relay:   {relayed:7.3f} ms")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
