"""End to end: ``clusterdeck create`` builds real Kubernetes on full lab hosts over real SSH.

Nothing is a double here. The hosts are systemd-nspawn machines (real systemd and sshd, a
sudoer login, an interface that is not eth0) with nothing of Kubernetes on them. clusterdeck
sends the offline bundle built from the Go modules and installs from it the real containerd,
runc, kubeadm and kubelet; kubeadm runs the real etcd, API server, controller manager and
scheduler as static pods; Flannel and CoreDNS run as pods. What is checked is what a user sees:
Nodes Ready as the kubelets report them, CoreDNS running, pods reaching pods across nodes
through the CNI, the kubeconfig working with a real kubectl, and (HA) the API through the
keepalived VIP surviving the loss of the host that holds it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.bootstrap import gpu
from clusterdeck.pipeline.actions import gpus_not_advertised
from clusterdeck.spec.models import DEFAULT_KUBERNETES_VERSION
from tests.bootstrap.test_gpu import kustomized
from tests.e2e import cluster as real
from tests.e2e.client import cli, load_kubeconfig
from tests.lab import full
from tests.lab.light import HOST_INTERFACE, Lab, LabHost, run

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VERSION = DEFAULT_KUBERNETES_VERSION
GATES = ("DynamicResourceAllocation", "DRAPartitionableDevices")
# both clusters run with the file's own settings (spec.kubernetes.config): the gates
# examples/gpu-dra.yaml sets, a flag and a kubelet fragment, on the real components
KUBERNETES = f"""\
  kubernetes:
    version: {VERSION}
    cni: flannel
    podCidr: 10.244.0.0/16
    config:
      featureGates: {{{", ".join(f"{k}: true" for k in GATES)}}}
      apiServer: {{extraArgs: {{audit-log-maxage: "7"}}}}
      kubeletConfiguration: {{maxPods: 90}}
"""
HOOK_LOG = "/var/lib/e2e-hooks/log"
HOOK_SECRET_VAR = "E2E_HOOK_SECRET"
HOOK_SECRET = "hook-secret-" + secrets.token_hex(8)
# one hook at each point; each line it logs says what it found on the node at that moment
SINGLE_HOOKS = f"""\
  hooks:
    - name: before
      at: beforeInstall
      env: {{MARK: first}}
      inline: |
        mkdir -p /var/lib/e2e-hooks
        if command -v containerd >/dev/null; then r=runtime; else r=no-runtime; fi
        echo "beforeInstall $r $MARK" >>{HOOK_LOG}
    - name: runtime
      at: afterRuntime
      inline: |
        if command -v containerd >/dev/null; then r=runtime; else r=no-runtime; fi
        if [ -f /etc/kubernetes/kubelet.conf ]; then k=kubernetes; else k=no-kubernetes; fi
        echo "afterRuntime $r $k" >>{HOOK_LOG}
    - name: kubernetes
      at: afterKubernetes
      roles: [controlPlane]
      inline: |
        node=$(kubectl get node "$CLUSTERDECK_NODE" -o name)
        echo "afterKubernetes $node $CLUSTERDECK_ROLE" >>{HOOK_LOG}
    - name: ready
      at: clusterReady
      secretEnv: [{HOOK_SECRET_VAR}]
      inline: |
        kubectl wait --for=condition=Ready nodes --all --timeout=5s >/dev/null
        echo "the secret is ${HOOK_SECRET_VAR}"
        digest=$(printf %s "${HOOK_SECRET_VAR}" | sha256sum | cut -c1-16)
        echo "clusterReady ready $digest" >>{HOOK_LOG}
