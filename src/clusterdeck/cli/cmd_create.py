"""Commands that change the world: create and delete, generic over providers.

Both show what they will do, ask for consent (``--yes`` skips; non-interactive runs never
wait), hold the environment lock through the library, and render progress from events.
"""

from __future__ import annotations

from typing import Annotated

import typer

from clusterdeck import api, pipeline
from clusterdeck.cli import cmd_cluster, render
from clusterdeck.cli.cmd_core import FileOpt, ask_dedicated, load_checked
from clusterdeck.cli.context import confirm, progress, state
from clusterdeck.errors import ClusterdeckError
from clusterdeck.state.store import require_environment

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]


def register(app: typer.Typer) -> None:
    app.command(
        help="Create the environment, or finish creating it: the plan is shown and confirmed "
        "first, and a re-run after a crash creates only what is missing.",
        epilog="Examples:  clusterdeck create -f cluster.yaml --infra-only   |   "
        "CI=true clusterdeck create -f cluster.yaml --infra-only --yes",
    )(create)
    app.command(
        help="Delete everything clusterdeck created for an environment, in dependency order, "
        "and list anything that is still there.",
        epilog="Example:  clusterdeck delete gpu-lab --yes",
    )(delete)


def create(
    ctx: typer.Context,
    file: FileOpt,
    infra_only: Annotated[
        bool,
        typer.Option("--infra-only", help="Stop once machines, network and load balancer exist."),
    ] = False,
    yes: YesOpt = False,
    kubeconfig: cmd_cluster.KubeconfigOpt = None,
    merge_kubeconfig: cmd_cluster.MergeOpt = False,
) -> None:
    app = state(ctx)
    env = load_checked(app, file)
    api.check_login_keys(env, infra_only=infra_only)  # before a plan is shown or agreed to
    if not infra_only:
        pipeline.require_hook_secrets(env)
    dedicated = ask_dedicated(app, env)
    store = app.store()
    _, the_plan = api.plan(env, store, dedicated=dedicated)
    changes = the_plan.changes()
    if changes:
        render.plan(app.err, the_plan)
        confirm(app, f"Create {len(changes)} resources and nodes for {env.name!r}?", yes=yes)
    else:
        app.err.print(f"Nothing to create for {env.name!r}: checking that it is complete.")
    with progress(app, f"Creating {env.name}") as sink:
        result = api.create(env, store, infra_only=infra_only, dedicated=dedicated, events=sink)
    record = store.environment(env.name)
    endpoint = record.outputs.get("endpoint") if record else None
    if result.failed:
        for subject, reason in result.failed.items():
            app.err.print(f"[red]failed[/]: {subject}: {reason}", highlight=False)
        raise ClusterdeckError(
            f"{len(result.failed)} part(s) of {env.name!r} failed; fix the "
            "cause and run the same command again to resume"
        )
    if result.bootstrap is not None and result.bootstrap.kubeconfig is not None:
        cmd_cluster.deliver_kubeconfig(
            app, env.name, result.bootstrap.kubeconfig, kubeconfig, merge_kubeconfig
        )
    ready = sum(len(r.ready) for r in result.results.values())
    app.console.print(
        f"[green]{env.name}[/]: {ready} node(s) ready"
        + (f", API endpoint {endpoint}" if endpoint else "")
    )


def delete(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    yes: YesOpt = False,
) -> None:
    app = state(ctx)
    store = app.store()
    require_environment(store, environment)
    resources = store.resources(environment)
    table = render.table_(
        f"{environment}: {len(resources)} recorded resources", "resource", "kind", "id"
    )
    for res in resources:
        table.add_row(res.key, res.kind, res.provider_id)
    app.err.print(table)
    confirm(app, f"Delete environment {environment!r} and everything above?", yes=yes)
    with progress(app, f"Deleting {environment}") as sink:
        leftovers = api.delete(environment, store, events=sink)
    if leftovers:
        for item in leftovers:
            app.err.print(f"[red]still there[/]: {item}", highlight=False)
        raise ClusterdeckError(
            f"{len(leftovers)} resource(s) of {environment!r} remain; "
            "run delete again, or cleanup to go by tags"
        )
    app.console.print(f"[green]deleted[/] {environment}")
