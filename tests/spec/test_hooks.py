"""``spec.hooks``: validation, where each hook runs, its place in the graph, its script.

The scripts' behaviour (done once, timeout, continueOnError, the failure message) runs for
real in ``tests/bootstrap/test_hook_scripts.py``; on real hosts in tests/e2e/test_cluster.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clusterdeck import api
from clusterdeck.bootstrap.render import render_environment
from clusterdeck.pipeline import graph
from clusterdeck.spec import check_bytes, check_file
from clusterdeck.spec.models import Environment
from tests.helpers import run_cli

BASE = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: hk}
spec:
  provider: ssh
  cluster:
    controlPlane:
      hosts: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
    highAvailability: {enabled: true, loadBalancer: keepalived, vip: 192.0.2.100}
    nodePools:
      - name: gpu
        hosts: [{address: 192.0.2.21}]
      - name: cpu
        hosts: [{address: 192.0.2.31}]
"""


def hooks_file(hooks: str, extra: str = "") -> str:
    return (
        BASE
        + extra
        + "  hooks:\n"
        + "".join(f"    {line}\n" for line in hooks.strip("\n").splitlines())
    )


def errors(text: str) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in check_bytes(text.encode()).errors]


def env_of(text: str) -> Environment:
    report = check_bytes(text.encode())
    assert report.environment is not None and not report.errors, report.errors
    return report.environment


ALL_POINTS = """
- {name: first, at: beforeInstall, inline: "echo first"}
- {name: runtime, at: afterRuntime, inline: "echo runtime", roles: [worker]}
- {name: gpu-only, at: afterKubernetes, inline: "echo gpu", pools: [gpu]}
- {name: ready, at: clusterReady, inline: "kubectl get nodes"}
- {name: everywhere-ready, at: clusterReady, inline: "true", roles: [controlPlane, worker]}
"""


def phases(env: Environment) -> dict[str, list[str]]:
    _, plan = api.plan(env)
    return {n.name: n.phases for n in plan.nodes}


def test_hooks_run_at_their_points_only_where_they_are_aimed() -> None:
    got = phases(env_of(hooks_file(ALL_POINTS)))
    assert got["hk-gpu-0"] == [
        "hook-first",
        "os-prep",
        "containerd",
        "hook-runtime",
        "kube-packages",
        "kubeadm-join-worker",
        "labels-and-taints",
        "hook-gpu-only",
        "hook-everywhere-ready",
    ]
    assert "hook-gpu-only" not in got["hk-cpu-0"] and "hook-runtime" in got["hk-cpu-0"]
    # a clusterReady hook aimed nowhere runs once, on the first control plane
    assert got["hk-cp-0"][-2:] == ["hook-ready", "hook-everywhere-ready"]
    assert "hook-ready" not in got["hk-cp-1"] and "hook-runtime" not in got["hk-cp-1"]
    assert got["hk-cp-1"][-1] == "hook-everywhere-ready"


def test_cluster_ready_hooks_wait_for_the_ready_check_which_waits_for_after_kubernetes() -> None:
    env = env_of(hooks_file(ALL_POINTS))
    topology, plan = api.plan(env)
    specs = {s.id: s for s in graph.build(render_environment(env, topology, plan).configs)}
    assert graph.READY in specs["hk-cp-0/hook-ready"].needs
    assert graph.READY in specs["hk-gpu-0/hook-everywhere-ready"].needs
    assert "hk-gpu-0/hook-gpu-only" in specs[graph.READY].needs
    assert specs["hk-gpu-0/hook-runtime"].needs == ("hk-gpu-0/containerd",)
    assert specs["hk-gpu-0/os-prep"].needs == ("hk-gpu-0/hook-first",)


def test_the_script_is_a_bundle_file_and_node_json_holds_no_secret_value() -> None:
    env = env_of(
        hooks_file(
            "- {name: tok, at: afterRuntime, inline: 'echo \"$API_TOKEN\"', env: {LEVEL: '2'}, "
            "secretEnv: [API_TOKEN], timeoutSeconds: 30}"
        )
    )
    topology, plan = api.plan(env)
    files = render_environment(env, topology, plan).files["hk-gpu-0"]
    assert files["files/hooks/tok.sh"].content == 'echo "$API_TOKEN"'
    assert files["files/hooks/tok.sh"].mode == 0o700
    node = json.loads(files["node.json"].content)
    (hook,) = node["hooks"]
    assert hook["secret_env"] == ["API_TOKEN"] and hook["env"] == {"LEVEL": "2"}
    script = next(f.content for p, f in files.items() if p.endswith("-hook-tok.sh"))
    # the hook's env reaches the hook alone: a name like MARK or SCRIPT cannot change the
    # phase script around it (measured: an exported MARK once redirected its done marker)
    assert "timeout --kill-after=10 '30' env -- LEVEL='2'" in script
    assert "export LEVEL" not in script


