"""What the readiness wait counts as not ready yet: DaemonSets and GPU nodes."""

from __future__ import annotations

from clusterdeck.bootstrap import gpu
from clusterdeck.pipeline.actions import gpus_not_advertised, unavailable_daemonsets


def _ds(name: str, desired: int, ready: int, generation: int, observed: int | None) -> dict:
    status = {"desiredNumberScheduled": desired, "numberReady": ready}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"namespace": "kube-system", "name": name, "generation": generation},
        "status": status,
    }


def test_a_daemonset_for_absent_nodes_is_not_waited_for_once_observed() -> None:
    data = {
        "items": [
            _ds("device-plugin", 0, 0, 1, 1),  # no GPU node: nothing to run, nothing to wait for
            _ds("just-applied", 0, 0, 1, None),  # the controller has not seen it yet
            _ds("updated", 3, 3, 2, 1),  # counts are of the previous spec
            _ds("flannel", 3, 2, 1, 1),
            _ds("kube-proxy", 3, 3, 1, 1),
        ]
    }
    assert unavailable_daemonsets(data) == [
        "kube-system/just-applied (0/0 ready)",
        "kube-system/updated (3/3 ready)",
        "kube-system/flannel (2/3 ready)",
    ]


def _node(name: str, labels: dict[str, str], allocatable: dict[str, str]) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": allocatable}}


def test_every_gpu_node_must_offer_nvidia_gpus() -> None:
    label = {gpu.GPU_LABEL: "true"}
    data = {
        "items": [
            _node("cpu-0", {}, {"cpu": "4"}),
            _node("gpu-0", label, {"cpu": "4", "nvidia.com/gpu": "8"}),
            _node("gpu-1", label, {"cpu": "4"}),
            _node("gpu-2", label, {"cpu": "4", "nvidia.com/gpu": "0"}),
        ]
    }
    assert gpus_not_advertised(data) == [
        "gpu-1 (no nvidia.com/gpu advertised)",
        "gpu-2 (no nvidia.com/gpu advertised)",
    ]
