"""Stateless nodes on real Kubernetes: 3 control planes behind a VIP and 2 workers, PXE-booted
in the lab from what ``pxe render`` wrote, all at once, with nothing pushed over SSH.

- exactly one node ran ``kubeadm init`` (the shared directory's init lease has one holder and
  one generation), and every node joined and turned Ready; the time to that is printed;
- etcd has 3 members, and the join material in the shared directory is root's only.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.agent import boot, material
from clusterdeck.coordination import SharedDirectory, reports
from tests.e2e import cluster as real
from tests.e2e.client import cli
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
  auth: {{privateKey: {key}, username: {user}}}
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
    state: Path  # the operator's state store, where pxe render recorded the environment
    home: Path
    endpoint: str  # the API through the VIP


def _addresses(hosts: list[LabHost]) -> str:
    return ", ".join(f"{{address: {h.address}}}" for h in hosts)


def endpoint(spec: Path) -> str:
    """The API's URL through the VIP, as the plan gives it for the file."""
    from clusterdeck import api
    from clusterdeck.spec.loader import load_file

    return api.plan(load_file(spec))[1].endpoint.url()


def _kubeconfig(host: LabHost, home: Path, server: str) -> Path | None:
    """A control plane's admin.conf, pointed at ``server`` (on the node it names 127.0.0.1
    once the join or init is done)."""
    res = host.exec(["cat", "/etc/kubernetes/admin.conf"], check=False)
    if res.returncode != 0 or "server:" not in res.stdout:
        return None
    path = home / "admin.conf"
    path.write_text(re.sub(r"(?m)^(\s*server:).*$", rf"\1 {server}", res.stdout))
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
            cps=_addresses(hosts[:3]),
            workers=_addresses(hosts[3:]),
            vip=vip,
            bundle=bundle,
            key=lab.client_key,
            user=hosts[0].user,
        )
    )
    tree = home / "tree"
    state = home / "state.db"
    res = cli(state, "pxe", "render", "-f", str(spec), "-d", str(tree), timeout=300)
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
                path = _kubeconfig(host, home, endpoint(spec))
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
    yield Booted(
        hosts, tree, pxe.shared_dir(lab) / "stl", kubectl, seconds, state, home, endpoint(spec)
    )
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


def test_every_node_resolves_the_api_name_and_the_node_names(booted: Booted) -> None:
    entries = (booted.tree / "overlay/etc/clusterdeck/hosts").read_text().splitlines()
    assert len(entries) == 6  # the VIP's name and the five nodes'
    for host in booted.hosts:
        lines = host.exec(["cat", "/etc/hosts"]).stdout.splitlines()
        assert set(entries) <= set(lines), host.name


