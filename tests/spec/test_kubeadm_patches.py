"""``spec.kubernetes.config``: what a user may set, what clusterdeck owns, and the merge.

The merged files themselves are checked by the real kubeadm in
``tests/bootstrap/test_kubeadm_patches_real.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML

from clusterdeck.spec import check_bytes
from clusterdeck.spec.kubeadm_patches import merge
from clusterdeck.spec.models import KubernetesConfig

BASE = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: dra}
spec:
  provider: ssh
  cluster:
    controlPlane:
      hosts: [{address: 192.0.2.11}]
    workers:
      hosts: [{address: 192.0.2.21}]
  kubernetes:
    config:
"""


def config_errors(config: str) -> list[tuple[str, str]]:
    text = BASE + "".join(f"      {line}\n" for line in config.strip("\n").splitlines())
    return [(i.path, i.message) for i in check_bytes(text.encode()).errors]


def config_of(config: dict[str, Any]) -> KubernetesConfig:
    return KubernetesConfig.model_validate(config)


def test_fragments_gates_and_flags_are_accepted() -> None:
    assert (
        config_errors(
            """
featureGates: {DynamicResourceAllocation: true}
apiServer: {extraArgs: {audit-log-maxage: "30"}}
kubelet: {extraArgs: {max-pods: "80"}}
clusterConfiguration:
  apiServer:
    extraArgs: [{name: audit-log-maxage, value: "30"}]
kubeletConfiguration: {maxPods: 80, featureGates: {DynamicResourceAllocation: true}}
"""
        )
        == []
    )


@pytest.mark.parametrize(
    ("config", "path", "owner"),
    [
        (
            "clusterConfiguration: {networking: {podSubnet: 10.0.0.0/8}}",
            "spec.kubernetes.config.clusterConfiguration.networking.podSubnet",
            "spec.kubernetes.podCidr",
        ),
        (
            "clusterConfiguration: {networking: {serviceSubnet: 10.0.0.0/8}}",
            "spec.kubernetes.config.clusterConfiguration.networking.serviceSubnet",
            "spec.kubernetes.serviceCidr",
        ),
        (
            "clusterConfiguration: {controlPlaneEndpoint: 'lb:6443'}",
            "spec.kubernetes.config.clusterConfiguration.controlPlaneEndpoint",
            "API endpoint",
        ),
        (
            "clusterConfiguration: {apiServer: {certSANs: [x]}}",
            "spec.kubernetes.config.clusterConfiguration.apiServer.certSANs",
            "certificate names",
        ),
        (
            "initConfiguration: {nodeRegistration: {taints: []}}",
            "spec.kubernetes.config.initConfiguration.nodeRegistration.taints",
            "taints",
        ),
        (
            "joinConfiguration: {discovery: {bootstrapToken: {token: x}}}",
            "spec.kubernetes.config.joinConfiguration.discovery",
            "join discovery",
        ),
        (
            "initConfiguration: {bootstrapTokens: [{token: abcdef.0123456789abcdef}]}",
            "spec.kubernetes.config.initConfiguration.bootstrapTokens",
            "secret",
        ),
        (
            "kubeletConfiguration: {cgroupDriver: cgroupfs}",
            "spec.kubernetes.config.kubeletConfiguration.cgroupDriver",
            "cgroup driver",
        ),
        (
            "kubelet: {extraArgs: {node-ip: 10.0.0.9}}",
            "spec.kubernetes.config.kubelet.extraArgs.node-ip",
            "address",
        ),
        (
            "joinConfiguration: {nodeRegistration: "
            "{kubeletExtraArgs: [{name: node-ip, value: x}]}}",
            "spec.kubernetes.config.joinConfiguration.nodeRegistration.kubeletExtraArgs",
            "address",
        ),
        (
            "controllerManager: {extraArgs: {cluster-cidr: 10.0.0.0/8}}",
            "spec.kubernetes.config.controllerManager.extraArgs.cluster-cidr",
            "podCidr",
        ),
        (
            "kubeletConfiguration: {kind: Other}",
            "spec.kubernetes.config.kubeletConfiguration.kind",
            "clusterdeck",
        ),
    ],
)
def test_a_field_clusterdeck_owns_is_an_error_naming_it(config: str, path: str, owner: str) -> None:
    found = config_errors(config)
    assert [p for p, _ in found] == [path], found
    assert "set by clusterdeck" in found[0][1] and owner in found[0][1]


def test_a_shortcut_that_contradicts_a_fragment_is_an_error() -> None:
    found = config_errors(
        """
apiServer: {extraArgs: {audit-log-maxage: "30"}}
clusterConfiguration:
  apiServer:
    extraArgs: [{name: audit-log-maxage, value: "7"}]
"""
    )
    assert len(found) == 1
    path, message = found[0]
    assert path == "spec.kubernetes.config.apiServer.extraArgs.audit-log-maxage"
    assert "audit-log-maxage=7" in message and "one place" in message


