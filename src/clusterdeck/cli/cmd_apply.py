"""``clusterdeck apply``: change a running environment to match its file.

Why it exists: ``create`` builds only what does not exist and refuses to change a running
cluster. ``apply`` shows each action with its reason, asks, then carries out exactly those
actions. This slice removes workers (a smaller ssh pool, a pool gone from the file), draining
them through the eviction API; other changes are listed as not supported yet and nothing runs.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from clusterdeck import api
from clusterdeck.cli.cmd_core import FileOpt, OutputOpt, load_checked
from clusterdeck.cli.cmd_create import YesOpt
from clusterdeck.cli.context import Output, confirm, print_json, state
from clusterdeck.errors import UsageError

_DURATION = re.compile(r"^(\d+)(s|m|h)?$")


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise UsageError(f"--drain-timeout {text!r}: give a duration like 90s, 5m or 1h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]


def register(app: typer.Typer) -> None:
    app.command(
        help="Change a running environment to match its file: shows each action with its "
        "reason, asks, then runs exactly those. Removes workers (smaller ssh pools, pools gone "
        "from the file) by cordon, drain through the eviction API (PodDisruptionBudgets "
        "honoured), Node deletion and kubeadm reset on the host.",
        epilog="Example:  clusterdeck apply -f cluster.yaml --drain-timeout 90s --yes",
    )(apply)


def apply(
    ctx: typer.Context,
    file: FileOpt,
    yes: YesOpt = False,
    output: OutputOpt = Output.TEXT,
    drain_timeout: Annotated[
        str,
        typer.Option(
            "--drain-timeout",
            help="How long each node's drain may take (90s, 5m); then apply fails, naming the "
            "blocking PodDisruptionBudget, and the node stays cordoned.",
        ),
    ] = "5m",
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete pods without eviction: ignores PodDisruptionBudgets."),
    ] = False,
) -> None:
    app = state(ctx)
    timeout = parse_duration(drain_timeout)
    env = load_checked(app, file)
    store = app.store()
    _, _, planned = api.plan_apply(env, store)
    if output is Output.JSON:  # the plan as data; it runs only with --yes
        print_json(
            {
                "environment": planned.environment,
                "actions": [
                    {"kind": "delete", "target": n, "reason": why} for n, why in planned.remove
                ],
                "refused": planned.refused,
            }
        )
    api.refuse_unsupported(planned)
    if planned.empty:
        app.err.print(f"No changes: {env.name!r} already matches {file}.")
        return
    if output is Output.JSON and not yes:
        return
    for name, why in planned.remove:
        app.err.print(f"  delete {name}: {why} (cordon, drain, delete Node, kubeadm reset)")
    confirm(app, f"Remove {len(planned.remove)} nodes from {env.name!r}?", yes=yes)
    api.apply(env, store, planned, drain_timeout=timeout, force=force, log=app.err.print)
    app.err.print(f"[green]{env.name} matches {file}[/]")