def _live(booted: Booted) -> dict[str, Any]:
    res = cli(booted.state, "status", "stl", "--live", "-o", "json", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    view: dict[str, Any] = json.loads(res.stdout)
    return view


def test_get_kubeconfig_and_status_live_work_for_the_rendered_environment(booted: Booted) -> None:
    path = booted.home / "user.conf"
    res = cli(booted.state, "get", "kubeconfig", "stl", "-k", str(path), timeout=120)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mine = real.Kubectl(booted.kubectl.binary, path)
    assert mine.run("get", "--raw", "/readyz").strip() == "ok"
    view = _live(booted)
    assert view["api"]["healthy"] is True
    assert len(view["nodes"]) == 5 and all(n["ready"] for n in view["nodes"])
    rows = view["stateless"]["nodes"]
    assert {r["state"] for r in rows} <= {"joined", "initialised"}, rows
    assert all(r["boots"] == 1 and r["refusal"] is None for r in rows)


def _coordinator(booted: Booted) -> SharedDirectory:
    return SharedDirectory(booted.shared)


def _report(booted: Booted, name: str) -> reports.Report:
    report = reports.read(_coordinator(booted), name)
    assert report is not None, f"{name} has no report in {booted.shared}"
    return report


def _node(booted: Booted, name: str) -> dict[str, Any] | None:
    res = booted.kubectl.run("get", "node", name, "-o", "json", "--ignore-not-found", check=False)
    return json.loads(res) if res.strip() else None


def _is_ready(node: dict[str, Any] | None) -> bool:
    if node is None:
        return False
    conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def _members(host: LabHost, *, check: bool = True) -> dict[str, int]:
    """etcd's members (name → ID), asked on ``host`` itself with its health-check certificate;
    with ``check=False`` an empty answer when etcd does not answer (yet)."""
    res = host.exec(
        [
            "curl", "--silent", "--fail", "--max-time", "10",
            "--cacert", "/etc/kubernetes/pki/etcd/ca.crt",
            "--cert", "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key", "/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "-X", "POST", "-d", "{}", "https://127.0.0.1:2379/v3/cluster/member/list",
        ],
        check=False,
    )  # fmt: skip
    if not check and res.returncode != 0:
        return {}
    assert res.returncode == 0, f"etcd on {host.name}: {res.stderr}"
    return {m.get("name", ""): int(m["ID"]) for m in json.loads(res.stdout)["members"]}


def _wait(what: str, check: Callable[[], Any], booted: Booted, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f} s\n{_logs(booted.hosts)}")


def _journal(host: LabHost) -> str:
    res = host.exec(
        ["journalctl", "-u", "clusterdeck-agent", "--no-pager", "-o", "cat"], check=False
    )
    return res.stdout


def _name(booted: Booted, host: LabHost) -> str:
    return pxe.node_for(booted.tree, host)


def test_a_rebooted_worker_rejoins_under_its_name_with_renewed_join_material(
    lab: Lab, booted: Booted
) -> None:
    host = booted.hosts[3]
    name = _name(booted, host)
    old = _node(booted, name)
    assert _is_ready(old) and old is not None
    coord = _coordinator(booted)
    before = coord.fetch(material.NAME)
    assert before is not None
    # the material is gone (as if it had expired): the steward must make new material
    (booted.shared / "secrets" / material.NAME).unlink()
    started = time.monotonic()
    pxe.reboot(lab, host, booted.tree)
    _wait(
        f"{name} Ready as a new Node object, labelled by the steward",
        lambda: (
            (n := _node(booted, name)) is not None
            and n["metadata"]["uid"] != old["metadata"]["uid"]
            and _is_ready(n)
            and "node-role.kubernetes.io/worker" in n["metadata"]["labels"]
            and n
        ),
        booted,
    )
    print(f"\nworker {name} rebooted, rejoined and Ready in {time.monotonic() - started:.1f} s")
    renewed = coord.fetch(material.NAME)
    assert renewed is not None
    assert json.loads(renewed)["token"] != json.loads(before)["token"]
    report = _report(booted, name)
    assert report.boots == 2 and report.last_rejoin is not None and report.state == "joined"


def test_a_rebooted_control_plane_replaces_its_etcd_member_without_an_api_gap(
    lab: Lab, booted: Booted
) -> None:
    host = booted.hosts[1]
    name = _name(booted, host)
    other = booted.hosts[2]
    old = _members(other)
    assert len(old) == 3 and name in old
    answers: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        """The API through the VIP, as a client sees it: one answer every few tenths of a second."""
        while not stop.is_set():
            res = subprocess.run(
                [
                    str(booted.kubectl.binary), f"--kubeconfig={booted.kubectl.kubeconfig}",
                    "get", "--raw=/readyz", "--request-timeout=2s",
                ],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if res.returncode == 0:
                answers.append(time.monotonic())
            time.sleep(0.2)

    staying = [h for h in booted.hosts[:3] if h is not host]
    outs_before = {
        h.name: sum(f"HAProxy: server {name} set" in x for x in _journal(h).splitlines())
        for h in staying
    }
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(2)
    started = time.monotonic()
    pxe.reboot(lab, host, booted.tree)
    try:
        members = _wait(
            f"{name} back as a new etcd member, 3 members",
            lambda: (
                len(m := _members(other, check=False)) == 3
                and m.get(name, old[name]) != old[name]
                and m
            ),
            booted,
        )
        _wait(f"{name} Ready", lambda: _is_ready(_node(booted, name)), booted)
        print(f"\ncontrol plane {name} rebooted and rejoined in {time.monotonic() - started:.1f} s")
    finally:
        stop.set()
        prober.join()
    assert len(answers) > 10, f"the API answered only {len(answers)} times through the VIP"
    gaps = [b - a for a, b in pairwise(answers)]
    print(f"API answers through the VIP: {len(answers)}, longest gap {max(gaps):.2f} s")
    assert set(members) == set(old) and members[name] != old[name]
    assert max(gaps) <= 5.0, f"the API through the VIP did not answer for {max(gaps):.1f} s"

    # the others' HAProxy took its server out while it was no etcd member (the steward at once
    # after the removal), and every one put it back once it voted again
    def back_in() -> bool:
        taken_out = False
        for h in staying:
            lines = [x for x in _journal(h).splitlines() if f"HAProxy: server {name} set" in x]
            taken_out = taken_out or len(lines) > outs_before[h.name]
            if lines and lines[-1].endswith("(not a voting etcd member)"):
                return False  # still out
        return taken_out

    _wait(f"{name}'s HAProxy server out and back in", back_in, booted, timeout=60)
    report = _report(booted, name)
    assert report.boots == 2 and report.last_rejoin is not None


def test_with_two_control_planes_down_a_rebooted_one_refuses_and_removes_nothing(
    lab: Lab, booted: Booted, tmp_path: Path
) -> None:
    first, second, live = booted.hosts[:3]
    before = _members(live)
    pxe.stop(lab, first)
    pxe.stop(lab, second)
    name = _name(booted, first)
    pxe.boot(lab, [first], booted.tree)
    report = _wait(
        f"{name} to report a refusal",
        lambda: (r := _report(booted, name)).state == "refused" and r,
        booted,
        timeout=240,
    )
    assert "quorum" in (report.refusal or ""), report.refusal
    assert _members(live) == before  # nothing removed
    assert any(e["kind"] == "refused" for e in report.events)
    # the API is down (1 of 3 etcd members): status still tells, from the nodes' reports
    view = _live(booted)
    assert view["api"]["healthy"] is False
    (row,) = [r for r in view["stateless"]["nodes"] if r["name"] == name]
    assert row["state"] == "refused" and "quorum" in row["refusal"]
    text = cli(booted.state, "status", "stl", "--live", timeout=120)
    assert text.returncode == 1 and f"{name} refused to rejoin" in text.stdout


def test_reset_with_the_leader_killed_mid_init_makes_the_cluster_anew(
    lab: Lab, booted: Booted
) -> None:
    """Every node off, the shared state cleared, all booted at once; the node elected to init
    is powered off in the middle of kubeadm init: another takes over and completes a new
    cluster, and the killed one, booted again, joins it."""
    live = booted.hosts[2]  # up since the cold start (the API may be down: quorum lost)
    old_ca = live.exec(["cat", "/etc/kubernetes/pki/ca.crt"]).stdout
    assert "BEGIN CERTIFICATE" in old_ca
    for host in booted.hosts:
        pxe.stop(lab, host)
    shutil.rmtree(booted.shared)
    pxe.boot(lab, booted.hosts, booted.tree)
    coord = _coordinator(booted)
    leader = _wait(
        "a node initialising",
        lambda: (
            (lease := coord.leader("init")) is not None
            and (r := reports.read(coord, lease.holder)) is not None
            and r.state == "initialising"
            and lease.holder
        ),
        booted,
        timeout=180,
    )
    time.sleep(5)  # well inside kubeadm init (it takes tens of seconds here)
    assert coord.get(boot.INITIALIZED) is None, "init finished before the leader could be killed"
    (killed,) = [h for h in booted.hosts if _name(booted, h) == leader]
    pxe.stop(lab, killed)
    initialized = _wait(
        "another node to complete init",
        lambda: (raw := coord.get(boot.INITIALIZED)) is not None and json.loads(raw),
        booted,
        timeout=300,
    )
    assert initialized["by"] != leader
    pxe.boot(lab, [killed], booted.tree)
    kubectl = None
    for host in booted.hosts[:3]:
        if host is not killed and (path := _kubeconfig(host, booted.home, booted.endpoint)):
            kubectl = real.Kubectl(booted.kubectl.binary, path)
            break
    assert kubectl is not None
    names = {_name(booted, h) for h in booted.hosts}
    deadline = time.monotonic() + 420
    while not (_ready(kubectl) >= names):
        if time.monotonic() > deadline:
            state = killed.exec(
                ["systemctl", "status", "--no-pager", "clusterdeck-agent"], check=False
            )
            journal = killed.exec(["journalctl", "--no-pager", "-n", "60"], check=False)
            pytest.fail(
                f"not Ready in the new cluster: {sorted(names - _ready(kubectl))}; the killed "
                f"leader {leader} ({killed.name}):\n{state.stdout}{state.stderr}\n"
                f"{journal.stdout[-6000:]}{journal.stderr}\n{_logs(booted.hosts)}"
            )
        time.sleep(2)
    new_ca = live.exec(["cat", "/etc/kubernetes/pki/ca.crt"]).stdout
    assert "BEGIN CERTIFICATE" in new_ca and new_ca != old_ca  # a new cluster, not the old one
    leases = sorted((booted.shared / "leases" / "init").glob("[0-9]*"))
    assert len(leases) == 2  # the killed leader's claim, and the one that took over
    other = next(h for h in booted.hosts[:3] if h is not killed)
    assert len(_members(other)) == 3
