"""Every kubeadm configuration clusterdeck renders, checked by the real kubeadm.

The kubeadm here is the one ``scripts/kubernetes-artifacts.sh`` builds from k8s.io/kubernetes
(the bundle's ``bin/kubeadm``): ``kubeadm config validate`` parses each file with the real
v1beta4 types and defaulting, and refuses unknown fields, bad versions and invalid values.
Every example in ``examples/`` and every shape (single node, HA behind a VIP, HA behind an
NLB, workers, control-plane joins) is rendered as standalone YAML files and validated.
Join files are validated as they go to a node, with join material of the right form.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap import kubeadm
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, join_document
from clusterdeck.bootstrap.nodeconfig import MachineFacts
from clusterdeck.bootstrap.render import Bundle, ClusterFacts, render_environment
from clusterdeck.model.topology import Role
from clusterdeck.spec import load_file
from tests.bootstrap.conftest import CASES, render_case
from tests.e2e.cluster import build_bundle

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
# well-formed join material (these are not anyone's secrets)
MATERIAL = JoinMaterial(
    token="abcdef.0123456789abcdef",
    ca_cert_hash="sha256:" + "0" * 64,
    certificate_key="1" * 64,
)


@pytest.fixture(scope="module")
def kubeadm_binary() -> Path:
    return build_bundle() / "bin" / "kubeadm"


def _validate(binary: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "config", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _files(bundle: Bundle, tmp: Path) -> list[Path]:
    """Each node's init file as rendered, and its join file as it reaches the node."""
    written = []
    for node, files in bundle.files.items():
        cfg = bundle.configs[node]
        if "files/kubeadm-init.yaml" in files:
            path = tmp / f"{node}-init.yaml"
            path.write_text(files["files/kubeadm-init.yaml"].content)
            written.append(path)
        if "files/kubeadm-join.yaml" in files:
            material = (
                MATERIAL
                if cfg.role is Role.CONTROL_PLANE
                else MATERIAL.__class__(token=MATERIAL.token, ca_cert_hash=MATERIAL.ca_cert_hash)
            )
            path = tmp / f"{node}-join.yaml"
            path.write_text(kubeadm.to_yaml(join_document(cfg, material)))
            written.append(path)
    return written


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_shape_passes_kubeadm_config_validate(
    kubeadm_binary: Path, case: str, tmp_path: Path
) -> None:
    files = _files(render_case(tmp_path, case), tmp_path)
    assert any(f.name.endswith("-init.yaml") for f in files)
    assert any(f.name.endswith("-join.yaml") for f in files) or case == "single"
    for path in files:
        res = _validate(kubeadm_binary, path)
        assert res.returncode == 0, f"{path.name}: {res.stderr}\n{path.read_text()}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_kubeadm_config_validate(
    kubeadm_binary: Path, example: Path, tmp_path: Path
) -> None:
    env = load_file(example)
    topology, plan = api.plan(env)
    facts = ClusterFacts(
        machines={
            n.name: MachineFacts(private_ip=f"10.0.{i // 200}.{10 + i % 200}")
            for i, n in enumerate(topology.nodes)
        },
        nlb_dns="example-nlb-0123456789.elb.us-west-2.amazonaws.com",
    )
    for path in _files(render_environment(env, topology, plan, facts), tmp_path):
        res = _validate(kubeadm_binary, path)
        assert res.returncode == 0, f"{example.name} {path.name}: {res.stderr}"


def test_cgroup_v1_nodes_get_what_kubeadm_and_the_kubelet_need(
    kubeadm_binary: Path, tmp_path: Path
) -> None:
    env = load_file(_write(tmp_path, CASES["single"]))
    topology, plan = api.plan(env)
    facts = ClusterFacts(machines={"solo-cp-0": MachineFacts(private_ip="10.77.0.31", cgroup="v1")})
    bundle = render_environment(env, topology, plan, facts)
    text = bundle.files["solo-cp-0"]["files/kubeadm-init.yaml"].content
    assert "failCgroupV1: false" in text and "- SystemVerification" in text
    (path,) = _files(bundle, tmp_path)
    assert _validate(kubeadm_binary, path).returncode == 0


