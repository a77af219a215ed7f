"""``auth.privateKey`` (and every other key the file names) is read by ``create`` before
anything exists, and never by ``validate`` or ``plan``, which work without it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clusterdeck.state.sqlite import SqliteStore
from tests.helpers import run_cli

SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: keys}}
spec:
  provider: ssh
  auth: {{privateKey: {key}, username: ubuntu}}
  cluster:
    controlPlane:
      hosts: [{{address: 192.0.2.10}}]
    workers:
      hosts: [{{address: 192.0.2.11, key: {host_key}}}]
"""

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLUSTERDECK_STATE", str(tmp_path / "state.db"))
    monkeypatch.setenv("CLUSTERDECK_NONINTERACTIVE", "true")
    return tmp_path


def _write(env: Path, key: Path, host_key: Path) -> Path:
    spec = env / "keys.yaml"
    spec.write_text(SPEC.format(key=key, host_key=host_key))
    return spec


def _key(path: Path, text: str = PRIVATE, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _nothing_recorded(env: Path) -> None:
    store = SqliteStore(env / "state.db")
    try:
        assert store.environment("keys") is None
    finally:
        store.close()


def test_validate_and_plan_do_not_need_the_key(env: Path, capsys, monkeypatch) -> None:
    spec = _write(env, env / "absent.pem", env / "absent-too.pem")
    assert run_cli(["validate", "-f", str(spec)], capsys, monkeypatch).code == 0
    assert run_cli(["plan", "-f", str(spec)], capsys, monkeypatch).code == 0


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("missing", r"spec\.auth\.privateKey: .*/absent\.pem does not exist"),
        ("open", r"spec\.auth\.privateKey: .*id\.pem is readable by others \(mode 0644\)"),
        ("public", r"spec\.auth\.privateKey: .*id\.pem is a public key"),
        (
            "host",
            r"spec\.cluster\.workers\.hosts\[0\]\.key: .*worker\.pem is not an SSH private key",
        ),
    ],
)
def test_create_refuses_a_bad_key_before_anything_exists(
    env: Path, capsys, monkeypatch, problem: str, expected: str
) -> None:
    good = _key(env / "good.pem")
    if problem == "missing":
        key = env / "absent.pem"
    elif problem == "open":
        key = _key(env / "id.pem", mode=0o644)
    elif problem == "public":
        key = _key(env / "id.pem", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host\n")
    else:
        key = good
    host_key = _key(env / "worker.pem", "not a key\n") if problem == "host" else good
    spec = _write(env, key, host_key)
    result = run_cli(["create", "-f", str(spec), "--yes"], capsys, monkeypatch)
    assert result.code == 2, result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err  # one line: no plan shown, no question asked
    assert re.search(expected, lines[0]), lines[0]
    _nothing_recorded(env)
