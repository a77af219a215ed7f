"""Create, observe, re-run and delete the examples against a real moto server.

Each test checks what a user would see in the AWS console afterwards: the instances per pool
and zone, the security-group rules of the reference tables, the NLB, the NAT gateways, the
addresses in the state store, and, after delete, that nothing tagged is left.
"""

from __future__ import annotations

import boto3
import pytest

from clusterdeck import api
from clusterdeck.providers import registry
from clusterdeck.providers.aws.session import CALLS
from clusterdeck.providers.base import ApplyContext
from clusterdeck.spec import load_file
from tests.aws.conftest import CALLER_IP, Aws
from tests.aws.support import EXAMPLES, FIXTURES, counts, create, instances, tagged

pytestmark = [pytest.mark.moto]


def _rules(group: dict) -> set[tuple[str, int, int, str]]:
    out = set()
    for perm in group["IpPermissions"]:
        low, high = perm.get("FromPort", -1), perm.get("ToPort", -1)
        out |= {(perm["IpProtocol"], low, high, r["CidrIp"]) for r in perm.get("IpRanges", [])}
        out |= {(perm["IpProtocol"], low, high, p["GroupId"])
                for p in perm.get("UserIdGroupPairs", [])}
    return out


def _groups(name: str) -> dict[str, dict]:
    ec2 = boto3.client("ec2", region_name="us-west-2")
    found = ec2.describe_security_groups(Filters=[
        {"Name": "tag:clusterdeck.dev/environment", "Values": [name]}])["SecurityGroups"]
    return {g["GroupName"]: g for g in found}


def _delete_and_check_nothing_left(aws: Aws, name: str) -> None:
    leftovers = api.delete(name, aws.store)
    assert leftovers == []
    assert tagged(name) == {}
    assert aws.store.environment(name) is None


def test_simple_example_creates_network_rules_and_instances_then_deletes_all(aws: Aws) -> None:
    env = load_file(EXAMPLES / "aws-simple.yaml")
    result, _ = create(env, aws.store)
    assert result.failed == {}
    assert sorted(result.results["aws"].ready) == ["gpu-simple-cp-0", "gpu-simple-workers-0",
                                                   "gpu-simple-workers-1"]
    found = counts("gpu-simple")
    assert found == {"vpc": 1, "subnet": 2, "igw": 1, "rtb": 1, "sg": 2, "instance": 3,
                     "volume": 3}
    running = instances("gpu-simple")
    by_type = sorted(i["InstanceType"] for i in running)
    assert by_type == ["g4dn.xlarge", "g4dn.xlarge", "m5.xlarge"]
    for inst in running:
        assert inst["ImageId"] == "ami-0a1b2c3d4e5f60002"  # newest Canonical jammy amd64
        assert inst["KeyName"] == "my-key"
        assert inst["Placement"]["AvailabilityZone"] == "us-west-2a"
        assert inst["PublicIpAddress"]
        assert all(n["SourceDestCheck"] is False for n in inst["NetworkInterfaces"])
    groups = _groups("gpu-simple")
    cp, worker = groups["gpu-simple-cp"], groups["gpu-simple-worker"]
    caller = f"{CALLER_IP}/32"
    cp_rules, worker_rules = _rules(cp), _rules(worker)
    assert ("tcp", 22, 22, caller) in cp_rules
    assert {("tcp", 6443, 6443, caller), ("tcp", 6443, 6443, "10.0.1.0/24"),
            ("tcp", 6443, 6443, worker["GroupId"])} <= cp_rules
    assert ("tcp", 2379, 2380, cp["GroupId"]) in cp_rules
    assert ("udp", 4789, 4789, worker["GroupId"]) in cp_rules
    assert ("icmp", -1, -1, "10.0.0.0/16") in cp_rules
    assert ("tcp", 10250, 10250, cp["GroupId"]) in worker_rules
    assert ("tcp", 30000, 32767, caller) in worker_rules
    assert not any(rule[3] == "0.0.0.0/0" for rule in cp_rules | worker_rules)
    record = aws.store.environment("gpu-simple")
    assert record is not None
    cp_node = {r.key: r for r in aws.store.resources("gpu-simple")}["node/gpu-simple-cp-0"]
    assert cp_node.data["ssh_host"] == cp_node.data["public_ip"]
    assert cp_node.data["ssh_user"] == "ubuntu" and cp_node.data["ssh_port"] == 22
    assert cp_node.data["state"] == "running" and cp_node.data["private_ip"].startswith("10.0.1.")
    assert record.outputs["endpoint"] == f"https://{cp_node.data['public_ip']}:6443"
    assert record.outputs["region"] == "us-west-2"
    _delete_and_check_nothing_left(aws, "gpu-simple")


def test_rerun_creates_nothing_and_observe_sees_every_node(aws: Aws) -> None:
    env = load_file(EXAMPLES / "aws-simple.yaml")
    create(env, aws.store)
    before = tagged("gpu-simple")
    CALLS.reset()
    result, _ = create(env, aws.store)
    calls = CALLS.snapshot()
    assert result.failed == {}
    assert tagged("gpu-simple") == before
    made = {op: n for op, n in calls.items() if ":Create" in op or ":RunInstances" in op
            or ":Allocate" in op or ":Authorize" in op}
    assert made == {}
    topology, the_plan = api.plan(env, aws.store)
    provider = registry.get("aws")
    observed = provider.observe(ApplyContext("gpu-simple", the_plan, topology, topology.nodes,
                                             aws.store, lambda e: None, env))
    assert sorted(observed.nodes) == sorted(n.name for n in topology.nodes)
    assert {"vpc", "igw", "sg/control-plane", "sg/worker"} <= set(observed.resources)
    _delete_and_check_nothing_left(aws, "gpu-simple")
