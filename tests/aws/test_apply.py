"""``apply --infra-only`` on moto: pools grow, shrink, come and go; a census by tag after each.

The environment is created with --infra-only (machines, no Kubernetes). Each change goes
through the real CLI in a child process, then the cloud is asked directly (not through
clusterdeck's own discovery) what carries the environment's tags: the right count of
instances, each with its role, pool and type, and nothing leaked.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import boto3
import pytest

from clusterdeck.providers.aws.checkpoints import APPLY_STEPS, CRASH_ENV
from clusterdeck.state import SqliteStore
from tests.aws.conftest import Aws
from tests.aws.support import EXAMPLES, cli, instances, tagged

pytestmark = [pytest.mark.moto]

POOL = """\
    nodePools:
      - name: batch
        count: 2
        instanceType: c5.large
        availabilityZones: [us-west-2b]
"""


def _tags(inst: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def _census() -> Counter[tuple[str, str, str]]:
    """(role, pool, instance type) of every live instance tagged for the environment."""
    return Counter(
        (
            _tags(i).get("clusterdeck.dev/role", "?"),
            _tags(i).get("clusterdeck.dev/pool", "?"),
            i["InstanceType"],
        )
        for i in instances("gpu-ha")
    )


def _file(tmp_path: Path, name: str, workers: int, pool: str = "") -> Path:
    text = (EXAMPLES / "aws-ha.yaml").read_text()
    text = text.replace(
        "count: 3\n      instanceType: g4dn", f"count: {workers}\n      instanceType: g4dn"
    )
    if pool:
        text = text.replace("    highAvailability:\n", pool + "    highAvailability:\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def _apply(path: Path) -> list[tuple[str, str]]:
    shown = cli("apply", "-f", str(path), "--infra-only", "-o", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    actions = [(a["kind"], a["target"]) for a in json.loads(shown.stdout)["actions"]]
    done = cli("apply", "-f", str(path), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    again = cli("apply", "-f", str(path), "--infra-only", "--yes")
    assert again.returncode == 0 and "No changes" in again.stderr, again.stderr[-2000:]
    return actions


def test_pools_grow_shrink_and_come_and_go_with_a_census_after_each(
    aws: Aws, tmp_path: Path
) -> None:
    done = cli("create", "-f", str(EXAMPLES / "aws-ha.yaml"), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    cps = ("control-plane", "control-plane", "m5.xlarge")
    gpu = ("worker", "workers", "g4dn.xlarge")
    batch = ("worker", "batch", "c5.large")
    assert _census() == Counter({cps: 3, gpu: 3})
    fixed = {k: v for k, v in tagged("gpu-ha").items() if k not in ("instance", "volume")}

    grown = _apply(_file(tmp_path, "five.yaml", 5))
    assert grown == [("add", "gpu-ha-workers-3"), ("add", "gpu-ha-workers-4")]
    assert _census() == Counter({cps: 3, gpu: 5})

    shrunk = _apply(_file(tmp_path, "two.yaml", 2))
    assert shrunk == [  # the newest leave first
        ("remove", "gpu-ha-workers-4"),
        ("remove", "gpu-ha-workers-3"),
        ("remove", "gpu-ha-workers-2"),
    ]
    assert _census() == Counter({cps: 3, gpu: 2})

    added = _apply(_file(tmp_path, "pool.yaml", 2, POOL))
    assert added == [("add", "gpu-ha-batch-0"), ("add", "gpu-ha-batch-1")]
    assert _census() == Counter({cps: 3, gpu: 2, batch: 2})
    zones = {
        i["Placement"]["AvailabilityZone"]
        for i in instances("gpu-ha")
        if _tags(i).get("clusterdeck.dev/pool") == "batch"
    }
    assert zones == {"us-west-2b"}

    removed = _apply(_file(tmp_path, "no-pool.yaml", 2))
    assert sorted(removed) == [("remove", "gpu-ha-batch-0"), ("remove", "gpu-ha-batch-1")]
    assert _census() == Counter({cps: 3, gpu: 2})

    # nothing but the instances changed, and the store holds exactly the nodes that run
    now = tagged("gpu-ha")
    assert {k: v for k, v in now.items() if k not in ("instance", "volume")} == fixed
    store = SqliteStore(aws.state_path)
    recorded = {r.provider_id for r in store.resources("gpu-ha") if r.key.startswith("node/")}
    assert recorded == set(now["instance"])

    gone = cli("delete", "gpu-ha", "--yes")
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert tagged("gpu-ha") == {}


def test_apply_infra_only_refuses_a_kubernetes_environment_and_vice_versa(aws: Aws) -> None:
    done = cli("create", "-f", str(EXAMPLES / "aws-ha.yaml"), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    res = cli("apply", "-f", str(EXAMPLES / "aws-ha.yaml"), "--yes")
    assert res.returncode == 2
    assert "created with --infra-only" in res.stderr and "apply --infra-only" in res.stderr
    assert "Traceback" not in res.stderr


def _typed(tmp_path: Path, name: str, instance_type: str) -> Path:
    path = _file(tmp_path, name, 2)
    path.write_text(
        path.read_text().replace("instanceType: g4dn.xlarge", f"instanceType: {instance_type}")
    )
    return path


def _converged(aws: Aws, instance_type: str) -> None:
    """Exactly the file's machines run, each recorded, and nothing else is tagged."""
    cps = ("control-plane", "control-plane", "m5.xlarge")
    assert _census() == Counter({cps: 3, ("worker", "workers", instance_type): 2})
    store = SqliteStore(aws.state_path)
    recorded = {r.provider_id for r in store.resources("gpu-ha") if r.key.startswith("node/")}
    assert recorded == set(tagged("gpu-ha")["instance"])
    assert store.environment("gpu-ha").status == "infra-ready"


