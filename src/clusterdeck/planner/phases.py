"""Which bootstrap phases each node runs, in order, derived from its role and the spec.

The bootstrap layer renders these phases; the planner only decides which apply. GPU phases go
to aws nodes of a GPU instance family (g*, p*) and to every ssh node (the driver install
checks for a GPU on the machine itself).
"""

from __future__ import annotations

from clusterdeck.model.phases import Phase
from clusterdeck.model.topology import Node, Role
from clusterdeck.spec.models import Environment, LoadBalancerKind

GPU_FAMILIES = ("g", "p")


def is_gpu_node(node: Node) -> bool:
    if node.provider != "aws":
        return True
    return bool(node.instance_type) and (node.instance_type or "")[0] in GPU_FAMILIES


def phases_for(env: Environment, node: Node) -> list[Phase]:
    spec = env.spec
    phases: list[Phase] = []
    if node.provider == "aws":
        phases.append(Phase.WAIT_CLOUD_INIT)
    phases.append(Phase.OS_PREP)
    if spec.container_runtime.install:
        phases.append(Phase.CONTAINERD)
    gpu = is_gpu_node(node)
    if spec.nvidia_driver.install and gpu:
        phases.append(Phase.NVIDIA_DRIVER)
    if spec.nvidia_container_toolkit.install and gpu:
        phases.append(Phase.NVIDIA_TOOLKIT)
    if not spec.kubernetes.install:
        return phases
    phases.append(Phase.KUBE_PACKAGES)
    ha = spec.cluster.high_availability
    if node.role is Role.CONTROL_PLANE:
        if ha.enabled and ha.load_balancer is LoadBalancerKind.KEEPALIVED:
            phases.append(Phase.LOAD_BALANCER)
        if node.first_control_plane:
            phases += [Phase.KUBEADM_INIT, Phase.CNI]
        else:
            phases.append(Phase.KUBEADM_JOIN_CONTROL_PLANE)
    else:
        phases.append(Phase.KUBEADM_JOIN_WORKER)
    phases.append(Phase.NODE_LABELS_TAINTS)
    return phases
