"""Day-2 on real Kubernetes: ``apply`` changes running ssh clusters on full lab hosts.

Real kubeadm, kubelet, etcd and Flannel. One cluster of a control plane and two workers:
- a PodDisruptionBudget that allows no disruption protects a pod on the worker to remove: apply
  waits out its drain timeout, fails naming that budget, and leaves the node cordoned and in
  the cluster; with the budget gone, the same apply drains, deletes the Node, resets the host
  and stops its kubelet, and the store forgets it;
- the host comes back and joins under the name after the highest recorded; removing the first
  host of the pool removes that host's node and renames nothing; a pool is added, then removed.
Another cluster starts as one control plane behind a keepalived VIP and grows to three while a
probe asks the API through the VIP: the endpoint stays, etcd has three members.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION
from tests.e2e import cluster as real
from tests.e2e.client import cli
from tests.e2e.test_cluster import Created, _create, _full_tools, _hosts, _nodes_ready
from tests.lab import full
from tests.lab.light import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]
__all__ = ["_full_tools"]  # the shared autouse fixture: skip without the full-host tools

SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2eday2}}
spec:
  provider: ssh
  auth: {{privateKey: {key}, username: {user}}}
  cluster:
    controlPlane:
      hosts: [{cp}]
    workers:
      hosts: [{workers}]
{pools}  kubernetes: {{version: {version}, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


@pytest.fixture(scope="module")
def three(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Created, Path]]:
    """1 control plane + 2 workers; ``smaller.yaml`` drops the second worker."""
    bundle = real.build_bundle()
    home = tmp_path_factory.mktemp("day2")
    hosts = real.boot(lab, 3)
    try:
        created = _create(
            home, "e2eday2", _day2_spec(lab, hosts, hosts[1:3], bundle), hosts, bundle
        )
        real.import_test_image(hosts, real.test_image(bundle))
        smaller = home / "smaller.yaml"
        smaller.write_text(_day2_spec(lab, hosts, hosts[1:2], bundle))
        yield created, smaller
    finally:
        for host in hosts:
            lab.remove_host(host)


def _day2_spec(
    lab: Lab, hosts: list[LabHost], workers: list[LabHost], bundle: Path, pools: str = ""
) -> str:
    return SPEC.format(
        key=lab.client_key,
        user=hosts[0].user,
        cp=_hosts(hosts[:1]),
        workers=_hosts(workers),
        pools=pools,
        version=DEFAULT_KUBERNETES_VERSION,
        bundle=bundle,
    )


def _internal_ips(created: Created) -> dict[str, str]:
    return {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in _nodes_ready(created.kubectl).values()
    }


def _apply(created: Created, lab: Lab, path: Path, text: str) -> list[dict[str, str]]:
    """Write the file, check its plan as data, apply it; the plan's actions."""
    path.write_text(text)
    plan = cli(created.state, "apply", "-f", str(path), "-o", "json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    actions: list[dict[str, str]] = json.loads(plan.stdout)["actions"]
    done = cli(created.state, "apply", "-f", str(path), "--yes", timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    again = cli(created.state, "apply", "-f", str(path), "--yes")
    assert again.returncode == 0 and "No changes" in again.stderr, again.stderr[-2000:]
    return actions


def _protected_web(created: Created, node: str) -> None:
    pod = real.web_pod("x", node)["spec"]
    del pod["nodeName"]
    pod["nodeSelector"] = {"kubernetes.io/hostname": node}
    created.kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod},
            },
        }
    )
    created.kubectl.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        }
    )
    real.wait_for("the protected pod", lambda: real.pods_running(created.kubectl, "app=web"))


