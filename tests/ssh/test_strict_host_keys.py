"""auth.hostKeyPolicy: strict trusts only the known_hosts files named in the spec, pins nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.providers.ssh.access import host_key_policy
from clusterdeck.spec import load_text
from clusterdeck.state import SqliteStore
from clusterdeck.transport.hostkeys import KnownHostsOnly, PinnedHostKeys
from tests.lab.fixtures import HostFactory
from tests.lab.light import Lab, LabHost

SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: {name}}}
spec:
  provider: ssh
  auth:
    privateKey: {key}
    username: root
    hostKeyPolicy: strict
    knownHosts: [{known_hosts}]
  cluster:
    controlPlane:
      hosts: [{hosts}]
"""


def _spec(path: Path, name: str, lab: Lab, hosts: list[LabHost], known_hosts: Path) -> Path:
    path.write_text(
        SPEC.format(
            name=name,
            key=lab.client_key,
            known_hosts=known_hosts,
            hosts=", ".join(f"{{address: {h.address}}}" for h in hosts),
        )
    )
    return path


def test_policy_follows_the_spec(tmp_path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    strict = load_text(
        SPEC.format(
            name="strict",
            key="k",
            known_hosts="/etc/ssh/ssh_known_hosts",
            hosts="{address: 192.0.2.1}",
        )
    )
    policy = host_key_policy(strict, store, "strict")
    assert isinstance(policy, KnownHostsOnly) and policy.files == ["/etc/ssh/ssh_known_hosts"]
    pinned = load_text(
        SPEC.format(name="strict", key="k", known_hosts="x", hosts="{address: 192.0.2.1}").replace(
            "    hostKeyPolicy: strict\n", ""
        )
    )
    assert isinstance(host_key_policy(pinned, store, "strict"), PinnedHostKeys)


@pytest.mark.lab
def test_strict_registration_accepts_known_hosts_and_refuses_the_rest(
    lab: Lab, lab_hosts: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERDECK_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("CLUSTERDECK_SSH_WAIT", "3")
    known, unknown = lab_hosts(2)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{known.address} {known.host_public_key()}\n")
    store = SqliteStore(tmp_path / "state.db")

    good = api.load(_spec(tmp_path / "good.yaml", "strict", lab, [known], known_hosts))
    result = api.create(good, store, infra_only=True)
    assert result.failed == {}
    assert store.host_keys("strict") == [], "strict mode pins nothing"

    bad = api.load(_spec(tmp_path / "bad.yaml", "strict2", lab, [unknown], known_hosts))
    result = api.create(bad, store, infra_only=True)
    (reason,) = result.failed.values()
    assert unknown.address in reason and "not trusted" in reason
    assert store.host_keys("strict2") == []


def test_interactive_ssh_in_strict_mode_uses_the_known_hosts_files(tmp_path) -> None:
    from clusterdeck.providers.ssh import remote
    from clusterdeck.transport import Endpoint

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n")
    env = load_text(
        SPEC.format(name="strict", key="k", known_hosts=known_hosts, hosts="{address: 192.0.2.1}")
    )
    store = SqliteStore(tmp_path / "s.db")
    store.save_environment("strict", "ssh", env.model_dump(mode="json", by_alias=True))
    endpoint = Endpoint(host="192.0.2.1", port=22, user="root")
    text, keys = remote.trusted_known_hosts(store, "strict", endpoint)
    assert keys is None and text == known_hosts.read_text()
    argv = remote.ssh_invocation(endpoint, keys, "/tmp/kh")
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/tmp/kh" in argv
    assert not any(a.startswith("HostKeyAlgorithms") for a in argv)
    assert store.host_keys("strict") == [], "nothing was pinned"
