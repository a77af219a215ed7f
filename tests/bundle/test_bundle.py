"""Offline bundles: ``bundle create --from``, ``bundle inspect``, and what is refused.

These use a small bundle made here (tiny stand-in files under the binaries' names, and real
OCI archives of tiny images, named as kubeadm names them): what is tested is the bundle's
own logic, the manifest, the checksums and the refusals, not what the binaries do (the lab's
end-to-end tests run the real ones).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clusterdeck.bundle.create import CNI_PLUGINS, NODE_BINARIES
from clusterdeck.bundle.manifest import BundleError, FileKind, load, open_checked
from tests.e2e.client import CLI

ROOT = Path(__file__).resolve().parents[2]
IMAGES = [
    "registry.k8s.io/kube-apiserver:v1.37.2",
    "registry.k8s.io/kube-controller-manager:v1.37.2",
    "registry.k8s.io/kube-scheduler:v1.37.2",
    "registry.k8s.io/kube-proxy:v1.37.2",
    "registry.k8s.io/coredns/coredns:v1.14.6",
    "registry.k8s.io/pause:3.10.2",
    "registry.k8s.io/etcd:3.7.0-0",
    "clusterdeck.local/flannel:v0.28.10",
]
FLANNEL = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-flannel-ds, namespace: kube-flannel}
spec:
  template:
    spec:
      containers:
      - name: kube-flannel
        image: clusterdeck.local/flannel:v0.28.10
"""


def _oci_image():  # the lab's image writer (scripts/oci_image.py), loaded by path
    spec = importlib.util.spec_from_file_location("oci_image", ROOT / "scripts" / "oci_image.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["oci_image"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def make_source(tmp: Path, arch: str = "amd64") -> Path:
    source = tmp / f"source-{arch}"
    for sub in ("bin", "cni", "images", "manifests"):
        (source / sub).mkdir(parents=True)
    for name in NODE_BINARIES:
        (source / "bin" / name).write_bytes(f"#!stand-in {name} {arch}\n".encode())
    for name in (*CNI_PLUGINS, "flannel"):
        (source / "cni" / name).write_bytes(f"#!stand-in {name} {arch}\n".encode())
    oci = _oci_image()
    for ref in IMAGES:
        layer = oci.Layer()
        layer.add("/hello", ref.encode(), 0o644)
        short = ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        oci.write_image(source / "images" / f"{short}.tar", ref, layer, entrypoint=None, arch=arch)
    (source / "manifests" / "cni.yaml").write_text(FLANNEL)
    return source


def made_bundle(tmp_path: Path, name: str = "bundle", arch: str = "amd64") -> Path:
    """A bundle made by the CLI from ``make_source`` (a tar archive when ``name`` ends .tar)."""
    out = tmp_path / name
    res = cli(
        "-q",
        "bundle",
        "create",
        "--from",
        str(make_source(tmp_path, arch)),
        "--kubernetes-version",
        "v1.37.2",
        "--arch",
        arch,
        "-O",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("suffix", ["", ".tar"])
def test_create_then_inspect_lists_every_file_and_image(tmp_path: Path, suffix: str) -> None:
    out = made_bundle(tmp_path, f"bundle{suffix}")
    assert out.is_file() if suffix else (out / "bundle.json").is_file()
    if suffix:  # inside the archive, the binaries are plain entries under their own names
        with tarfile.open(out) as tar:
            assert "bin/kubeadm" in tar.getnames() and "bundle.json" in tar.getnames()
    shown = cli("bundle", "inspect", str(out), "-o", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["kubernetesVersion"] == "v1.37.2" and data["verified"] is True
    assert data["pauseImage"] == "registry.k8s.io/pause:3.10.2"
    assert data["cni"] == {
        "name": "flannel",
        "version": "v0.28.10",
        "manifest": "manifests/cni.yaml",
    }
    assert sorted(i["reference"] for i in data["images"]) == sorted(IMAGES)
    kinds = {f["path"]: f["kind"] for f in data["files"]}
    assert kinds["bin/kubeadm"] == FileKind.BINARY and kinds["cni/flannel"] == FileKind.CNI_PLUGIN
    text = cli("bundle", "inspect", str(out))
    assert text.returncode == 0 and "every checksum verified" in text.stdout


def test_a_changed_file_is_refused_naming_it(tmp_path: Path) -> None:
    out = made_bundle(tmp_path)
    kubelet = out / "bin" / "kubelet"
    kubelet.unlink()  # hard-linked from the source: replace, do not write through
    kubelet.write_bytes(b"tampered\n")
    res = cli("bundle", "inspect", str(out))
    assert res.returncode == 2
    assert "bin/kubelet" in res.stderr and "sha256" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(BundleError, match="bin/kubelet"):
        open_checked(out, "v1.37.2")


def test_a_bundle_for_another_version_or_cni_is_refused(tmp_path: Path) -> None:
    out = made_bundle(tmp_path)
    with pytest.raises(
        BundleError, match=r"holds Kubernetes v1\.37\.2, but kubernetes\.version is v1\.36\.3"
    ):
        open_checked(out, "v1.36.3")
    with pytest.raises(BundleError, match=r"flannel CNI, but kubernetes\.cni is calico"):
        open_checked(out, "v1.37.2", "calico")


def test_create_refuses_a_bundle_before_touching_anything(tmp_path: Path) -> None:
    """``create`` checks the bundle first: exit 2, one line, no environment recorded."""
    out = made_bundle(tmp_path)
    spec = tmp_path / "env.yaml"
    spec.write_text(f"""\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: offline}}
spec:
  provider: ssh
  auth: {{username: ubuntu}}
  cluster:
    controlPlane: {{hosts: [{{address: 192.0.2.10}}]}}
  kubernetes: {{version: v1.36.3, cni: flannel, podCidr: 10.244.0.0/16}}
  offline: {{bundle: {out}}}
""")
    state = tmp_path / "state.db"
    res = cli("--state", str(state), "create", "-f", str(spec), "--yes")
    assert res.returncode == 2, res.stderr
    assert "kubernetes.version is v1.36.3" in res.stderr
    listed = cli("--state", str(state), "list", "-o", "json")
    assert "offline" not in listed.stdout


def test_create_from_an_incomplete_directory_names_what_is_missing(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    (source / "bin" / "runc").unlink()
    (source / "images" / "etcd.tar").unlink()

    def create() -> subprocess.CompletedProcess[str]:
        return cli(
            "bundle",
            "create",
            "--from",
            str(source),
            "--kubernetes-version",
            "v1.37.2",
            "-O",
            str(tmp_path / "out"),
        )

    res = create()
    assert res.returncode == 2 and "bin/runc" in res.stderr
    (source / "bin" / "runc").write_text("x")
    res = create()
    assert res.returncode == 2 and "etcd" in res.stderr
    assert not (tmp_path / "out").exists()


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing"):
        res = cli("bundle", "inspect", str(path))
        assert res.returncode == 2 and str(path) in res.stderr
    with pytest.raises(BundleError):
        load(tmp_path / "missing")