def test_scale_down_waits_for_a_blocking_budget_then_removes_the_node(
    three: tuple[Created, Path],
) -> None:
    created, smaller = three
    leaving = "e2eday2-workers-1"
    _protected_web(created, leaving)
    plan = cli(created.state, "apply", "-f", str(smaller), "-o", "json")
    assert plan.returncode == 0, plan.stderr
    assert '"target": "e2eday2-workers-1"' in plan.stdout and '"kind": "remove"' in plan.stdout

    started = time.monotonic()
    blocked = cli(created.state, "apply", "-f", str(smaller), "--drain-timeout", "15s", "--yes")
    waited = time.monotonic() - started
    assert blocked.returncode != 0
    assert "PodDisruptionBudget default/web-pdb" in blocked.stderr, blocked.stderr[-2000:]
    assert "stays cordoned" in blocked.stderr
    assert waited >= 15  # it waited for the drain, then gave up
    node = created.kubectl.json("get", "node", leaving)
    assert node["spec"].get("unschedulable") is True  # cordoned, not removed
    assert real.pods_running(created.kubectl, "app=web")  # the protected pod still runs

    created.kubectl.run("delete", "pdb", "web-pdb")
    done = cli(created.state, "apply", "-f", str(smaller), "--drain-timeout", "60s", "--yes")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    nodes = _nodes_ready(created.kubectl)
    assert sorted(nodes) == ["e2eday2-cp-0", "e2eday2-workers-0"]
    host = created.hosts[2]
    kubelet = host.exec(["systemctl", "is-active", "kubelet"], check=False)
    assert kubelet.stdout.strip() != "active"
    assert host.exec(["test", "-e", "/etc/kubernetes/kubelet.conf"], check=False).returncode != 0
    again = cli(created.state, "apply", "-f", str(smaller), "--yes")
    assert again.returncode == 0 and "No changes" in again.stderr
    status = cli(created.state, "status", "e2eday2", "-o", "json")
    assert leaving not in status.stdout


def test_a_host_that_comes_back_joins_under_the_next_name(
    three: tuple[Created, Path], lab: Lab
) -> None:
    created, smaller = three
    hosts = created.hosts
    text = _day2_spec(lab, hosts, hosts[1:3], real.build_bundle())
    actions = _apply(created, lab, smaller.with_name("back.yaml"), text)
    assert [(a["kind"], a["target"], a["reason"]) for a in actions] == [
        ("add", "e2eday2-workers-1", "pool workers grows to 2")
    ]
    assert _internal_ips(created) == {
        "e2eday2-cp-0": hosts[0].address,
        "e2eday2-workers-0": hosts[1].address,
        "e2eday2-workers-1": hosts[2].address,
    }


def test_removing_the_first_host_of_a_pool_renames_nothing(
    three: tuple[Created, Path], lab: Lab
) -> None:
    created, smaller = three
    hosts = created.hosts
    text = _day2_spec(lab, hosts, hosts[2:3], real.build_bundle())
    actions = _apply(created, lab, smaller.with_name("first-gone.yaml"), text)
    assert [(a["kind"], a["target"]) for a in actions] == [("remove", "e2eday2-workers-0")]
    assert f"host {hosts[1].address} left pool workers" in actions[0]["reason"]
    assert _internal_ips(created) == {
        "e2eday2-cp-0": hosts[0].address,
        "e2eday2-workers-1": hosts[2].address,
    }


def test_a_pool_is_added_then_removed(three: tuple[Created, Path], lab: Lab) -> None:
    created, smaller = three
    hosts = created.hosts
    bundle = real.build_bundle()
    pool = (
        "    nodePools:\n"
        f"      - {{name: extra, labels: {{tier: extra}}, hosts: [{_hosts(hosts[1:2])}]}}\n"
    )
    added = _apply(
        created,
        lab,
        smaller.with_name("pool.yaml"),
        _day2_spec(lab, hosts, hosts[2:3], bundle, pool),
    )
    assert [(a["kind"], a["target"], a["reason"]) for a in added] == [
        ("add", "e2eday2-extra-0", "pool extra added")
    ]
    node = created.kubectl.json("get", "node", "e2eday2-extra-0")
    assert node["metadata"]["labels"]["tier"] == "extra"
    assert node["metadata"]["labels"]["clusterdeck.dev/pool"] == "extra"

    removed = _apply(
        created, lab, smaller.with_name("no-pool.yaml"), _day2_spec(lab, hosts, hosts[2:3], bundle)
    )
    assert [(a["kind"], a["target"], a["reason"]) for a in removed] == [
        ("remove", "e2eday2-extra-0", "pool removed from the file")
    ]
    assert sorted(_nodes_ready(created.kubectl)) == ["e2eday2-cp-0", "e2eday2-workers-1"]
    kubelet = hosts[1].exec(["systemctl", "is-active", "kubelet"], check=False)
    assert kubelet.stdout.strip() != "active"


