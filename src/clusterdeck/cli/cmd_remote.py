"""Operator commands on recorded nodes: ``clusterdeck exec`` (many at once) and ``ssh`` (one).

``exec`` prints each node's output prefixed by its name and exits non-zero, naming them, when
any node failed. ``ssh`` hands over to the system ``ssh`` with exactly the pinned host key in
a temporary known_hosts file and ``StrictHostKeyChecking yes``; it never asks to trust a key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from clusterdeck.cli.context import state
from clusterdeck.errors import ClusterdeckError, UsageError
from clusterdeck.events import Event, EventKind
from clusterdeck.transport import Command


def register(app: typer.Typer) -> None:
    app.command(
        "exec",
        help="Run a command on the environment's nodes, all at once, output prefixed by node. "
        "One argument after -- is shell text; several are a program and its arguments.",
        epilog="Examples:  clusterdeck exec onprem -- uptime   |   "
        "clusterdeck exec onprem --role worker -- 'df -h / | tail -1'   |   "
        "clusterdeck exec gpu-lab --pool spot-gpu -- nvidia-smi -L",
    )(exec_)
    app.command(
        "ssh",
        help="Open a shell on a node (or run one command) with the system ssh, trusting only "
        "the host key clusterdeck pinned for it.",
        epilog="Examples:  clusterdeck ssh onprem onprem-cp-0   |   "
        "clusterdeck ssh onprem onprem-worker-1 -- journalctl -u kubelet -n 50",
    )(ssh)


def _command(words: list[str]) -> Command:
    if not words:
        raise UsageError("give the command after --, e.g. clusterdeck exec ENV -- uptime")
    if len(words) == 1:
        return Command(
            ["sh", "-c", words[0]], name=words[0].split()[0] if words[0].split() else "sh"
        )
    return Command(words)


def exec_(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    command: Annotated[list[str] | None, typer.Argument(help="The command, after --.")] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", help="Only nodes with this role: control-plane or worker."),
    ] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Only nodes of this pool.")] = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", "-n", help="Only this node (repeatable).")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Stop the command on a node after this many seconds."),
    ] = None,
) -> None:
    app = state(ctx)
    cmd = _command(command or [])
    store = app.store()

    def sink(event: Event) -> None:
        if event.kind is EventKind.RETRYING and app.verbose >= 0:
            app.err.print(
                f"[yellow]{event.subject}[/]: retrying {event.step}: {event.message}",
                highlight=False,
            )

    from clusterdeck.providers.ssh import remote  # asyncssh: loaded only here

    outcomes = remote.run_on_nodes(
        store,
        environment,
        cmd,
        role=role,
        pool=pool,
        names=node or (),
        timeout=timeout,
        events=sink,
    )
    width = max(len(o.node) for o in outcomes)
    failed: list[str] = []
    for outcome in outcomes:
        prefix = f"{outcome.node:<{width}} | "
        if outcome.result is not None:
            for line in outcome.result.stdout.splitlines():
                sys.stdout.write(prefix + line + "\n")
            for line in outcome.result.stderr.splitlines():
                sys.stderr.write(prefix + line + "\n")
        if outcome.error is not None:
            failed.append(f"{outcome.node} ({outcome.error})")
        elif outcome.result is not None and not outcome.result.ok:
            failed.append(f"{outcome.node} (exit {outcome.result.exit_status})")
    sys.stdout.flush()
    if failed:
        raise ClusterdeckError(
            f"failed on {len(failed)} of {len(outcomes)} node(s): " + "; ".join(failed)
        )


def ssh(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="Environment name.")],
    node: Annotated[str, typer.Argument(help="Node name (see clusterdeck status).")],
    command: Annotated[
        list[str] | None, typer.Argument(help="Run this instead of a shell (after --).")
    ] = None,
) -> None:
    app = state(ctx)
    store = app.store()
    from clusterdeck.providers.ssh import remote

    endpoint = remote.node_access(store, environment, node)
    known_hosts, keys = remote.trusted_known_hosts(store, environment, endpoint)
    fd, path = tempfile.mkstemp(prefix="clusterdeck-known-hosts-")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp: mode 0600
            handle.write(known_hosts)
        argv = remote.ssh_invocation(endpoint, keys, path, command or ())
        if app.verbose > 0:
            app.err.print(" ".join(argv), highlight=False)
        try:
            code = subprocess.call(argv)
        except FileNotFoundError:
            raise UsageError(
                "the ssh program is not installed (apt-get install openssh-client)"
            ) from None
    finally:
        Path(path).unlink(missing_ok=True)
    if code != 0:
        raise typer.Exit(code)
