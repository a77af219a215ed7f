"""The bootstrap graph: only the dependencies that are real, so nodes never wait needlessly."""

from __future__ import annotations

import stat

import pytest

from clusterdeck.pipeline import graph
from clusterdeck.pipeline import kubeconfig as kc
from tests.bootstrap.conftest import render_case


@pytest.fixture(scope="module")
def ha_specs(tmp_path_factory):
    bundle = render_case(tmp_path_factory.mktemp("g"), "ssh-ha")
    return {s.id: s for s in graph.build(bundle.configs)}


def _ancestors(specs, step_id):
    seen, todo = set(), [step_id]
    while todo:
        for need in specs[todo.pop()].needs:
            if need not in seen:
                seen.add(need)
                todo.append(need)
    return seen


def test_control_planes_join_one_at_a_time_after_init(ha_specs) -> None:
    j1 = ha_specs["lab-cp-1/kubeadm-join-control-plane"]
    j2 = ha_specs["lab-cp-2/kubeadm-join-control-plane"]
    assert graph.JOIN_MATERIAL in j1.needs and "lab-cp-1/kubeadm-join-control-plane" in j2.needs
    assert ha_specs[graph.JOIN_MATERIAL].needs == ("lab-cp-0/kubeadm-init",)


def test_workers_need_only_their_own_phases_and_the_join_material(ha_specs) -> None:
    join = ha_specs["lab-workers-2/kubeadm-join-worker"]
    ancestors = _ancestors(ha_specs, join.id)
    other_nodes = {a.split("/")[0] for a in ancestors} - {"lab-workers-2", "lab-cp-0"}
    assert other_nodes == {graph.JOIN_MATERIAL}  # the material, nothing of other nodes
    assert not any(a.startswith("lab-cp-1") or a.startswith("lab-workers-1") for a in ancestors)
    # its package phases start at once, in parallel with the first control plane's init
    assert ha_specs["lab-workers-2/os-prep"].needs == ("lab-workers-2/upload",)
    assert ha_specs["lab-workers-2/upload"].needs == ()


def test_labels_run_on_the_first_control_plane_after_the_node_joined(ha_specs) -> None:
    label = ha_specs["lab-workers-0/labels-and-taints"]
    assert label.runs_on == "lab-cp-0"
    assert "lab-workers-0/kubeadm-join-worker" in label.needs
    ready = ha_specs[graph.READY]
    assert set(ready.needs) >= {f"lab-workers-{i}/labels-and-taints" for i in range(4)} | {
        "lab-cp-0/cni",
        "lab-cp-2/labels-and-taints",
    }


def test_kubeconfig_for_user_points_at_the_public_endpoint(tmp_path) -> None:
    admin = (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n"
        "    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0E=\n"
        "users:\n- name: kubernetes-admin\n  user: {client-certificate-data: Qw==, "
        "client-key-data: Sw==}\ncontexts: []\n"
    )
    cfg = kc.for_user(admin, "lab", "https://10.77.0.100:8443")
    assert cfg["clusters"][0]["cluster"]["server"] == "https://10.77.0.100:8443"
    assert cfg["current-context"] == "lab"
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: "
        "https://x}}]\nusers: []\ncontexts: [{name: other, context: {cluster: other,"
        " user: u}}]\ncurrent-context: other\n"
    )
    kc.merge(path, cfg)
    kc.merge(path, cfg)  # merging twice replaces, never duplicates
    merged = kc.load(path.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["other", "lab"]
    assert [c["name"] for c in merged["contexts"]] == ["other", "lab"]
    assert merged["current-context"] == "lab"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_workers_only_day2_run_leaves_the_control_planes_steps_out(ha_specs) -> None:
    cps = {"lab-cp-0", "lab-cp-1", "lab-cp-2"}
    pruned = {s.id: s for s in graph.without_nodes(list(ha_specs.values()), cps)}
    node_steps = {s.node for s in pruned.values() if s.kind in graph.NODE_KINDS}
    assert not node_steps & cps
    assert (
        pruned[graph.JOIN_MATERIAL].needs == ()
        and pruned[graph.JOIN_MATERIAL].runs_on == "lab-cp-0"
    )
    join = pruned["lab-workers-2/kubeadm-join-worker"]
    assert graph.JOIN_MATERIAL in join.needs
    every_need = {n for s in pruned.values() for n in s.needs}
    assert every_need <= set(pruned)  # no edge to a step that is gone
    labels = pruned["lab-workers-2/labels-and-taints"]
    assert labels.runs_on == "lab-cp-0"  # still run with the first control plane's credentials
