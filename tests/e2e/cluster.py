"""A test cluster of full lab hosts with the Kubernetes doubles installed (test support).

``boot`` starts the hosts (systemd-nspawn, from the lab's cached image plus the packages a
cluster node has: containerd, PyYAML and openssl for the doubles), bind-mounts the doubles'
code read-only and one directory shared by the cluster's hosts (the doubles' records and the
cluster store), and installs the kubeadm/kubelet/kubectl double packages at the spec's pinned
version with dpkg. ``remove`` stops the hosts; the fixtures call it even when a test fails.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from clusterdeck.bootstrap.nodeconfig import PKGS_REVISION
from tests.doubles import packages, records
from tests.lab import full
from tests.lab.light import Lab, LabHost

WRITABLE = "SYSTEMD_NSPAWN_API_VFS_WRITABLE"  # read by systemd-nspawn
NODE_PACKAGES = (*full.DEFAULT_PACKAGES, "containerd", "python3-yaml", "openssl", "kmod")


@dataclass
class Cluster:
    lab: Lab
    hosts: list[LabHost]
    shared: Path

    def runs(self) -> list[records.Run]:
        return records.read(self.shared)

    def remove(self) -> None:
        full.stop_machines_in([h.netns for h in self.hosts])  # all shut down at once
        for host in self.hosts:
            self.lab.remove_host(host)


def boot(lab: Lab, count: int, shared: Path, version: str) -> Cluster:
    shared.mkdir(parents=True, exist_ok=True)
    debs = packages.build(version, f"{version.removeprefix('v')}-{PKGS_REVISION}", shared / "debs")
    args = [
        f"--bind={shared}:{packages.SHARED}",
        f"--bind-ro={packages.HERE}:{packages.CODE}",
        # its own network, as a machine has: sysctls, keepalived's VIP (the host is in
        # its own network namespace, so nothing outside it changes)
        "--capability=CAP_NET_ADMIN",
    ]
    # /proc/sys/net writable, as on a machine
    previous = os.environ.get(WRITABLE)
    os.environ[WRITABLE] = "network"
    try:
        hosts = full.add_full_hosts(lab, count, NODE_PACKAGES, nspawn_args=args)
    finally:
        if previous is None:
            os.environ.pop(WRITABLE)
        else:
            os.environ[WRITABLE] = previous
    cluster = Cluster(lab, hosts, shared)
    try:
        names = [f"{packages.SHARED}/debs/{deb.name}" for deb in debs]
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda h: h.exec(["dpkg", "-i", *names], timeout=120), hosts))
        for deb_dir in (shared / "debs").glob("*-root"):
            shutil.rmtree(deb_dir)
    except BaseException:
        cluster.remove()
        raise
    return cluster
