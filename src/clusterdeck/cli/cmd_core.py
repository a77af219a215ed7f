"""Read-only commands: validate, plan, list, status, schema, version.

None of them needs credentials or a network; ``plan`` reads the store only when it already
exists, so planning on a fresh machine leaves nothing behind.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import clusterdeck
from clusterdeck.cli.context import AppState, Output, ask, print_json, state
from clusterdeck.errors import SpecError, UsageError

if TYPE_CHECKING:
    from clusterdeck.spec import ValidationReport
    from clusterdeck.spec.models import Environment
    from clusterdeck.state import SqliteStore

# Only what validate and version need is imported at start; the API, the store and the
# records are imported by the commands that use them (start-up time, bench/startup.py).

FileOpt = Annotated[
    Path,
    typer.Option("--file", "-f", help="The Environment YAML file.", exists=False, dir_okay=False),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text (tables) or json.")]
PROMPT_NODE_COUNT = 5


def register(app: typer.Typer) -> None:
    app.command(
        help="Check a file: every mistake with its field path, line and column. "
        "Exit 0 when valid, 2 when not.",
        epilog="Examples:  clusterdeck validate -f cluster.yaml   |   "
        "clusterdeck validate -f cluster.yaml -o json | jq '.errors[].path'",
    )(validate)
    app.command(
        help="Show everything create would build, before anything exists: cloud resources, "
        "every security-group rule with its source, instances per pool and zone, the load "
        "balancer, the API endpoint and each node's bootstrap phases. No credentials, no network.",
        epilog="Examples:  clusterdeck plan -f examples/aws-ha.yaml   |   "
        "clusterdeck plan -f cluster.yaml -o json > plan.json",
    )(plan)
    app.command(
        "list", help="Environments in the state store.", epilog="Example:  clusterdeck list -o json"
    )(list_environments)
    app.command(
        help="What the store knows of an environment: nodes with their IDs and addresses, "
        "the API endpoint, and what the plan still lacks.",
        epilog="Examples:  clusterdeck status gpu-lab   |   clusterdeck status gpu-lab -o json",
    )(status)
    app.command(
        help="JSON Schema of the Environment file, for editors (e.g. yaml-language-server).",
        epilog="Example:  clusterdeck schema > environment.schema.json",
    )(schema)
    app.command(help="Print the clusterdeck version.")(version)


def validate(ctx: typer.Context, file: FileOpt, output: OutputOpt = Output.TEXT) -> None:
    from clusterdeck.cli import render
    from clusterdeck.spec import rules

    app = state(ctx)
    report = checked_report(file)
    if output is Output.JSON:
        print_json(report.as_dict())
    elif report.valid and report.environment is not None:
        env = report.environment
        workers = rules.worker_count(env)
        app.console.print(
            f"[green]valid[/]: {file} defines environment {env.name!r} with "
            f"{rules.control_plane_count(env)} control plane(s) and {workers} "
            f"worker(s)" + ("" if workers else " (single-node/control-plane-only)"),
            highlight=False,
        )
        render.issues(app.err, report.warnings, label="warning", style="yellow")
    else:
        render.issues(app.err, report.errors, label="error", style="red")
        render.issues(app.err, report.warnings, label="warning", style="yellow")
    if not report.valid:
        raise typer.Exit(2)


def checked_report(file: Path) -> ValidationReport:
    """The file's report, with the real validators' word on what it carries beyond clusterdeck's
    own fields: kubeadm on the merged configuration (``kubernetes.config``), shellcheck on the
    hooks. A file with neither pays for nothing more."""
    from clusterdeck.spec import check_file

    report = check_file(file)
    env = report.environment
    if not report.valid or env is None:
        return report
    if env.spec.kubernetes.config is not None:
        _check_kubeadm(env, report)
    if env.spec.hooks:
        _check_hooks(env, report)
    return report


def _check_kubeadm(env: Environment, report: ValidationReport) -> None:
    from clusterdeck.errors import SpecIssue
    from clusterdeck.pipeline import kubeadm_check
    from clusterdeck.spec import kubeadm_patches

    verdict = kubeadm_check.check(env)
    where = "spec.kubernetes.config"
    if not verdict.checked:
        report.warnings.append(
            SpecIssue(
                where,
                "no kubeadm on the PATH or in the offline bundle: the merged configuration "
                "is checked by each node's kubeadm before kubeadm init or join runs",
            )
        )
    for problem in verdict.problems:
        # the fragment a refused document kind comes from, when kubeadm names one
        refused = problem.split(": ", 1)[-1]
        kinds = [k for k in kubeadm_patches.FRAGMENT_FIELD if f"{k}: " in refused]
        at = f"{where}.{kubeadm_patches.FRAGMENT_FIELD[kinds[0]]}" if kinds else where
        report.errors.append(
            SpecIssue(at, f"{verdict.kubeadm} config validate refused the merged {problem}")
        )


def _check_hooks(env: Environment, report: ValidationReport) -> None:
    from clusterdeck.errors import SpecIssue
    from clusterdeck.pipeline import hook_check

    found = hook_check.shellcheck(env)
    if found is None:
        report.warnings.append(
            SpecIssue("spec.hooks", "shellcheck is not installed: the hooks were not checked")
        )
        return
    for item in found:
        hook = env.spec.hooks[item.hook]
        issue = SpecIssue(f"spec.hooks[{item.hook}]", f"hook {hook.name}: {item.text()}")
        (report.errors if item.level == "error" else report.warnings).append(issue)


def load_checked(app: AppState, file: Path) -> Environment:
    from clusterdeck.cli import render

    report = checked_report(file)
    if not report.valid or report.environment is None:
        raise SpecError(report.errors, source=str(file))
    render.issues(app.err, report.warnings, label="warning", style="yellow")
    return report.environment


def ask_dedicated(app: AppState, env: Environment) -> bool | None:
    """Ask whether control planes are dedicated for clusters of 5+ nodes that do not say."""
    from clusterdeck.spec import rules

    total = rules.control_plane_count(env) + rules.worker_count(env)
    if (
        env.spec.cluster.control_plane.dedicated is not None
        or total < PROMPT_NODE_COUNT
        or rules.worker_count(env) == 0
        or app.non_interactive
    ):
        return None
    return ask(
        f"This cluster has {total} nodes. Dedicate the control planes (keep the "
        "NoSchedule taint, no workloads on them)?",
        default=False,
    )


def check_output_dir(directory: Path, marker: str, command: str) -> bool:
    """Refuse an output directory that is a file, or holds files ``command`` did not write
    (its ``marker`` file shows it did); True when it holds that command's earlier output."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory} exists and is not a directory")
    ours = (directory / marker).exists()
    if directory.is_dir() and any(directory.iterdir()) and not ours:
        raise UsageError(
            f"--dir {directory} is not empty and was not written by {command}; choose an "
            "empty or new directory"
        )
    return ours


