"""The agent at boot: it knows itself by its identity, and checks that its machine is that one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterdeck.agent import boot
from clusterdeck.errors import PermanentError
from clusterdeck.providers.ssh.facts import FACTS_SCRIPT
from tests.helpers import run_cli
from tests.pxe.test_boot_tree import _stateless_file


def _tree(capsys, monkeypatch, tmp_path: Path) -> Path:
    out = tmp_path / "boot"
    res = run_cli(
        ["pxe", "render", "-f", str(_stateless_file(tmp_path)), "-d", str(out)], capsys, monkeypatch
    )
    assert res.code == 0, res.err
    return out


def _probe_as(address: str, device: str = "ens5") -> str:
    """The real facts script's output on this machine, with one address line of the node's."""
    real = subprocess.run(["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True).stdout
    return real + f"inet={device} {address}\n"


def test_a_node_renders_its_own_bundle_with_its_interface(capsys, monkeypatch, tmp_path) -> None:
    tree = _tree(capsys, monkeypatch, tmp_path)
    view = boot.load(
        tree / "overlay/etc/clusterdeck/agent.json",
        tree / "nodes/stateless-cp-1/etc/clusterdeck/identity.json",
        lambda: _probe_as("192.0.2.12", "enp7s0"),
        offline=tree / "overlay/var/lib/clusterdeck/offline",
    )
    assert view.identity.name == "stateless-cp-1"
    monkeypatch.setattr(boot, "BUNDLES", tmp_path / "run")
    cfg, bundle = boot.render(view, "init")
    assert cfg.first_control_plane and cfg.keepalived is not None
    assert cfg.keepalived.interface == "enp7s0"
    assert "interface enp7s0" in (bundle / "files/keepalived.conf").read_text()
    cfg, _ = boot.render(view, "join")
    assert not cfg.first_control_plane


def test_a_machine_without_the_identity_address_refuses(capsys, monkeypatch, tmp_path) -> None:
    tree = _tree(capsys, monkeypatch, tmp_path)
    with pytest.raises(PermanentError, match=r"no address 192\.0\.2\.21 .*another node's"):
        boot.load(
            tree / "overlay/etc/clusterdeck/agent.json",
            tree / "nodes/stateless-workers-0/etc/clusterdeck/identity.json",
            lambda: _probe_as("192.0.2.211"),  # its 192.0.2.21 is a prefix of this: no match
            offline=tree / "overlay/var/lib/clusterdeck/offline",
        )
