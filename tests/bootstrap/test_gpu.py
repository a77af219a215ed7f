"""The cluster side of the NVIDIA stack: the device plugin pin is the file at its release tag,
and the real kubectl joins it with clusterdeck's RuntimeClass and patches as intended. (That
the real API server accepts the result is checked in tests/e2e/test_cluster.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from clusterdeck.bootstrap import gpu
from clusterdeck.bootstrap.kustomize import UPSTREAM_FILE
from tests.e2e.cluster import build_bundle

K8S_SCHEMA_VERSION = "1.33.0"


def device_plugin_release() -> Path:
    """deployments/static/nvidia-device-plugin.yml of the Go module at the pinned tag."""
    out = subprocess.run(
        [
            "go",
            "mod",
            "download",
            "-json",
            f"github.com/NVIDIA/k8s-device-plugin@{gpu.DEVICE_PLUGIN.version}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return Path(json.loads(out.stdout)["Dir"]) / "deployments/static/nvidia-device-plugin.yml"


def kustomized(kubectl: Path, work: Path) -> list[Any]:
    """The rendered nvidia kustomization over the release file, as kubectl builds it."""
    (work / UPSTREAM_FILE).write_bytes(device_plugin_release().read_bytes())
    (work / "kustomization.yaml").write_text(gpu.device_plugin_kustomization())
    (work / gpu.RUNTIME_CLASS_FILE).write_text(gpu.runtime_class())
    out = subprocess.run(
        [str(kubectl), "kustomize", str(work)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in YAML(typ="safe").load_all(out) if d]


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return build_bundle() / "bin" / "kubectl"


def test_device_plugin_pin_is_the_file_at_its_release_tag() -> None:
    digest = hashlib.sha256(device_plugin_release().read_bytes()).hexdigest()
    assert digest == gpu.DEVICE_PLUGIN.sha256
    assert f"/{gpu.DEVICE_PLUGIN.version}/deployments/static/" in gpu.DEVICE_PLUGIN.url


def test_device_plugin_runs_with_the_nvidia_runtime_on_gpu_nodes_only(
    kubectl: Path, tmp_path: Path
) -> None:
    docs = kustomized(kubectl, tmp_path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["DaemonSet", "RuntimeClass"]
    runtime = next(d for d in docs if d["kind"] == "RuntimeClass")
    assert runtime["metadata"]["name"] == runtime["handler"] == "nvidia"
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {gpu.GPU_LABEL: "true"}
    (container,) = pod["containers"]  # the patch added none: it matched the release's object
    assert container["image"] == f"nvcr.io/nvidia/k8s-device-plugin:{gpu.DEVICE_PLUGIN.version}"
    # the release's toleration stays: GPU pools are tainted nvidia.com/gpu
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