def test_a_new_instance_type_rolls_through_the_pool_and_survives_kill_9_at_each_step(
    aws: Aws, tmp_path: Path
) -> None:
    done = cli(
        "create", "-f", str(_typed(tmp_path, "a.yaml", "g4dn.xlarge")), "--infra-only", "--yes"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fixed = {k: v for k, v in tagged("gpu-ha").items() if k not in ("instance", "volume")}

    bigger = _typed(tmp_path, "b.yaml", "g4dn.2xlarge")
    shown = cli("apply", "-f", str(bigger), "--infra-only", "-o", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    actions = json.loads(shown.stdout)["actions"]
    assert [(a["kind"], a["target"], a["replaces"]) for a in actions] == [
        ("add", "gpu-ha-workers-2", "gpu-ha-workers-1"),
        ("remove", "gpu-ha-workers-1", None),
        ("add", "gpu-ha-workers-3", "gpu-ha-workers-0"),
        ("remove", "gpu-ha-workers-0", None),
    ]
    assert "instance type g4dn.xlarge -> g4dn.2xlarge" in actions[0]["reason"]
    assert _apply(bigger) == [(a["kind"], a["target"]) for a in actions]
    _converged(aws, "g4dn.2xlarge")

    # killed at each step of a replacement, then run again: it converges, nothing leaks
    kinds = ["g4dn.xlarge", "g4dn.2xlarge"]
    steps = ("instances-launched-unrecorded", "instances-launched", "instances-running")
    for i, step in enumerate((*steps, *APPLY_STEPS)):
        wanted = kinds[i % 2]
        path = _typed(tmp_path, f"kill-{i}.yaml", wanted)
        killed = cli(
            "apply", "-f", str(path), "--infra-only", "--yes", env=aws.env(**{CRASH_ENV: step})
        )
        assert killed.returncode == -signal.SIGKILL, (step, killed.stderr[-2000:])
        again = cli("apply", "-f", str(path), "--infra-only", "--yes")
        assert again.returncode == 0, (step, again.stderr[-3000:])
        assert "did not finish" in again.stderr, again.stderr[-2000:]  # the store's journal
        quiet = cli("apply", "-f", str(path), "--infra-only", "--yes")
        assert quiet.returncode == 0 and "No changes" in quiet.stderr, (step, quiet.stderr[-2000:])
        _converged(aws, wanted)
    now = tagged("gpu-ha")
    assert {k: v for k, v in now.items() if k not in ("instance", "volume")} == fixed

    # a smaller pool loses the node --remove names, not the newest
    store = SqliteStore(aws.state_path)
    workers = sorted(
        r.key.removeprefix("node/")
        for r in store.resources("gpu-ha")
        if r.key.startswith("node/") and r.data.get("role") == "worker"
    )
    one = _file(tmp_path, "one.yaml", 1)
    one.write_text(one.read_text().replace("g4dn.xlarge", kinds[(i) % 2]))
    for bad, says in (("gpu-ha-nope", "has no such node"), ("gpu-ha-cp-0", "control plane")):
        refused = cli("apply", "-f", str(one), "--infra-only", "--remove", bad, "--yes")
        assert refused.returncode == 2 and says in refused.stderr and bad in refused.stderr
        assert "Traceback" not in refused.stderr
    shown = cli("apply", "-f", str(one), "--infra-only", "--remove", workers[-1], "-o", "json")
    assert [(a["kind"], a["target"]) for a in json.loads(shown.stdout)["actions"]] == [
        ("remove", workers[-1])
    ]
    done = cli("apply", "-f", str(one), "--infra-only", "--remove", workers[-1], "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    left = {r.key for r in SqliteStore(aws.state_path).resources("gpu-ha")}
    assert f"node/{workers[0]}" in left and f"node/{workers[-1]}" not in left
    now = tagged("gpu-ha")
    assert {k: v for k, v in now.items() if k not in ("instance", "volume")} == fixed


def test_a_machine_terminated_behind_clusterdecks_back_is_seen_by_tag_and_replaced(
    aws: Aws, tmp_path: Path
) -> None:
    path = _typed(tmp_path, "a.yaml", "g4dn.xlarge")
    done = cli("create", "-f", str(path), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    store = SqliteStore(aws.state_path)
    records = {r.key: r for r in store.resources("gpu-ha") if r.key.startswith("node/")}
    lost = records["node/gpu-ha-workers-1"].provider_id
    ec2 = boto3.client("ec2", region_name="us-west-2")
    ec2.terminate_instances(InstanceIds=[lost])  # e.g. a spot instance reclaimed

    shown = cli("apply", "-f", str(path), "--infra-only", "-o", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    actions = json.loads(shown.stdout)["actions"]
    assert [(a["kind"], a["target"]) for a in actions] == [("add", "gpu-ha-workers-1")]
    assert "machine is gone" in actions[0]["reason"]
    assert _apply(path) == [("add", "gpu-ha-workers-1")]
    _converged(aws, "g4dn.xlarge")
    again = {r.key: r for r in SqliteStore(aws.state_path).resources("gpu-ha")}
    assert again["node/gpu-ha-workers-1"].provider_id != lost

    cp = again["node/gpu-ha-cp-2"].provider_id
    ec2.terminate_instances(InstanceIds=[cp])
    refused = cli("apply", "-f", str(path), "--infra-only", "--yes")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "gpu-ha-cp-2: its machine is gone" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_control_plane_grows_3_to_5_behind_both_load_balancers(
    aws: Aws, tmp_path: Path
) -> None:
    small = _file(tmp_path, "three.yaml", 2)
    done = cli("create", "-f", str(small), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    five = tmp_path / "five.yaml"
    five.write_text(
        small.read_text().replace("controlPlane:\n      count: 3", "controlPlane:\n      count: 5")
    )
    assert _apply(five) == [("add", "gpu-ha-cp-3"), ("add", "gpu-ha-cp-4")]
    cps = ("control-plane", "control-plane", "m5.xlarge")
    assert _census() == Counter({cps: 5, ("worker", "workers", "g4dn.xlarge"): 2})
    store = SqliteStore(aws.state_path)
    cp_ids = sorted(
        r.provider_id for r in store.resources("gpu-ha") if r.key.startswith("node/gpu-ha-cp-")
    )
    elb = boto3.client("elbv2", region_name="us-west-2")
    groups = [g for g in elb.describe_target_groups()["TargetGroups"] if g["Port"] == 6443]
    assert len(groups) == 2  # the public NLB's and the nodes' internal one
    for group in groups:
        health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
        assert sorted(t["Target"]["Id"] for t in health["TargetHealthDescriptions"]) == cp_ids


def _targets() -> list[set[str]]:
    """The instances behind each of the two NLB target groups on the API port."""
    elb = boto3.client("elbv2", region_name="us-west-2")
    groups = [g for g in elb.describe_target_groups()["TargetGroups"] if g["Port"] == 6443]
    assert len(groups) == 2
    return [
        {
            t["Target"]["Id"]
            for t in elb.describe_target_health(TargetGroupArn=g["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        }
        for g in groups
    ]


def test_a_new_control_plane_type_replaces_one_member_at_a_time_behind_both_load_balancers(
    aws: Aws, tmp_path: Path
) -> None:
    small = _file(tmp_path, "three.yaml", 2)
    done = cli("create", "-f", str(small), "--infra-only", "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    old = {
        r.key.removeprefix("node/"): r.provider_id
        for r in SqliteStore(aws.state_path).resources("gpu-ha")
        if r.key.startswith("node/gpu-ha-cp-")
    }
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(
        small.read_text().replace("instanceType: m5.xlarge", "instanceType: m5.2xlarge")
    )
    shown = cli("apply", "-f", str(bigger), "--infra-only", "-o", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    actions = json.loads(shown.stdout)["actions"]
    assert [(a["kind"], a["target"], a["replaces"]) for a in actions] == [
        ("add", "gpu-ha-cp-3", "gpu-ha-cp-2"),
        ("remove", "gpu-ha-cp-2", None),
        ("add", "gpu-ha-cp-4", "gpu-ha-cp-1"),
        ("remove", "gpu-ha-cp-1", None),
        ("add", "gpu-ha-cp-5", "gpu-ha-cp-0"),
        ("remove", "gpu-ha-cp-0", None),
    ]
    assert "instance type m5.xlarge -> m5.2xlarge" in actions[0]["reason"]

    # killed as the first old member goes: the new one and the others that stay are targets
    killed = cli(
        "apply",
        "-f",
        str(bigger),
        "--infra-only",
        "--yes",
        env=aws.env(**{CRASH_ENV: "instances-terminating"}),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    records = {r.key: r for r in SqliteStore(aws.state_path).resources("gpu-ha")}
    new = records["node/gpu-ha-cp-3"].provider_id
    for targets in _targets():
        assert {new, old["gpu-ha-cp-1"], old["gpu-ha-cp-0"]} <= targets

    assert _apply(bigger) == [(a["kind"], a["target"]) for a in actions[1:]]
    types = ("control-plane", "control-plane", "m5.2xlarge")
    assert _census() == Counter({types: 3, ("worker", "workers", "g4dn.xlarge"): 2})
    now = {
        r.key.removeprefix("node/"): r.provider_id
        for r in SqliteStore(aws.state_path).resources("gpu-ha")
        if r.key.startswith("node/gpu-ha-cp-")
    }
    assert sorted(now) == ["gpu-ha-cp-3", "gpu-ha-cp-4", "gpu-ha-cp-5"]
    assert _targets() == [set(now.values())] * 2  # the old members deregistered
    assert not set(old.values()) & set(tagged("gpu-ha")["instance"])
