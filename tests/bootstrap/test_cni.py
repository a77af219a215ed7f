"""The CNI manifests: the pins are the files at their release tags, and clusterdeck's patches
land where each CNI reads them once the real kubectl joins them with the release manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from clusterdeck.bootstrap import cni
from clusterdeck.bootstrap.kustomize import UPSTREAM_FILE
from tests.e2e.cluster import build_bundle

K8S_SCHEMA_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def bundle() -> Path:
    return build_bundle()


@pytest.fixture(scope="module")
def flannel_release() -> Path:
    """Documentation/kube-flannel.yml of the Go module at the pinned tag (the module proxy
    serves the repository's files as they are at the tag)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/flannel-io/flannel@{cni.FLANNEL.version}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return Path(json.loads(out.stdout)["Dir"]) / "Documentation" / "kube-flannel.yml"


def _kustomize(bundle: Path, tmp_path: Path, upstream: str, name: str, cidr: str) -> list[Any]:
    (tmp_path / UPSTREAM_FILE).write_text(upstream)
    (tmp_path / "kustomization.yaml").write_text(cni.kustomization(name, cidr))
    out = subprocess.run(
        [str(bundle / "bin" / "kubectl"), "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in YAML(typ="safe").load_all(out) if d]


def _daemonset(docs: list[Any], name: str) -> Any:
    return next(d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == name)


def test_flannel_pin_is_the_file_at_its_release_tag(flannel_release: Path) -> None:
    assert hashlib.sha256(flannel_release.read_bytes()).hexdigest() == cni.FLANNEL.sha256
    assert cni.FLANNEL.url.endswith(f"/{cni.FLANNEL.version}/Documentation/kube-flannel.yml")


def test_flannel_release_manifest_takes_the_pod_range_and_the_node_ip(
    bundle: Path, flannel_release: Path, tmp_path: Path
) -> None:
    docs = _kustomize(bundle, tmp_path, flannel_release.read_text(), "flannel", "172.31.0.0/16")
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    net = json.loads(config["data"]["net-conf.json"])
    assert net["Network"] == "172.31.0.0/16" and net["Backend"] == {"Type": "vxlan"}
    pod = _daemonset(docs, "kube-flannel-ds")["spec"]["template"]["spec"]
    # no container was added by a patch that missed: every one is the release's, with its image
    assert [c["name"] for c in pod["containers"]] == ["kube-flannel"]
    assert all(c.get("image") for c in pod["containers"] + pod["initContainers"])
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["FLANNELD_IFACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert "POD_NAME" in env  # the release's own variables stay
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)


def test_calico_patch_targets_the_release_daemonset(bundle: Path, tmp_path: Path) -> None:
    """The release manifest cannot be fetched here: a DaemonSet shaped like its calico-node
    (names as in manifests/calico-vxlan.yaml at the pinned tag) stands in for it."""
    release_like = (
        "apiVersion: apps/v1\nkind: DaemonSet\n"
        "metadata: {name: calico-node, namespace: kube-system}\n"
        "spec:\n  selector: {matchLabels: {k8s-app: calico-node}}\n  template:\n"
        "    metadata: {labels: {k8s-app: calico-node}}\n    spec:\n      containers:\n"
        "      - name: calico-node\n        image: quay.io/calico/node:" + cni.CALICO.version + "\n"
        "        env: [{name: CALICO_IPV4POOL_VXLAN, value: Always}]\n"
    )
    docs = _kustomize(bundle, tmp_path, release_like, "calico", "172.30.0.0/16")
    (container,) = _daemonset(docs, "calico-node")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env == {
        "CALICO_IPV4POOL_VXLAN": "Always",
        "CALICO_IPV4POOL_CIDR": "172.30.0.0/16",
        "IP_AUTODETECTION_METHOD": "kubernetes-internal-ip",
    }


def test_pins_name_their_release_tags() -> None:
    for pin in cni.UPSTREAM.values():
        assert f"/{pin.version}/" in pin.url and pin.url.startswith("https://")
        assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
    with pytest.raises(ValueError, match="cilium"):
        cni.upstream("cilium")