@pytest.mark.parametrize(
    "fragment",
    [
        "kubeletConfiguration: {featureGates: {DRAPartitionableDevices: false}}",
        "clusterConfiguration: {scheduler: {extraArgs: "
        "[{name: feature-gates, value: 'DRAPartitionableDevices=false'}]}}",
    ],
)
def test_a_feature_gate_set_two_ways_must_agree(fragment: str) -> None:
    found = config_errors("featureGates: {DRAPartitionableDevices: true}\n" + fragment)
    assert [p for p, _ in found] == ["spec.kubernetes.config.featureGates.DRAPartitionableDevices"]
    agreeing = fragment.replace("false", "true")
    assert config_errors("featureGates: {DRAPartitionableDevices: true}\n" + agreeing) == []


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ("featureGates: {dra-thing: true}", "spec.kubernetes.config.featureGates"),
        ("apiServer: {extraArgs: {--v: '4'}}", "spec.kubernetes.config.apiServer.extraArgs"),
        (
            "apiServer: {extraArgs: {feature-gates: 'A=true'}}",
            "spec.kubernetes.config.apiServer.extraArgs.feature-gates",
        ),
        ("schedulr: {extraArgs: {}}", "spec.kubernetes.config.schedulr"),
    ],
)
def test_malformed_shortcuts_name_their_field(config: str, path: str) -> None:
    found = config_errors(config)
    assert found and found[0][0] == path, found


def test_merge_lays_fragments_then_shortcuts_over_the_rendered_document() -> None:
    rendered = {
        "kind": "ClusterConfiguration",
        "networking": {"podSubnet": "192.168.0.0/16"},
        "apiServer": {"certSANs": ["a"], "extraArgs": [{"name": "x", "value": "1"}]},
    }
    config = config_of(
        {
            "featureGates": {"DRAPartitionableDevices": True},
            "apiServer": {"extraArgs": {"audit-log-maxage": "30"}},
            "clusterConfiguration": {
                "apiServer": {
                    "extraArgs": [{"name": "x", "value": "2"}],
                    "timeoutForControlPlane": "4m",
                },
                "dns": {"disabled": True},
            },
        }
    )
    out = merge("ClusterConfiguration", rendered, config)
    assert out["networking"] == {"podSubnet": "192.168.0.0/16"}
    assert out["apiServer"]["certSANs"] == ["a"]
    assert out["apiServer"]["extraArgs"] == [
        {"name": "x", "value": "2"},
        {"name": "audit-log-maxage", "value": "30"},
        {"name": "feature-gates", "value": "DRAPartitionableDevices=true"},
    ]
    assert out["controllerManager"]["extraArgs"] == [
        {"name": "feature-gates", "value": "DRAPartitionableDevices=true"}
    ]
    assert out["dns"] == {"disabled": True}
    assert rendered["apiServer"]["extraArgs"] == [{"name": "x", "value": "1"}]  # not changed
    kubelet = merge("KubeletConfiguration", {"kind": "KubeletConfiguration"}, config)
    assert kubelet["featureGates"] == {"DRAPartitionableDevices": True}
    assert merge("ClusterConfiguration", rendered, None) is rendered


def test_render_shows_the_merged_configuration(tmp_path: Any) -> None:
    from clusterdeck.bootstrap.render import render_environment
    from clusterdeck.model.observed import Observed
    from clusterdeck.planner import build_plan, expand

    text = BASE + (
        "      featureGates: {DRAPartitionableDevices: true}\n"
        "      kubelet: {extraArgs: {max-pods: '80'}}\n"
    )
    env = check_bytes(text.encode()).environment
    assert env is not None
    topology = expand(env)
    bundle = render_environment(env, topology, build_plan(env, topology, Observed.nothing()))
    init = list(
        YAML(typ="safe").load_all(bundle.files["dra-cp-0"]["files/kubeadm-init.yaml"].content)
    )
    kinds = {d["kind"]: d for d in init}
    assert {"name": "max-pods", "value": "80"} in kinds["InitConfiguration"]["nodeRegistration"][
        "kubeletExtraArgs"
    ]
    assert kinds["KubeletConfiguration"]["featureGates"] == {"DRAPartitionableDevices": True}
    assert kinds["KubeProxyConfiguration"]["featureGates"] == {"DRAPartitionableDevices": True}
    join = YAML(typ="safe").load(bundle.files["dra-workers-0"]["files/kubeadm-join.yaml"].content)
    assert {"name": "max-pods", "value": "80"} in join["nodeRegistration"]["kubeletExtraArgs"]
    script = bundle.files["dra-cp-0"]["phases/04-kubeadm-init.sh"].content
    assert "kubeadm config validate" in script
