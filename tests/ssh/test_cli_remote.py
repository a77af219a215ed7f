"""``clusterdeck exec`` and ``clusterdeck ssh`` against registered lab hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.state import SqliteStore
from tests.helpers import run_cli
from tests.lab.fixtures import HostFactory
from tests.lab.light import Lab, LabHost
from tests.ssh.test_register import isolated, write_spec  # noqa: F401

pytestmark = pytest.mark.lab


def registered(
    lab: Lab, hosts: list[LabHost], home: Path, name: str, bastion: LabHost | None = None
) -> SqliteStore:
    spec = write_spec(home / f"{name}.yaml", name, lab, hosts[:1], hosts[1:])
    if bastion is not None:
        text = spec.read_text().replace(
            "username: root}", f"username: root, bastion: {{address: {bastion.address}}}}}"
        )
        spec.write_text(text)
    store = SqliteStore(home / "state.db")
    result = api.create(api.load(spec), store, infra_only=True)
    assert result.failed == {}
    return store


def test_exec_runs_everywhere_and_prefixes_output_by_node(
    lab: Lab,
    lab_hosts: HostFactory,
    isolated: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = lab_hosts(3)
    registered(lab, hosts, isolated, "ex")
    result = run_cli(["exec", "ex", "--", "hostname"], capsys, monkeypatch)
    assert result.code == 0, result.err
    assert sorted(result.out.splitlines()) == [
        f"ex-cp-0      | {hosts[0].name}",
        f"ex-workers-0 | {hosts[1].name}",
        f"ex-workers-1 | {hosts[2].name}",
    ]

    workers = run_cli(
        ["exec", "ex", "--role", "worker", "--", "printf", "%s\\n", "a b"], capsys, monkeypatch
    )
    assert workers.code == 0
    assert workers.out.splitlines() == ["ex-workers-0 | a b", "ex-workers-1 | a b"]

    shell_text = f'test "$(hostname)" != {hosts[2].name} || {{ echo nope >&2; exit 4; }}'
    failing = run_cli(["exec", "ex", "--", shell_text], capsys, monkeypatch)
    assert failing.code == 1
    assert "ex-workers-1 | nope" in failing.err
    assert "error: failed on 1 of 3 node(s): ex-workers-1 (exit 4)" in failing.err

    lab.stop_sshd(hosts[1])
    lost = run_cli(
        ["exec", "ex", "--node", "ex-workers-0", "--node", "ex-cp-0", "--", "true"],
        capsys,
        monkeypatch,
    )
    assert lost.code == 1
    assert (
        f"failed on 1 of 2 node(s): ex-workers-0 (ex-workers-0 ({hosts[1].address}): "
        "connection refused; gave up" in lost.err
    )

    unknown = run_cli(["exec", "ex", "--pool", "nope", "--", "true"], capsys, monkeypatch)
    assert unknown.code == 2 and "pools: control-plane, workers" in unknown.err


def test_ssh_uses_the_pinned_key_only(
    lab: Lab,
    lab_hosts: HostFactory,
    isolated: Path,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = lab_hosts(2)
    registered(lab, hosts, isolated, "sh")
    result = run_cli(["ssh", "sh", "sh-workers-0", "--", "hostname"], capfd, monkeypatch)
    assert result.code == 0, result.err
    assert result.out.strip() == hosts[1].name
    assert not list(Path("/tmp").glob("clusterdeck-known-hosts-*"))

    lab.stop_sshd(hosts[1])
    lab.new_host_key(hosts[1])
    lab.start_sshd(hosts[1])
    changed = run_cli(["ssh", "sh", "sh-workers-0", "--", "hostname"], capfd, monkeypatch)
    assert changed.code == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.err
    assert hosts[1].name not in changed.out


def test_exec_and_ssh_through_a_bastion(
    lab: Lab,
    lab_hosts: HostFactory,
    isolated: Path,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bastion, *hosts = lab_hosts(3)
    store = registered(lab, hosts, isolated, "bj", bastion=bastion)
    node = next(r for r in store.resources("bj") if r.key == "node/bj-workers-0")
    assert node.data["bastion"] == f"{bastion.address}:22"
    assert store.host_key("bj", bastion.address, 22) is not None
    probe = 'echo "$SSH_CLIENT" | cut -d" " -f1'
    result = run_cli(["exec", "bj", "--", probe], capfd, monkeypatch)
    assert result.code == 0, result.err
    assert sorted(result.out.splitlines()) == [
        f"bj-cp-0      | {bastion.address}",
        f"bj-workers-0 | {bastion.address}",
    ]
    shell = run_cli(["ssh", "bj", "bj-workers-0", "--", probe], capfd, monkeypatch)
    assert shell.code == 0, shell.err
    assert shell.out.strip() == bastion.address
