"""``clusterdeck apply``: change a running environment to match its file.

Why it exists: ``create`` builds only what does not exist and refuses to change a running
cluster. ``apply`` shows each action with its reason, asks, then carries out exactly those
actions: new ssh hosts join (workers, new pools, control planes one at a time between etcd
checks), removed ones are drained through the eviction API and reset, a swapped host is
replaced (the new one joins before the old one leaves). Changes it cannot make are listed as
refused, and then nothing runs.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from clusterdeck import api
from clusterdeck.cli.cmd_core import FileOpt, OutputOpt, load_checked
from clusterdeck.cli.cmd_create import YesOpt
from clusterdeck.cli.context import Output, confirm, print_json, progress, state
from clusterdeck.errors import UsageError
from clusterdeck.model.day2 import ChangeKind, NodeChange
from clusterdeck.state import default_state_path

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
        "reason, asks, then runs exactly those. New hosts join (bigger pools, new pools, a "
        "control plane grown 1 -> 3 -> 5 one member at a time with etcd checked); removed "
        "hosts are cordoned, drained through the eviction API (PodDisruptionBudgets honoured), "
        "deleted from the cluster and reset. A host swapped for another, or an aws pool with a "
        "new instance type, is replaced node by node within the pool's rollout bounds: the "
        "new one joins first. A stopped apply resumes when run again.",
        epilog="Examples:  clusterdeck apply -f cluster.yaml -o json   (the plan, nothing runs)"
        "\n\n  clusterdeck apply -f cluster.yaml --drain-timeout 90s --yes"
        "\n\n  clusterdeck apply -f cluster.yaml --remove prod-workers-0   (a pool one smaller)",
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
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-control-plane-shrink",
            help="Let the control plane shrink (5 -> 3 -> 1): one member at a time, moved off "
            "etcd leadership and removed by its member ID while quorum holds.",
        ),
    ] = False,
    remove: Annotated[
        list[str] | None,
        typer.Option(
            "--remove",
            metavar="NODE",
            help="Take out this aws worker instead of the newest one when its pool shrinks "
            "(repeatable; see `clusterdeck status ENV`). With the pool's count unchanged, a "
            "new node takes its place first.",
        ),
    ] = None,
    infra_only: Annotated[
        bool,
        typer.Option(
            "--infra-only",
            help="For an environment created with --infra-only: change only its machines "
            "(launch, register, terminate); nothing is joined or drained.",
        ),
    ] = False,
) -> None:
    app = state(ctx)
    timeout = parse_duration(drain_timeout)
    env = load_checked(app, file)
    store = app.store()
    leaving = tuple(dict.fromkeys(remove or ()))
    _, planned = api.plan_apply(
        env,
        store,
        infra_only=infra_only,
        allow_control_plane_shrink=allow_shrink,
        remove=leaving,
    )
    if output is Output.JSON:  # the plan as data; it runs only with --yes
        print_json(
            {
                "environment": planned.environment,
                "actions": [c.as_dict() for c in planned.changes],
                "refused": list(planned.refused),
                "resumes": planned.resumes,
            }
        )
    if planned.resumes:
        app.err.print(f"Resuming: {planned.resumes}; the plan below is what is left.")
    api.refuse_unsupported(planned)
    if planned.empty:
        if api.record_file(env, store):  # e.g. a new key path, or an upgrade that ended
            app.err.print(f"No changes to make: {env.name!r} runs as {file} says; file recorded.")
        else:
            app.err.print(f"No changes: {env.name!r} already matches {file}.")
        return
    if output is Output.JSON and not yes:
        return
    for change in planned.changes:
        steps = _machine_steps(change) if infra_only else _steps(change)
        app.err.print(f"  {change.kind.value:<6} {change.node}: {change.reason} ({steps})")
    adds, removes = len(planned.of_kind(ChangeKind.ADD)), len(planned.of_kind(ChangeKind.REMOVE))
    upgrades = len(planned.of_kind(ChangeKind.UPGRADE))
    snapshots = (app.state_path or default_state_path()).parent / "snapshots" / env.name
    if upgrades:
        app.err.print(
            f"  before the upgrade: etcd checked healthy, a snapshot saved in {snapshots}"
        )
        question = f"Upgrade {upgrades} nodes of {env.name!r} to {env.spec.kubernetes.version}?"
    else:
        question = f"Add {adds} and remove {removes} nodes in {env.name!r}?"
    confirm(app, question, yes=yes)
    with progress(app, f"Applying {file} to {env.name}") as sink:
        api.apply(
            env,
            store,
            planned,
            drain_timeout=timeout,
            force=force,
            log=app.err.print,
            events=sink,
            infra_only=infra_only,
            snapshot_dir=snapshots,
            allow_control_plane_shrink=allow_shrink,
            remove=leaving,
        )
    app.err.print(f"[green]{env.name} matches {file}[/]")


def _machine_steps(change: NodeChange) -> str:
    if change.kind is ChangeKind.REMOVE:
        return "aws: instance terminated; ssh: host forgotten"
    return "aws: instance launched; ssh: host registered"


def _steps(change: NodeChange) -> str:
    if change.kind is ChangeKind.UPGRADE:
        return "one node at a time, API probed throughout"
    if change.kind is ChangeKind.REMOVE and change.role == "control-plane":
        return "cordon, drain, etcd member removed by ID, delete the Node, kubeadm reset"
    if change.kind is ChangeKind.REMOVE:
        return "cordon, drain, delete the Node, kubeadm reset on the host"
    if change.role == "control-plane":
        return "etcd checked, kubeadm join --control-plane, etcd checked again, health"
    return "node phases, kubeadm join, labels and taints, health"
