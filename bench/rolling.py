"""Rolling replacement of a pool of 3 nodes, and a minor upgrade, on real lab hosts.

A cluster of 3 control planes behind a keepalived VIP and 3 workers is created at the previous
minor version. Then the file swaps the 3 worker hosts for 3 others: ``apply`` replaces them
one at a time (the new node joins and the cluster is healthy again, then the old one is
drained and reset). The figure to compare is the time the nodes themselves needed, from
``clusterdeck events``: each new node's phases (upload, offline files, OS, containerd,
packages, join, labels), its turning Ready after the join (the cluster's Ready check waits for
its kubelet and CNI) and each old node's removal (cordon, drain, delete, reset). What
clusterdeck adds is the rest (registering hosts, the control planes' phases finding their work
done, health checks between steps); the target is under 15 %. Then the file moves to the next
minor version and ``apply`` upgrades every node; clusterdeck's probe of the API through the
VIP reports the longest gap (target with HA: under 5 s).

Run as root on the lab machine (about 15 minutes; builds the bundles on first use):

    .venv/bin/python bench/rolling.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.cluster import build_bundle  # noqa: E402
from tests.lab import full  # noqa: E402
from tests.lab.light import Lab  # noqa: E402

CLI = Path(sys.executable).with_name("clusterdeck")
OLD, NEW = "v1.36.3", "v1.37.2"
TARGET_OVERHEAD = 0.15


def spec(lab: Lab, hosts: list[Any], workers: list[Any], version: str, bundle: Path) -> str:
    def addresses(items: list[Any]) -> str:
        return ", ".join(f"{{address: {h.address}}}" for h in items)

    vip = lab.network.broadcast_address - 1
    return f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: benchroll}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {hosts[0].user}}}
  cluster:
    controlPlane: {{hosts: [{addresses(hosts[:3])}]}}
    workers: {{hosts: [{addresses(workers)}]}}
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
  kubernetes: {{version: {version}, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


def clusterdeck(state: Path, *args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(CLI), "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"CI": "true", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if res.returncode != 0:
        raise SystemExit(f"clusterdeck {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res


def timed_apply(state: Path, path: Path) -> tuple[float, str]:
    started = time.monotonic()
    res = clusterdeck(state, "apply", "-f", str(path), "--yes")
    return time.monotonic() - started, res.stderr


def main() -> int:
    old_bundle, new_bundle = build_bundle(OLD), build_bundle()
    lab = Lab.create()
    try:
        hosts = full.add_full_hosts(lab, 9)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                home = Path(tmp)
                state = home / "state.db"
                (home / "a.yaml").write_text(spec(lab, hosts, hosts[3:6], OLD, old_bundle))
                (home / "b.yaml").write_text(spec(lab, hosts, hosts[6:9], OLD, old_bundle))
                (home / "c.yaml").write_text(spec(lab, hosts, hosts[6:9], NEW, new_bundle))
                clusterdeck(state, "create", "-f", str(home / "a.yaml"), "--yes")
                mark = time.time()
                rolled, _ = timed_apply(state, home / "b.yaml")
                events = json.loads(clusterdeck(state, "events", "benchroll", "-o", "json").stdout)
                upgraded, text = timed_apply(state, home / "c.yaml")
        finally:
            full.stop_machines_in([h.netns for h in hosts])
            for host in hosts:
                lab.remove_host(host)
    finally:
        lab.down()
    report(rolled, events, mark, upgraded, text)
    return 0


def report(
    rolled: float, events: list[dict[str, Any]], mark: float, upgraded: float, text: str
) -> None:
    # the replacement's own events: the upgrade after it touches the same nodes
    done = [
        e for e in events if e["outcome"] == "finished" and mark <= e["started_at"] < mark + rolled
    ]
    new_nodes = {f"benchroll-workers-{i}" for i in (3, 4, 5)}
    # each new node's own steps run partly side by side (its bundle is sent while its OS is
    # prepared): a node needed the span from its first step's start to its last one's end
    joins = 0.0
    for node in new_nodes:
        own = [e for e in done if e["subject"] == node and not e["step"].startswith("apply ")]
        if own:
            joins += max(e["started_at"] + e["duration"] for e in own) - min(
                e["started_at"] for e in own
            )
    removals = sum(e["duration"] for e in done if e["step"] == "remove")
    # the kubelet and the CNI of a joined node starting until the Node is Ready: the node's
    # own time, waited for by the cluster's Ready check
    ready = sum(e["duration"] for e in done if e["subject"] == "cluster" and e["step"] == "ready")
    nodes = joins + removals + ready
    overhead = (rolled - nodes) / nodes if nodes else float("nan")
    verdict = "meets" if overhead < TARGET_OVERHEAD else "misses"
    print("== rolling replacement of a pool of 3 workers (surge 1, one at a time)")
    print(f"{'what':<44} {'seconds':>8}")
    print(f"{'apply, total':<44} {rolled:>8.1f}")
    print(f"{'  the new nodes phases (3 joins)':<44} {joins:>8.1f}")
    print(f"{'  the old nodes removals (3 drains, resets)':<44} {removals:>8.1f}")
    print(f"{'  the new nodes turning Ready (kubelet, CNI)':<44} {ready:>8.1f}")
    print(f"{'  what the nodes needed, together':<44} {nodes:>8.1f}")
    print(
        f"clusterdeck adds {rolled - nodes:.1f} s = {overhead:.0%} "
        f"(target < {TARGET_OVERHEAD:.0%}: {verdict} it)"
    )
    print("\n   the apply's batches (its journal), and the node phases inside each:")
    batches = [e for e in done if e["step"] in ("apply add", "apply remove")]
    for batch in batches:
        inside = [
            e
            for e in done
            if e is not batch
            and e["started_at"] >= batch["started_at"]
            and e["started_at"] < batch["started_at"] + batch["duration"]
        ]
        phases = sum(
            e["duration"]
            for e in inside
            if e["subject"] in new_nodes and not e["step"].startswith("apply ")
        )
        kind = batch["step"].removeprefix("apply ")
        print(
            f"   {kind:<6} {batch['subject']:<24} {batch['duration']:>6.1f} s "
            f"(new node steps, summed {phases:.1f} s)"
        )
    gap = re.search(r"longest unanswered (\d+\.\d) s \((\d+) probes\)", text)
    print(f"\n== upgrade {OLD} -> {NEW} of 3 control planes + 3 workers: {upgraded:.1f} s")
    if gap:
        print(
            f"longest time the API through the VIP went unanswered: {gap.group(1)} s over "
            f"{gap.group(2)} probes (target with HA: < 5 s)"
        )


if __name__ == "__main__":
    sys.exit(main())
