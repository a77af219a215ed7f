"""Operator access to recorded nodes: run one command on many at once, or open a shell.

``run_on_nodes`` selects recorded nodes (by role, pool or name), runs the command on all of
them in parallel through the executor (one step per node, output in each node's log file) and
returns one outcome per node. ``ssh_invocation`` builds the system ``ssh`` command line for an
interactive shell that trusts exactly the pinned host key (written to a temporary known_hosts
file by the caller) with ``StrictHostKeyChecking yes``. Works for every provider's nodes.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clusterdeck.engine import DEFAULT_CONCURRENCY, Executor, Step, StepContext
from clusterdeck.errors import NotFoundError, UsageError
from clusterdeck.events import EventSink, discard
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.providers.ssh.access import host_key_policy, record_endpoint
from clusterdeck.spec.loader import from_recorded
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore, require_environment
from clusterdeck.transport import (
    Command,
    Connections,
    Endpoint,
    HostKey,
    HostKeyPolicy,
    PinnedHostKeys,
    Result,
    known_hosts_line,
)
from clusterdeck.transport.hostkeys import sig_algorithms


@dataclass(frozen=True)
class NodeOutcome:
    node: str
    result: Result | None  # None when the command could not run (or did not finish)
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.ok


def environment_spec(store: StateStore, environment: str) -> Environment | None:
    record = require_environment(store, environment)
    try:
        return from_recorded(record.spec)
    except ValueError:
        return None


def select_nodes(
    store: StateStore,
    environment: str,
    *,
    role: str | None = None,
    pool: str | None = None,
    names: Sequence[str] = (),
) -> list[ResourceRecord]:
    nodes = [r for r in store.resources(environment) if r.key.startswith(NODE_PREFIX)]
    if not nodes:
        raise UsageError(f"environment {environment!r} has no recorded nodes yet; run create first")
    by_name = {r.key.removeprefix(NODE_PREFIX): r for r in nodes}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise NotFoundError(
            f"no node {unknown[0]!r} in {environment!r} (nodes: {', '.join(sorted(by_name))})"
        )
    chosen = [by_name[n] for n in names] if names else nodes
    if role is not None:
        chosen = [r for r in chosen if r.data.get("role") == role]
    if pool is not None:
        chosen = [r for r in chosen if r.data.get("pool") == pool]
    if not chosen:
        roles = sorted({str(r.data.get("role")) for r in nodes})
        pools = sorted({str(r.data.get("pool")) for r in nodes})
        raise UsageError(
            f"no node of {environment!r} matches role={role or '*'} "
            f"pool={pool or '*'} (roles: {', '.join(roles)}; "
            f"pools: {', '.join(pools)})"
        )
    return sorted(chosen, key=lambda r: r.key)


def run_on_nodes(
    store: StateStore,
    environment: str,
    command: Command,
    *,
    role: str | None = None,
    pool: str | None = None,
    names: Sequence[str] = (),
    timeout: float | None = None,
    events: EventSink = discard,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[NodeOutcome]:
    """Run ``command`` on every selected node at once; one outcome per node, in name order."""
    spec = environment_spec(store, environment)
    records = select_nodes(store, environment, role=role, pool=pool, names=names)
    endpoints = {r.key.removeprefix(NODE_PREFIX): record_endpoint(r, spec) for r in records}
    policy = host_key_policy(spec, store, environment)
    return asyncio.run(
        _run(store, environment, policy, endpoints, command, timeout, events, concurrency)
    )


async def _run(
    store: StateStore,
    environment: str,
    policy: HostKeyPolicy,
    endpoints: dict[str, Endpoint],
    command: Command,
    timeout: float | None,
    events: EventSink,
    concurrency: int,
) -> list[NodeOutcome]:
    async with Connections(policy, events=events) as pool:

        def step(name: str, endpoint: Endpoint) -> Step:
            async def run(ctx: StepContext) -> Result:
                return await pool.run(
                    endpoint, command, timeout=timeout, check=False, output=ctx.log
                )

            # a user's command is not retried: it may not be safe to run twice
            return Step(name, run, subject=name, name="exec", retries=0)

        executor = Executor(
            concurrency=concurrency, events=events, store=store, environment=environment
        )
        report = await executor.run([step(n, e) for n, e in endpoints.items()])
    outcomes = []
    for name in sorted(endpoints):
        error = report.failed.get(name)
        outcomes.append(
            NodeOutcome(name, report.results.get(name), str(error) if error is not None else None)
        )
    return outcomes


# interactive ssh ---------------------------------------------------------------------------
def node_access(store: StateStore, environment: str, node: str) -> Endpoint:
    spec = environment_spec(store, environment)
    (record,) = select_nodes(store, environment, names=[node])
    return record_endpoint(record, spec)


def trusted_known_hosts(
    store: StateStore, environment: str, endpoint: Endpoint
) -> tuple[str, dict[Endpoint, HostKey] | None]:
    """known_hosts text for the system ``ssh``, and the pinned keys (None in strict mode).

    Pinned mode: exactly the keys pinned for the node and its bastion (pinning on first use).
    Strict mode: the spec's known_hosts files as they are; nothing is pinned.
    """
    policy = host_key_policy(environment_spec(store, environment), store, environment)
    if policy.strict:
        files = policy.known_hosts_files()
        if not files:
            raise UsageError("hostKeyPolicy is strict but none of the knownHosts files exists")
        return "".join(Path(f).read_text() for f in files), None
    keys = pinned_keys(store, environment, endpoint)
    return known_hosts_text(keys), keys


def pinned_keys(store: StateStore, environment: str, endpoint: Endpoint) -> dict[Endpoint, HostKey]:
    """The pinned key of the node and of its bastion, pinning on first use if never seen."""
    policy = PinnedHostKeys(store, environment)
    chain = [e for e in (endpoint.jump, endpoint) if e is not None]
    if any(policy.pinned(e.host, e.port) is None for e in chain):

        async def first_use() -> None:
            async with Connections(policy) as pool:
                await pool.get(endpoint)

        asyncio.run(first_use())
    keys = {}
    for item in chain:
        key = policy.pinned(item.host, item.port)
        assert key is not None
        keys[item] = key
    return keys


def known_hosts_text(keys: dict[Endpoint, HostKey]) -> str:
    return "".join(known_hosts_line(e.host, e.port, k) for e, k in keys.items())


def _base(endpoint: Endpoint, known_hosts: str, key: HostKey | None) -> list[str]:
    argv = [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "UpdateHostKeys=no",
        *(["-o", f"HostKeyAlgorithms={','.join(sig_algorithms(key.key_type))}"] if key else []),
        "-p",
        str(endpoint.port),
        "-l",
        endpoint.user,
    ]
    for path in endpoint.keys:
        argv += ["-o", "IdentitiesOnly=yes", "-i", path]
    return argv


def ssh_invocation(
    endpoint: Endpoint,
    keys: dict[Endpoint, HostKey] | None,
    known_hosts: str,
    command: Sequence[str] = (),
    ssh: str = "ssh",
) -> list[str]:
    """The system ``ssh`` argv: trusted keys only, never asks to trust a new one."""
    argv = [ssh, *_base(endpoint, known_hosts, keys[endpoint] if keys else None)]
    if endpoint.jump is not None:
        jump = endpoint.jump
        proxy = [
            ssh,
            *_base(jump, known_hosts, keys[jump] if keys else None),
            "-W",
            "%h:%p",
            jump.host,
        ]
        argv += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    elif endpoint.ssm is not None:
        route = endpoint.ssm
        proxy = [
            sys.executable,
            "-m",
            "clusterdeck.transport.ssm_proxy",
            route.instance_id,
            route.region,
            str(route.port),
            route.profile,
        ]
        argv += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    argv.append(endpoint.host)
    if command:
        argv += ["--", command[0] if len(command) == 1 else shlex.join(command)]
    return argv
