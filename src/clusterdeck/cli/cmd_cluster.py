"""Cluster commands: ``get kubeconfig``, ``events``, and the live part of ``status --live``.

They read the environment from the store and reach the nodes over SSH (host keys pinned at
create); nothing secret is kept in the store, so the kubeconfig is fetched from a control
plane each time it is asked for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clusterdeck import api, pipeline
from clusterdeck.cli.context import AppState, Output, print_json, state
from clusterdeck.errors import UsageError
from clusterdeck.pipeline import kubeconfig as kc
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import require_environment

KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig", "-k", help="Write the admin kubeconfig here (mode 0600).", dir_okay=False
    ),
]
MergeOpt = Annotated[
    bool,
    typer.Option(
        "--merge-kubeconfig",
        help="Merge the kubeconfig into ~/.kube/config as a context named after the environment.",
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]

get_app = typer.Typer(help="Fetch something from an environment.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(get_app, name="get")
    get_app.command(
        "kubeconfig",
        help="The admin kubeconfig of an environment, its server the public API endpoint. "
        "Printed, written to -k PATH (0600), or merged into ~/.kube/config.",
        epilog="Examples:  clusterdeck get kubeconfig lab -k lab.conf   |   "
        "clusterdeck get kubeconfig lab --merge-kubeconfig",
    )(get_kubeconfig)
    app.command(
        help="Every phase of every node with its start, duration and outcome.",
        epilog="Examples:  clusterdeck events lab   |   clusterdeck events lab -o json",
    )(events)


def _environment(app: AppState, name: str) -> Environment:
    record = require_environment(app.store(), name)
    try:
        return from_recorded(record.spec)
    except ValueError as exc:
        raise UsageError(f"the recorded spec of {name!r} no longer loads: {exc}") from exc


def deliver_kubeconfig(
    app: AppState, name: str, config: dict[str, Any], path: Path | None, merge: bool
) -> None:
    if path is not None:
        kc.write_private(path.expanduser(), kc.dump(config))
        app.err.print(f"kubeconfig written to {path} (mode 0600)", highlight=False)
    if merge:
        target = Path("~/.kube/config").expanduser()
        kc.merge(target, config)
        app.err.print(f"kubeconfig merged into {target} as context {name!r}", highlight=False)


def get_kubeconfig(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    kubeconfig: KubeconfigOpt = None,
    merge_kubeconfig: MergeOpt = False,
) -> None:
    app = state(ctx)
    env = _environment(app, environment)
    topology, the_plan = api.plan(env, app.store())
    config = pipeline.fetch_kubeconfig(env, app.store(), topology, the_plan)
    if kubeconfig is None and not merge_kubeconfig:
        typer.echo(kc.dump(config), nl=False)
        return
    deliver_kubeconfig(app, environment, config, kubeconfig, merge_kubeconfig)


def events(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    output: OutputOpt = Output.TEXT,
) -> None:
    app = state(ctx)
    require_environment(app.store(), environment)
    rows: list[dict[str, Any]] = [
        {
            "subject": e.subject,
            "step": e.step,
            "outcome": e.kind,
            "started_at": e.started_at,
            "duration": None if e.ended_at is None else round(e.ended_at - e.started_at, 3),
            "message": e.message,
        }
        for e in app.store().events(environment)
    ]
    if output is Output.JSON:
        print_json(rows)
        return
    table = Table(title=f"{environment}: {len(rows)} events")
    for column in ("node", "phase", "started", "duration", "outcome", "message"):
        table.add_column(column)
    for row in rows:
        started = time.strftime("%H:%M:%S", time.localtime(row["started_at"]))
        duration = "running" if row["duration"] is None else f"{row['duration']:.1f}s"
        table.add_row(
            str(row["subject"]),
            str(row["step"]),
            started,
            duration,
            str(row["outcome"]),
            str(row["message"])[:80],
        )
    app.console.print(table)


def live_status(app: AppState, name: str, output: Output) -> None:
    env = _environment(app, name)
    topology, _ = api.plan(env, app.store())
    view = pipeline.live_status(env, app.store(), topology)
    if output is Output.JSON:
        print_json(view)
        return
    api_state = "healthy" if view["api"]["healthy"] else f"unhealthy ({view['api']['detail']})"
    asked = f" (asked {view['asked']})" if view["asked"] else ""
    app.console.print(f"[bold]{name}[/]: API {api_state}{asked}", highlight=False)
    for miss in view["unreachable"]:
        app.err.print(
            f"[yellow]unreachable[/]: {miss['control_plane']}: {miss['error']}", highlight=False
        )
    table = Table(title="Nodes")
    for column in ("node", "ready", "roles", "version", "taints"):
        table.add_column(column)
    for row in view["nodes"]:
        table.add_row(
            row["name"],
            "yes" if row["ready"] else "[red]no",
            ",".join(row["roles"]),
            row["version"],
            ", ".join(row["taints"]),
        )
    if view["nodes"]:
        app.console.print(table)
    refused = _print_stateless(app, view.get("stateless"))
    if not all(r["ready"] for r in view["nodes"]) or not view["api"]["healthy"] or refused:
        raise typer.Exit(1)


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _print_stateless(app: AppState, reports: dict[str, Any] | None) -> bool:
    """The stateless nodes' own reports; True when one of them is refused."""
    if reports is None:
        return False
    if reports.get("error"):
        app.err.print(f"[yellow]node reports[/]: {reports['error']}", highlight=False)
        return False
    table = Table(title=f"Stateless nodes (their reports, read on {reports['read_from']})")
    for column in ("node", "state", "boots", "last join", "last rejoin", "refusal"):
        table.add_column(column)
    refused = False
    for row in reports["nodes"]:
        refused = refused or row["state"] == "refused"
        state = f"[red]{row['state']}" if row["state"] == "refused" else row["state"]
        table.add_row(
            row["name"],
            state,
            str(row["boots"]),
            _when(row["joined_at"]),
            _when(row["last_rejoin"]),
            row["refusal"] or "-",
        )
    app.console.print(table)
    for row in reports["nodes"]:
        if row["refusal"]:
            app.console.print(
                f"[red]{row['name']} refused to rejoin[/]: {row['refusal']}", highlight=False
            )
    return refused
