"""Double of kubelet, run by systemd (kubelet.service + kubeadm's drop-in) like the real one.

Without ``--kubeconfig`` it exits 1 and systemd restarts it (the real kubelet's crash loop
before kubeadm init/join). With it, it runs the static pods it finds in
/etc/kubernetes/manifests (kube-apiserver: the API server double; etcd: the member is marked
started), registers its Node through the API (with ``--register-with-taints``), and posts node
status every second: Ready once the pod network's DaemonSet exists (the CNI's config would be
on the node then), kubeletVersion the package's version.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import yaml

CNI_DAEMONSETS = (
    "apis/apps/v1/namespaces/kube-system/daemonsets/calico-node",
    "apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds",
)
HERE = Path(__file__).resolve().parent
STATUS_INTERVAL = 1.0


def _flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for arg in argv:
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            flags[key] = value
    return flags


def _taints(text: str) -> list[dict[str, str]]:
    taints = []
    for item in filter(None, text.split(",")):
        key_value, _, effect = item.rpartition(":")
        key, _, value = key_value.partition("=")
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints


class StaticPods:
    def __init__(self, node: str) -> None:
        self.node = node
        self.apiserver: subprocess.Popen[bytes] | None = None
        self.etcd_started = False

    def sync(self) -> None:
        manifest = common.MANIFESTS / "kube-apiserver.yaml"
        if manifest.exists() and (self.apiserver is None or self.apiserver.poll() is not None):
            pod = yaml.safe_load(manifest.read_text())
            command = pod["spec"]["containers"][0]["command"]
            with open("/var/log/kube-apiserver-double.log", "ab") as log:
                self.apiserver = subprocess.Popen(
                    [sys.executable, str(HERE / "apiserver.py"), *command[1:]],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
        if (common.MANIFESTS / "etcd.yaml").exists() and not self.etcd_started:
            with common.store(write=True) as data:
                member = data["members"].get(self.node)
                if member is not None:
                    member["started"] = True
                    self.etcd_started = True

    def stop(self) -> None:
        if self.apiserver is not None and self.apiserver.poll() is None:
            self.apiserver.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.apiserver.wait(5)


def run(argv: list[str], rec: common.Recorder) -> int:
    if "--version" in argv:
        common.out(f"Kubernetes {common.VERSION}")
        return 0
    flags = _flags(argv)
    kubeconfig = flags.get("kubeconfig", "")
    if not kubeconfig or not Path(kubeconfig).exists():
        raise common.Fail(
            f'E0000 run.go:72] "command failed" err="failed to run Kubelet: '
            f"unable to load bootstrap kubeconfig: stat {kubeconfig}: no such "
            'file or directory"'
        )
    node = flags.get("hostname-override") or socket.gethostname()
    rec.note(node=node)
    pods = StaticPods(node)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    registered = False
    try:
        while not stopping:
            pods.sync()
            try:
                api = common.Api.from_kubeconfig(kubeconfig)
                if not registered:
                    registered = _register(api, node, flags)
                if registered:
                    _post_status(api, node, flags)
            except (OSError, common.Fail, ValueError) as exc:
                sys.stderr.write(f"kubelet double: {exc}\n")
            time.sleep(STATUS_INTERVAL)
    finally:
        pods.stop()
    return 0


def _register(api: common.Api, node: str, flags: dict[str, str]) -> bool:
    labels = {
        "kubernetes.io/hostname": node,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": labels},
        "spec": {"taints": _taints(flags.get("register-with-taints", ""))},
    }
    status, body = api.request("POST", "/api/v1/nodes", obj)
    if status in (201, 409):
        return True
    sys.stderr.write(f"kubelet double: registering {node}: {status} {body}\n")
    return False


def _post_status(api: common.Api, node: str, flags: dict[str, str]) -> None:
    cni = any(api.request("GET", "/" + path)[0] == 200 for path in CNI_DAEMONSETS)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True" if cni else "False",
        "lastHeartbeatTime": now,
        "reason": "KubeletReady" if cni else "KubeletNotReady",
        "message": "kubelet is posting ready status"
        if cni
        else "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"
        " message:Network plugin returns error: cni plugin not initialized",
    }
    address = flags.get("node-ip") or socket.gethostbyname(socket.gethostname())
    status = {
        "conditions": [ready],
        "heartbeat": time.time(),
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": socket.gethostname()},
        ],
        "nodeInfo": {
            "kubeletVersion": common.VERSION,
            "containerRuntimeVersion": "containerd://" + _containerd_version(),
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }
    api.request(
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )


@functools.cache
def _containerd_version() -> str:
    try:
        res = subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True, check=False, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = res.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


if __name__ == "__main__":
    common.main("kubelet", run)
