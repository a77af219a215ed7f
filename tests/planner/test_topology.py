"""The topology: stable names, roles, zones, labels and taints from the spec."""

from __future__ import annotations

from clusterdeck import api
from clusterdeck.model.observed import Observed, ObservedNode
from clusterdeck.model.plan import ActionKind
from clusterdeck.planner import build_plan, expand
from tests.helpers import EXAMPLES


def test_names_roles_pools_are_stable_and_ordered() -> None:
    env = api.load(EXAMPLES / "aws-multi-pool-spot.yaml")
    first, second = expand(env), expand(env)
    assert first == second
    names = [n.name for n in first.nodes]
    assert names[:3] == ["burst-cp-0", "burst-cp-1", "burst-cp-2"]
    assert "burst-spot-gpu-3" in names and "burst-lab-0" in names
    assert len(names) == len(set(names)) == 12


def test_labels_and_taints() -> None:
    env = api.load(EXAMPLES / "aws-multi-pool-spot.yaml")
    topo = expand(env)
    cp = topo.node("burst-cp-0")
    assert cp.labels["clusterdeck.dev/managed"] == "true"
    assert cp.labels["clusterdeck.dev/role"] == "control-plane"
    assert "node-role.kubernetes.io/worker" not in cp.labels
    assert cp.taints == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    gpu = topo.node("burst-spot-gpu-0")
    assert gpu.labels["clusterdeck.dev/pool"] == "spot-gpu"
    assert gpu.labels["node-role.kubernetes.io/worker"] == ""
    assert gpu.labels["nvidia.com/gpu.present"] == "true"
    assert gpu.taints == ["nvidia.com/gpu=present:NoSchedule"]
    assert gpu.spot is not None and gpu.spot.max_price_percent == 60


def test_zones_round_robin_within_a_pool() -> None:
    env = api.load(EXAMPLES / "aws-multi-pool-spot.yaml")
    topo = expand(env)
    zones = [topo.node(f"burst-spot-gpu-{i}").zone for i in range(4)]
    assert zones == ["us-west-2a", "us-west-2b", "us-west-2a", "us-west-2b"]
    assert {topo.node(f"burst-spot-fixed-{i}").zone for i in range(2)} == {"us-west-2a"}
    lab = topo.node("burst-lab-0")
    assert lab.provider == "ssh" and lab.zone is None
    assert lab.host is not None and lab.host.address == "192.0.2.10"


def test_dedicated_answer_overrides_the_file() -> None:
    env = api.load(EXAMPLES / "ssh-existing.yaml")
    assert expand(env).control_plane_untainted
    tainted = expand(env, dedicated=True)
    assert not tainted.control_plane_untainted
    assert all(n.taints for n in tainted.control_planes())


def test_ssh_hosts_inherit_user_and_key() -> None:
    env = api.load(EXAMPLES / "ssh-existing.yaml")
    topo = expand(env)
    assert topo.node("onprem-workers-0").host.user == "root"
    special = topo.node("onprem-workers-1").host
    assert (special.user, special.port) == ("admin", 2222)
    assert special.key == "~/.ssh/id_ed25519"


def test_plan_diffs_against_what_exists() -> None:
    env = api.load(EXAMPLES / "aws-simple.yaml")
    topo = expand(env)
    observed = Observed(
        nodes={
            "gpu-simple-cp-0": ObservedNode(
                name="gpu-simple-cp-0", provider_id="i-1", instance_type="m5.xlarge"
            ),
            "gpu-simple-workers-0": ObservedNode(
                name="gpu-simple-workers-0", instance_type="p3.2xlarge"
            ),
            "gpu-simple-old-0": ObservedNode(name="gpu-simple-old-0"),
        },
        resources={"vpc": "vpc-1"},
    )
    plan = build_plan(env, topo, observed)
    by_target = {a.target: a for a in plan.actions}
    assert by_target["vpc"].kind is ActionKind.NOOP
    assert by_target["igw"].kind is ActionKind.CREATE
    assert by_target["gpu-simple-cp-0"].kind is ActionKind.NOOP
    assert by_target["gpu-simple-workers-0"].kind is ActionKind.REPLACE
    assert "p3.2xlarge -> g4dn.xlarge" in by_target["gpu-simple-workers-0"].reason
    assert by_target["gpu-simple-workers-1"].kind is ActionKind.CREATE
    assert by_target["gpu-simple-old-0"].kind is ActionKind.DELETE


def test_gpu_phases_only_on_gpu_instance_families() -> None:
    env = api.load(EXAMPLES / "aws-simple.yaml")
    _, plan = api.plan(env)
    phases = {n.name: n.phases for n in plan.nodes}
    assert "nvidia-driver" not in phases["gpu-simple-cp-0"]
    assert "nvidia-driver" in phases["gpu-simple-workers-0"]
    assert phases["gpu-simple-cp-0"].index("kubeadm-init") < phases["gpu-simple-cp-0"].index("cni")


def test_keepalived_plan_has_vip_endpoint_and_lb_phase() -> None:
    env = api.load(EXAMPLES / "ssh-existing.yaml")
    _, plan = api.plan(env)
    assert (plan.endpoint.host, plan.endpoint.port) == ("192.0.2.100", 8443)
    cps = [n for n in plan.nodes if n.role == "control-plane"]
    assert all("api-load-balancer" in n.phases for n in cps)
    assert plan.resources == [] and plan.security_groups == []


def test_dedicated_answer_is_recorded_with_the_spec() -> None:
    import json

    from clusterdeck.spec.models import Environment

    env = api.load(EXAMPLES / "ssh-existing.yaml")
    recorded = Environment.model_validate_json(json.dumps(api.effective_spec(env, True)))
    assert recorded.spec.cluster.control_plane.dedicated is True
    assert not expand(recorded).control_plane_untainted
    assert api.effective_spec(env, None) == env.model_dump(mode="json", by_alias=True)
