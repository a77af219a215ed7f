"""What the operator sees of stateless nodes: ``pxe render`` records the environment, and
``status --live`` prints the nodes' own reports (a refusal for lost quorum named, exit 1),
also when the API is down, and also as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clusterdeck import pipeline
from clusterdeck.coordination.reports import Report
from clusterdeck.pipeline import stateless_status
from clusterdeck.spec.loader import load_file
from tests.helpers import run_cli
from tests.pxe.test_boot_tree import _stateless_file


def _render(capsys, monkeypatch, tmp_path: Path) -> Path:
    spec = _stateless_file(tmp_path)
    res = run_cli(
        ["pxe", "render", "-f", str(spec), "-d", str(tmp_path / "boot")], capsys, monkeypatch
    )
    assert res.code == 0, res.err
    assert "clusterdeck status stateless --live" in res.out
    return spec


def test_pxe_render_records_the_environment_and_its_nodes(capsys, monkeypatch, tmp_path) -> None:
    _render(capsys, monkeypatch, tmp_path)
    res = run_cli(["status", "stateless", "-o", "json"], capsys, monkeypatch)
    assert res.code == 0, res.err
    view = json.loads(res.out)
    assert view["status"] == "stateless"
    nodes = {n["name"]: n for n in view["nodes"]}
    assert sorted(nodes) == [
        "stateless-cp-0", "stateless-cp-1", "stateless-cp-2",
        "stateless-workers-0", "stateless-workers-1",
    ]  # fmt: skip
    assert nodes["stateless-workers-1"]["private_ip"] == "192.0.2.22"
    assert nodes["stateless-cp-0"]["role"] == "control-plane"


def test_pxe_render_does_not_record_over_a_created_environment(
    capsys, monkeypatch, tmp_path
) -> None:
    from clusterdeck.state.sqlite import SqliteStore

    SqliteStore(tmp_path / "state.db").save_environment(
        "stateless", "ssh", {"spec": {"provider": "ssh"}}
    )
    spec = _stateless_file(tmp_path)
    res = run_cli(
        ["pxe", "render", "-f", str(spec), "-d", str(tmp_path / "b")], capsys, monkeypatch
    )
    assert res.code == 2
    assert "stateless: an environment of that name exists and is not stateless" in res.err
    assert not (tmp_path / "b").exists()  # refused before anything was written


def _report_line(name: str, **fields: Any) -> str:
    return Report(name, **fields).to_json()


def test_reports_are_read_in_topology_order_and_a_silent_node_never_booted() -> None:
    text = "\n".join(
        [
            _report_line("cp-1", boots=2, state="refused", refusal="quorum needs 2"),
            "",
            _report_line("cp-0", boots=1, state="joined", joined_at=1.0),
        ]
    )
    rows = stateless_status.parse_reports(text, ["cp-0", "cp-1", "w-0"])
    assert [(r["name"], r["state"], r["boots"]) for r in rows] == [
        ("cp-0", "joined", 1),
        ("cp-1", "refused", 2),
        ("w-0", "never booted", 0),
    ]
    assert rows[1]["refusal"] == "quorum needs 2" and rows[2]["reported"] is False


def test_the_read_command_reads_only_this_environments_records(tmp_path: Path) -> None:
    spec = load_file(_stateless_file(tmp_path))
    argv = [str(a) for a in stateless_status.read_command(spec).argv]
    assert argv[:2] == ["sh", "-c"]
    assert "/var/lib/clusterdeck/shared/stateless/records/node-*" in argv[2]
    assert "secrets" not in argv[2]


def _api_down_view(monkeypatch) -> None:
    def fake(env, store, topology):  # what run.live_status returns with quorum lost
        return {
            "environment": env.name,
            "asked": None,
            "api": {"healthy": False, "detail": "no control plane answered: ..."},
            "nodes": [],
            "unreachable": [],
            "stateless": {
                "read_from": "stateless-cp-2",
                "nodes": stateless_status.parse_reports(
                    _report_line(
                        "stateless-cp-0",
                        boots=2,
                        state="refused",
                        refusal="removing etcd member stateless-cp-0 would leave 1 healthy of "
                        "2 members, and quorum needs 2: refused",
                    ),
                    ["stateless-cp-0", "stateless-cp-2"],
                ),
            },
        }

    monkeypatch.setattr(pipeline, "live_status", fake)


def test_status_live_shows_a_quorum_refusal_with_the_api_down(
    capsys, monkeypatch, tmp_path
) -> None:
    _render(capsys, monkeypatch, tmp_path)
    _api_down_view(monkeypatch)
    res = run_cli(["status", "stateless", "--live"], capsys, monkeypatch)
    assert res.code == 1
    assert "API unhealthy" in res.out
    assert "stateless-cp-0 refused to rejoin" in res.out and "quorum needs 2" in res.out
    res = run_cli(["status", "stateless", "--live", "-o", "json"], capsys, monkeypatch)
    rows = json.loads(res.out)["stateless"]["nodes"]
    assert rows[0]["state"] == "refused" and "quorum" in rows[0]["refusal"]
    assert rows[1]["state"] == "never booted"


def test_a_refused_node_fails_status_live_even_with_the_api_healthy(
    capsys, monkeypatch, tmp_path
) -> None:
    _render(capsys, monkeypatch, tmp_path)

    def fake(env, store, topology):
        return {
            "environment": env.name,
            "asked": "stateless-cp-1",
            "api": {"healthy": True, "detail": "ok"},
            "nodes": [
                {
                    "name": "stateless-cp-1",
                    "ready": True,
                    "roles": [],
                    "version": "v1.37.2",
                    "taints": [],
                },
            ],
            "unreachable": [],
            "stateless": {
                "read_from": "stateless-cp-1",
                "nodes": stateless_status.parse_reports(
                    _report_line("stateless-cp-1", boots=1, state="joined", joined_at=1.0)
                    + "\n"
                    + _report_line(
                        "stateless-workers-0",
                        boots=3,
                        state="refused",
                        refusal="Node stateless-workers-0 has the address 192.0.2.99",
                    ),
                    ["stateless-cp-1", "stateless-workers-0"],
                ),
            },
        }

    monkeypatch.setattr(pipeline, "live_status", fake)
    res = run_cli(["status", "stateless", "--live"], capsys, monkeypatch)
    assert res.code == 1, res.out
    assert "API healthy (asked stateless-cp-1)" in res.out
    assert "stateless-workers-0 refused to rejoin" in res.out
