"""``pxe render``'s tree: one overlay for every node, each node's own variants, a valid unit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import facts as bootstrap_facts
from clusterdeck.bootstrap import pxe
from clusterdeck.bootstrap.render import ClusterFacts
from clusterdeck.bundle.manifest import open_checked
from clusterdeck.pipeline.pxe_tree import render_boot_tree
from tests.bundle.test_bundle import made_bundle
from tests.helpers import EXAMPLES, run_cli


def tree_for(tmp_path: Path) -> pxe.BootTree:
    env = api.load(EXAMPLES / "stateless-ha.yaml")
    bundle = open_checked(made_bundle(tmp_path), "v1.37.2", "flannel", verify=False)
    topology, plan = api.plan(env)
    facts = bootstrap_facts.with_offline(ClusterFacts(), bundle)
    return render_boot_tree(env, topology, plan, facts)


def test_control_planes_can_init_or_join_and_workers_only_join(tmp_path: Path) -> None:
    tree = tree_for(tmp_path)
    assert sorted(tree.identities) == [
        "stateless-cp-0",
        "stateless-cp-1",
        "stateless-cp-2",
        "stateless-workers-0",
        "stateless-workers-1",
    ]
    for name, identity in tree.identities.items():
        files = tree.nodes[name]
        join = json.loads(files[f"{pxe.VARIANTS[1:]}/join/node.json"].content)
        assert join["first_control_plane"] is False
        assert not any("kubeadm-init" in p["name"] for p in join["phases"])
        if identity.role.value == "control-plane":
            init = json.loads(files[f"{pxe.VARIANTS[1:]}/init/node.json"].content)
            assert init["first_control_plane"] is True
            assert [p["name"] for p in init["phases"]][-3:] == [
                "kubeadm-init",
                "cni",
                "labels-and-taints",
            ]
            assert identity.variants == ["init", "join"]
        else:
            assert identity.variants == ["join"]
    addresses = {i.address for i in tree.identities.values()}
    assert addresses == {"192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.21", "192.0.2.22"}


def test_the_overlay_names_the_vip_and_holds_no_secret(tmp_path: Path) -> None:
    tree = tree_for(tmp_path)
    hosts = tree.overlay["etc/clusterdeck/hosts"].content.splitlines()
    assert hosts[0] == "192.0.2.100 stateless-api"
    assert hosts[1:] == [
        "192.0.2.11 stateless-cp-0", "192.0.2.12 stateless-cp-1", "192.0.2.13 stateless-cp-2",
        "192.0.2.21 stateless-workers-0", "192.0.2.22 stateless-workers-1",
    ]  # fmt: skip
    config = json.loads(tree.overlay["etc/clusterdeck/agent.json"].content)
    assert config["api_endpoint"] == "192.0.2.100:8443"
    assert config["shared_directory"] == "/var/lib/clusterdeck/shared"
    everything = [a.content for a in tree.overlay.values()] + [
        a.content for files in tree.nodes.values() for a in files.values()
    ]
    assert not any("certificateKey:" in text or "token: " in text for text in everything)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_agent_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root = tmp_path / "root"
    unit = root / "etc/systemd/system" / pxe.AGENT_UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(pxe.agent_unit())
    agent = root / pxe.AGENT_BIN.lstrip("/")  # the image provides it; any executable will do
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    res = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{pxe.AGENT_UNIT}"],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    # the only complaint allowed is a bare test root lacking systemd's own targets
    complaints = [line for line in res.stderr.splitlines() if line and "sysinit.target" not in line]
    assert complaints == [], res.stderr


def _stateless_file(tmp_path: Path) -> Path:
    bundle = made_bundle(tmp_path)
    text = (EXAMPLES / "stateless-ha.yaml").read_text()
    path = tmp_path / "stateless.yaml"
    path.write_text(text.replace("./kubernetes-v1.37.2-linux-amd64", str(bundle)))
    return path


def test_pxe_render_writes_overlay_nodes_and_index(capsys, monkeypatch, tmp_path: Path) -> None:
    spec = _stateless_file(tmp_path)
    out = tmp_path / "boot"
    result = run_cli(["pxe", "render", "-f", str(spec), "-d", str(out)], capsys, monkeypatch)
    assert result.code == 0, result.err
    overlay = out / "overlay"
    link = overlay / "etc/systemd/system/multi-user.target.wants" / pxe.AGENT_UNIT
    assert link.is_symlink() and link.resolve() == (overlay / "etc/systemd/system" / pxe.AGENT_UNIT)
    assert (overlay / "var/lib/clusterdeck/offline/bin/kubeadm").is_file()
    assert (overlay / "var/lib/clusterdeck/offline/bundle.json").is_file()
    rows = json.loads((out / "nodes.json").read_text())["nodes"]
    assert rows["192.0.2.11"] == {"node": "stateless-cp-0", "role": "control-plane"}
    identity = json.loads(
        (out / "nodes/stateless-workers-1/etc/clusterdeck/identity.json").read_text()
    )
    assert identity["address"] == "192.0.2.22"
    again = run_cli(["pxe", "render", "-f", str(spec), "-d", str(out)], capsys, monkeypatch)
    assert again.code == 0, again.err  # its own output is replaced


def test_pxe_render_refuses_a_file_without_ephemeral_and_a_foreign_dir(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    res = run_cli(
        ["pxe", "render", "-f", str(EXAMPLES / "ssh-existing.yaml"), "-d", str(tmp_path / "o")],
        capsys,
        monkeypatch,
    )
    assert res.code == 2 and "spec.ephemeral" in res.err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    res = run_cli(
        ["pxe", "render", "-f", str(_stateless_file(tmp_path)), "-d", str(foreign)],
        capsys,
        monkeypatch,
    )
    assert res.code == 2 and "not empty" in res.err
    assert (foreign / "keep.txt").read_text() == "mine"
