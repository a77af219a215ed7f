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
from clusterdeck.providers.aws import session
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
        out |= {
            (perm["IpProtocol"], low, high, p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])
        }
    return out


def _groups(name: str) -> dict[str, dict]:
    ec2 = boto3.client("ec2", region_name="us-west-2")
    found = ec2.describe_security_groups(
        Filters=[{"Name": "tag:clusterdeck.dev/environment", "Values": [name]}]
    )["SecurityGroups"]
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
    assert sorted(result.results["aws"].ready) == [
        "gpu-simple-cp-0",
        "gpu-simple-workers-0",
        "gpu-simple-workers-1",
    ]
    found = counts("gpu-simple")
    assert found == {"vpc": 1, "subnet": 2, "igw": 1, "rtb": 1, "sg": 2, "instance": 3, "volume": 3}
    running = instances("gpu-simple")
    by_type = sorted(i["InstanceType"] for i in running)
    assert by_type == ["g4dn.xlarge", "g4dn.xlarge", "m5.xlarge"]
    for inst in running:
        assert inst["ImageId"] == "ami-0a1b2c3d4e5f60002"  # newest Canonical jammy amd64
        assert inst["KeyName"] == "my-key"
        assert inst["Placement"]["AvailabilityZone"] == "us-west-2a"
        assert inst["PublicIpAddress"]
        # VXLAN (Calico here) needs no source/destination exemption: the check stays on
        assert all(n["SourceDestCheck"] is True for n in inst["NetworkInterfaces"])
    groups = _groups("gpu-simple")
    cp, worker = groups["gpu-simple-cp"], groups["gpu-simple-worker"]
    caller = f"{CALLER_IP}/32"
    cp_rules, worker_rules = _rules(cp), _rules(worker)
    assert ("tcp", 22, 22, caller) in cp_rules
    assert {
        ("tcp", 6443, 6443, caller),
        ("tcp", 6443, 6443, "10.0.1.0/24"),
        ("tcp", 6443, 6443, worker["GroupId"]),
    } <= cp_rules
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
    made = {
        op: n
        for op, n in calls.items()
        if ":Create" in op or ":RunInstances" in op or ":Allocate" in op or ":Authorize" in op
    }
    assert made == {}
    topology, the_plan = api.plan(env, aws.store)
    provider = registry.get("aws")
    observed = provider.observe(
        ApplyContext(
            "gpu-simple", the_plan, topology, topology.nodes, aws.store, lambda e: None, env
        )
    )
    assert sorted(observed.nodes) == sorted(n.name for n in topology.nodes)
    assert {"vpc", "igw", "sg/control-plane", "sg/worker"} <= set(observed.resources)
    _delete_and_check_nothing_left(aws, "gpu-simple")


def test_ha_example_builds_the_nlb_in_front_of_three_control_planes(aws: Aws) -> None:
    env = load_file(EXAMPLES / "aws-ha.yaml")
    result, events = create(env, aws.store)
    assert result.failed == {}
    found = counts("gpu-ha")
    assert found["instance"] == 6 and found["subnet"] == 4  # 3 public + reserved private
    # one internet-facing NLB for users, one internal NLB for the nodes (docs/aws.md)
    assert found["load-balancer"] == 2 and found["target-group"] == 2
    elb = boto3.client("elbv2", region_name="us-west-2")
    lb = elb.describe_load_balancers(Names=["gpu-ha-nlb"])["LoadBalancers"][0]
    assert lb["Scheme"] == "internet-facing" and lb["Type"] == "network"
    assert len(lb["AvailabilityZones"]) == 3
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [(x["Protocol"], x["Port"]) for x in listeners] == [("TCP", 6443)]
    tg = elb.describe_target_groups(Names=["gpu-ha-cp"])["TargetGroups"][0]
    assert (tg["Protocol"], tg["Port"], tg["HealthCheckProtocol"]) == ("TCP", 6443, "TCP")
    assert (
        tg["HealthCheckIntervalSeconds"],
        tg["HealthyThresholdCount"],
        tg["UnhealthyThresholdCount"],
    ) == (10, 2, 2)
    targets = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    target_ids = sorted(t["Target"]["Id"] for t in targets["TargetHealthDescriptions"])
    records = {r.key: r for r in aws.store.resources("gpu-ha")}
    cps = sorted(records[f"node/gpu-ha-cp-{i}"].provider_id for i in range(3))
    assert target_ids == cps
    zones = sorted(records[f"node/gpu-ha-cp-{i}"].data["zone"] for i in range(3))
    assert zones == ["us-west-2a", "us-west-2b", "us-west-2c"]
    record = aws.store.environment("gpu-ha")
    assert record is not None
    assert record.outputs["endpoint"] == f"https://{lb['DNSName']}:6443"
    assert records["nlb"].provider_id == lb["LoadBalancerArn"]
    internal = elb.describe_load_balancers(Names=["gpu-ha-nlb-int"])["LoadBalancers"][0]
    assert internal["Scheme"] == "internal"
    assert record.outputs["internal_endpoint"] == f"https://{internal['DNSName']}:6443"
    listeners = elb.describe_listeners(LoadBalancerArn=internal["LoadBalancerArn"])["Listeners"]
    assert [(x["Protocol"], x["Port"]) for x in listeners] == [("TCP", 6443)]

    def preserve(name: str) -> str:
        arn = elb.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
        attrs = elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        return {a["Key"]: a["Value"] for a in attrs}.get("preserve_client_ip.enabled", "true")

    # users' addresses kept (the API rule admits only theirs); the nodes' path without it:
    # their traffic then comes from the internal NLB's addresses, and a target reaching
    # itself through it is not dropped
    assert preserve("gpu-ha-cp") == "true" and preserve("gpu-ha-cp-int") == "false"
    int_tg = elb.describe_target_groups(Names=["gpu-ha-cp-int"])["TargetGroups"][0]
    int_targets = elb.describe_target_health(TargetGroupArn=int_tg["TargetGroupArn"])
    assert sorted(t["Target"]["Id"] for t in int_targets["TargetHealthDescriptions"]) == cps
    # kubeadm's endpoint is the internal NLB; the API certificate also names the public one
    from clusterdeck import api
    from clusterdeck.bootstrap import facts as bootstrap_facts
    from clusterdeck.bootstrap.render import render_environment

    topology, plan = api.plan(env, aws.store)
    cluster_facts = bootstrap_facts.from_records(
        aws.store.resources("gpu-ha"), record.outputs, plan.endpoint.kind
    )
    init = (
        render_environment(env, topology, plan, cluster_facts)
        .files["gpu-ha-cp-0"]["files/kubeadm-init.yaml"]
        .content
    )
    assert f"controlPlaneEndpoint: {internal['DNSName']}:6443" in init
    assert lb["DNSName"] in init  # certSANs
    groups = {e.group for e in events.events}
    assert {"preflight", "network", "security-groups", "instances", "load-balancer"} <= groups
    _delete_and_check_nothing_left(aws, "gpu-ha")