def existing_store(app: AppState) -> SqliteStore | None:
    from clusterdeck.state import SqliteStore, default_state_path

    path = app.state_path or default_state_path()
    return SqliteStore(path) if path.exists() else None


def plan(ctx: typer.Context, file: FileOpt, output: OutputOpt = Output.TEXT) -> None:
    from clusterdeck import api
    from clusterdeck.cli import render

    app = state(ctx)
    if output is Output.JSON:  # a bad file gets validate's JSON form, not a text line
        report = checked_report(file)
        if not report.valid:
            print_json(report.as_dict())
            raise typer.Exit(2)
    env = load_checked(app, file)
    dedicated = ask_dedicated(app, env)
    _, the_plan = api.plan(env, existing_store(app), dedicated=dedicated)
    if output is Output.JSON:
        print_json(the_plan.model_dump(mode="json"))
    else:
        render.plan(app.console, the_plan)


def list_environments(ctx: typer.Context, output: OutputOpt = Output.TEXT) -> None:
    from clusterdeck.cli import render
    from clusterdeck.model.records import NODE_PREFIX

    app = state(ctx)
    store = existing_store(app)
    records = store.environments() if store else []
    rows = []
    for rec in records:
        nodes = (
            [r for r in store.resources(rec.name) if r.key.startswith(NODE_PREFIX)] if store else []
        )
        rows.append(
            {
                "name": rec.name,
                "provider": rec.provider,
                "status": rec.status,
                "nodes": len(nodes),
                "endpoint": rec.outputs.get("endpoint"),
                "updated_at": rec.updated_at,
            }
        )
    if output is Output.JSON:
        print_json(rows)
        return
    if not rows:
        app.console.print("No environments yet. Create one with: clusterdeck create -f FILE")
        return
    table = render.table_(None, "name", "provider", "status", "nodes", "endpoint")
    for row in rows:
        table.add_row(
            *(
                str(row[k] if row[k] is not None else "-")
                for k in ("name", "provider", "status", "nodes", "endpoint")
            )
        )
    app.console.print(table)


