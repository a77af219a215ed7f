"""Every example validates and plans offline; the HA plan carries the reference SG rules."""

from __future__ import annotations

import json

import pytest

from clusterdeck import api
from tests.helpers import EXAMPLES, run_cli

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_six_documented_examples_exist() -> None:
    names = {p.stem for p in EXAMPLE_FILES}
    assert {
        "aws-simple",
        "aws-ha",
        "aws-minimal",
        "single-node",
        "ssh-existing",
        "aws-multi-pool-spot",
    } <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_validates_and_plans(path, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CLUSTERDECK_STATE", str(tmp_path / "state.db"))
    result = run_cli(["validate", "-f", str(path), "-o", "json"], capsys, monkeypatch)
    assert result.code == 0, result.out
    assert json.loads(result.out)["valid"] is True
    result = run_cli(
        ["--non-interactive", "plan", "-f", str(path), "-o", "json"], capsys, monkeypatch
    )
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["nodes"], "a plan lists its nodes"
    assert all(node["phases"] for node in plan["nodes"])
    assert not (tmp_path / "state.db").exists(), "plan must not create a state store"


# The reference tables (seed 000): (ports, protocol, sources, purpose).
CP_TABLE = [
    ("22", "tcp", {"caller-ip"}, "SSH access"),
    (
        "6443",
        "tcp",
        {"caller-ip", "cidr:10.0.1.0/24", "security-group:gpu-ha-worker"},
        "Kubernetes API",
    ),
    ("2379-2380", "tcp", {"self:gpu-ha-cp"}, "etcd peer/client"),
    ("10250", "tcp", {"self:gpu-ha-cp", "security-group:gpu-ha-worker"}, "kubelet"),
    ("10259", "tcp", {"self:gpu-ha-cp"}, "kube-scheduler"),
    ("10257", "tcp", {"self:gpu-ha-cp"}, "kube-controller-manager"),
    ("4789", "udp", {"self:gpu-ha-cp", "security-group:gpu-ha-worker"}, "Calico VXLAN"),
    ("-", "icmp", {"cidr:10.0.0.0/16"}, "Ping / path MTU discovery"),
]
WORKER_TABLE = [
    ("22", "tcp", {"caller-ip"}, "SSH access"),
    ("10250", "tcp", {"security-group:gpu-ha-cp"}, "kubelet (from control-plane only)"),
    # Tighter than the reference's 0.0.0.0/0: NodePorts follow ingressCidrs / the caller's IP.
    ("30000-32767", "tcp", {"caller-ip"}, "NodePort services"),
    ("4789", "udp", {"security-group:gpu-ha-cp", "security-group:gpu-ha-worker"}, "Calico VXLAN"),
    ("-", "icmp", {"cidr:10.0.0.0/16"}, "Ping / path MTU discovery"),
]


def _rows(group: dict) -> list[tuple[str, str, set[str], str]]:
    rows = []
    for rule in group["rules"]:
        ports = (
            "-"
            if rule["protocol"] == "icmp"
            else (
                str(rule["from_port"])
                if rule["from_port"] == rule["to_port"]
                else f"{rule['from_port']}-{rule['to_port']}"
            )
        )
        sources = {
            s["kind"] if s["kind"] == "caller-ip" else f"{s['kind']}:{s['value']}"
            for s in rule["sources"]
        }
        rows.append((ports, rule["protocol"], sources, rule["purpose"]))
    return rows


def test_ha_plan_json_lists_reference_security_group_rules(capsys, monkeypatch) -> None:
    result = run_cli(
        ["plan", "-f", str(EXAMPLES / "aws-ha.yaml"), "-o", "json"], capsys, monkeypatch
    )
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    groups = {g["name"]: g for g in plan["security_groups"]}
    assert set(groups) == {"gpu-ha-cp", "gpu-ha-worker"}
    # The HA example spans three zones, so the API also admits the other public subnets.
    cp_rows = _rows(groups["gpu-ha-cp"])
    api_row = next(r for r in cp_rows if r[0] == "6443")
    assert api_row[2] >= CP_TABLE[1][2]
    assert [r for r in cp_rows if r[0] != "6443"] == [r for r in CP_TABLE if r[0] != "6443"]
    assert _rows(groups["gpu-ha-worker"]) == WORKER_TABLE
    assert plan["load_balancer"]["name"] == "gpu-ha-nlb"
    assert plan["load_balancer"]["listener_port"] == 6443
    assert "10 s" in plan["load_balancer"]["health_check"]
    assert plan["endpoint"]["kind"] == "nlb"


def test_single_node_plan_says_control_plane_is_untainted() -> None:
    env = api.load(EXAMPLES / "single-node.yaml")
    _, plan = api.plan(env)
    assert plan.control_plane_untainted
    assert "single-node" in plan.untainted_reason
    assert plan.nodes[0].taints == []
    assert "labels-and-taints" in plan.nodes[0].phases


def test_ingress_cidrs_replace_the_caller_ip_everywhere() -> None:
    env = api.load(EXAMPLES / "aws-private.yaml")
    _, plan = api.plan(env)
    kinds = {s.kind.value for g in plan.security_groups for r in g.rules for s in r.sources}
    assert "caller-ip" not in kinds
    bastion = next(g for g in plan.security_groups if g.role == "bastion")
    assert [str(s) for s in bastion.rules[0].sources] == ["203.0.113.0/24"]
    cp = next(g for g in plan.security_groups if g.role == "control-plane")
    ssh = next(r for r in cp.rules if r.from_port == 22)
    assert [s.value for s in ssh.sources] == ["private-lab-bastion"], (
        "private mode: SSH via bastion only"
    )
    assert all(not g.public_ip for g in plan.instance_groups if g.pool != "bastion")
    nats = [r for r in plan.resources if r.kind == "nat-gateway"]
    assert len(nats) == 2, "one NAT gateway per zone"
