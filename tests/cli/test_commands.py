"""The CLI as a user meets it: listings, status, schema, prompts, consent and locks."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pexpect
import pytest

from clusterdeck.state import SqliteStore
from tests.helpers import EXAMPLES, ROOT, lock_holder, run_cli

CLI = str(Path(sys.executable).with_name("clusterdeck"))


@pytest.fixture
def store_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "state.db"
    monkeypatch.setenv("CLUSTERDECK_STATE", str(path))
    # the examples log in with ~/.ssh/id_ed25519, which create checks first: give it one
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    return path


def test_list_is_empty_then_shows_environments(store_path, capsys, monkeypatch) -> None:
    result = run_cli(["list", "-o", "json"], capsys, monkeypatch)
    assert (result.code, json.loads(result.out)) == (0, [])
    store = SqliteStore(store_path)
    store.save_environment("alpha", "aws", {})
    store.record_resource("alpha", "node/alpha-cp-0", "instance", "i-1", {"role": "control-plane"})
    store.set_status("alpha", "infra-ready", endpoint="https://203.0.113.5:6443")
    result = run_cli(["list", "-o", "json"], capsys, monkeypatch)
    (row,) = json.loads(result.out)
    assert (row["name"], row["nodes"], row["endpoint"]) == ("alpha", 1, "https://203.0.113.5:6443")
    result = run_cli(["list"], capsys, monkeypatch)
    assert "alpha" in result.out and "infra-ready" in result.out


def test_status_reads_the_store_and_names_what_is_missing(store_path, capsys, monkeypatch) -> None:
    from clusterdeck import api

    env = api.load(EXAMPLES / "aws-simple.yaml")
    store = SqliteStore(store_path)
    store.save_environment(env.name, "aws", env.model_dump(mode="json", by_alias=True))
    store.record_resource(env.name, "vpc", "vpc", "vpc-9")
    store.record_resource(
        env.name,
        "node/gpu-simple-cp-0",
        "instance",
        "i-0abc",
        {
            "role": "control-plane",
            "pool": "control-plane",
            "state": "running",
            "public_ip": "203.0.113.7",
            "private_ip": "10.0.1.10",
        },
    )
    result = run_cli(["status", env.name, "-o", "json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["nodes"][0]["public_ip"] == "203.0.113.7"
    assert "gpu-simple-workers-0" in data["missing"] and "igw" in data["missing"]
    assert "vpc" not in data["missing"] and "gpu-simple-cp-0" not in data["missing"]
    monkeypatch.setenv("COLUMNS", "200")
    text = run_cli(["status", env.name], capsys, monkeypatch)
    assert "203.0.113.7" in text.out and "missing" in text.out


def test_status_of_unknown_environment_is_bad_input(store_path, capsys, monkeypatch) -> None:
    result = run_cli(["status", "ghost"], capsys, monkeypatch)
    assert result.code == 2
    assert "no environment named 'ghost'" in result.err


def test_schema_is_json_schema_that_accepts_the_examples(capsys, monkeypatch) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    result = run_cli(["schema"], capsys, monkeypatch)
    schema = json.loads(result.out)
    assert schema["additionalProperties"] is False
    for path in EXAMPLES.glob("*.yaml"):
        jsonschema.validate(json.loads(json.dumps(YAML(typ="safe").load(path))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {
                "apiVersion": "clusterdeck.dev/v1alpha1",
                "kind": "Environment",
                "metadata": {"name": "x"},
                "spec": {"bogus": 1},
            },
            schema,
        )


def test_version(capsys, monkeypatch) -> None:
    result = run_cli(["version", "-o", "json"], capsys, monkeypatch)
    assert json.loads(result.out)["clusterdeck"]


def test_create_needs_consent_in_non_interactive_mode(store_path, capsys, monkeypatch) -> None:
    result = run_cli(
        ["--non-interactive", "create", "-f", str(EXAMPLES / "ssh-existing.yaml"), "--infra-only"],
        capsys,
        monkeypatch,
    )
    assert result.code == 2  # the missing --yes is bad input
    assert "re-run with --yes" in result.err
    assert SqliteStore(store_path).environments() == [], "nothing recorded without consent"


def test_second_apply_of_one_environment_is_refused(store_path, capsys, monkeypatch) -> None:
    with lock_holder(store_path, "onprem"):
        result = run_cli(
            ["create", "-f", str(EXAMPLES / "ssh-existing.yaml"), "--infra-only", "--yes"],
            capsys,
            monkeypatch,
        )
        assert result.code == 1
        assert "'onprem' is locked by create (pid" in result.err


def _clean_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "CLUSTERDECK_NONINTERACTIVE")}
    env.update(CLUSTERDECK_STATE=str(tmp_path / "s.db"), COLUMNS="200", TERM="dumb")
    return env


@pytest.mark.skipif(shutil.which(CLI) is None, reason="console script not installed")
@pytest.mark.parametrize(
    ("answer", "expect"), [("y", "tainted: dedicated"), ("n", "untainted: dedicated is false")]
)
def test_five_nodes_prompt_for_dedicated_control_planes(tmp_path, answer, expect) -> None:
    child = pexpect.spawn(
        CLI,
        ["plan", "-f", str(EXAMPLES / "ssh-existing.yaml")],
        env=_clean_env(tmp_path),
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("Dedicate the control planes")
    child.sendline(answer)
    child.expect(expect)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("how", ["flag", "env", "ci"])
def test_non_interactive_never_prompts(tmp_path, how) -> None:
    env = _clean_env(tmp_path)
    args = ["plan", "-f", str(EXAMPLES / "ssh-existing.yaml")]
    if how == "flag":
        args.insert(0, "--non-interactive")
    elif how == "env":
        env["CLUSTERDECK_NONINTERACTIVE"] = "true"
    else:
        env["CI"] = "true"
    child = pexpect.spawn(CLI, args, env=env, encoding="utf-8", timeout=30)
    index = child.expect(["Dedicate the control planes", "untainted"])
    child.expect(pexpect.EOF)
    child.close()
    assert index == 1, "must take the file's value without asking"
    assert child.exitstatus == 0


def test_a_new_environment_that_got_nowhere_leaves_no_record(
    store_path, tmp_path, capsys, monkeypatch
) -> None:
    spec = tmp_path / "nowhere.yaml"
    spec.write_text(
        "apiVersion: clusterdeck.dev/v1alpha1\nkind: Environment\n"
        "metadata: {name: nowhere}\nspec:\n  provider: ssh\n  auth: {username: root}\n"
        "  cluster:\n    controlPlane:\n      hosts: [{address: 127.0.0.1, port: 1}]\n"
    )
    monkeypatch.setenv("CLUSTERDECK_SSH_WAIT", "1")
    result = run_cli(["create", "-f", str(spec), "--infra-only", "--yes"], capsys, monkeypatch)
    assert result.code == 1
    assert "failed: nowhere-cp-0: 127.0.0.1:1: connection refused" in result.err
    assert SqliteStore(store_path).environments() == []


def test_plan_json_on_a_bad_file_prints_the_json_error_form(tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: clusterdeck.dev/v1alpha1\nkind: Environment\nmetadata: {name: x}\n"
        "spec: {cluster: {controlPlane: {cuont: 1}}}\n"
    )
    result = run_cli(["plan", "-f", str(bad), "-o", "json"], capsys, monkeypatch)
    assert result.code == 2
    data = json.loads(result.out)
    assert data["valid"] is False and data["errors"][0]["path"].endswith("cuont")


def test_render_refuses_a_directory_it_did_not_write(tmp_path, capsys, monkeypatch) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine.txt").write_text("keep me\n")
    args = ["render", "-f", str(EXAMPLES / "single-node.yaml"), "-d", str(target)]
    result = run_cli(args, capsys, monkeypatch)
    assert result.code == 2 and "not empty" in result.err
    assert (target / "mine.txt").read_text() == "keep me\n"
    fresh = tmp_path / "fresh"
    assert run_cli([*args[:-1], str(fresh)], capsys, monkeypatch).code == 0
    (fresh / "stale-node").mkdir()  # what an earlier render wrote is replaced whole
    assert run_cli([*args[:-1], str(fresh)], capsys, monkeypatch).code == 0
    assert not (fresh / "stale-node").exists()


def test_cleanup_without_a_region_says_what_it_needs(tmp_path, capsys, monkeypatch) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = run_cli(["cleanup", "ghost"], capsys, monkeypatch)
    assert result.code == 2
    assert "--region" in result.err and "in the file" not in result.err
