"""End to end: a failing hook on a real host, over real SSH with sudo.

A host where only the machine steps run (no container runtime, no Kubernetes: the hooks are
what is tested, in seconds). A failing hook stops the create naming the node, the hook and
the last lines it printed; with continueOnError the create goes on and says so in the node
log; a hook over its timeout is stopped. The hooks' order, targets, secrets and done-once
behaviour on a real cluster are in test_cluster.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import cluster as real
from tests.e2e.client import cli
from tests.e2e.cluster import full_tools  # noqa: F401 (a fixture)
from tests.lab.light import Lab, LabHost

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.usefixtures("full_tools")]


@pytest.fixture(scope="module")
def host(lab: Lab) -> Iterator[LabHost]:
    (one,) = real.boot(lab, 1)
    try:
        yield one
    finally:
        lab.remove_host(one)


def _spec(lab: Lab, host: LabHost, hooks: str) -> str:
    return f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: e2ehook}}
spec:
  provider: ssh
  auth: {{privateKey: {lab.client_key}, username: {host.user}}}
  cluster:
    controlPlane:
      hosts: [{{address: {host.address}}}]
  containerRuntime: {{install: false}}
  kubernetes: {{install: false}}
  hooks:
{hooks}"""


PROBE = """\
    - name: probe
      at: beforeInstall
      {extra}
      inline: |
        echo "checking the mirror"
        echo "mirror unreachable" >&2
        exit 3
"""


def _create(tmp_path: Path, text: str) -> tuple[int, str, str]:
    spec = tmp_path / "e2ehook.yaml"
    spec.write_text(text)
    res = cli(tmp_path / "state.db", "create", "-f", str(spec), "--yes", timeout=300)
    logs = tmp_path / "logs"
    log = "".join(p.read_text() for p in logs.rglob("*") if p.is_file()) if logs.exists() else ""
    return res.returncode, res.stdout + res.stderr, log


def test_a_failing_hook_stops_the_create_naming_node_hook_and_its_last_lines(
    lab: Lab, host: LabHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("hookfail")
    code, out, _ = _create(home, _spec(lab, host, PROBE.format(extra="timeoutSeconds: 60")))
    assert code != 0
    assert "e2ehook-cp-0" in out and "hook probe" in out, out[-2000:]
    assert "mirror unreachable" in out and "exited with status 3" in out, out[-2000:]
    # nothing after it ran: os-prep comes after a beforeInstall hook
    assert host.exec(["test", "-e", "/etc/sysctl.d/99-kubernetes.conf"], check=False).returncode

    code, out, log = _create(home, _spec(lab, host, PROBE.format(extra="continueOnError: true")))
    assert code == 0, out[-2000:]
    assert "warning: hook probe exited with status 3; continueOnError" in log


def test_a_hook_over_its_timeout_is_stopped(
    lab: Lab, host: LabHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("hookslow")
    hooks = """\
    - name: slow
      at: afterRuntime
      timeoutSeconds: 2
      inline: sleep 60
"""
    started = time.monotonic()
    code, out, _ = _create(home, _spec(lab, host, hooks))
    assert code != 0 and "hook slow" in out
    assert "was stopped after 2 s (timeoutSeconds)" in out, out[-2000:]
    assert time.monotonic() - started < 50
