"""What the rendered bundles say: endpoints, taints, SANs, phases, secrets kept out, goldens."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from clusterdeck.bootstrap import kubeadm
from clusterdeck.bootstrap.kubeadm import ClusterConfiguration, InitConfiguration, JoinConfiguration
from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, join_document
from clusterdeck.bootstrap.render import Bundle, write_bundle
from clusterdeck.bootstrap.scripts import _quote
from tests.bootstrap.conftest import SSH_HA
from tests.helpers import run_cli

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "ab" * 32
CERT_KEY = "cd" * 32


def _init(bundle: Bundle, node: str) -> tuple[InitConfiguration, ClusterConfiguration]:
    docs = kubeadm.parse(bundle.files[node]["files/kubeadm-init.yaml"].content)
    init = next(d for d in docs if isinstance(d, InitConfiguration))
    cluster = next(d for d in docs if isinstance(d, ClusterConfiguration))
    return init, cluster


def _join(bundle: Bundle, node: str) -> JoinConfiguration:
    (doc,) = kubeadm.parse(bundle.files[node]["files/kubeadm-join.yaml"].content)
    assert isinstance(doc, JoinConfiguration)
    return doc


def test_endpoint_is_nlb_vip_or_first_control_plane(bundles) -> None:
    assert (
        _init(bundles["aws-ha"], "gpu-cp-0")[1].control_plane_endpoint
        == "gpu-nlb-0123456789.elb.us-west-2.amazonaws.com:6443"
    )
    assert _init(bundles["ssh-ha"], "lab-cp-0")[1].control_plane_endpoint == "10.77.0.100:8443"
    assert _init(bundles["single"], "solo-cp-0")[1].control_plane_endpoint == "10.77.0.31:6443"
    assert (
        _join(bundles["ssh-ha"], "lab-workers-3").discovery.bootstrap_token.api_server_endpoint
        == "10.77.0.100:8443"
    )


def test_cert_sans_cover_public_addresses_names_and_loopback(bundles) -> None:
    sans = _init(bundles["aws-ha"], "gpu-cp-0")[1].api_server.cert_sans
    for name in (
        "gpu-nlb-0123456789.elb.us-west-2.amazonaws.com",
        "203.0.113.10",
        "203.0.113.11",
        "203.0.113.12",
        "ec2-203-0-113-10.compute.amazonaws.com",
        "127.0.0.1",
        "localhost",
    ):
        assert name in sans


def test_control_plane_taint_only_when_dedicated(bundles) -> None:
    # dedicated: the control-plane taint is explicit at registration, nothing removes it
    init, _ = _init(bundles["aws-ha"], "gpu-cp-0")
    assert [(t.key, t.effect) for t in init.node_registration.taints or []] == [
        ("node-role.kubernetes.io/control-plane", "NoSchedule")
    ]
    script = next(
        c
        for p, c in bundles["aws-ha"].files["gpu-cp-1"].items()
        if p.endswith("labels-and-taints.sh")
    )
    assert "control-plane:NoSchedule-" not in script.content
    # not dedicated / single node: an explicit empty list, and every CP re-removes it
    for case, node in (("single", "solo-cp-0"), ("ssh-ha", "lab-cp-0")):
        init, _ = _init(bundles[case], node)
        assert init.node_registration.taints == []
        assert "taints: []" in bundles[case].files[node]["files/kubeadm-init.yaml"].content
    for node in ("lab-cp-1", "lab-cp-2"):
        assert _join(bundles["ssh-ha"], node).node_registration.taints == []
        script = next(
            c
            for p, c in bundles["ssh-ha"].files[node].items()
            if p.endswith("labels-and-taints.sh")
        )
        assert "control-plane:NoSchedule-" in script.content


def test_worker_taints_and_labels_reach_registration_and_the_phase(bundles) -> None:
    join = _join(bundles["ssh-ha"], "lab-workers-0")
    assert [(t.key, t.value, t.effect) for t in join.node_registration.taints or []] == [
        ("dedicated", "batch", "NoSchedule")
    ]
    assert join.control_plane is None
    assert join.node_registration.kubelet_extra_args[0].name == "node-ip"  # type: ignore[index]
    cfg = bundles["ssh-ha"].configs["lab-workers-0"]
    assert cfg.labels["site"] == "rack-4" and cfg.labels["node-role.kubernetes.io/worker"] == ""
    assert [p.runs_on for p in cfg.phases if p.name == "labels-and-taints"] == ["control-plane"]


def test_phases_follow_the_plan(bundles) -> None:
    names = [p.name for p in bundles["aws-ha"].configs["gpu-workers-0"].phases]
    assert names == [
        "wait-cloud-init",
        "os-prep",
        "containerd",
        "nvidia-driver",
        "nvidia-container-toolkit",
        "kube-packages",
        "kubeadm-join-worker",
        "labels-and-taints",
    ]
    assert [p.name for p in bundles["ssh-ha"].configs["lab-cp-0"].phases] == [
        "os-prep",
        "containerd",
        "kube-packages",
        "api-load-balancer",
        "kubeadm-init",
        "cni",
        "labels-and-taints",
    ]
    assert (
        "--upload-certs" in bundles["ssh-ha"].files["lab-cp-0"]["phases/05-kubeadm-init.sh"].content
    )
    assert (
        "--upload-certs"
        not in bundles["single"].files["solo-cp-0"]["phases/04-kubeadm-init.sh"].content
    )


def test_join_material_stays_out_of_the_bundle_and_reprs(bundles) -> None:
    review = _join(bundles["ssh-ha"], "lab-cp-1")
    assert review.discovery.bootstrap_token.token is None
    assert review.control_plane is not None and review.control_plane.certificate_key is None
    material = JoinMaterial(TOKEN, CA_HASH, CERT_KEY)
    full = kubeadm.to_yaml(join_document(bundles["ssh-ha"].configs["lab-cp-1"], material))
    (doc,) = kubeadm.parse(full)
    assert doc.discovery.bootstrap_token.token == TOKEN  # type: ignore[attr-defined]
    assert doc.control_plane.certificate_key == CERT_KEY  # type: ignore[attr-defined]
    assert TOKEN not in repr(material) and CERT_KEY not in repr(material)
    every_file = "".join(
        a.content for b in bundles.values() for f in b.files.values() for a in f.values()
    )
    assert "certificateKey:" not in every_file and "token:" not in every_file


def test_quote_filter_survives_bash() -> None:
    hostile = 'it\'s $(reboot) `x` "y" ; rm -rf / \\ end'
    out = subprocess.run(
        ["bash", "-c", f"printf %s {_quote(hostile)}"], capture_output=True, text=True, check=True
    ).stdout
    assert out == hostile


def test_written_modes(bundles, tmp_path) -> None:
    write_bundle(bundles["single"], tmp_path)
    node = tmp_path / "solo-cp-0"
    assert stat.S_IMODE((node / "phases/01-os-prep.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((node / "files/kubeadm-init.yaml").stat().st_mode) == 0o600
    cfg = json.loads((node / "node.json").read_text())
    assert cfg["schema"] == "clusterdeck.dev/node/v1alpha1"
    assert cfg["kubernetes"]["package_version"] == "1.37.2-1.1"
    assert "files/cni/kustomization.yaml" in cfg["files"]


def test_render_command_writes_every_node(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CLUSTERDECK_STATE", str(tmp_path / "state.db"))
    spec = tmp_path / "lab.yaml"
    spec.write_text(SSH_HA)
    out = tmp_path / "out"
    result = run_cli(["render", "-f", str(spec), "-d", str(out)], capsys, monkeypatch)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "lab-cp-0",
        "lab-cp-1",
        "lab-cp-2",
        "lab-workers-0",
        "lab-workers-1",
        "lab-workers-2",
        "lab-workers-3",
    ]
    assert "interface for the VIP" in result.err
    assert not (tmp_path / "state.db").exists()  # render creates nothing
    bad = run_cli(
        ["render", "-f", str(tmp_path / "missing.yaml"), "-d", str(out)], capsys, monkeypatch
    )
    assert bad.code == 2 and "missing.yaml" in bad.err


def _golden_compare(bundle: Bundle, case: str, tmp_path: Path) -> None:
    target = GOLDEN / case
    if os.environ.get("CLUSTERDECK_UPDATE_GOLDEN") == "1":
        import shutil

        shutil.rmtree(target, ignore_errors=True)
        write_bundle(bundle, target)
        return
    fresh = tmp_path / case
    write_bundle(bundle, fresh)
    want = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
    got = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert got == want, "file list changed; CLUSTERDECK_UPDATE_GOLDEN=1 rewrites the goldens"
    for rel in got:
        assert (fresh / rel).read_text() == (target / rel).read_text(), (
            f"{case}/{rel} differs from the golden file; review, then rewrite with "
            "CLUSTERDECK_UPDATE_GOLDEN=1"
        )


def test_golden_files(bundles, tmp_path) -> None:
    for case in ("single", "ssh-ha", "aws-ha"):
        _golden_compare(bundles[case], case, tmp_path)