def test_private_example_has_nat_per_zone_a_bastion_and_no_public_nodes(aws: Aws) -> None:
    env = load_file(EXAMPLES / "aws-private.yaml")
    result, _ = create(env, aws.store)
    assert result.failed == {}
    found = counts("private-lab")
    assert found["nat"] == 2 and found["eip"] == 2
    assert found["instance"] == 6  # 3 control planes, 2 workers, the bastion
    assert found["rtb"] == 3  # public + one private per zone
    records = {r.key: r for r in aws.store.resources("private-lab")}
    bastion = records["instances/bastion"]
    assert bastion.data["public_ip"]
    record = aws.store.environment("private-lab")
    assert record is not None
    assert record.outputs["bastion"] == f"{bastion.data['public_ip']}:22"
    ec2 = boto3.client("ec2", region_name="us-west-2")
    for key, rec in records.items():
        if key.startswith("node/"):
            assert rec.data["public_ip"] is None
            assert rec.data["ssh_host"] == rec.data["private_ip"]
            assert rec.data["bastion"] == record.outputs["bastion"]
            subnet = records[f"subnet/private/{rec.data['zone']}"].provider_id
            inst = ec2.describe_instances(InstanceIds=[rec.provider_id])
            assert inst["Reservations"][0]["Instances"][0]["SubnetId"] == subnet
    tables = ec2.describe_route_tables(
        RouteTableIds=[records["rtb/private/us-west-2b"].provider_id]
    )["RouteTables"]
    routes = {r["DestinationCidrBlock"]: r.get("NatGatewayId") for r in tables[0]["Routes"]}
    assert routes["0.0.0.0/0"] == records["nat/us-west-2b"].provider_id
    groups = _groups("private-lab")
    bastion_sg = groups["private-lab-bastion"]["GroupId"]
    ssh = {r for r in _rules(groups["private-lab-cp"]) if r[1] == 22}
    assert ssh == {("tcp", 22, 22, bastion_sg)}  # SSH to nodes only through the bastion
    assert ("tcp", 22, 22, "203.0.113.0/24") in _rules(groups["private-lab-bastion"])
    _delete_and_check_nothing_left(aws, "private-lab")


def test_spot_pools_use_the_market_options_and_their_price(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict] = []
    monkeypatch.setattr(
        session,
        "EXTRA_HANDLERS",
        [("before-parameter-build.ec2.RunInstances", lambda params, **_: sent.append(params))],
    )
    env = load_file(FIXTURES / "spot.yaml")
    result, _ = create(env, aws.store)
    assert result.failed == {}
    markets = {p["InstanceType"]: p.get("InstanceMarketOptions") for p in sent}
    assert markets["m5.large"] is None
    assert markets["g4dn.xlarge"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "MaxPrice": "0.30",
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        },
    }
    assert "MaxPrice" not in markets["c5.xlarge"]["SpotOptions"]  # capped at on-demand
    # one call per pool and zone: cp in a; fixed 2 in a + 1 in b; capped 2 in b
    assert sorted(p["MaxCount"] for p in sent) == [1, 1, 2, 2]
    running = instances("spotty")
    by_pool: dict[str, list[dict]] = {}
    for inst in running:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        by_pool.setdefault(tags["clusterdeck.dev/pool"], []).append(inst)
    assert len(by_pool["fixed"]) == 3 and len(by_pool["capped"]) == 2
    assert all(i.get("InstanceLifecycle") == "spot" for i in by_pool["fixed"] + by_pool["capped"])
    assert by_pool["control-plane"][0].get("InstanceLifecycle") in (None, "on-demand")
    assert sorted(i["Placement"]["AvailabilityZone"] for i in by_pool["fixed"]) == [
        "us-west-2a",
        "us-west-2a",
        "us-west-2b",
    ]
    assert {i["Placement"]["AvailabilityZone"] for i in by_pool["capped"]} == {"us-west-2b"}
    ec2 = boto3.client("ec2", region_name="us-west-2")
    volume = ec2.describe_volumes(
        VolumeIds=[by_pool["capped"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]]
    )["Volumes"][0]
    assert volume["Size"] == 100
    records = {r.key: r for r in aws.store.resources("spotty")}
    assert records["node/spotty-fixed-0"].data["market"] == "spot"
    _delete_and_check_nothing_left(aws, "spotty")
