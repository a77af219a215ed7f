"""The day-2 plan: what apply adds, removes, replaces and refuses, from the file and what runs."""

from __future__ import annotations

import pytest

from clusterdeck.model.day2 import ChangeKind, RunningNode
from clusterdeck.planner import expand
from clusterdeck.planner.day2 import diff, drained_in_turn, version_step_problem
from clusterdeck.planner.expand import HostIdentity, NodeNames, host_identity
from clusterdeck.spec.loader import load_text
from clusterdeck.spec.models import Environment

SPEC = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {{name: d2}}
spec:
  provider: ssh
  auth: {{privateKey: /k, username: ops}}
  cluster:
    controlPlane:
      hosts: [{cps}]
{ha}{pools}
"""


def hosts(text: str) -> str:
    return ", ".join(f"{{address: {a.strip()}}}" for a in text.split(","))


def env(
    cps: str = "10.0.0.1",
    workers: str | None = "10.0.0.11, 10.0.0.12",
    extra: str = "",
    ha: str = "",
) -> Environment:
    pools = f"    workers:\n      hosts: [{hosts(workers)}]\n" if workers is not None else ""
    return load_text(SPEC.format(cps=hosts(cps), pools=pools + extra, ha=ha))


def running(before: Environment, names: NodeNames | None = None) -> list[RunningNode]:
    return [
        RunningNode(
            n.name, n.role.value, n.pool, n.provider, n.host.address if n.host else None, True
        )
        for n in expand(before, names=names).nodes
    ]


def recorded(before: Environment) -> NodeNames:
    hosts = {k: n.name for n in expand(before).nodes if (k := host_identity(n)) is not None}
    return NodeNames(hosts=hosts)


def plan_for(before: Environment, after: Environment) -> list[tuple[str, str]]:
    names = recorded(before)
    planned = diff(before, after, names, running(before, names))
    assert not planned.refused, planned.refused
    return [(c.kind.value, c.node) for c in planned.changes]


def test_the_same_file_is_a_no_op() -> None:
    before = env()
    names = recorded(before)
    assert diff(before, env(), names, running(before, names)).empty


def test_removing_the_first_host_removes_its_node_and_renames_nothing() -> None:
    before, after = env(), env(workers="10.0.0.12")
    assert plan_for(before, after) == [("remove", "d2-workers-0")]
    names = recorded(before)
    assert [n.name for n in expand(after, names=names).workers()] == ["d2-workers-1"]


def test_a_new_host_takes_the_index_after_the_highest_recorded_and_joins() -> None:
    before = env(workers="10.0.0.12")
    names = NodeNames(hosts={("workers", "10.0.0.12", 22): "d2-workers-1", **_cp(before)})
    after = env(workers="10.0.0.12, 10.0.0.13")
    planned = diff(before, after, names, running(before, names))
    assert [(c.kind.value, c.node) for c in planned.changes] == [("add", "d2-workers-2")]
    assert planned.changes[0].reason == "pool workers grows to 2"


def _cp(before: Environment) -> dict[HostIdentity, str]:
    return {("control-plane", "10.0.0.1", 22): "d2-cp-0"}


def test_a_swapped_host_is_replaced_new_first() -> None:
    before, after = env(), env(workers="10.0.0.11, 10.0.0.99")
    planned = diff(before, after, recorded(before), running(before))
    assert [(c.kind.value, c.node, c.replaces) for c in planned.changes] == [
        ("add", "d2-workers-2", "d2-workers-1"),
        ("remove", "d2-workers-1", None),
    ]
    assert [k for k, _ in planned.batches()] == [ChangeKind.ADD, ChangeKind.REMOVE]
    assert drained_in_turn(planned) == ["d2-workers-1"]  # checked against budgets first


def test_a_pool_added_and_a_pool_removed() -> None:
    extra = "    nodePools:\n      - {name: gpu, hosts: [{address: 10.0.0.21}], labels: {a: b}}\n"
    before, after = env(), env(extra=extra)
    assert plan_for(before, after) == [("add", "d2-gpu-0")]
    assert plan_for(after, before) == [("remove", "d2-gpu-0")]
    gone = plan_for(before, env(workers=None))
    assert gone == [("remove", "d2-workers-1"), ("remove", "d2-workers-0")]


def test_a_node_recorded_but_not_in_the_cluster_joins_again() -> None:
    before = env()
    names = recorded(before)
    half = [
        r
        if r.name != "d2-workers-1"
        else RunningNode(r.name, r.role, r.pool, r.provider, r.address, False)
        for r in running(before, names)
    ]
    planned = diff(before, before, names, half)
    assert [(c.kind.value, c.node) for c in planned.changes] == [("add", "d2-workers-1")]
    assert "not in the cluster" in planned.changes[0].reason


HA = "    highAvailability: {{enabled: true, loadBalancer: keepalived, vip: 10.0.0.100}}\n"


def test_control_planes_grow_one_per_batch_and_workers_join_together() -> None:
    before = env(ha=HA.format(), workers="10.0.0.11")
    after = env(
        cps="10.0.0.1, 10.0.0.2, 10.0.0.3",
        ha=HA.format(),
        workers="10.0.0.11, 10.0.0.12, 10.0.0.13",
    )
    names = recorded(before)
    planned = diff(before, after, names, running(before, names))
    assert not planned.refused
    batches = [[c.node for c in batch] for _, batch in planned.batches()]
    assert batches == [["d2-cp-1"], ["d2-cp-2"], ["d2-workers-1", "d2-workers-2"]]
    assert "etcd member" in planned.changes[0].reason


@pytest.mark.parametrize(
    ("after", "refusal"),
    [
        (env(cps="10.0.0.1, 10.0.0.2, 10.0.0.3", ha=HA.format()), "highAvailability"),
        (
            env(cps="10.0.0.5"),
            "d2-cp-0: it serves the API endpoint (the file has no highAvailability",
        ),
        (
            env(extra="      labels: {x: y}\n"),
            "d2-workers-0: its labels or taints change",
        ),
    ],
    ids=["the endpoint", "the endpoint host", "labels"],
)
def test_what_apply_refuses_is_named(after: Environment, refusal: str) -> None:
    before = env()
    names = recorded(before)
    planned = diff(before, after, names, running(before, names))
    assert any(refusal in r for r in planned.refused), planned.refused


def _at(version: str, workers: str = "10.0.0.11, 10.0.0.12") -> Environment:
    text = SPEC.format(
        cps=hosts("10.0.0.1"), ha="", pools=f"    workers:\n      hosts: [{hosts(workers)}]\n"
    )
    return load_text(text + f"  kubernetes: {{version: {version}}}\n")


def _running_at(before: Environment, versions: dict[str, str]) -> list[RunningNode]:
    return [
        RunningNode(r.name, r.role, r.pool, r.provider, r.address, True, True, versions[r.name])
        for r in running(before, recorded(before))
    ]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("v1.36.3", "v1.37.2", None),
        ("v1.37.0", "v1.37.2", None),
        ("v1.35.1", "v1.37.2", "one minor version at a time; upgrade to v1.36.x first"),
        ("v1.37.2", "v1.36.3", "downgrades are not supported"),
        ("v1.37.2", "v1.37.1", "downgrades are not supported"),
    ],
)
def test_version_steps(old: str, new: str, problem: str | None) -> None:
    found = version_step_problem(old, new)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_an_upgrade_visits_control_planes_first_and_skips_nodes_already_done() -> None:
    before, after = _at("v1.36.3"), _at("v1.37.2")
    versions = {"d2-cp-0": "v1.36.3", "d2-workers-0": "v1.37.2", "d2-workers-1": "v1.36.3"}
    planned = diff(before, after, recorded(before), _running_at(before, versions))
    assert not planned.refused
    assert [(c.kind.value, c.node) for c in planned.changes] == [
        ("upgrade", "d2-cp-0"),
        ("upgrade", "d2-workers-1"),
    ]
    assert "kubeadm upgrade apply v1.37.2" in planned.changes[0].reason
    assert "drain" in planned.changes[1].reason
    assert len(planned.batches()) == 1  # one run over its nodes
    assert drained_in_turn(planned) == ["d2-workers-1"]


def test_an_upgrade_runs_alone_and_within_the_skew() -> None:
    before = _at("v1.36.3")
    same = dict.fromkeys(["d2-cp-0", "d2-workers-0", "d2-workers-1"], "v1.36.3")
    mixed = diff(before, _at("v1.37.2", "10.0.0.11"), recorded(before), _running_at(before, same))
    assert any("an upgrade runs alone" in r for r in mixed.refused)
    old = {**same, "d2-workers-1": "v1.35.0"}
    skewed = diff(before, _at("v1.37.2"), recorded(before), _running_at(before, old))
    assert any("d2-workers-1 (v1.35.0)" in r for r in skewed.refused)
    assert not skewed.changes


def test_the_control_plane_shrinks_one_member_at_a_time_only_when_allowed() -> None:
    ha = HA.format()
    before = env(cps="10.0.0.1, 10.0.0.2, 10.0.0.3", ha=ha)
    after = env(cps="10.0.0.1", ha=ha)
    names = recorded(before)
    planned = diff(before, after, names, running(before, names), allow_control_plane_shrink=True)
    assert not planned.refused
    assert [[c.node for c in b] for _, b in planned.batches()] == [["d2-cp-2"], ["d2-cp-1"]]
    assert "by its member ID" in planned.changes[0].reason


THREE = "10.0.0.1, 10.0.0.2, 10.0.0.3"


def test_a_control_plane_host_swapped_is_replaced_one_member_at_a_time() -> None:
    before = env(cps=THREE, ha=HA.format())
    after = env(cps="10.0.0.1, 10.0.0.9, 10.0.0.3", ha=HA.format())
    names = recorded(before)
    planned = diff(before, after, names, running(before, names))
    assert not planned.refused, planned.refused
    assert [(c.kind.value, c.node, c.replaces) for c in planned.changes] == [
        ("add", "d2-cp-3", "d2-cp-1"),
        ("remove", "d2-cp-1", None),
    ]
    assert "host 10.0.0.2 left controlPlane.hosts" in planned.changes[0].reason
    assert [len(batch) for _, batch in planned.batches()] == [1, 1]


def test_a_smaller_control_plane_still_needs_the_flag_and_the_endpoint_host_stays() -> None:
    before = env(cps=THREE, ha=HA.format())
    names = recorded(before)
    after = env(cps="10.0.0.1", ha=HA.format())
    refused = diff(before, after, names, running(before, names)).refused
    assert any("would shrink to 1; pass --allow-control-plane-shrink" in r for r in refused)
    allowed = diff(before, after, names, running(before, names), allow_control_plane_shrink=True)
    assert [(c.kind.value, c.node) for c in allowed.changes] == [
        ("remove", "d2-cp-2"),
        ("remove", "d2-cp-1"),
    ]
    # without highAvailability the first control plane's address is the endpoint
    plain = env(cps=THREE)
    plain_names = recorded(plain)
    swapped = diff(plain, env(cps="10.0.0.9, 10.0.0.2, 10.0.0.3"), plain_names, running(plain))
    assert any(r.startswith("d2-cp-0: it serves the API endpoint") for r in swapped.refused)
