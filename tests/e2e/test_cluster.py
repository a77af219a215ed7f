"""End to end: ``clusterdeck create`` brings up Kubernetes on full lab hosts over real SSH.

The hosts are systemd-nspawn machines (real systemd, sshd, bash, containerd, keepalived,
HAProxy, sysctls); kubeadm, kubelet, kubectl and the API server are the doubles of
``tests/doubles``, which record every run. The CLI runs as a user runs it, in a subprocess
with its own state file. What is checked is what a user would see, or what the doubles saw
happen on the machines: init once, control-plane joins one at a time with the certificate key,
workers joining together, labels and taints, a working kubeconfig, events for every phase,
re-runs that change nothing, and a create killed halfway that a re-run completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.doubles import records
from tests.e2e import cluster as lab_cluster
from tests.e2e.client import api_get, cli, command, env, load_kubeconfig
from tests.lab import full
from tests.lab.light import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VERSION = "v1.33.4"


@pytest.fixture(scope="module", autouse=True)
def _full_tools() -> None:
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)


@dataclass
class Created:
    cluster: lab_cluster.Cluster
    spec: Path
    state: Path
    kubeconfig: Path
    rendered: Path
    name: str
    result: subprocess.CompletedProcess[str]
    seconds: float


def _hosts(items: list[Any]) -> str:
    return ", ".join(f"{{address: {h.address}}}" for h in items)


def _phases(rendered: Path) -> dict[str, list[str]]:
    nodes: dict[str, list[str]] = json.loads((rendered / "bundle.json").read_text())["nodes"]
    return nodes


def _events(state: Path, name: str) -> list[dict[str, Any]]:
    res = cli(state, "events", name, "-o", "json")
    assert res.returncode == 0, res.stderr
    rows: list[dict[str, Any]] = json.loads(res.stdout)
    return rows


def _init_runs(runs: list[records.Run]) -> list[records.Run]:
    return [r for r in records.kubeadm(runs, "init") if r.words[1:2] != ["phase"]]


def _live(state: Path, name: str) -> dict[str, Any]:
    res = cli(state, "status", name, "--live", "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    view: dict[str, Any] = json.loads(res.stdout)
    return view


# ---------------------------------------------------------------------------------------------
# 3 control planes behind a keepalived VIP + HAProxy, 4 workers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ha(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Created]:
    home = tmp_path_factory.mktemp("ha")
    vip = str(lab.network.broadcast_address - 1)
    the_cluster = lab_cluster.boot(lab, 7, home / "cluster", VERSION)
    try:
        cps, workers = the_cluster.hosts[:3], the_cluster.hosts[3:]
        spec = home / "ha.yaml"
        spec.write_text(f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2eha}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: root}}
  cluster:
    controlPlane:
      dedicated: true
      hosts: [{_hosts(cps)}]
    workers:
      hosts: [{_hosts(workers)}]
      labels: {{site: rack-4}}
      taints: ["dedicated=batch:NoSchedule"]
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
  kubernetes: {{version: {VERSION}, cni: calico}}
""")
        state = home / "state.db"
        rendered = home / "rendered"
        review = cli(home / "review.db", "render", "-f", str(spec), "-d", str(rendered))
        assert review.returncode == 0, review.stderr
        kubeconfig = home / "admin.conf"
        started = time.monotonic()
        result = cli(state, "create", "-f", str(spec), "--yes", "-k", str(kubeconfig))
        seconds = time.monotonic() - started
        print(f"3+4 node create: {seconds:.1f} s")
        assert result.returncode == 0, result.stdout + result.stderr
        yield Created(the_cluster, spec, state, kubeconfig, rendered, "e2eha", result, seconds)
    finally:
        the_cluster.remove()


def test_init_runs_once_on_the_first_control_plane_with_the_rendered_config(ha: Created) -> None:
    runs = ha.cluster.runs()
    inits = _init_runs(runs)
    assert len(inits) == 1
    init = inits[0]
    assert init.host == ha.cluster.hosts[0].name and init.rc == 0
    assert init.extra["node"] == "e2eha-cp-0"
    reviewed = ha.rendered / "e2eha-cp-0" / "files" / "kubeadm-init.yaml"
    assert init.extra["config_sha256"] == hashlib.sha256(reviewed.read_bytes()).hexdigest()
    vip = str(ha.cluster.lab.network.broadcast_address - 1)
    assert init.extra["endpoint"] == f"{vip}:8443"
    # HA: certificates uploaded for the joining control planes, their key never printed
    assert "--upload-certs" in init.argv and "--skip-certificate-key-print" in init.argv
    assert "7 node(s) ready" in ha.result.stdout


