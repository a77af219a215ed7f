"""Day-2 on real Kubernetes: ``apply`` removes a worker from a running ssh cluster.

One control plane and two workers on full lab hosts (real kubeadm, kubelet, etcd, Flannel).
A PodDisruptionBudget that allows no disruption protects a pod on the worker to remove: apply
waits out its drain timeout, fails naming that budget, and leaves the node cordoned and in the
cluster. With the budget gone, the same apply drains, deletes the Node, resets the host and
stops its kubelet; the store forgets it; nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION
from tests.e2e import cluster as real
from tests.e2e.client import cli
from tests.e2e.test_cluster import Created, _create, _full_tools, _hosts, _nodes_ready
from tests.lab.light import Lab

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
  kubernetes: {{version: {version}, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {bundle}}}
"""


@pytest.fixture(scope="module")
def three(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Created, Path]]:
    bundle = real.build_bundle()
    home = tmp_path_factory.mktemp("day2")
    hosts = real.boot(lab, 3)
    try:

        def spec(workers: int) -> str:
            return SPEC.format(
                key=lab.client_key,
                user=hosts[0].user,
                cp=_hosts(hosts[:1]),
                workers=_hosts(hosts[1 : 1 + workers]),
                version=DEFAULT_KUBERNETES_VERSION,
                bundle=bundle,
            )

        created = _create(home, "e2eday2", spec(2), hosts, bundle)
        real.import_test_image(hosts, real.test_image(bundle))
        smaller = home / "smaller.yaml"
        smaller.write_text(spec(1))
        yield created, smaller
    finally:
        for host in hosts:
            lab.remove_host(host)


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
    assert '"target": "e2eday2-workers-1"' in plan.stdout and '"kind": "delete"' in plan.stdout

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
