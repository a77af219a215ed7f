"""The cluster side of the NVIDIA stack: the ``nvidia`` RuntimeClass and the device plugin.

The node side (driver, container toolkit, containerd's ``nvidia`` runtime) is in the phase
scripts and the containerd config. Here: NVIDIA's static device plugin manifest at its release
tag, pinned by sha256, patched to run with the ``nvidia`` runtime and only on nodes labelled
:data:`GPU_LABEL` (which clusterdeck sets on every node it knows to have an NVIDIA GPU), plus
the RuntimeClass that lets pods ask for that runtime. Every GPU node must then advertise
:data:`GPU_RESOURCE`; the readiness wait checks it.
"""

from __future__ import annotations

from clusterdeck.bootstrap.kustomize import daemonset_patch, dump, kustomization
from clusterdeck.model.releases import NVIDIA_DEVICE_PLUGIN

KUSTOMIZATION = "files/nvidia/kustomization.yaml"
RUNTIME_CLASS_FILE = "runtimeclass.yaml"
RUNTIME_CLASS = "nvidia"  # also the handler: containerd's runtime of that name
GPU_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"

DEVICE_PLUGIN = NVIDIA_DEVICE_PLUGIN
DAEMONSET = ("nvidia-device-plugin-daemonset", "kube-system")


def runtime_class() -> str:
    return dump(
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": RUNTIME_CLASS},
            "handler": RUNTIME_CLASS,
        }
    )


def device_plugin_kustomization() -> str:
    pod: dict[str, object] = {
        "runtimeClassName": RUNTIME_CLASS,
        "nodeSelector": {GPU_LABEL: "true"},
    }
    return kustomization([daemonset_patch(*DAEMONSET, pod)], extra=[RUNTIME_CLASS_FILE])