@pytest.mark.parametrize(
    ("hooks", "path", "said"),
    [
        ("- {name: a, at: beforeInstall}", "spec.hooks[0]", "either inline or as a file"),
        ("- {name: a, at: beforeInstall, inline: x, file: y.sh}", "spec.hooks[0]", "not both"),
        ("- {name: a, at: whenever, inline: x}", "spec.hooks[0].at", "beforeInstall"),
        (
            "- {name: a, at: beforeInstall, inline: x}\n- {name: a, at: afterRuntime, inline: y}",
            "spec.hooks[1].name",
            "duplicate",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, pools: [gpus]}",
            "spec.hooks[0].pools[0]",
            "did you mean gpu",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, env: {CLUSTERDECK_NODE: y}}",
            "spec.hooks[0].env",
            "clusterdeck's",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, env: {'BAD-NAME': y}}",
            "spec.hooks[0].env",
            "environment variable name",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, timeoutSeconds: 0}",
            "spec.hooks[0].timeoutSeconds",
            "greater than or equal to 1",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, roles: [master]}",
            "spec.hooks[0].roles[0]",
            "controlPlane",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, env: {T: y}, secretEnv: [T]}",
            "spec.hooks[0].env.T",
            "also in secretEnv",
        ),
        (
            "- {name: a, at: beforeInstall, inline: x, file: ../nope.sh}",
            "spec.hooks[0]",
            "not both",
        ),
    ],
)
def test_bad_hooks_are_refused_naming_the_field(hooks: str, path: str, said: str) -> None:
    found = errors(hooks_file(hooks))
    assert any(p == path and said in m for p, m in found), found


def test_late_hooks_need_kubernetes() -> None:
    text = hooks_file(
        "- {name: a, at: clusterReady, inline: x}",
        extra="  kubernetes: {install: false}\n",
    )
    assert any(p == "spec.hooks[0].at" and "kubernetes.install" in m for p, m in errors(text))


def test_a_hook_file_is_read_relative_to_the_environment_file(tmp_path: Path) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "probe.sh").write_text("echo from a file\n")
    spec = tmp_path / "env.yaml"
    spec.write_text(hooks_file("- {name: probe, at: afterRuntime, file: hooks/probe.sh}"))
    report = check_file(spec)
    assert report.environment is not None and not report.errors
    (hook,) = report.environment.spec.hooks
    assert hook.inline == "echo from a file\n" and hook.file is None
    spec.write_text(hooks_file("- {name: probe, at: afterRuntime, file: hooks/missing.sh}"))
    found = [(i.path, i.message) for i in check_file(spec).errors]
    assert found and found[0][0] == "spec.hooks[0].file" and "missing.sh" in found[0][1]


def test_validate_runs_shellcheck_on_every_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "env.yaml"
    spec.write_text(
        hooks_file(
            "- name: broken\n  at: afterRuntime\n  inline: |\n    if [ -f /x ]; then\n"
            "      echo yes\n"
            '- name: sloppy\n  at: afterRuntime\n  inline: |\n    rm -rf "$DIR"/\n'
            "- {name: clean, at: afterRuntime, inline: 'echo \"$HOME\"'}"
        )
    )
    res = run_cli(["validate", "-f", str(spec), "-o", "json"], capsys, monkeypatch)
    assert res.code == 2
    report = json.loads(res.out)
    assert {e["path"] for e in report["errors"]} == {"spec.hooks[0]"}
    assert "hook broken" in report["errors"][0]["message"]
    assert "SC" in report["errors"][0]["message"]
    warned = [w for w in report["warnings"] if w["path"] == "spec.hooks[1]"]
    assert warned and "SC2115" in warned[0]["message"]  # rm -rf "$DIR"/: warned, not refused
    assert not [w for w in report["warnings"] if w["path"] == "spec.hooks[2]"]


def test_validate_says_when_shellcheck_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "env.yaml"
    spec.write_text(hooks_file("- {name: a, at: afterRuntime, inline: 'echo hi'}"))
    monkeypatch.setenv("PATH", str(tmp_path))
    res = run_cli(["validate", "-f", str(spec)], capsys, monkeypatch)
    assert res.code == 0 and "shellcheck is not installed" in res.err


def test_a_missing_secret_env_refuses_create_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "env.yaml"
    spec.write_text(
        hooks_file("- {name: a, at: afterRuntime, inline: 'echo hi', secretEnv: [HK_TOKEN]}")
    )
    monkeypatch.delenv("HK_TOKEN", raising=False)
    state = tmp_path / "state.db"
    res = run_cli(["--state", str(state), "create", "-f", str(spec), "--yes"], capsys, monkeypatch)
    assert res.code == 2
    assert "spec.hooks[0].secretEnv: HK_TOKEN" in res.err
    assert not state.exists() or "hk" not in state.read_bytes().decode(errors="replace")


def test_rendered_hook_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from clusterdeck.bootstrap.render import write_bundle

    env = env_of(
        hooks_file(ALL_POINTS.replace('inline: "true"', 'inline: "true", continueOnError: true'))
    )
    topology, plan = api.plan(env)
    write_bundle(render_environment(env, topology, plan), tmp_path)
    scripts = sorted(str(p) for p in tmp_path.glob("*/phases/*-hook-*.sh"))
    assert len(scripts) == 14  # first: 5, runtime: 2 workers, gpu-only: 1, ready: 1, everywhere: 5
    res = subprocess.run(
        ["shellcheck", "--severity=style", *scripts], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout[-3000:]