def status(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    output: OutputOpt = Output.TEXT,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Ask a reachable control plane: API "
            "health, each node's Ready state, version, roles, "
            "taints.",
        ),
    ] = False,
) -> None:
    from clusterdeck import api
    from clusterdeck.cli import render
    from clusterdeck.model.records import NODE_PREFIX

    app = state(ctx)
    if live:
        from clusterdeck.cli import cmd_cluster

        cmd_cluster.live_status(app, environment, output)
        return
    view = api.status(app.store(), environment)
    rec = view.record
    nodes = [
        {
            "name": n.key.removeprefix(NODE_PREFIX),
            "id": n.provider_id,
            "role": n.data.get("role"),
            "pool": n.data.get("pool"),
            "state": n.data.get("state"),
            "public_ip": n.data.get("public_ip"),
            "private_ip": n.data.get("private_ip"),
        }
        for n in view.nodes
    ]
    if output is Output.JSON:
        print_json(
            {
                "name": rec.name,
                "provider": rec.provider,
                "status": rec.status,
                "outputs": rec.outputs,
                "nodes": nodes,
                "resources": [
                    {"key": r.key, "kind": r.kind, "id": r.provider_id} for r in view.resources
                ],
                "missing": view.missing,
                "kubernetes_installed": api.kubernetes_installed(rec),
            }
        )
        return
    app.console.print(f"[bold]{rec.name}[/] ({rec.provider}) status: {rec.status}")
    app.console.print(f"endpoint: {rec.outputs.get('endpoint', 'not known yet')}")
    if api.kubernetes_installed(rec) is False:
        app.console.print(
            "[yellow]infrastructure exists; Kubernetes is not installed[/] (created with "
            "--infra-only): run `clusterdeck create -f FILE` to install it"
        )
    table = render.table_("Nodes", "node", "id", "role", "pool", "state", "public IP", "private IP")
    for node in nodes:
        table.add_row(
            *(
                str(node[k] or "-")
                for k in ("name", "id", "role", "pool", "state", "public_ip", "private_ip")
            )
        )
    app.console.print(table)
    app.console.print(f"{len(view.resources)} other resources recorded")
    if view.missing:
        app.console.print(f"[yellow]missing[/] ({len(view.missing)}): " + ", ".join(view.missing))
    else:
        app.console.print("[green]nothing missing[/]")


def schema(ctx: typer.Context) -> None:
    from clusterdeck.spec.models import Environment

    data = Environment.model_json_schema(by_alias=True)
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "clusterdeck Environment"
    print_json(data)


def version(ctx: typer.Context, output: OutputOpt = Output.TEXT) -> None:
    info = {"clusterdeck": clusterdeck.__version__, "python": platform.python_version()}
    if output is Output.JSON:
        print_json(info)
    else:
        state(ctx).console.print(json.dumps(info)[1:-1].replace('"', ""), highlight=False)
