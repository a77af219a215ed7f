"""The transport against real sshd on lab hosts: pinning, strict mode, bastion, deadlines, load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clusterdeck.state import SqliteStore
from clusterdeck.transport import (
    Command,
    CommandFailed,
    Connections,
    ConnectOptions,
    DeadlineExceeded,
    HostKeyChanged,
    HostKeyUnknown,
    KnownHostsOnly,
    MemoryHostKeys,
    PinnedHostKeys,
    Script,
    Unreachable,
    known_hosts_line,
)
from clusterdeck.transport.hostkeys import HostKey
from tests.lab.fixtures import HostFactory, endpoint
from tests.lab.light import Lab

pytestmark = pytest.mark.lab


def test_first_key_is_pinned_then_a_changed_key_is_refused(
    lab: Lab, lab_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    store = SqliteStore(tmp_path / "state.db")
    store.save_environment("env1", "ssh", {})
    node = endpoint(lab, host, name="env1-cp-0")

    async def hostname() -> str:
        async with Connections(PinnedHostKeys(store, "env1")) as pool:
            return (await pool.run(node, Command(["hostname"]))).stdout.strip()

    assert asyncio.run(hostname()) == host.name
    pinned = store.host_key("env1", host.address, 22)
    assert pinned is not None and f"{pinned.key_type} {pinned.public_key}" == host.host_public_key()
    assert asyncio.run(hostname()) == host.name  # the pin matches: fine again

    lab.stop_sshd(host)
    lab.new_host_key(host)  # the machine was "reinstalled" (or someone is in the middle)
    lab.start_sshd(host)
    with pytest.raises(HostKeyChanged) as caught:
        asyncio.run(hostname())
    assert "env1-cp-0" in str(caught.value) and host.address in str(caught.value)
    assert "changed" in str(caught.value)
    after = store.host_key("env1", host.address, 22)
    assert after is not None and after.public_key == pinned.public_key, "the pin is kept"


def test_strict_mode_trusts_known_hosts_only(
    lab: Lab, lab_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    known = tmp_path / "known_hosts"
    node = endpoint(lab, host)

    async def connect() -> str:
        async with Connections(KnownHostsOnly([known])) as pool:
            return (await pool.run(node, Command(["hostname"]))).stdout.strip()

    known.write_text(known_hosts_line("198.18.255.254", 22, HostKey.parse(host.host_public_key())))
    with pytest.raises(HostKeyUnknown, match=host.address):
        asyncio.run(connect())
    known.write_text(known_hosts_line(host.address, 22, HostKey.parse(host.host_public_key())))
    assert asyncio.run(connect()) == host.name


def test_bastion_carries_the_node_connection(lab: Lab, lab_hosts: HostFactory) -> None:
    bastion, node = lab_hosts(2)
    target = endpoint(lab, node, jump=endpoint(lab, bastion, name="bastion"))

    async def go() -> tuple[str, int]:
        async with Connections() as pool:
            result = await pool.run(target, Command(["sh", "-c", 'echo "$SSH_CLIENT"']))
            return result.stdout.split()[0], pool.connects

    seen_from, connects = asyncio.run(go())
    assert seen_from == bastion.address  # the node saw the bastion, not us
    assert connects == 2


def test_deadline_stops_a_hung_command(lab: Lab, lab_hosts: HostFactory) -> None:
    (host,) = lab_hosts(1)
    lines: list[str] = []

    async def go() -> str:
        async with Connections() as pool:
            with pytest.raises(DeadlineExceeded, match=r"within 0.5s"):
                await pool.run(
                    endpoint(lab, host), Command(["sleep", "30"]), timeout=0.5, output=lines.append
                )
            # the connection still works for the next command
            return (await pool.run(endpoint(lab, host), Command(["echo", "alive"]))).stdout

    started = time.monotonic()
    assert asyncio.run(go()) == "alive\n"
    assert time.monotonic() - started < 5
    assert any("deadline" in line for line in lines)


def test_scripts_uploads_and_failures(lab: Lab, lab_hosts: HostFactory) -> None:
    (host,) = lab_hosts(1)
    node = endpoint(lab, host)

    async def go() -> None:
        async with Connections() as pool:
            conn = await pool.get(node)
            await conn.upload("/etc/clusterdeck-test.conf", b"key=value\n", mode=0o640)
            result = await conn.run(
                Script(
                    "set -eu\nstat -c %a /etc/clusterdeck-test.conf\n"
                    "cat /etc/clusterdeck-test.conf\n"
                    "rm /etc/clusterdeck-test.conf\n",
                    interpreter="/bin/bash",
                )
            )
            assert result.stdout == "640\nkey=value\n"
            with pytest.raises(CommandFailed) as caught:
                await conn.run(
                    Command(["sh", "-c", "echo first >&2; echo 'last words' >&2; exit 7"])
                )
            assert caught.value.exit_status == 7
            assert str(caught.value).endswith("exited with status 7: last words")
            unchecked = await conn.run(Command(["false"]), check=False)
            assert unchecked.exit_status == 1

    asyncio.run(go())


def test_refused_connections_are_retried_then_reported(lab: Lab, lab_hosts: HostFactory) -> None:
    (host,) = lab_hosts(1, start_sshd=False)
    pool_events: list[str] = []

    async def go() -> None:
        async with Connections(
            options=ConnectOptions(attempts=3, backoff=0.05),
            events=lambda e: pool_events.append(e.message),
        ) as pool:
            await pool.get(endpoint(lab, host, name="w-7"))

    with pytest.raises(Unreachable) as caught:
        asyncio.run(go())
    assert str(caught.value).startswith(
        f"w-7 ({host.address}): connection refused; gave up after 3 attempts"
    )
    assert len(pool_events) == 2 and all("connection refused" in m for m in pool_events)


def test_100_parallel_commands_against_default_max_startups(
    lab: Lab, lab_hosts: HostFactory
) -> None:
    """One pooled connection carries all of them: sshd's defaults never see a burst."""
    (host,) = lab_hosts(1, max_startups=None)
    assert "MaxStartups" not in (host.path / "sshd_config").read_text()
    node = endpoint(lab, host)

    async def go() -> tuple[list[str], int, int]:
        async with Connections() as pool:
            results = await asyncio.gather(
                *(pool.run(node, Command(["echo", str(i)])) for i in range(100))
            )
            return [r.stdout.strip() for r in results], pool.connects, pool.retries

    outputs, connects, retries = asyncio.run(go())
    assert outputs == [str(i) for i in range(100)]
    assert (connects, retries) == (1, 0)


def test_100_separate_clients_against_default_max_startups_all_get_through(
    lab: Lab, lab_hosts: HostFactory
) -> None:
    """100 independent connections at once: sshd drops some; backoff gets every one through."""
    (host,) = lab_hosts(1, max_startups=None)
    node = endpoint(lab, host)
    keys = MemoryHostKeys()
    unbounded = ConnectOptions(handshakes_per_host=1000, attempts=8, backoff=0.2)

    async def one(i: int) -> tuple[str, int]:
        async with Connections(keys, unbounded) as pool:
            return (await pool.run(node, Command(["echo", str(i)]))).stdout.strip(), pool.retries

    async def go() -> list[tuple[str, int]]:
        return await asyncio.gather(*(one(i) for i in range(100)))

    results = asyncio.run(go())
    assert [r[0] for r in results] == [str(i) for i in range(100)]
    assert sum(r[1] for r in results) > 0, "sshd's MaxStartups should have dropped some"
