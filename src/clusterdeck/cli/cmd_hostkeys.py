"""``clusterdeck host-key``: see and deliberately unpin the SSH host keys trusted on first use.

Pinning is never switched off; when a machine is reinstalled on purpose, the operator checks
its new fingerprint out of band and unpins the old key here, and the next connection pins the
new one. Nodes can be named by node name or by address.
"""

from __future__ import annotations

from typing import Annotated

import typer

from clusterdeck.cli import render
from clusterdeck.cli.context import Output, confirm, print_json, state
from clusterdeck.errors import NotFoundError
from clusterdeck.model.records import NODE_PREFIX
from clusterdeck.state.store import StateStore, require_environment
from clusterdeck.transport.hostkeys import HostKey

host_keys = typer.Typer(
    help="Pinned SSH host keys (trust on first use, then pinned).", no_args_is_help=True
)
EnvArg = Annotated[str, typer.Argument(help="Environment name.")]


def register(app: typer.Typer) -> None:
    app.add_typer(host_keys, name="host-key")


@host_keys.command(
    "list",
    help="Every pinned key of an environment with its fingerprint.",
    epilog="Example:  clusterdeck host-key list onprem -o json",
)
def list_keys(
    ctx: typer.Context,
    environment: EnvArg,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.TEXT,
) -> None:
    app = state(ctx)
    store = app.store()
    require_environment(store, environment)
    names = _names_by_address(store, environment)
    rows = [
        {
            "node": names.get(k.host, "-"),
            "host": k.host,
            "port": k.port,
            "type": k.key_type,
            "fingerprint": HostKey(k.key_type, k.public_key).fingerprint(),
            "pinned_at": k.pinned_at,
        }
        for k in store.host_keys(environment)
    ]
    if output is Output.JSON:
        print_json(rows)
        return
    table = render.table_(None, "node", "host", "port", "type", "fingerprint")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("node", "host", "port", "type", "fingerprint")))
    app.console.print(table)


@host_keys.command(
    "forget",
    help="Unpin a node's host key so the next connection pins the "
    "new one. Check the new fingerprint out of band first.",
    epilog="Example:  clusterdeck host-key forget onprem onprem-workers-0 --yes",
)
def forget(
    ctx: typer.Context,
    environment: EnvArg,
    node: Annotated[str, typer.Argument(help="Node name or host address.")],
    port: Annotated[int | None, typer.Option(help="Only this SSH port.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")] = False,
) -> None:
    app = state(ctx)
    store = app.store()
    require_environment(store, environment)
    record = next(
        (r for r in store.resources(environment) if r.key == f"{NODE_PREFIX}{node}"), None
    )
    host = str(record.data.get("ssh_host") or record.provider_id) if record else node
    if not any(k.host == host for k in store.host_keys(environment)):
        raise NotFoundError(
            f"no pinned host key for {node!r} in {environment!r}; "
            f"see `clusterdeck host-key list {environment}`"
        )
    confirm(app, f"Unpin the host key of {node} ({host})?", yes=yes)
    removed = store.forget_host_key(environment, host, port)
    app.console.print(f"unpinned {removed} key(s) of {host}; the next connection pins the new one")


def _names_by_address(store: StateStore, environment: str) -> dict[str, str]:
    return {
        str(r.data.get("ssh_host") or r.provider_id): r.key.removeprefix(NODE_PREFIX)
        for r in store.resources(environment)
        if r.key.startswith(NODE_PREFIX)
    }