def test_control_planes_join_one_at_a_time_with_the_certificate_key(ha: Created) -> None:
    runs = ha.cluster.runs()
    uploads = records.kubeadm(runs, "init", "phase", "upload-certs")
    tokens = records.kubeadm(runs, "token", "create")
    assert len(uploads) == 1 and len(tokens) == 1  # join material fetched once
    joins = [r for r in records.kubeadm(runs, "join") if r.extra.get("control_plane")]
    assert sorted(r.host for r in joins) == [h.name for h in ha.cluster.hosts[1:3]]
    assert all(r.rc == 0 for r in joins)
    assert all(
        r.extra["certificate_key_sha256"] == uploads[0].extra["certificate_key_sha256"]
        for r in joins
    )
    assert not joins[0].overlaps(joins[1]), "control planes joined at the same time"
    init = _init_runs(runs)[0]
    assert init.end is not None and all(j.start > init.end for j in joins)


def test_workers_join_together_as_soon_as_the_join_material_exists(ha: Created) -> None:
    runs = ha.cluster.runs()
    joins = [r for r in records.kubeadm(runs, "join") if not r.extra.get("control_plane")]
    assert sorted(r.host for r in joins) == [h.name for h in ha.cluster.hosts[3:]]
    assert all(r.rc == 0 and r.end is not None for r in joins)
    # all four were joining at one moment
    assert max(r.start for r in joins) < min(r.end for r in joins if r.end is not None)
    # and none waited for the control planes that were still joining
    last_cp_join = max(
        (r for r in records.kubeadm(runs, "join") if r.extra.get("control_plane")),
        key=lambda r: r.start,
    )
    assert max(r.start for r in joins) < last_cp_join.start
    token = records.kubeadm(runs, "token", "create")[0]
    assert token.end is not None and min(r.start for r in joins) > token.end


def test_labels_and_taints_are_as_the_topology_says(ha: Created) -> None:
    nodes = {
        item["metadata"]["name"]: item for item in api_get(ha.kubeconfig, "/api/v1/nodes")["items"]
    }
    assert sorted(nodes) == [f"e2eha-cp-{i}" for i in range(3)] + [
        f"e2eha-workers-{i}" for i in range(4)
    ]
    for name, node in nodes.items():
        labels = node["metadata"]["labels"]
        taints = [(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]]
        assert labels["clusterdeck.dev/managed"] == "true"
        if "-cp-" in name:  # dedicated control planes keep their taint
            assert "node-role.kubernetes.io/control-plane" in labels
            assert labels["clusterdeck.dev/pool"] == "control-plane"
            assert taints == [("node-role.kubernetes.io/control-plane", None, "NoSchedule")]
        else:
            assert labels["site"] == "rack-4" and labels["clusterdeck.dev/pool"] == "workers"
            assert "node-role.kubernetes.io/worker" in labels
            assert taints == [("dedicated", "batch", "NoSchedule")]


def test_kubeconfig_reaches_the_api_through_the_vip(ha: Created, tmp_path: Path) -> None:
    vip = str(ha.cluster.lab.network.broadcast_address - 1)
    for path in (ha.kubeconfig, tmp_path / "again.conf"):
        if path != ha.kubeconfig:
            res = cli(ha.state, "get", "kubeconfig", ha.name, "-k", str(path))
            assert res.returncode == 0, res.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        config = load_kubeconfig(path)
        assert config["clusters"][0]["cluster"]["server"] == f"https://{vip}:8443"
        assert api_get(path, "/readyz") == "ok"  # VIP -> HAProxy -> an API server, mTLS
    view = _live(ha.state, ha.name)
    assert view["api"]["healthy"] is True
    assert len(view["nodes"]) == 7
    assert all(n["ready"] and n["version"] == VERSION for n in view["nodes"])


def test_events_list_every_phase_of_every_node(ha: Created) -> None:
    rows = _events(ha.state, ha.name)
    done = {(r["subject"], r["step"]) for r in rows if r["outcome"] == "finished"}
    for node, phases in _phases(ha.rendered).items():
        for phase in phases:
            assert (node, phase) in done, f"no finished event for {node} {phase}"
    timed = [r for r in rows if r["outcome"] == "finished" and r["step"] == "kubeadm-init"]
    assert timed and timed[0]["duration"] > 0


