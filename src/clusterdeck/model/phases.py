"""Names and order of the bootstrap phases a node goes through.

Shared vocabulary between the planner (which lists them in the plan), the bootstrap layer
(which renders each as a self-contained script) and the state store (events per phase).
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    WAIT_CLOUD_INIT = "wait-cloud-init"
    OS_PREP = "os-prep"
    OVERLAY = "overlay"
    CONTAINERD = "containerd"
    NVIDIA_DRIVER = "nvidia-driver"
    NVIDIA_TOOLKIT = "nvidia-container-toolkit"
    KUBE_PACKAGES = "kube-packages"
    LOAD_BALANCER = "api-load-balancer"
    KUBEADM_INIT = "kubeadm-init"
    CNI = "cni"
    NVIDIA_DEVICE_PLUGIN = "nvidia-device-plugin"
    KUBEADM_JOIN_CONTROL_PLANE = "kubeadm-join-control-plane"
    KUBEADM_JOIN_WORKER = "kubeadm-join-worker"
    NODE_LABELS_TAINTS = "labels-and-taints"
    # day-2: a Kubernetes upgrade (not part of a create)
    KUBEADM_UPGRADE = "kubeadm-upgrade"
    KUBELET_UPGRADE = "kubelet-upgrade"


PHASE_PURPOSE: dict[Phase, str] = {
    Phase.WAIT_CLOUD_INIT: "wait until cloud-init has finished on the instance",
    Phase.OS_PREP: "swap off, kernel modules overlay and br_netfilter, sysctls for bridged traffic",
    Phase.OVERLAY: "the WireGuard overlay interface, up before the kubelet at every boot",
    Phase.CONTAINERD: "containerd with the systemd cgroup driver",
    Phase.NVIDIA_DRIVER: "NVIDIA kernel driver",
    Phase.NVIDIA_TOOLKIT: "NVIDIA container toolkit, containerd runtime and CDI specs",
    Phase.KUBE_PACKAGES: "kubeadm, kubelet and kubectl pinned to the cluster version",
    Phase.LOAD_BALANCER: "keepalived virtual IP and HAProxy in front of the API servers",
    Phase.KUBEADM_INIT: "kubeadm init from the rendered configuration",
    Phase.CNI: "pod network add-on",
    Phase.NVIDIA_DEVICE_PLUGIN: "the nvidia RuntimeClass and NVIDIA's device plugin DaemonSet",
    Phase.KUBEADM_JOIN_CONTROL_PLANE: "join as a control plane (one at a time, etcd member add)",
    Phase.KUBEADM_JOIN_WORKER: "join as a worker (in parallel with other workers)",
    Phase.NODE_LABELS_TAINTS: "apply the topology's labels and taints (untaint when not dedicated)",
    Phase.KUBEADM_UPGRADE: "the new kubeadm; kubeadm upgrade apply (first control plane) or node",
    Phase.KUBELET_UPGRADE: "the new kubelet and kubectl, and a kubelet restart",
}


# A hook of the user's file runs as a phase of its own, named after it.
HOOK_PREFIX = "hook-"


def hook_phase(name: str) -> str:
    return f"{HOOK_PREFIX}{name}"


def hook_of(phase: str) -> str | None:
    """The hook a phase runs, or None for clusterdeck's own phases."""
    return phase.removeprefix(HOOK_PREFIX) if phase.startswith(HOOK_PREFIX) else None
