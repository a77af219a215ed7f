"""Clusters that mix amd64 and arm64 nodes: one offline bundle per architecture, each node
gets its own, and a node whose architecture has no bundle is refused before anything.

The bundles are the small stand-in bundles of test_bundle.py, one per architecture (their
files differ, so which one a node got is visible); what the real arm64 binaries are is
checked in tests/bundle/test_arm64_build.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import facts as bootstrap_facts
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import ClusterFacts, render_environment
from clusterdeck.bundle.manifest import BundleError, open_for
from clusterdeck.spec import load_text
from tests.bundle.test_bundle import cli, made_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("arch")
    return {arch: made_bundle(tmp, f"bundle-{arch}", arch) for arch in ("amd64", "arm64")}


def mixed(offline: str) -> str:
    return f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: mixed}}
spec:
  auth: {{keyName: k}}
  aws: {{region: us-west-2}}
  cluster:
    controlPlane: {{count: 1, instanceType: m5.xlarge}}
    nodePools:
      - {{name: gpu-arm, count: 1, instanceType: g5g.xlarge}}
      - {{name: lab, provider: ssh, hosts: [{{address: 192.0.2.9}}]}}
  nvidiaDriver: {{install: true}}
  nvidiaContainerToolkit: {{install: true}}
  kubernetes: {{version: v1.37.2, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {offline}
"""


def test_each_node_gets_the_bundle_of_its_architecture(bundles: dict[str, Path]) -> None:
    env = load_text(mixed(f"{{bundles: {{amd64: {bundles['amd64']}, arm64: {bundles['arm64']}}}}}"))
    opened = open_for(env.spec.offline, "v1.37.2", "flannel")  # type: ignore[arg-type]
    topology, plan = api.plan(env)
    assert {n.name: n.arch for n in plan.nodes}["mixed-gpu-arm-0"] == "arm64"
    facts = bootstrap_facts.with_offline(
        ClusterFacts(machines={"mixed-lab-0": MachineFacts(arch="aarch64")}), opened
    )
    rendered = render_environment(env, topology, plan, facts)
    want = {"mixed-cp-0": "amd64", "mixed-gpu-arm-0": "arm64", "mixed-lab-0": "arm64"}
    for node, arch in want.items():
        settings = rendered.configs[node].offline
        assert settings is not None and settings.arch == arch, node
        kubelet = opened.for_arch(arch).manifest.file("bin/kubelet")
        other = opened.for_arch("amd64" if arch == "arm64" else "arm64").manifest.file(
            "bin/kubelet"
        )
        assert kubelet.sha256 != other.sha256
        assert opened.for_arch(settings.arch).manifest.file("bin/kubelet") == kubelet
        node_json = json.loads(rendered.files[node]["node.json"].content)
        assert node_json["offline"]["arch"] == arch
    # the GPU phases on the arm64 node take their packages for its architecture from apt
    toolkit = rendered.files["mixed-gpu-arm-0"]["files/nvidia-container-toolkit.list"].content
    assert "/deb/$(ARCH)" in toolkit and "amd64" not in toolkit


def test_an_ssh_host_reporting_an_architecture_without_a_bundle_is_refused(
    bundles: dict[str, Path],
) -> None:
    text = mixed(f"{{bundle: {bundles['amd64']}}}").replace(
        "      - {name: gpu-arm, count: 1, instanceType: g5g.xlarge}\n", ""
    )
    env = load_text(text)
    opened = open_for(env.spec.offline, "v1.37.2", "flannel")  # type: ignore[arg-type]
    topology, plan = api.plan(env)
    facts = bootstrap_facts.with_offline(
        ClusterFacts(machines={"mixed-lab-0": MachineFacts(arch="aarch64")}), opened
    )
    with pytest.raises(BundleError, match=r"^mixed-lab-0 is arm64, and spec.offline has no"):
        render_environment(env, topology, plan, facts)


def test_create_refuses_an_arm64_pool_without_an_arm64_bundle_before_anything(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "mixed.yaml"
    spec.write_text(mixed(f"{{bundle: {bundles['amd64']}}}"))
    state = tmp_path / "state.db"
    res = cli("--state", str(state), "create", "-f", str(spec), "--yes")
    assert res.returncode == 2, res.stderr
    assert "mixed-gpu-arm-0 (g5g.xlarge) is arm64" in res.stderr
    assert "bundle create --arch arm64" in res.stderr
    assert "mixed" not in cli("--state", str(state), "list", "-o", "json").stdout


def test_a_bundle_listed_under_another_architecture_is_refused(bundles: dict[str, Path]) -> None:
    env = load_text(mixed(f"{{bundles: {{arm64: {bundles['amd64']}}}}}"))
    with pytest.raises(BundleError, match=r"the bundle is for amd64, but it stands for arm64"):
        open_for(env.spec.offline, "v1.37.2", "flannel")  # type: ignore[arg-type]


def test_offline_takes_bundle_or_bundles(bundles: dict[str, Path]) -> None:
    from clusterdeck.spec import check_bytes

    both = mixed(f"{{bundle: {bundles['amd64']}, bundles: {{arm64: {bundles['arm64']}}}}}")
    errors = [(i.path, i.message) for i in check_bytes(both.encode()).errors]
    assert errors and errors[0][0] == "spec.offline" and "either bundle" in errors[0][1]
