"""Stateless nodes on real Kubernetes: 3 control planes behind a VIP and 2 workers, PXE-booted
in the lab from what ``pxe render`` wrote, all at once, with nothing pushed over SSH.

- exactly one node ran ``kubeadm init`` (the shared directory's init lease has one holder and
  one generation), and every node joined and turned Ready; the time to that is printed;
- etcd has 3 members, and the join material in the shared directory is root's only.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import cluster as real
from tests.e2e.client import CLI
from tests.e2e.test_cluster import _full_tools
from tests.lab import full, pxe
from tests.lab.light import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]
__all__ = ["_full_tools"]

SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: stl}}
spec:
  provider: ssh
  cluster:
    controlPlane:
      hosts: [{cps}]
    workers:
      hosts: [{workers}]
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
  kubernetes: {{version: v1.37.2, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
  ephemeral: {{sharedDirectory: /var/lib/clusterdeck/shared, leaseSeconds: 20}}
"""


@dataclass
class Booted:
    hosts: list[LabHost]
    tree: Path
    shared: Path
    kubectl: real.Kubectl
    seconds: float


def _addresses(hosts: list[LabHost]) -> str:
    return ", ".join(f"{{address: {h.address}}}" for h in hosts)


def _kubeconfig(host: LabHost, home: Path) -> Path | None:
    res = host.exec(["cat", "/etc/kubernetes/admin.conf"], check=False)
    if res.returncode != 0 or "server:" not in res.stdout:
        return None
    path = home / "admin.conf"
    path.write_text(res.stdout)
    path.chmod(0o600)
    return path


def _ready(kubectl: real.Kubectl) -> set[str]:
    res = subprocess.run(
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        return set()
    ready = set()
    for node in json.loads(res.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        if conditions.get("Ready") == "True":
            ready.add(node["metadata"]["name"])
    return ready


def _logs(hosts: list[LabHost]) -> str:
    out = []
    for host in hosts:
        res = host.exec(
            ["journalctl", "-u", "clusterdeck-agent", "--no-pager", "-n", "25"], check=False
        )
        out.append(f"--- {host.name}\n{res.stdout[-2500:]}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def booted(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    bundle = real.build_bundle()
    home = tmp_path_factory.mktemp("stateless")
    hosts = full.reserve_full_hosts(lab, 5)
    vip = str(lab.network.broadcast_address - 5)
    spec = home / "stl.yaml"
    spec.write_text(
        SPEC.format(
            cps=_addresses(hosts[:3]), workers=_addresses(hosts[3:]), vip=vip, bundle=bundle
        )
    )
    tree = home / "tree"
    res = subprocess.run(
        [str(CLI), "pxe", "render", "-f", str(spec), "-d", str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    started = time.monotonic()
    pxe.boot(lab, hosts, tree)
    names = {f"stl-cp-{i}" for i in range(3)} | {f"stl-workers-{i}" for i in range(2)}
    kubectl = None
    deadline = started + 600
    ready: set[str] = set()
    while time.monotonic() < deadline:
        if kubectl is None:
            for host in hosts[:3]:
                path = _kubeconfig(host, home)
                if path is not None:
                    kubectl = real.Kubectl(bundle / "bin" / "kubectl", path)
                    break
        if kubectl is not None:
            ready = _ready(kubectl)
            if ready >= names:
                break
        time.sleep(2)
    else:
        pytest.fail(f"not Ready after 600 s: {sorted(names - ready)}\n{_logs(hosts)}")
    seconds = time.monotonic() - started
    print(f"\ncold start of 3+2 stateless nodes, booted at once, all Ready: {seconds:.1f} s")
    assert kubectl is not None
    yield Booted(hosts, tree, pxe.shared_dir(lab) / "stl", kubectl, seconds)
    for host in hosts:
        pxe.stop(lab, host)


def test_exactly_one_init_and_every_node_ready(booted: Booted) -> None:
    leases = sorted((booted.shared / "leases" / "init").glob("[0-9]*"))
    assert len(leases) == 1, [p.name for p in leases]  # one claim, never taken over
    initialized = json.loads((booted.shared / "records" / "initialized").read_text())
    inits = [
        h.name
        for h in booted.hosts[:3]
        if h.exec(["test", "-f", "/var/lib/clusterdeck/done/kubeadm-init"], check=False).returncode
        == 0
    ]
    assert len(inits) == 1, inits
    assert initialized["by"].startswith("stl-cp-")


def test_join_material_is_root_only_and_etcd_has_three_members(booted: Booted) -> None:
    secrets = booted.shared / "secrets"
    assert secrets.stat().st_mode & 0o077 == 0
    for path in secrets.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    pods = booted.kubectl.json("-n", "kube-system", "get", "pods", "-l", "component=etcd")
    assert len(pods["items"]) == 3
