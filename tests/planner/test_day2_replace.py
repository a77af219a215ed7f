"""Rolling replacement in the day-2 plan: aws workers follow their recorded machines, and a
pool's replacement keeps within its maxSurge and maxUnavailable."""

from __future__ import annotations

import pytest

from clusterdeck.errors import SpecError
from clusterdeck.model.day2 import ChangeKind, RunningNode
from clusterdeck.planner import expand
from clusterdeck.planner.day2 import diff, drained_in_turn, join_step
from clusterdeck.planner.expand import NodeNames, RecordedMachine
from clusterdeck.spec.loader import load_text
from clusterdeck.spec.models import Environment

AWS = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: r}}
spec:
  provider: aws
  auth: {{keyName: k, privateKey: /k}}
  aws: {{region: us-west-2, availabilityZones: [us-west-2a, us-west-2b]{aws}}}
  cluster:
    controlPlane: {{count: {cps}, instanceType: {cp_type}}}
{ha}    workers:
      count: {count}
      instanceType: {worker_type}
{rollout}
"""


def aws_env(
    *,
    count: int = 3,
    worker_type: str = "m5.large",
    cp_type: str = "m5.xlarge",
    rollout: str = "",
    aws: str = "",
    cps: int = 1,
) -> Environment:
    ha = "    highAvailability: {enabled: true, loadBalancer: nlb}\n" if cps > 1 else ""
    return load_text(
        AWS.format(
            count=count,
            worker_type=worker_type,
            cp_type=cp_type,
            rollout=rollout,
            aws=aws,
            cps=cps,
            ha=ha,
        )
    )


def records_of(env: Environment, names: NodeNames | None = None) -> NodeNames:
    """What the store holds after ``env`` was built: each aws node with its machine."""
    nodes = expand(env, names=names).nodes
    return NodeNames(machines={n.name: RecordedMachine(n.pool, n.machine()) for n in nodes})


def running(env: Environment, names: NodeNames | None = None) -> list[RunningNode]:
    return [
        RunningNode(n.name, n.role.value, n.pool, n.provider, None, True)
        for n in expand(env, names=names).nodes
    ]


def steps(before: Environment, after: Environment) -> list[tuple[str, str, str | None]]:
    names = records_of(before)
    planned = diff(before, after, names, running(before))
    assert not planned.refused, planned.refused
    return [(c.kind.value, c.node, c.replaces) for c in planned.changes]


def test_an_unchanged_aws_pool_keeps_its_names_and_is_a_no_op() -> None:
    before = aws_env()
    names = records_of(before)
    assert [n.name for n in expand(before, names=names).workers()] == [
        "r-workers-0",
        "r-workers-1",
        "r-workers-2",
    ]
    assert diff(before, aws_env(), names, running(before)).empty


def test_a_new_instance_type_replaces_each_node_new_first_one_at_a_time() -> None:
    before, after = aws_env(), aws_env(worker_type="m5.xlarge")
    assert steps(before, after) == [
        ("add", "r-workers-3", "r-workers-2"),
        ("remove", "r-workers-2", None),
        ("add", "r-workers-4", "r-workers-1"),
        ("remove", "r-workers-1", None),
        ("add", "r-workers-5", "r-workers-0"),
        ("remove", "r-workers-0", None),
    ]
    planned = diff(before, after, records_of(before), running(before))
    assert "instance type m5.large -> m5.xlarge" in planned.changes[0].reason
    kinds = [k for k, _ in planned.batches()]
    assert kinds == [ChangeKind.ADD, ChangeKind.REMOVE] * 3
    assert drained_in_turn(planned) == ["r-workers-0", "r-workers-1", "r-workers-2"]


def test_a_replacement_stopped_halfway_plans_only_what_is_left() -> None:
    """The store after the first wave: the new node recorded, the old one gone; the rest of
    the plan keeps the names shown at the start."""
    before, after = aws_env(), aws_env(worker_type="m5.xlarge")
    names = records_of(before)
    machines = dict(names.machines)
    del machines["r-workers-2"]
    new = next(n for n in expand(after, names=names).workers() if n.name == "r-workers-3")
    machines["r-workers-3"] = RecordedMachine("workers", new.machine())
    halfway = NodeNames(machines=machines)
    run = [r for r in running(before) if r.name != "r-workers-2"]
    run.append(RunningNode("r-workers-3", "worker", "workers", "aws", None, True))
    planned = diff(before, after, halfway, run)
    left = [(c.kind.value, c.node, c.replaces) for c in planned.changes]
    assert left == steps(before, after)[2:]  # the names the whole plan showed
    assert left[0] == ("add", "r-workers-4", "r-workers-1")


def test_a_shrinking_pool_loses_its_newest_node_and_replaces_nothing() -> None:
    assert steps(aws_env(), aws_env(count=2)) == [("remove", "r-workers-2", None)]


def test_a_new_root_volume_or_spot_setting_replaces_too() -> None:
    volume = aws_env(rollout="      rootVolumeSizeGB: 128")
    assert len(steps(aws_env(), volume)) == 6
    spot = aws_env(rollout="      spot: {maxPricePercent: 50}")
    assert len(steps(aws_env(), spot)) == 6


def test_without_high_availability_the_control_plane_that_is_the_endpoint_stays() -> None:
    before = aws_env()
    after = aws_env(aws=", ami: ami-0123456789abcdef0")
    planned = diff(before, after, records_of(before), running(before))
    assert planned.refused == (
        "r-cp-0: it serves the API endpoint (the file has no highAvailability, so every node "
        "and kubeconfig reaches the API at its address); it cannot leave the cluster",
    )


def test_a_new_image_replaces_control_planes_one_member_at_a_time_then_the_workers() -> None:
    before = aws_env(cps=3, count=2)
    after = aws_env(cps=3, count=2, aws=", ami: ami-0123456789abcdef0")
    planned = diff(before, after, records_of(before), running(before))
    assert not planned.refused, planned.refused
    shown = [
        f"{kind.value} {','.join(c.node.removeprefix('r-') for c in batch)}"
        for kind, batch in planned.batches()
    ]
    assert shown == [
        "add cp-3",
        "remove cp-2",
        "add cp-4",
        "remove cp-1",
        "add cp-5",
        "remove cp-0",
        "add workers-2",
        "remove workers-1",
        "add workers-3",
        "remove workers-0",
    ]
    assert planned.changes[0].reason == (
        "replaces r-cp-2 (image ubuntu-22.04 -> ami-0123456789abcdef0; leaves etcd by its "
        "member ID once its replacement has joined)"
    )
    # the old members are drained in turn, so a budget allowing nothing refuses the run
    assert {"r-cp-0", "r-cp-1", "r-cp-2"} <= set(drained_in_turn(planned))


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        (
            "      rollout: {maxSurge: 2}",
            ["add 3,4", "remove 2", "remove 1", "add 5", "remove 0"],
        ),
        (
            "      rollout: {maxSurge: 0, maxUnavailable: 1}",
            ["remove 2", "add 3", "remove 1", "add 4", "remove 0", "add 5"],
        ),
        (
            "      rollout: {maxSurge: 3}",
            ["add 3,4,5", "remove 2", "remove 1", "remove 0"],
        ),
    ],
)
def test_max_surge_and_max_unavailable_bound_each_wave(rollout: str, expected: list[str]) -> None:
    before = aws_env(rollout=rollout)
    after = aws_env(worker_type="m5.xlarge", rollout=rollout)
    planned = diff(before, after, records_of(before), running(before))
    shown = [
        f"{kind.value} {','.join(c.node.rsplit('-', 1)[1] for c in batch)}"
        for kind, batch in planned.batches()
    ]
    assert shown == expected


def test_rollout_bounds_that_cannot_move_are_refused() -> None:
    with pytest.raises(SpecError, match="maxSurge and maxUnavailable cannot both be 0"):
        aws_env(rollout="      rollout: {maxSurge: 0, maxUnavailable: 0}")


def test_a_control_plane_resumed_halfway_keeps_a_running_first_control_plane() -> None:
    """After one wave the new member runs, the old ones are still there; the next join's
    first control plane (where its join material is made) is one that ran before."""
    before = aws_env(cps=3, count=0)
    after = aws_env(cps=3, count=0, cp_type="m5.2xlarge")
    names = records_of(before)
    step = join_step(before, after, names, {*names.machines, "r-cp-3"})
    assert [(n.name, n.first_control_plane) for n in step.control_planes()] == [
        ("r-cp-3", False),
        ("r-cp-0", True),
        ("r-cp-1", False),
        ("r-cp-2", False),
    ]
    provider_view = join_step(before, after, names, {*names.machines, "r-cp-3"}, with_leaving=False)
    assert [n.name for n in provider_view.control_planes()] == ["r-cp-3"]


def test_other_aws_settings_stay_refused() -> None:
    before = aws_env()
    after = load_text(
        AWS.format(
            count=3, worker_type="m5.large", cp_type="m5.xlarge", rollout="", aws="", cps=1, ha=""
        ).replace("us-west-2", "us-east-1")
    )
    planned = diff(before, after, records_of(before), running(before))
    assert any(r.startswith("spec.aws: only os and ami") for r in planned.refused)


def test_a_node_named_by_remove_leaves_instead_of_the_newest() -> None:
    before, after = aws_env(), aws_env(count=2)
    names = records_of(before)
    planned = diff(
        before,
        after,
        NodeNames(machines=names.machines, leaving=frozenset({"r-workers-0"})),
        running(before),
    )
    assert [(c.kind.value, c.node, c.reason) for c in planned.changes] == [
        ("remove", "r-workers-0", "named by --remove")
    ]
    # with the count unchanged, a new node takes its place first
    same = diff(
        before,
        before,
        NodeNames(machines=names.machines, leaving=frozenset({"r-workers-1"})),
        running(before),
    )
    assert [(c.kind.value, c.node, c.replaces) for c in same.changes] == [
        ("add", "r-workers-3", "r-workers-1"),
        ("remove", "r-workers-1", None),
    ]
