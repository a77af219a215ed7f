"""Upstream release manifests clusterdeck applies: each one's version, URL and sha256.

One place for these facts: the phases download the files by these URLs and refuse any other
digest, and the offline bundle builder takes Flannel's manifest by the same pin. The digests
are those of the files at the release tags (see docs/bootstrap.md for how each was taken).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UpstreamManifest:
    """A release manifest: where it is published and the sha256 of the file at that tag."""

    name: str
    version: str
    url: str
    sha256: str


# Calico's VXLAN manifest (no BGP), the docs' "manifest" install: manifests/calico-vxlan.yaml
# at tag v3.32.1 of projectcalico/calico
CALICO = UpstreamManifest(
    name="calico",
    version="v3.32.1",
    url="https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico-vxlan.yaml",
    sha256="c2ab4f9a4ecde01d66e6f040d6745cd7f174d5ded573164c809ffb9f40a9d566",
)
# Documentation/kube-flannel.yml at tag v0.28.10 of flannel-io/flannel (the same file the Go
# module github.com/flannel-io/flannel@v0.28.10 carries, which the lab's bundle takes)
FLANNEL = UpstreamManifest(
    name="flannel",
    version="v0.28.10",
    url="https://raw.githubusercontent.com/flannel-io/flannel/v0.28.10/Documentation/kube-flannel.yml",
    sha256="944a3c1f925f117727a1b7272a323c80965da642498397ec7e6ea9bef0f9e6c5",
)
# deployments/static/nvidia-device-plugin.yml at tag v0.19.1 of NVIDIA/k8s-device-plugin (the
# file the Go module github.com/NVIDIA/k8s-device-plugin@v0.19.1 carries)
NVIDIA_DEVICE_PLUGIN = UpstreamManifest(
    name="nvidia-device-plugin",
    version="v0.19.1",
    url="https://raw.githubusercontent.com/NVIDIA/k8s-device-plugin/v0.19.1/deployments/static/nvidia-device-plugin.yml",
    sha256="9aaf27d71f5e79a66d9b574d71ef9c3cb641b4dfbb7557a83ac4ec1fa4b497e2",
)
