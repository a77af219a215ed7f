"""Stateless cold start: 3 control planes and 2 workers PXE-booted at once, each to Ready.

Nothing is simulated: the lab boots full hosts (systemd-nspawn machines) from the pristine
image plus what ``clusterdeck pxe render`` wrote, the agents elect the node that runs
``kubeadm init`` through the shared directory, and the bundle is the one
``scripts/kubernetes-artifacts.sh`` builds from the Go modules. The clock starts when the
machines are started and stops, per node, when its Node first reports Ready. Where the time
goes comes from each agent's journal: every phase logs ``phase NAME: done in S s``. The
reference design's figure for the whole cluster is 90 s.

Run as root on the lab machine:

    .venv/bin/python bench/boot.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e import cluster as real  # noqa: E402
from tests.e2e.test_stateless import SPEC, _addresses, _kubeconfig, endpoint  # noqa: E402
from tests.lab import full, pxe  # noqa: E402
from tests.lab.light import Lab, LabHost  # noqa: E402

CLI = Path(sys.executable).with_name("clusterdeck")
REFERENCE = 90.0
DONE = re.compile(r"^(?P<at>\d+\.\d+) \S+ \S+: phase (?P<phase>\S+): done in (?P<s>[\d.]+) s$")


def ready_times(kubectl: real.Kubectl) -> dict[str, float]:
    res = subprocess.run(
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        return {}
    found = {}
    for node in json.loads(res.stdout)["items"]:
        for c in node["status"].get("conditions", []):
            if c["type"] == "Ready" and c["status"] == "True":
                found[node["metadata"]["name"]] = time.time()
    return found


def phases(host: LabHost) -> list[tuple[str, float, float]]:
    """(phase, finished at, seconds) from the host's agent journal."""
    res = host.exec(
        ["journalctl", "-u", "clusterdeck-agent", "-o", "short-unix", "--no-pager"], check=False
    )
    rows = []
    for line in res.stdout.splitlines():
        match = DONE.match(line.strip())
        if match:
            rows.append((match["phase"], float(match["at"]), float(match["s"])))
    return rows


def main() -> int:
    bundle = real.build_bundle()
    lab = Lab.create()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            hosts = full.reserve_full_hosts(lab, 5)
            spec = home / "bench.yaml"
            spec.write_text(
                SPEC.format(
                    cps=_addresses(hosts[:3]),
                    workers=_addresses(hosts[3:]),
                    vip=str(lab.network.broadcast_address - 5),
                    bundle=bundle,
                    key=lab.client_key,
                    user=hosts[0].user,
                )
            )
            tree = home / "tree"
            subprocess.run(
                [
                    str(CLI),
                    "-q",
                    "--state",
                    str(home / "state.db"),
                    "pxe",
                    "render",
                    "-f",
                    str(spec),
                    "-d",
                    str(tree),
                ],
                check=True,
                capture_output=True,
            )
            started = time.time()
            pxe.boot(lab, hosts, tree)
            names = {pxe.node_for(tree, h): h for h in hosts}
            ready: dict[str, float] = {}
            kubectl = None
            while len(ready) < len(names) and time.time() - started < 600:
                if kubectl is None:
                    for host in hosts[:3]:
                        if (path := _kubeconfig(host, home, endpoint(spec))) is not None:
                            kubectl = real.Kubectl(bundle / "bin" / "kubectl", path)
                            break
                if kubectl is not None:
                    for name, at in ready_times(kubectl).items():
                        ready.setdefault(name, at)
                time.sleep(0.5)
            print("\n== stateless cold start: 3 control planes + 2 workers, booted at once")
            for name in sorted(names):
                at = ready.get(name)
                shown = f"{at - started:6.1f} s" if at else "not Ready after 600 s"
                print(f"  {name:<16} boot -> Ready {shown}")
            if len(ready) == len(names):
                whole = max(ready.values()) - started
                verdict = "meets" if whole < REFERENCE else "misses"
                print(
                    f"whole cluster, boot -> every node Ready: {whole:.1f} s "
                    f"(reference design: < {REFERENCE:.0f} s; {verdict} it)"
                )
            by_phase: dict[str, list[float]] = defaultdict(list)
            print("where the time goes (phase finished at, s since boot; its own length):")
            for name, host in sorted(names.items()):
                for phase, at, seconds in phases(host):
                    by_phase[phase].append(seconds)
                    print(f"  {name:<16} {phase:<28} {at - started:6.1f} ({seconds:5.1f})")
            print(f"{'phase':<28} {'nodes':>5} {'max s':>7} {'sum s':>7}")
            for phase, durations in sorted(by_phase.items(), key=lambda kv: -max(kv[1])):
                print(
                    f"{phase:<28} {len(durations):>5} {max(durations):>7.1f} {sum(durations):>7.1f}"
                )
            for host in hosts:
                pxe.stop(lab, host)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
