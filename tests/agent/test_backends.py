"""A control plane's HAProxy servers follow etcd's voting members, through a real HAProxy's
runtime API: a server whose member is gone is set to maint, back to ready once it votes again,
and only changes are sent."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from clusterdeck.agent.backends import MAINT, READY, BackendSync, haproxy_command, wanted
from clusterdeck.bootstrap.lbconfig import Backend, LoadBalancerConfig
from clusterdeck.errors import PermanentError
from clusterdeck.transport import Endpoint

NAMES = ["cp-0", "cp-1", "cp-2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Path]:
    """A real HAProxy started from the config clusterdeck renders; its admin socket."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed (see .ci/apt-packages.txt)")
    sock = tmp_path / "admin.sock"
    config = LoadBalancerConfig(
        node="cp-0",
        vip="127.0.0.1",
        api_port=_free_port(),
        router_id=51,
        interface="lo",
        own_address="127.0.0.1",
        peers=[],
        priority=200,
        backends=[Backend(name=n, address=f"127.0.0.{i + 2}") for i, n in enumerate(NAMES)],
        haproxy_pidfile=str(tmp_path / "haproxy.pid"),
        haproxy_socket=str(sock),
    )
    path = tmp_path / "haproxy.cfg"
    path.write_text(config.haproxy_cfg())
    proc = subprocess.Popen([binary, "-db", "-f", str(path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "haproxy exited"
            assert time.monotonic() < deadline, "haproxy made no admin socket"
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _admin_states(sock: Path) -> dict[str, int]:
    """Each server's administrative state (bit 1: forced maintenance), as HAProxy tells it."""
    text = haproxy_command("show servers state kube_api_servers", str(sock))
    rows = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    header = next(line for line in text.splitlines() if line.startswith("# be_id"))
    columns = header[2:].split()
    index = {name: i for i, name in enumerate(columns)}
    return {
        row[index["srv_name"]]: int(row[index["srv_admin_state"]])
        for row in rows
        if len(row) == len(columns)
    }


def test_a_server_whose_member_is_gone_is_set_to_maint_and_back(haproxy: Path) -> None:
    logs: list[str] = []
    sync = BackendSync(
        NAMES, Endpoint("127.0.0.1"), logs.append, partial(haproxy_command, path=str(haproxy))
    )
    assert len(sync.sync(set(NAMES))) == 3  # the first round sets every server
    assert _admin_states(haproxy) == {"cp-0": 0, "cp-1": 0, "cp-2": 0}
    assert sync.sync(set(NAMES)) == []  # nothing changed: nothing sent
    sent = sync.sync({"cp-0", "cp-2"})  # cp-1's member was removed
    assert sent == ["set server kube_api_servers/cp-1 state maint"]
    assert _admin_states(haproxy)["cp-1"] & 1 and not _admin_states(haproxy)["cp-0"]
    assert sync.sync(set(NAMES)) == ["set server kube_api_servers/cp-1 state ready"]
    assert _admin_states(haproxy) == {"cp-0": 0, "cp-1": 0, "cp-2": 0}
    assert logs == [
        "HAProxy: server cp-1 set maint (not a voting etcd member)",
        "HAProxy: server cp-1 set ready (a voting etcd member)",
    ]


def test_a_refused_command_is_an_error_naming_it(haproxy: Path) -> None:
    sync = BackendSync(
        ["cp-9"], Endpoint("127.0.0.1"), print, partial(haproxy_command, path=str(haproxy))
    )
    with pytest.raises(PermanentError, match="HAProxy refused 'set server kube_api_servers/cp-9"):
        sync.sync({"cp-9"})


def test_learners_and_strangers_get_no_connections() -> None:
    assert wanted(NAMES, {"cp-0", "cp-2", "cp-10"}) == {"cp-0": READY, "cp-1": MAINT, "cp-2": READY}
