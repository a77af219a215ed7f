"""Full lab hosts (systemd-nspawn, real systemd): one boots, SSH works, systemd works."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from clusterdeck.errors import ClusterdeckError
from clusterdeck.providers.ssh import facts
from clusterdeck.transport import Command, Connections, Script
from tests.lab import full
from tests.lab.fixtures import endpoint
from tests.lab.light import HOST_INTERFACE, Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture
def full_hosts(lab: Lab) -> Iterator[list[LabHost]]:
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)
    hosts = full.add_full_hosts(lab, 2)
    try:
        yield hosts
    finally:
        for host in hosts:
            lab.remove_host(host)


def test_full_hosts_boot_systemd_with_their_own_identity(
    lab: Lab, full_hosts: list[LabHost]
) -> None:
    async def probe(host: LabHost) -> dict[str, str]:
        node = endpoint(lab, host)
        async with Connections() as pool:
            found = facts.parse((await pool.run(node, facts.script())).stdout)
            state = await pool.run(
                node, Command(["systemctl", "is-system-running", "--wait"]), check=False, timeout=60
            )
            unit = await pool.run(
                node,
                Script(
                    "set -eu\nsystemd-run --unit=clusterdeck-probe --wait -q true\n"
                    "systemctl is-active ssh.service\ncat /etc/machine-id\n"
                    "journalctl -u ssh.service -q -n 1 --no-pager >/dev/null\n",
                    root=True,
                ),
            )
            failed = await pool.run(
                node, Command(["systemctl", "--failed", "--no-legend", "--plain"]), check=False
            )
            return {
                "failed": failed.stdout.strip(),
                "init": found["init"],
                "hostname": found["hostname"],
                "conntrack": found["conntrack_max_writable"],
                "state": state.stdout.strip(),
                "active": unit.stdout.split()[0],
                "machine_id": unit.stdout.split()[1],
            }

    async def as_root(host: LabHost) -> str:
        async with Connections() as pool:
            try:
                await pool.run(endpoint(lab, host, user="root"), Command(["true"]), timeout=30)
            except ClusterdeckError as exc:
                return str(exc)
        return "root logged in"

    async def privileged(host: LabHost) -> list[str]:
        async with Connections() as pool:
            node = endpoint(lab, host)
            plain = await pool.run(node, Command(["id", "-un"]))
            root = await pool.run(node, Command(["id", "-un"], root=True))
            links = await pool.run(node, Command(["ip", "-o", "link", "show"]))
            return [plain.stdout.strip(), root.stdout.strip(), links.stdout]

    results = [asyncio.run(probe(h)) for h in full_hosts]
    # like a cloud image: a sudoer logs in, root cannot, and the interface is not eth0
    assert "root logged in" not in asyncio.run(as_root(full_hosts[0]))
    plain, root, links = asyncio.run(privileged(full_hosts[0]))
    assert (plain, root) == ("ubuntu", "root")
    assert " eth0" not in links and f" {HOST_INTERFACE}@" in links
    for host, result in zip(full_hosts, results, strict=True):
        assert result["init"] == "systemd"
        assert result["hostname"] == host.name
        # a network namespace of its own: the conntrack limit is the host's, read-only here
        assert result["conntrack"] is False
        assert result["state"] == "running", f"failed units: {result['failed']}"
        assert result["active"] == "active"
    assert results[0]["machine_id"] != results[1]["machine_id"]
    # the lab can act on a full host directly too (as a test does to break it)
    out = full_hosts[0].exec(["systemctl", "is-active", "ssh.service"]).stdout.strip()
    assert out == "active"


def _lab_up(*args: str) -> Any:
    """``python -m tests.lab up ARGS -o json``: its JSON (stdout holds nothing else)."""
    res = subprocess.run(
        [sys.executable, "-m", "tests.lab", "up", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _ssh(data: dict[str, str]) -> list[str]:
    """Plain OpenSSH with what ``up -o json`` gave: its key, its known_hosts, checked."""
    return [
        "ssh",
        "-i",
        data["key"],
        "-o",
        f"UserKnownHostsFile={data['known_hosts']}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]


def test_lab_up_full_json_gives_what_a_user_needs(lab: Lab) -> None:
    """``python -m tests.lab up 1 --full -o json``: only JSON on stdout, and with it plain
    OpenSSH logs in as the sudoer, checking the host key against the known_hosts it names."""
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)
    data = _lab_up("1", "--full")
    try:
        assert set(data) >= {"slot", "hosts", "user", "key", "known_hosts", "vip"}
        (host,) = data["hosts"]
        assert data["user"] == "ubuntu" and data["vip"] != host["address"]
        ssh = _ssh(data)
        out = subprocess.run(
            [*ssh, f"{data['user']}@{host['address']}", "sudo -n id -un"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "root", out.stderr
        denied = subprocess.run(
            [*ssh, f"root@{host['address']}", "true"], capture_output=True, text=True, timeout=60
        )
        assert denied.returncode != 0
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "tests.lab", "down", str(data["slot"])],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr


def test_lab_up_with_sites_and_nat_lays_the_hosts_out_as_asked(lab: Lab) -> None:
    """``up 4 --full --sites 2 --nat 1 -o json``: host 0 at the first site, the others at the
    second, the last behind NAT; each entry names its site and NAT; every host answers SSH at
    its address with the key known_hosts names (the NATed one through its router)."""
    problem = full.require_full_tools()
    if problem:
        pytest.skip(problem)
    data = _lab_up("4", "--full", "--sites", "2", "--nat", "1")
    try:
        assert set(data) >= {"slot", "hosts", "user", "key"}
        assert [(h["site"], h["nat"]) for h in data["hosts"]] == [
            ("site1", False),
            ("site2", False),
            ("site2", False),
            ("site2", True),
        ]
        for host in data["hosts"]:
            out = subprocess.run(
                [*_ssh(data), f"{data['user']}@{host['address']}", "hostname"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.stdout.strip() == host["name"], out.stderr
    finally:
        subprocess.run(
            [sys.executable, "-m", "tests.lab", "down", str(data["slot"])],
            capture_output=True,
            timeout=120,
        )


def test_lab_up_refuses_an_impossible_layout() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tests.lab", "up", "2", "--full", "--sites", "2", "--nat", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "--nat must be 0 to 1: host 0 is never behind NAT" in res.stderr
