"""Real clusters on full lab hosts (test support): the offline bundle, hosts, kubectl.

The bundle is the one ``scripts/kubernetes-artifacts.sh`` builds from the Go modules
(``CLUSTERDECK_TEST_BUNDLE`` names one already built: CI builds it before the tests, so its
time shows on its own). The hosts are systemd-nspawn machines that log in as a sudoer, on an
interface that is not eth0, with nothing of Kubernetes installed: clusterdeck puts everything
there from the bundle. ``Kubectl`` is the bundle's own kubectl, run here against the
kubeconfig clusterdeck wrote, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab import full
from tests.lab.light import Lab, LabHost

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kubernetes-artifacts.sh"
TEST_IMAGE = "clusterdeck.local/busybox:lab"


@pytest.fixture(scope="module")
def full_tools() -> None:
    """Skip a module of full-host tests where the lab's tools are missing."""
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)


def build_bundle(version: str | None = None) -> Path:
    """The path of a ready bundle (built on first use: about 12 minutes cold, cached after)."""
    given = os.environ.get("CLUSTERDECK_TEST_BUNDLE")
    if given and version is None:
        return Path(given)
    res = subprocess.run(
        ["bash", str(SCRIPT), *([version] if version else [])],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert res.returncode == 0, f"building the bundle failed:\n{res.stderr[-3000:]}"
    return Path(res.stdout.strip().splitlines()[-1])


def test_image(bundle: Path) -> Path:
    """The lab's busybox image archive, built beside the bundles (not part of any bundle)."""
    path = bundle.parent.parent / "test-images" / "busybox.tar"
    assert path.is_file(), f"{path} is missing: run {SCRIPT}"
    return path


def boot(lab: Lab, count: int, shared: Path | None = None) -> list[LabHost]:
    extra = [f"--bind={shared}:/srv/shared"] if shared else []
    return full.add_full_hosts(lab, count, nspawn_args=extra)


def import_test_image(hosts: list[LabHost], archive: Path) -> None:
    """Put the lab's busybox image into each node's containerd (the test's own workload)."""
    for host in hosts:
        inside = host.path / "state" / "var-lib-containerd" / "busybox.tar"
        inside.write_bytes(archive.read_bytes())
        host.exec(
            ["ctr", "-n", "k8s.io", "images", "import", "/var/lib/containerd/busybox.tar"],
            timeout=120,
        )


@dataclass
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        res = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stderr}"
        return res.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, manifest: dict[str, Any]) -> None:
        res = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", "apply", "-f", "-"],
            input=json.dumps(manifest),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, subprocess.SubprocessError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what} not within {timeout:g}s (last: {last!r})")


def web_pod(name: str, node: str) -> dict[str, Any]:
    """A pod on ``node`` answering HTTP on 8080 with its own name (busybox httpd)."""
    script = f"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 8080 -h /www"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "web",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }


def pods_running(kubectl: Kubectl, selector: str, namespace: str = "default") -> list[Any]:
    items = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    ready = [
        p
        for p in items
        if p["status"].get("phase") == "Running"
        and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
    ]
    return ready if ready and len(ready) == len(items) else []


def vip_holder(hosts: list[LabHost], vip: str) -> LabHost | None:
    for host in hosts:
        out = host.exec(["ip", "-o", "-4", "addr", "show"], check=False).stdout
        if f" {vip}/" in out:
            return host
    return None
