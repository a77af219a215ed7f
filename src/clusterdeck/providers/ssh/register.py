"""Registering existing machines: wait for every host at once, pin its key, record its facts.

Per host, three steps run as one chain, all hosts in parallel: ``wait`` (TCP, then sshd's
banner: a booting or stopped host refuses until then), ``connect`` (handshake and login; the
host key is pinned on first use and checked ever after) and ``facts``. Nodes are recorded in
the store under ``node/<name>`` (kind ``host``) with the store conventions of
:mod:`clusterdeck.providers.base`. Only when every host succeeded are they marked ``ready``;
if any failed, that host is named with its reason and the others stay ``reachable``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck.engine import DEFAULT_CONCURRENCY, Executor, RunReport, Step, StepContext
from clusterdeck.errors import PermanentError
from clusterdeck.events import Event, EventKind
from clusterdeck.model.records import NODE_PREFIX
from clusterdeck.model.topology import Node
from clusterdeck.providers.base import ApplyContext, InfraResult
from clusterdeck.providers.ssh import facts
from clusterdeck.providers.ssh.access import host_key_policy, node_endpoint
from clusterdeck.transport import Connections, ConnectOptions, Endpoint

READY = "ready"
REACHABLE = "reachable"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class RegisterOptions:
    wait_timeout: float = 60.0  # per host: how long a refusing/silent host may take to answer
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    concurrency: int = DEFAULT_CONCURRENCY
    log_root: Path | None = None


def _ips(address: str) -> tuple[str | None, str | None]:
    """(private_ip, public_ip) from an address that may be a name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None, None
    return (None, str(ip)) if ip.is_global else (str(ip), None)


def _steps(pool: Connections, node: Node, endpoint: Endpoint, wait_timeout: float) -> list[Step]:
    name = node.name

    async def wait(ctx: StepContext) -> str:
        banner = await pool.wait_for_banner(endpoint, wait_timeout)
        ctx.write(f"sshd answered: {banner}")
        return banner

    async def connect(ctx: StepContext) -> None:
        await pool.get(endpoint, ctx.log)

    async def gather(ctx: StepContext) -> dict[str, Any]:
        result = await pool.run(endpoint, facts.script(), output=ctx.log, timeout=60)
        found = facts.parse(result.stdout)
        if found["sudo"] == "no":
            raise PermanentError(
                f"{endpoint.user} has no passwordless sudo (sudo -n true failed); every node "
                f"step needs root rights: add `{endpoint.user} ALL=(ALL) NOPASSWD:ALL` to "
                "/etc/sudoers.d/, or log in as root"
            )
        return found

    return [
        Step(f"{name}/wait", wait, subject=name, name="wait for sshd", retries=0),
        Step(
            f"{name}/connect",
            connect,
            subject=name,
            name="connect",
            needs=[f"{name}/wait"],
            retries=1,
        ),
        Step(
            f"{name}/facts",
            gather,
            subject=name,
            name="facts",
            needs=[f"{name}/connect"],
            retries=2,
        ),
    ]


def _node_data(
    node: Node, endpoint: Endpoint, found: dict[str, Any], state: str, fingerprint: str | None
) -> dict[str, Any]:
    private_ip, public_ip = _ips(endpoint.host)
    if private_ip is None and public_ip is None:
        addresses = found.get("addresses") or []
        private_ip = addresses[0] if addresses else None
    data: dict[str, Any] = {
        "provider": "ssh",
        "role": node.role.value,
        "pool": node.pool,
        "private_ip": private_ip,
        "public_ip": public_ip,
        "ssh_host": endpoint.host,
        "ssh_port": endpoint.port,
        "ssh_user": endpoint.user,
        "state": state,
        "facts": found,
        "host_key": fingerprint,
    }
    interface = (found.get("interfaces") or {}).get(private_ip or "")
    if interface:
        data["interface"] = interface  # the one that carries the node's address
    if endpoint.keys:
        data["ssh_key"] = endpoint.keys[0]
    if endpoint.jump is not None:
        data["bastion"] = f"{endpoint.jump.host}:{endpoint.jump.port}"
    return data


def _reason(endpoint: Endpoint, error: BaseException) -> str:
    """One line naming the address, without repeating the node name the caller prints."""
    text = str(error) or type(error).__name__
    prefix = f"{endpoint.label}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    return f"{endpoint.host}:{endpoint.port}: {text}"


async def register(ctx: ApplyContext, options: RegisterOptions) -> InfraResult:
    endpoints = {node.name: node_endpoint(node, ctx.spec) for node in ctx.nodes}
    policy = host_key_policy(ctx.spec, ctx.store, ctx.environment)
    async with Connections(policy, options.connect, ctx.events) as pool:
        steps = [
            step
            for node in ctx.nodes
            for step in _steps(pool, node, endpoints[node.name], options.wait_timeout)
        ]
        executor = Executor(
            concurrency=options.concurrency,
            events=ctx.events,
            store=ctx.store,
            environment=ctx.environment,
            log_root=options.log_root,
        )
        report: RunReport = await executor.run(steps)
    failed: dict[str, str] = {}
    for node in ctx.nodes:
        for suffix in ("wait", "connect", "facts"):
            error = report.failed.get(f"{node.name}/{suffix}")
            if error is not None:
                failed[node.name] = _reason(endpoints[node.name], error)
                break
    state = READY if not failed else REACHABLE
    ready: list[str] = []
    for node in ctx.nodes:
        if node.name in failed:
            continue
        endpoint = endpoints[node.name]
        pinned = policy.pinned(endpoint.host, endpoint.port)
        ctx.store.record_resource(
            ctx.environment,
            f"{NODE_PREFIX}{node.name}",
            "host",
            f"{endpoint.host}:{endpoint.port}" if endpoint.port != 22 else endpoint.host,
            _node_data(
                node,
                endpoint,
                report.results[f"{node.name}/facts"],
                state,
                pinned.fingerprint() if pinned else None,
            ),
        )
        if state == READY:
            ready.append(node.name)
            ctx.events(Event(EventKind.FINISHED, node.name, "done", "registered", group=node.name))
        else:
            ctx.events(
                Event(
                    EventKind.INFO,
                    node.name,
                    "reachable",
                    "(not marked ready: another host failed)",
                    group=node.name,
                )
            )
    recorded = {r.key: r for r in ctx.store.resources(ctx.environment)}
    for name in sorted(failed):
        before = recorded.get(f"{NODE_PREFIX}{name}")
        if before is not None:  # known from an earlier run: no longer ready
            ctx.store.record_resource(
                ctx.environment,
                before.key,
                before.kind,
                before.provider_id,
                {**before.data, "state": UNREACHABLE, "error": failed[name]},
            )
        ctx.events(Event(EventKind.FAILED, name, "register", failed[name], group=name))
    return InfraResult(ready=sorted(ready), failed=failed)
