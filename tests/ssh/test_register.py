"""Registering existing machines (ssh provider) against real sshd on lab hosts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.events import Collector, EventKind
from clusterdeck.state import SqliteStore
from tests.helpers import run_cli
from tests.lab.fixtures import HostFactory
from tests.lab.light import Lab, LabHost

pytestmark = pytest.mark.lab


def write_spec(
    path: Path, name: str, lab: Lab, control: list[LabHost], workers: list[LabHost]
) -> Path:
    def hosts(items: list[LabHost]) -> str:
        return "".join(f"        - {{address: {h.address}}}\n" for h in items)

    path.write_text(f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: {name}}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: root}}
  cluster:
    controlPlane:
      hosts:
{hosts(control)}    workers:
      hosts:
{hosts(workers)}""")
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLUSTERDECK_STATE", str(tmp_path / "state.db"))
    monkeypatch.setenv("CLUSTERDECK_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_twenty_hosts_are_registered_at_once_with_keys_and_facts(
    lab: Lab, lab_hosts: HostFactory, isolated: Path
) -> None:
    hosts = lab_hosts(20)
    spec = write_spec(isolated / "lab.yaml", "reg20", lab, hosts[:1], hosts[1:])
    env = api.load(spec)
    store = SqliteStore(isolated / "state.db")
    events = Collector()
    started = time.monotonic()
    result = api.create(env, store, infra_only=True, events=events)
    elapsed = time.monotonic() - started
    assert result.failed == {}
    assert len(result.results["ssh"].ready) == 20
    assert elapsed < 15, f"registration of 20 hosts took {elapsed:.1f}s"
    records = {r.key: r for r in store.resources("reg20")}
    by_address = {h.address: h for h in hosts}
    for node in env_nodes(records):
        rec = records[node]
        host = by_address[rec.provider_id]
        data = rec.data
        assert rec.kind == "host" and data["provider"] == "ssh" and data["state"] == "ready"
        assert data["ssh_host"] == host.address and data["ssh_user"] == "root"
        assert data["private_ip"] == host.address and data["public_ip"] is None
        facts = data["facts"]
        assert facts["hostname"] == host.name  # each host has its own UTS namespace
        assert facts["arch"] and facts["cpus"] >= 1 and facts["memory_mib"] > 100
        assert facts["os_id"] == "debian" and host.address in facts["addresses"]
        if shutil.which("lspci") is None:
            assert facts["gpus"] is None and "lspci not installed" in facts["notes"][0]
        else:
            assert facts["gpus"] == []  # no accelerator on this machine
        pinned = store.host_key("reg20", host.address, 22)
        assert pinned is not None
        assert f"{pinned.key_type} {pinned.public_key}" == host.host_public_key()
    assert records["node/reg20-cp-0"].data["role"] == "control-plane"
    done = [e for e in events.events if e.kind is EventKind.FINISHED and e.step == "done"]
    assert len(done) == 20
    assert len(list((isolated / "logs" / "reg20").glob("*.log"))) == 20
    assert store.environment("reg20").status == "infra-ready"  # type: ignore[union-attr]

    again = api.create(env, store, infra_only=True)  # a re-run checks again, changes nothing
    assert again.failed == {} and len(again.results["ssh"].ready) == 20

    assert api.delete("reg20", store) == []
    assert store.environment("reg20") is None
    assert store.host_key("reg20", hosts[0].address, 22) is None


def env_nodes(records: dict[str, object]) -> list[str]:
    return sorted(k for k in records if k.startswith("node/"))


def test_a_refused_host_is_named_in_one_line_and_nothing_is_marked_ready(
    lab: Lab,
    lab_hosts: HostFactory,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = lab_hosts(3)
    (down,) = lab_hosts(1, start_sshd=False)
    spec = write_spec(isolated / "lab.yaml", "refuse", lab, good[:1], [*good[1:], down])
    monkeypatch.setenv("CLUSTERDECK_SSH_WAIT", "2")
    started = time.monotonic()
    result = run_cli(["create", "-f", str(spec), "--infra-only", "--yes"], capsys, monkeypatch)
    assert time.monotonic() - started < 20
    assert result.code == 1
    failed_lines = [line for line in result.err.splitlines() if line.startswith("failed:")]
    assert failed_lines == [
        f"failed: refuse-workers-2: {down.address}:22: connection refused; "
        f"gave up after {failed_lines[0].split('after ')[1]}"
    ]
    store = SqliteStore(isolated / "state.db")
    states = {r.key: r.data["state"] for r in store.resources("refuse")}
    assert states == {
        "node/refuse-cp-0": "reachable",
        "node/refuse-workers-0": "reachable",
        "node/refuse-workers-1": "reachable",
    }
    assert store.environment("refuse").status == "failed"  # type: ignore[union-attr]


def test_a_changed_host_key_stops_registration_naming_the_host(
    lab: Lab,
    lab_hosts: HostFactory,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = lab_hosts(2)
    spec = write_spec(isolated / "lab.yaml", "rekey", lab, hosts[:1], hosts[1:])
    first = run_cli(["create", "-f", str(spec), "--infra-only", "--yes"], capsys, monkeypatch)
    assert first.code == 0, first.err
    lab.stop_sshd(hosts[1])
    lab.new_host_key(hosts[1])
    lab.start_sshd(hosts[1])
    second = run_cli(["create", "-f", str(spec), "--infra-only", "--yes"], capsys, monkeypatch)
    assert second.code == 1
    line = next(line for line in second.err.splitlines() if line.startswith("failed:"))
    assert line.startswith(
        f"failed: rekey-workers-0: {hosts[1].address}:22: host key of "
        f"rekey-workers-0 ({hosts[1].address}) changed"
    )
    states = {r.key: r.data["state"] for r in SqliteStore(isolated / "state.db").resources("rekey")}
    assert states == {"node/rekey-cp-0": "reachable", "node/rekey-workers-0": "unreachable"}
