"""Which bootstrap phases each node runs, in order, derived from its role and the spec.

The bootstrap layer renders these phases; the planner only decides which apply. GPU phases go
to aws nodes of a GPU instance family (g*, p*) and to every ssh node (the driver install
checks for a GPU on the machine itself). When the toolkit is asked for and some node may have
a GPU, the first control plane also applies the ``nvidia`` RuntimeClass and NVIDIA's device
plugin, which runs only on nodes labelled as having a GPU.
"""

from __future__ import annotations

from clusterdeck.model.phases import Phase, hook_phase
from clusterdeck.model.topology import Node, Role
from clusterdeck.spec.models import Environment, Hook, HookPoint, HookRole, LoadBalancerKind


def is_gpu_node(node: Node) -> bool:
    """May have a GPU: an aws GPU instance, or any ssh host (its phases check the machine)."""
    return node.provider != "aws" or node.gpu_instance


def wants_device_plugin(env: Environment, nodes: list[Node]) -> bool:
    return env.spec.nvidia_container_toolkit.install and any(is_gpu_node(n) for n in nodes)


def hook_targets(hook: Hook, node: Node) -> bool:
    """Whether ``hook`` runs on ``node``: its roles and pools (both, when both are given);
    a clusterReady hook that names neither runs once, on the first control plane."""
    if hook.at is HookPoint.CLUSTER_READY and not hook.roles and not hook.pools:
        return node.first_control_plane
    role = HookRole.CONTROL_PLANE if node.role is Role.CONTROL_PLANE else HookRole.WORKER
    return (not hook.roles or role in hook.roles) and (not hook.pools or node.pool in hook.pools)


def phases_for(env: Environment, node: Node, *, device_plugin: bool = False) -> list[str]:
    """The node's phases with the file's hooks at their points, in the order they are listed:
    beforeInstall before the OS is prepared, afterRuntime after containerd (and the NVIDIA
    toolkit), afterKubernetes once the node is in the cluster (labelled), clusterReady last."""
    own = _own_phases(env, node, device_plugin=device_plugin)

    def hooks(point: HookPoint) -> list[str]:
        return [
            hook_phase(h.name) for h in env.spec.hooks if h.at is point and hook_targets(h, node)
        ]

    out: list[str] = []
    runtime_done = {Phase.CONTAINERD, Phase.NVIDIA_DRIVER, Phase.NVIDIA_TOOLKIT}
    last_runtime = max((i for i, p in enumerate(own) if p in runtime_done), default=None)
    for i, phase in enumerate(own):
        if phase is Phase.OS_PREP:
            out += hooks(HookPoint.BEFORE_INSTALL)
        out.append(phase.value)
        if i == last_runtime:
            out += hooks(HookPoint.AFTER_RUNTIME)
    if last_runtime is None:  # no runtime installed here: after the OS is prepared
        at = out.index(Phase.OS_PREP.value) + 1
        out[at:at] = hooks(HookPoint.AFTER_RUNTIME)
    if env.spec.kubernetes.install:
        out += hooks(HookPoint.AFTER_KUBERNETES)
        out += hooks(HookPoint.CLUSTER_READY)
    return out


def _own_phases(env: Environment, node: Node, *, device_plugin: bool = False) -> list[Phase]:
    spec = env.spec
    phases: list[Phase] = []
    if node.provider == "aws":
        phases.append(Phase.WAIT_CLOUD_INIT)
    phases.append(Phase.OS_PREP)
    if spec.overlay is not None:
        phases.append(Phase.OVERLAY)
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
            if device_plugin:
                phases.append(Phase.NVIDIA_DEVICE_PLUGIN)
        else:
            phases.append(Phase.KUBEADM_JOIN_CONTROL_PLANE)
    else:
        phases.append(Phase.KUBEADM_JOIN_WORKER)
    phases.append(Phase.NODE_LABELS_TAINTS)
    return phases