"""


@pytest.fixture(scope="module", autouse=True)
def _full_tools() -> None:
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def bundle() -> Path:
    return real.build_bundle()


@dataclass
class Created:
    hosts: list[LabHost]
    spec: Path
    state: Path
    kubeconfig: Path
    name: str
    result: subprocess.CompletedProcess[str]
    seconds: float
    kubectl: real.Kubectl


def _hosts(items: list[LabHost]) -> str:
    return ", ".join(f"{{address: {h.address}}}" for h in items)


def _live(state: Path, name: str) -> dict[str, Any]:
    res = cli(state, "status", name, "--live", "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    view: dict[str, Any] = json.loads(res.stdout)
    return view


def _create(home: Path, name: str, spec_text: str, hosts: list[LabHost], bundle: Path) -> Created:
    spec = home / f"{name}.yaml"
    spec.write_text(spec_text)
    state = home / "state.db"
    kubeconfig = home / f"{name}.conf"
    started = time.monotonic()
    result = cli(state, "create", "-f", str(spec), "--yes", "-k", str(kubeconfig), timeout=900)
    seconds = time.monotonic() - started
    print(f"create {name} ({len(hosts)} hosts): {seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    kubectl = real.Kubectl(bundle / "bin" / "kubectl", kubeconfig)
    return Created(hosts, spec, state, kubeconfig, name, result, seconds, kubectl)


def _nodes_ready(kubectl: real.Kubectl) -> dict[str, Any]:
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
    return nodes


def _check_pod_network(created: Created) -> None:
    """A pod on each node; every pod reaches every other, every host reaches every pod."""
    kubectl = created.kubectl
    nodes = sorted(_nodes_ready(kubectl))
    for i, node in enumerate(nodes):
        kubectl.apply(real.web_pod(f"web-{i}", node))
    pods = real.wait_for("web pods running", lambda: real.pods_running(kubectl, "app=web"))
    by_node = {p["spec"]["nodeName"]: (p["metadata"]["name"], p["status"]["podIP"]) for p in pods}
    assert sorted(by_node) == nodes
    for source_node, (source, _) in by_node.items():
        for target_node, (target, ip) in by_node.items():
            if source_node == target_node:
                continue
            request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"
            body = kubectl.run("exec", source, "--", "sh", "-c", request)
            assert body.strip().splitlines()[-1] == target, f"{source} -> {target} ({ip})"
    hosts = {h.address: h for h in created.hosts}
    addresses = {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in kubectl.json("get", "nodes")["items"]
    }
    for node, address in addresses.items():
        for target_node, (_, ip) in by_node.items():
            if target_node == node:
                continue
            res = hosts[address].exec(["nc", "-z", "-w", "5", ip, "8080"], check=False)
            assert res.returncode == 0, f"host of {node} cannot reach {ip} on {target_node}"


# ---------------------------------------------------------------------------------------------
# a single node: untainted, a workload runs on it
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(lab: Lab, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Created]:
    home = tmp_path_factory.mktemp("single")
    hosts = real.boot(lab, 1)
    os.environ[HOOK_SECRET_VAR] = HOOK_SECRET  # clusterdeck's environment: the hook's secretEnv
    try:
        created = _create(
            home,
            "e2esolo",
            f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2esolo}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {hosts[0].user}}}
  cluster:
    controlPlane:
      hosts: [{_hosts(hosts)}]
{KUBERNETES}  offline: {{bundle: {bundle}}}
{SINGLE_HOOKS}""",
            hosts,
            bundle,
        )
        real.import_test_image(hosts, real.test_image(bundle))
        yield created
    finally:
        os.environ.pop(HOOK_SECRET_VAR, None)
        for host in hosts:
            lab.remove_host(host)


def test_single_node_is_ready_untainted_and_runs_a_pod(single: Created) -> None:
    (node,) = _nodes_ready(single.kubectl).values()
    assert node["metadata"]["name"] == "e2esolo-cp-0"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    assert not node["spec"].get("taints"), "a single node stays untainted"
    dns = real.wait_for(
        "CoreDNS running",
        lambda: real.pods_running(single.kubectl, "k8s-app=kube-dns", "kube-system"),
    )
    assert dns
    pod = real.web_pod("solo-web", "e2esolo-cp-0")
    del pod["spec"]["tolerations"]  # it must schedule without tolerating any taint
    del pod["spec"]["nodeName"]
    single.kubectl.apply(pod)
    (running,) = real.wait_for(
        "a pod on the single node", lambda: real.pods_running(single.kubectl, "app=web")
    )
    assert running["spec"]["nodeName"] == "e2esolo-cp-0"


def test_single_node_kubeconfig_and_live_status(single: Created) -> None:
    assert stat.S_IMODE(single.kubeconfig.stat().st_mode) == 0o600
    server = load_kubeconfig(single.kubeconfig)["clusters"][0]["cluster"]["server"]
    assert server == f"https://{single.hosts[0].address}:6443"
    assert single.kubectl.run("get", "--raw", "/readyz").strip() == "ok"
    view = _live(single.state, single.name)
    assert view["api"]["healthy"] is True
    (node,) = view["nodes"]
    assert node["ready"] and node["version"] == VERSION and node["taints"] == []


def test_the_files_kubeadm_settings_reach_the_running_components(single: Created) -> None:
    """spec.kubernetes.config: the feature gates and flags are in the running kube-apiserver's
    arguments, and the kubelet runs with the gates and the fragment's maxPods."""
    out = single.hosts[0].exec(["pgrep", "-a", "kube-apiserver"]).stdout
    args = out.split()
    gates = next(a for a in args if a.startswith("--feature-gates="))
    assert sorted(gates.removeprefix("--feature-gates=").split(",")) == sorted(
        f"{g}=true" for g in GATES
    )
    assert "--audit-log-maxage=7" in args
    for component in ("kube-controller-manager", "kube-scheduler"):
        # -f: the process name is cut to 15 characters (kube-controller)
        found = single.hosts[0].exec(["pgrep", "-a", "-f", f"^{component} "]).stdout
        assert gates in found.split(), component
    configz = json.loads(
        single.kubectl.run("get", "--raw", "/api/v1/nodes/e2esolo-cp-0/proxy/configz")
    )["kubeletconfig"]
    assert {g: configz["featureGates"].get(g) for g in GATES} == dict.fromkeys(GATES, True)
    assert configz["maxPods"] == 90