def test_no_secret_reaches_the_store_the_logs_or_the_output(ha: Created) -> None:
    """Join tokens, the certificate key and private keys never land where clusterdeck writes."""
    key_hashes = {
        r.extra["certificate_key_sha256"]
        for r in ha.cluster.runs()
        if r.extra.get("certificate_key_sha256")
    }
    assert key_hashes, "the doubles saw a certificate key, so there was one to leak"
    places = {
        "state store": ha.state.read_bytes(),
        "CLI output": (ha.result.stdout + ha.result.stderr).encode(),
    }
    for wal in ha.state.parent.glob(ha.state.name + "-*"):
        places[wal.name] = wal.read_bytes()
    logs = ha.state.parent / "logs"
    for path in [*logs.rglob("*"), *ha.rendered.rglob("*")]:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert any("logs" in name for name in places), "node logs were written and are checked"
    token = re.compile(rb"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
    hex64 = re.compile(rb"\b[0-9a-f]{64}\b")
    for name, data in places.items():
        assert not token.search(data), f"a bootstrap token in {name}"
        for candidate in hex64.findall(data):
            assert hashlib.sha256(candidate).hexdigest() not in key_hashes, (
                f"the certificate key in {name}"
            )
        assert b"PRIVATE KEY" not in data and b"client-key-data" not in data, (
            f"private key material in {name}"
        )


def test_a_second_create_changes_nothing(ha: Created) -> None:
    before = ha.cluster.runs()
    started = time.monotonic()
    res = cli(ha.state, "create", "-f", str(ha.spec), "--yes")
    seconds = time.monotonic() - started
    print(f"second create of 3+4 nodes: {seconds:.1f} s")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Nothing to create" in res.stderr
    new = ha.cluster.runs()[len(before) :]
    assert [r for r in new if r.program == "kubeadm"] == []  # no init, join, token, certs
    writes = [r for r in new if r.program == "kubectl" and r.words[:1] in (["taint"], ["apply"])]
    assert writes == []  # taints present, CNI manifest already applied


# ---------------------------------------------------------------------------------------------
# a single node: killed halfway through kubeadm init, then run again
# ---------------------------------------------------------------------------------------------
def test_single_node_create_killed_during_init_completes_on_rerun(lab: Lab, tmp_path: Path) -> None:
    the_cluster = lab_cluster.boot(lab, 1, tmp_path / "cluster", VERSION)
    try:
        host = the_cluster.hosts[0]
        spec = tmp_path / "solo.yaml"
        spec.write_text(f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2esolo}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: root}}
  cluster:
    controlPlane:
      hosts: [{{address: {host.address}}}]
  kubernetes: {{version: {VERSION}, cni: flannel, podCidr: 10.244.0.0/16}}
""")
        state = tmp_path / "state.db"
        kubeconfig = tmp_path / "solo.conf"
        args = ["create", "-f", str(spec), "--yes", "-k", str(kubeconfig)]
        first = subprocess.Popen(
            command(state, *args),
            env=env(state),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not _init_runs(the_cluster.runs()):
                assert first.poll() is None, "create ended before kubeadm init started"
                assert time.monotonic() < deadline, "kubeadm init never started"
                time.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.wait()
        at_kill = _init_runs(the_cluster.runs())
        assert len(at_kill) == 1 and at_kill[0].end is None  # killed halfway through init
        assert not kubeconfig.exists()

        rerun = cli(state, *args)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        inits = _init_runs(the_cluster.runs())
        assert len(inits) == 1 and inits[0].rc == 0  # the interrupted init finished; no second
        assert records.kubeadm(the_cluster.runs(), "join") == []
        assert records.kubeadm(the_cluster.runs(), "token", "create") == []

        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        server = load_kubeconfig(kubeconfig)["clusters"][0]["cluster"]["server"]
        assert server == f"https://{host.address}:6443"
        view = _live(state, "e2esolo")
        (node,) = view["nodes"]
        assert node["name"] == "e2esolo-cp-0" and node["ready"]
        assert node["roles"] == ["control-plane"] and node["taints"] == []  # untainted
        rows = _events(state, "e2esolo")
        done = {r["step"] for r in rows if r["outcome"] == "finished"}
        for phase in (
            "os-prep",
            "containerd",
            "kube-packages",
            "kubeadm-init",
            "cni",
            "labels-and-taints",
        ):
            assert phase in done
    finally:
        the_cluster.remove()