# ---------------------------------------------------------------------------------------------
# the control plane grows from 1 to 3 behind the VIP it had from the first day
# ---------------------------------------------------------------------------------------------
GROWING = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2egrow}}
spec:
  provider: ssh
  auth: {{privateKey: {key}, username: {user}}}
  cluster:
    controlPlane:
      hosts: [{cps}]
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
  kubernetes: {{version: {version}, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


class Probe:
    """Asks the API through the endpoint every 0.2 s; the longest time it went unanswered."""

    def __init__(self, kubectl: real.Kubectl) -> None:
        self.kubectl = kubectl
        self.stop = threading.Event()
        self.longest = 0.0
        self.asked = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ok(self) -> bool:
        out = self.kubectl.run("get", "--raw", "/readyz", "--request-timeout=2s", check=False)
        return out.strip() == "ok"

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self.stop.is_set():
            self.asked += 1
            if self._ok():
                last_ok = time.monotonic()
            else:
                self.longest = max(self.longest, time.monotonic() - last_ok)
            time.sleep(0.2)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def growing(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Created, str]]:
    bundle = real.build_bundle()
    home = tmp_path_factory.mktemp("grow")
    vip = str(lab.network.broadcast_address - 2)
    hosts = real.boot(lab, 4)  # the fourth takes a control plane's place
    try:

        def spec(cps: list[LabHost]) -> str:
            return GROWING.format(
                key=lab.client_key,
                user=hosts[0].user,
                cps=_hosts(cps),
                vip=vip,
                version=DEFAULT_KUBERNETES_VERSION,
                bundle=bundle,
            )

        created = _create(home, "e2egrow", spec(hosts[:1]), hosts[:1], bundle)
        created.hosts = hosts
        (home / "three.yaml").write_text(spec(hosts[:3]))
        (home / "swapped.yaml").write_text(spec([hosts[0], hosts[3], hosts[2]]))
        yield created, vip
    finally:
        full.stop_machines_in([h.netns for h in hosts])
        for host in hosts:
            lab.remove_host(host)


def test_the_control_plane_grows_from_one_to_three_behind_the_same_endpoint(
    growing: tuple[Created, str], lab: Lab
) -> None:
    created, vip = growing
    server = f"https://{vip}:8443"
    assert server in created.kubeconfig.read_text()
    three = created.spec.with_name("three.yaml")
    plan = cli(created.state, "apply", "-f", str(three), "-o", "json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert [a["target"] for a in json.loads(plan.stdout)["actions"]] == [
        "e2egrow-cp-1",
        "e2egrow-cp-2",
    ]
    started = time.monotonic()
    with Probe(created.kubectl) as probe:
        done = cli(created.state, "apply", "-f", str(three), "--yes", timeout=1500)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(
        f"control plane 1 -> 3 in {took:.1f} s; the API through {server} went unanswered "
        f"for {probe.longest:.1f} s at most ({probe.asked} probes)"
    )
    assert "etcd before adding e2egrow-cp-1: 1/1 etcd members healthy" in done.stderr
    assert "etcd after it: 3/3 etcd members healthy" in done.stderr
    nodes = _nodes_ready(created.kubectl)
    assert sorted(nodes) == ["e2egrow-cp-0", "e2egrow-cp-1", "e2egrow-cp-2"]
    for node in nodes.values():  # no workers: every control plane stays untainted
        assert not node["spec"].get("taints"), node["metadata"]["name"]
    status = json.loads(cli(created.state, "status", "e2egrow", "-o", "json").stdout)
    assert status["outputs"]["endpoint"] == server
    # the newest member's mirror pod turns Ready a few seconds after its Node
    real.wait_for(
        "3 etcd pods Ready",
        lambda: (
            len(real.pods_running(created.kubectl, "component=etcd", namespace="kube-system")) == 3
        ),
        timeout=120,
    )
    assert probe.longest < 5.0


def _etcd_members(host: LabHost) -> list[dict[str, object]]:
    """etcd's member list, asked on ``host`` with the health-check client certificate."""
    out = host.exec(
        [
            "curl",
            "-sS",
            "--cacert",
            "/etc/kubernetes/pki/etcd/ca.crt",
            "--cert",
            "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key",
            "/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "-X",
            "POST",
            "-d",
            "{}",
            "https://127.0.0.1:2379/v3/cluster/member/list",
        ]
    ).stdout
    members: list[dict[str, object]] = json.loads(out)["members"]
    return members


def test_a_control_plane_host_swapped_for_another_is_replaced_member_by_member(
    growing: tuple[Created, str], lab: Lab
) -> None:
    created, _ = growing
    swapped = created.spec.with_name("swapped.yaml")
    before = {str(m["name"]): m["ID"] for m in _etcd_members(created.hosts[0])}
    assert sorted(before) == ["e2egrow-cp-0", "e2egrow-cp-1", "e2egrow-cp-2"]
    plan = cli(created.state, "apply", "-f", str(swapped), "-o", "json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    actions = json.loads(plan.stdout)["actions"]
    assert [(a["kind"], a["target"], a["replaces"]) for a in actions] == [
        ("add", "e2egrow-cp-3", "e2egrow-cp-1"),
        ("remove", "e2egrow-cp-1", None),
    ]
    with Probe(created.kubectl) as probe:
        done = cli(created.state, "apply", "-f", str(swapped), "--yes", timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(f"control plane host swapped: the API went unanswered for {probe.longest:.1f} s at most")
    assert "etcd after it: 4/4 etcd members healthy" in done.stderr
    assert f"etcd: removing member e2egrow-cp-1 ({int(str(before['e2egrow-cp-1'])):x})" in (
        done.stderr
    )
    after = {str(m["name"]): m["ID"] for m in _etcd_members(created.hosts[0])}
    assert sorted(after) == ["e2egrow-cp-0", "e2egrow-cp-2", "e2egrow-cp-3"]
    assert after["e2egrow-cp-0"] == before["e2egrow-cp-0"]  # the others stay the same members
    assert sorted(_nodes_ready(created.kubectl)) == ["e2egrow-cp-0", "e2egrow-cp-2", "e2egrow-cp-3"]
    for unit in ("kubelet", "keepalived"):
        state = created.hosts[1].exec(["systemctl", "is-active", unit], check=False).stdout
        assert state.strip() != "active", unit
    # the load balancers that stay send nothing to the host that left
    for host in (created.hosts[0], created.hosts[2], created.hosts[3]):
        config = host.exec(["cat", "/etc/haproxy/haproxy.cfg"]).stdout
        servers = {
            line.split()[2] for line in config.splitlines() if line.split()[:1] == ["server"]
        }
        assert servers == {f"{h.address}:6443" for h in created.hosts if h is not created.hosts[1]}
    assert probe.longest < 5.0


def test_the_control_plane_shrinks_back_to_one_only_when_allowed(
    growing: tuple[Created, str], lab: Lab
) -> None:
    created, vip = growing
    one = created.spec  # the file it was created from: one control plane
    refused = cli(created.state, "apply", "-f", str(one), "--yes")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "--allow-control-plane-shrink" in refused.stderr
    assert len(_etcd_members(created.hosts[0])) == 3  # nothing removed

    with Probe(created.kubectl) as probe:
        done = cli(
            created.state,
            "apply",
            "-f",
            str(one),
            "--allow-control-plane-shrink",
            "--yes",
            timeout=1200,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(f"control plane 3 -> 1: the API went unanswered for {probe.longest:.1f} s at most")
    assert "etcd: removing member e2egrow-cp-3" in done.stderr
    assert "etcd: removing member e2egrow-cp-2" in done.stderr
    assert sorted(_nodes_ready(created.kubectl)) == ["e2egrow-cp-0"]
    members = _etcd_members(created.hosts[0])
    assert [m["name"] for m in members] == ["e2egrow-cp-0"]
    # the mirror pods of the nodes that left go with the pod garbage collector
    real.wait_for(
        "one etcd pod",
        lambda: (
            [
                p["spec"]["nodeName"]
                for p in created.kubectl.json(
                    "get", "pods", "-n", "kube-system", "-l", "component=etcd"
                )["items"]
            ]
            == ["e2egrow-cp-0"]
        ),
        timeout=180,
    )
    for host in created.hosts[1:]:
        for unit in ("kubelet", "keepalived"):
            state = host.exec(["systemctl", "is-active", unit], check=False).stdout.strip()
            assert state != "active", f"{unit} on {host.name}"
    assert real.vip_holder(created.hosts, vip) is created.hosts[0]
    assert probe.longest < 5.0
