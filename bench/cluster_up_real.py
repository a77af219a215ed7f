"""Real cluster up: ``clusterdeck create`` on full lab hosts with the offline bundle.

Nothing is simulated: the hosts are systemd-nspawn machines (sudoer login, real sshd and
systemd), the bundle is the one ``scripts/kubernetes-artifacts.sh`` builds from the Go
modules, and the clock runs from the moment the hosts answer SSH to the moment ``create``
returns with every Node Ready (as the kubelets report it) and every DaemonSet's pods ready.
For 1 node and for 3 control planes (keepalived VIP + HAProxy) + 2 workers. The reference is
the PXE design's "cluster up in under 90 seconds"; the target is 3+2 HA under 90 s on these
2 cores. Where the time goes comes from ``clusterdeck events``: each phase's duration per
node, and the critical path (init, the control-plane joins one after another, the Ready wait).

Run as root on the lab machine:

    .venv/bin/python bench/cluster_up_real.py [--only single|ha]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.cluster import build_bundle  # noqa: E402
from tests.lab import full  # noqa: E402
from tests.lab.light import Lab  # noqa: E402

CLI = Path(sys.executable).with_name("clusterdeck")
REFERENCE = 90.0


def spec(name: str, lab: Lab, hosts: list[Any], bundle: Path, ha: bool) -> str:
    def addresses(items: list[Any]) -> str:
        return ", ".join(f"{{address: {h.address}}}" for h in items)

    cps, workers = (hosts[:3], hosts[3:]) if ha else (hosts, [])
    text = f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: {name}}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {hosts[0].user}}}
  cluster:
    controlPlane: {{hosts: [{addresses(cps)}]}}
"""
    if workers:
        vip = lab.network.broadcast_address - 1
        text += f"""\
    workers: {{hosts: [{addresses(workers)}]}}
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
"""
    return (
        text
        + f"""\
  kubernetes: {{cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""
    )


def run(lab: Lab, bundle: Path, name: str, count: int, ha: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        boot_started = time.monotonic()
        hosts = full.add_full_hosts(lab, count)
        booted = time.monotonic() - boot_started
        try:
            (home / "env.yaml").write_text(spec(name, lab, hosts, bundle, ha))
            state = home / "state.db"
            started = time.monotonic()
            res = subprocess.run(
                [
                    str(CLI),
                    "-q",
                    "--state",
                    str(state),
                    "create",
                    "-f",
                    str(home / "env.yaml"),
                    "--yes",
                    "-k",
                    str(home / "kubeconfig"),
                ],
                capture_output=True,
                text=True,
                timeout=1200,
            )
            seconds = time.monotonic() - started
            if res.returncode != 0:
                raise SystemExit(f"create {name} failed: {res.stderr[-2000:]}")
            events = json.loads(
                subprocess.run(
                    [str(CLI), "--state", str(state), "events", name, "-o", "json"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        finally:
            full.stop_machines_in([h.netns for h in hosts])
            for host in hosts:
                lab.remove_host(host)
    return {"name": name, "nodes": count, "boot": booted, "create": seconds, "events": events}


def report(result: dict[str, Any]) -> None:
    events = [e for e in result["events"] if e["outcome"] == "finished"]
    start = min(e["started_at"] for e in events)
    print(f"\n== {result['name']}: {result['nodes']} node(s)")
    print(f"hosts booted (not counted): {result['boot']:.1f} s")
    verdict = "meets" if result["create"] < REFERENCE else "misses"
    print(
        f"create, hosts up -> every node Ready: {result['create']:.1f} s "
        f"(reference design: < {REFERENCE:.0f} s; {verdict} it)"
    )
    by_step: dict[str, list[float]] = defaultdict(list)
    for e in events:
        by_step[e["step"]].append(e["duration"])
    print(f"{'step':<28} {'nodes':>5} {'max s':>7} {'sum s':>7}")
    for step, durations in sorted(by_step.items(), key=lambda kv: -max(kv[1])):
        print(f"{step:<28} {len(durations):>5} {max(durations):>7.1f} {sum(durations):>7.1f}")
    print("critical path (first start -> end, s):")
    cluster = [
        e
        for e in events
        if e["step"]
        in ("kubeadm-init", "kubeadm-join-control-plane", "kubeadm-join-worker", "ready", "offline")
    ]
    for e in sorted(cluster, key=lambda e: e["started_at"]):
        begin = e["started_at"] - start
        print(f"  {e['subject']:<20} {e['step']:<28} {begin:6.1f} -> {begin + e['duration']:6.1f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["single", "ha"])
    args = parser.parse_args(argv)
    bundle = build_bundle()
    lab = Lab.create()
    try:
        if args.only in (None, "single"):
            report(run(lab, bundle, "benchsolo", 1, ha=False))
        if args.only in (None, "ha"):
            report(run(lab, bundle, "benchha", 5, ha=True))
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
