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
from tests.bundle.test_bundle import made_bundle
from tests.helpers import EXAMPLES


def tree_for(tmp_path: Path) -> pxe.BootTree:
    env = api.load(EXAMPLES / "stateless-ha.yaml")
    bundle = open_checked(made_bundle(tmp_path), "v1.37.2", "flannel", verify=False)
    topology, plan = api.plan(env)
    facts = bootstrap_facts.with_offline(ClusterFacts(), bundle)
    return pxe.render_boot_tree(env, topology, plan, facts)


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
    assert tree.overlay["etc/clusterdeck/hosts"].content == "192.0.2.100 stateless-api\n"
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
