"""``spec.ephemeral``: stateless nodes are accepted only where they can bootstrap themselves."""

from __future__ import annotations

import json

import pytest

from clusterdeck import api
from clusterdeck.errors import UsageError
from clusterdeck.spec import check_bytes
from clusterdeck.state.sqlite import SqliteStore
from tests.helpers import EXAMPLES, run_cli

EXAMPLE = (EXAMPLES / "stateless-ha.yaml").read_text()


def errors(text: str) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in check_bytes(text.encode()).errors]


def test_the_example_lists_five_hosts_control_planes_first_and_validates() -> None:
    lines = [line.strip() for line in EXAMPLE.splitlines()]
    addresses = [line for line in lines if "address:" in line]
    assert len(addresses) == 5
    assert EXAMPLE.index("controlPlane:") < EXAMPLE.index(addresses[0]) < EXAMPLE.index("workers:")
    env = check_bytes(EXAMPLE.encode()).environment
    assert env is not None and env.spec.ephemeral is not None
    assert env.spec.ephemeral.shared_directory == "/var/lib/clusterdeck/shared"
    assert env.spec.ephemeral.lease_seconds == 30


def test_stateless_nodes_need_an_offline_bundle() -> None:
    text = EXAMPLE.replace("  offline:\n    bundle: ./kubernetes-v1.37.2-linux-amd64", "")
    assert any(
        path == "spec.ephemeral" and "spec.offline.bundle" in msg for path, msg in errors(text)
    )


def test_stateless_control_planes_need_a_vip_endpoint() -> None:
    text = EXAMPLE.replace("      enabled: true\n", "      enabled: false\n").replace(
        "      vip: 192.0.2.100\n", ""
    )
    found = errors(text)
    assert any(
        path == "spec.cluster.highAvailability" and "elect" in msg and "vip" in msg
        for path, msg in found
    ), found


def test_stateless_pools_cannot_be_on_aws() -> None:
    text = (
        EXAMPLE.replace(
            "    workers:\n      hosts:\n        - {address: 192.0.2.21}\n"
            "        - {address: 192.0.2.22}\n",
            "    workers: {provider: aws, count: 2}\n",
        )
        + "  aws: {region: us-west-2}\n  auth: {keyName: k}\n"
    )
    assert any(path == "spec.ephemeral" and "aws" in msg for path, msg in errors(text))


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("sharedDirectory", "relative/dir", "absolute path"),
        ("sharedDirectory", "/srv/../etc", "absolute path"),
        ("leaseSeconds", "3", "greater than or equal to 10"),
        ("bundleUrl", "ftp://x/b.tar", "http(s) URL"),
    ],
)
def test_bad_ephemeral_fields_are_named(field: str, value: str, needle: str) -> None:
    head = EXAMPLE[: EXAMPLE.index("  ephemeral:\n")]
    found = errors(f"{head}  ephemeral:\n    {field}: {value}\n")
    assert any(path == f"spec.ephemeral.{field}" and needle in msg for path, msg in found), found


def test_create_refuses_a_stateless_environment_and_records_nothing(tmp_path) -> None:
    env = api.load(EXAMPLES / "stateless-ha.yaml")
    store = SqliteStore(tmp_path / "state.db")
    with pytest.raises(
        UsageError, match=r"stateless: spec\.ephemeral: .*create does not push.*pxe render"
    ):
        api.create(env, store, infra_only=False)
    assert store.environment("stateless") is None


def test_the_cli_says_so_in_one_line_with_exit_2(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CLUSTERDECK_STATE", str(tmp_path / "state.db"))
    result = run_cli(
        ["--non-interactive", "create", "-f", str(EXAMPLES / "stateless-ha.yaml"), "--yes"],
        capsys,
        monkeypatch,
    )
    assert result.code == 2, result.err
    assert "spec.ephemeral" in result.err and "Traceback" not in result.err
    plan = run_cli(
        ["plan", "-f", str(EXAMPLES / "stateless-ha.yaml"), "-o", "json"], capsys, monkeypatch
    )
    assert plan.code == 0 and json.loads(plan.out)["nodes"]
