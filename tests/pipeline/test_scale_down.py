"""Which PodDisruptionBudget blocks a drain, and the drain timeout's durations."""

from __future__ import annotations

import pytest

from clusterdeck.cli.cmd_apply import parse_duration
from clusterdeck.errors import UsageError
from clusterdeck.pipeline.scale_down import blocking_budgets


def _pdb(name: str, allowed: int, selector: dict, namespace: str = "default") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector},
        "status": {"disruptionsAllowed": allowed},
    }


def _pod(name: str, labels: dict, namespace: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


def test_only_budgets_that_allow_nothing_and_cover_a_pod_here_are_named() -> None:
    pods = {"items": [_pod("web-1", {"app": "web", "tier": "a"}), _pod("db-0", {"app": "db"})]}
    pdbs = {
        "items": [
            _pdb("web-pdb", 0, {"matchLabels": {"app": "web"}}),
            _pdb("db-pdb", 1, {"matchLabels": {"app": "db"}}),  # still allows one
            _pdb("other-ns", 0, {"matchLabels": {"app": "web"}}, namespace="prod"),
            _pdb(
                "tier-b",
                0,
                {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b"]}]},
            ),
            _pdb("tier-any", 0, {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        ]
    }
    assert blocking_budgets(pdbs, pods) == [
        "default/web-pdb (pods web-1)",
        "default/tier-any (pods web-1)",
    ]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), ("45", 45)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "0s", "-1m", "1d"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--drain-timeout"):
        parse_duration(text)