def test_a_second_create_changes_nothing(single: Created) -> None:
    def apiserver_container() -> str:
        out = single.hosts[0].exec(["crictl", "ps", "--name", "kube-apiserver", "-q"])
        return out.stdout.strip()

    before = apiserver_container()
    tokens_before = single.kubectl.json("get", "secrets", "-n", "kube-system")["items"]
    res = cli(single.state, "create", "-f", str(single.spec), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert apiserver_container() == before  # no second kubeadm init
    tokens_after = single.kubectl.json("get", "secrets", "-n", "kube-system")["items"]
    assert len(tokens_after) == len(tokens_before)  # no new bootstrap token


def test_hooks_ran_once_each_in_order_at_their_points(single: Created) -> None:
    """After two creates (the test above): each hook ran once, at its point, with its
    environment; the secret reached the hook and no log."""
    lines = single.hosts[0].exec(["cat", HOOK_LOG]).stdout.splitlines()
    digest = hashlib.sha256(HOOK_SECRET.encode()).hexdigest()[:16]
    assert lines == [
        "beforeInstall no-runtime first",
        "afterRuntime runtime no-kubernetes",
        "afterKubernetes node/e2esolo-cp-0 control-plane",
        f"clusterReady ready {digest}",
    ]
    logs = [p for p in (single.state.parent / "logs").rglob("*") if p.is_file()]
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert "the secret is " in text, "the hook's output is in the node log"
    assert HOOK_SECRET not in text and HOOK_SECRET not in single.result.stdout
    assert "hook ready already succeeded here" in text


def test_gpu_manifests_are_accepted_by_the_api_server(single: Created, tmp_path: Path) -> None:
    """The nvidia RuntimeClass and the device plugin, as the GPU phase builds them, pass the
    real API server's validation and admission (server-side dry run: nothing is created)."""
    docs = kustomized(single.kubectl.binary, tmp_path)
    out = tmp_path / "applied.yaml"
    out.write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    res = single.kubectl.run("apply", "--server-side", "--dry-run=server", "-f", str(out))
    assert "runtimeclass.node.k8s.io/nvidia serverside-applied (server dry run)" in res
    assert "daemonset.apps/nvidia-device-plugin-daemonset serverside-applied" in res
    assert not single.kubectl.run("get", "runtimeclass", "-o", "name").strip()


def test_the_gpu_check_reads_what_the_node_advertises(single: Created) -> None:
    """A node labelled as having a GPU counts as not ready until its status offers
    nvidia.com/gpu; the resource is advertised here the way the Kubernetes docs advertise an
    extended resource (a patch of the node's status), since the lab has no GPU."""
    node = "e2esolo-cp-0"
    kubectl = single.kubectl
    kubectl.run("label", "node", node, f"{gpu.GPU_LABEL}=true")
    try:
        nodes = kubectl.json("get", "nodes")
        assert gpus_not_advertised(nodes) == [f"{node} (no nvidia.com/gpu advertised)"]
        kubectl.run(
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=json",
            "-p",
            json.dumps([{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"}]),
        )
        real.wait_for(
            "nvidia.com/gpu allocatable",
            lambda: not gpus_not_advertised(kubectl.json("get", "nodes")),
            timeout=60,
        )
    finally:
        kubectl.run("label", "node", node, f"{gpu.GPU_LABEL}-")
        kubectl.run(
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/status/capacity/nvidia.com~1gpu"}]),
            check=False,
        )


# ---------------------------------------------------------------------------------------------
# 3 control planes behind a keepalived VIP + HAProxy, 2 workers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ha(lab: Lab, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Created]:
    home = tmp_path_factory.mktemp("ha")
    vip = str(lab.network.broadcast_address - 1)
    hosts = real.boot(lab, 5)
    try:
        cps, workers = hosts[:3], hosts[3:]
        created = _create(
            home,
            "e2eha",
            f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2eha}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {hosts[0].user}}}
  cluster:
    controlPlane:
      dedicated: true
      hosts: [{_hosts(cps)}]
    workers:
      hosts: [{_hosts(workers)}]
      labels: {{site: rack-4}}
    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: {vip}}}
{KUBERNETES}  offline: {{bundle: {bundle}}}
  hooks:
    - name: workers-only
      at: afterKubernetes
      roles: [worker]
      inline: 'echo "$CLUSTERDECK_NODE" > /var/lib/e2e-worker-hook'