def test_real_kubeadm_rejects_what_it_should(kubeadm_binary: Path, tmp_path: Path) -> None:
    """The check can fail: a wrong field and an unsupported version are refused."""
    good = _files(render_case(tmp_path, "single"), tmp_path)[0]
    typo = tmp_path / "typo.yaml"
    typo.write_text(good.read_text().replace("podSubnet:", "podSubnets:"))
    res = _validate(kubeadm_binary, typo)
    assert res.returncode != 0 and "podSubnets" in res.stderr
    old = tmp_path / "old.yaml"
    old.write_text(
        good.read_text().replace("kubernetesVersion: v1.37.2", "kubernetesVersion: v1.30.0")
    )
    assert _validate(kubeadm_binary, old).returncode != 0


def _write(tmp: Path, text: str) -> Path:
    path = tmp / "env.yaml"
    path.write_text(text)
    return path


def test_an_offline_render_names_the_bundles_images_and_passes(
    kubeadm_binary: Path, tmp_path: Path
) -> None:
    from clusterdeck.bootstrap.facts import with_offline
    from clusterdeck.bootstrap.render import upgrade_scripts
    from clusterdeck.bundle.manifest import open_checked

    bundle = open_checked(kubeadm_binary.parent.parent, "v1.37.2", verify=False)
    env = load_file(_write(tmp_path, CASES["ssh-ha"].replace("cni: calico", "cni: flannel")))
    topology, plan = api.plan(env)
    rendered = render_environment(env, topology, plan, with_offline(ClusterFacts(), bundle))
    text = rendered.files["lab-cp-0"]["files/kubeadm-init.yaml"].content
    assert "imageTag: v1.14.6" in text and "imageTag: 3.7.0-0" in text
    for path in _files(rendered, tmp_path):
        res = _validate(kubeadm_binary, path)
        assert res.returncode == 0, f"{path.name}: {res.stderr}"
    # the offline form of the upgrade steps installs from the bundle and passes shellcheck
    scripts = upgrade_scripts(rendered.configs["lab-cp-0"])
    assert 'install_file "$OFFLINE/bin/kubeadm"' in scripts["kubeadm-upgrade"]
    assert "kubeadm upgrade apply" in scripts["kubeadm-upgrade"]
    checked = []
    for phase, text in scripts.items():
        checked.append(tmp_path / f"{phase}.sh")
        checked[-1].write_text(text)
    shellcheck = subprocess.run(
        ["shellcheck", "--severity=style", *map(str, checked)], capture_output=True, text=True
    )
    assert shellcheck.returncode == 0, shellcheck.stdout[-3000:]


def test_a_read_only_conntrack_limit_is_left_alone_by_kube_proxy(
    kubeadm_binary: Path, tmp_path: Path
) -> None:
    """On a node whose conntrack limit is read-only the init config tells kube-proxy to leave
    it (maxPerCore 0), and the real kubeadm accepts it; elsewhere no proxy document."""
    env = load_file(_write(tmp_path, CASES["single"]))
    topology, plan = api.plan(env)
    fixed = ClusterFacts(machines={"solo-cp-0": MachineFacts(conntrack_max_writable=False)})
    text = (
        render_environment(env, topology, plan, fixed)
        .files["solo-cp-0"]["files/kubeadm-init.yaml"]
        .content
    )
    assert "kind: KubeProxyConfiguration" in text and "maxPerCore: 0" in text
    path = tmp_path / "init.yaml"
    path.write_text(text)
    res = _validate(kubeadm_binary, path)
    assert res.returncode == 0, res.stderr
    plain = render_environment(env, topology, plan, ClusterFacts()).files["solo-cp-0"]
    assert "KubeProxyConfiguration" not in plain["files/kubeadm-init.yaml"].content
