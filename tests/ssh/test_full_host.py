"""Full lab hosts (systemd-nspawn, real systemd): one boots, SSH works, systemd works."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from clusterdeck.providers.ssh import facts
from clusterdeck.transport import Command, Connections, Script
from tests.lab import full
from tests.lab.fixtures import endpoint
from tests.lab.light import Lab, LabHost

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
                    "journalctl -u ssh.service -q -n 1 --no-pager >/dev/null\n"
                ),
            )
            failed = await pool.run(
                node, Command(["systemctl", "--failed", "--no-legend", "--plain"]), check=False
            )
            return {
                "failed": failed.stdout.strip(),
                "init": found["init"],
                "hostname": found["hostname"],
                "state": state.stdout.strip(),
                "active": unit.stdout.split()[0],
                "machine_id": unit.stdout.split()[1],
            }

    results = [asyncio.run(probe(h)) for h in full_hosts]
    for host, result in zip(full_hosts, results, strict=True):
        assert result["init"] == "systemd"
        assert result["hostname"] == host.name
        assert result["state"] == "running", f"failed units: {result['failed']}"
        assert result["active"] == "active"
    assert results[0]["machine_id"] != results[1]["machine_id"]
    # the lab can act on a full host directly too (as a test does to break it)
    out = full_hosts[0].exec(["systemctl", "is-active", "ssh.service"]).stdout.strip()
    assert out == "active"