""",
            hosts,
            bundle,
        )
        real.import_test_image(hosts, real.test_image(bundle))
        yield created
    finally:
        full.stop_machines_in([h.netns for h in hosts])
        for host in hosts:
            lab.remove_host(host)


def test_ha_nodes_ready_with_roles_labels_and_taints(ha: Created) -> None:
    nodes = _nodes_ready(ha.kubectl)
    assert sorted(nodes) == [
        "e2eha-cp-0",
        "e2eha-cp-1",
        "e2eha-cp-2",
        "e2eha-workers-0",
        "e2eha-workers-1",
    ]
    for name, node in nodes.items():
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        if "-cp-" in name:
            assert "node-role.kubernetes.io/control-plane" in taints  # dedicated
        else:
            assert node["metadata"]["labels"].get("site") == "rack-4"
            assert not taints
    real.wait_for(
        "CoreDNS running", lambda: real.pods_running(ha.kubectl, "k8s-app=kube-dns", "kube-system")
    )


def test_a_hook_aimed_at_workers_ran_on_the_workers_only(ha: Created) -> None:
    for i, host in enumerate(ha.hosts):
        found = host.exec(["cat", "/var/lib/e2e-worker-hook"], check=False)
        if i < 3:
            assert found.returncode != 0, f"the workers' hook ran on control plane {i}"
        else:
            assert found.stdout.strip() == f"e2eha-workers-{i - 3}"


def test_ha_pods_reach_pods_across_nodes(ha: Created) -> None:
    _check_pod_network(ha)


def test_ha_kubeconfig_uses_the_vip_and_status_answers(ha: Created, lab: Lab) -> None:
    vip = str(lab.network.broadcast_address - 1)
    server = load_kubeconfig(ha.kubeconfig)["clusters"][0]["cluster"]["server"]
    assert server == f"https://{vip}:8443"
    assert stat.S_IMODE(ha.kubeconfig.stat().st_mode) == 0o600
    assert ha.kubectl.run("get", "--raw", "/readyz").strip() == "ok"
    view = _live(ha.state, ha.name)
    assert view["api"]["healthy"] is True
    assert len(view["nodes"]) == 5 and all(n["ready"] for n in view["nodes"])


def test_no_secret_reaches_the_store_the_logs_or_the_output(ha: Created) -> None:
    secrets = ha.kubectl.json("get", "secrets", "-n", "kube-system")["items"]
    tokens = [
        f"{s['data']['token-id']}.{s['data']['token-secret']}"
        for s in secrets
        if s["type"] == "bootstrap.kubernetes.io/token"
    ]
    tokens = [".".join(base64.b64decode(part).decode() for part in t.split(".")) for t in tokens]
    assert tokens, "the joins used a bootstrap token, so there is one to look for"
    places = {
        "state store": ha.state.read_bytes(),
        "CLI output": (ha.result.stdout + ha.result.stderr).encode(),
    }
    for wal in ha.state.parent.glob(ha.state.name + "-*"):
        places[wal.name] = wal.read_bytes()
    for path in (ha.state.parent / "logs").rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert any("logs" in name for name in places), "node logs were written and are checked"
    for name, data in places.items():
        for token in tokens:
            assert token.encode() not in data, f"a bootstrap token in {name}"
        assert not re.search(rb"PRIVATE KEY|client-key-data", data), f"key material in {name}"


def test_ha_api_survives_losing_the_vip_holder(ha: Created, lab: Lab) -> None:
    vip = str(lab.network.broadcast_address - 1)
    holder = real.vip_holder(ha.hosts[:3], vip)
    assert holder is not None, "one control plane holds the VIP"
    run(["ip", "-n", holder.netns, "link", "set", HOST_INTERFACE, "down"])
    down_at = time.monotonic()
    try:
        answered = real.wait_for(
            "the API through the VIP",
            lambda: (
                ha.kubectl.run(
                    "get", "--raw", "/readyz", "--request-timeout=1s", check=False
                ).strip()
                == "ok"
            ),
            timeout=30,
            every=0.2,
        )
        gap = time.monotonic() - down_at
    finally:  # back as it was (a link that goes down loses its default route)
        run(["ip", "-n", holder.netns, "link", "set", HOST_INTERFACE, "up"])
        run(["ip", "-n", holder.netns, "route", "replace", "default", "via", lab.gateway])
    print(f"API back through the VIP {gap:.1f} s after {holder.name}'s link went down")
    assert answered and gap < 5.0
    assert real.vip_holder(ha.hosts[:3], vip) not in (None, holder)
