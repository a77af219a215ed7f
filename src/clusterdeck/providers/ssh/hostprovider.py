"""The ssh provider: machines that already exist, reached over SSH. It cannot create any.

``apply`` registers the hosts (see :mod:`clusterdeck.providers.ssh.register`); ``observe``
reports what the store recorded; ``destroy`` forgets the hosts (there is nothing to delete on
machines clusterdeck did not create; their pinned host keys go with the environment).
"""

from __future__ import annotations

import asyncio
import os

from clusterdeck.errors import UsageError
from clusterdeck.events import Event, EventKind, EventSink
from clusterdeck.model.observed import Observed, ObservedNode
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.providers.base import ApplyContext, Capabilities, InfraResult
from clusterdeck.providers.ssh.register import RegisterOptions, register
from clusterdeck.state.store import StateStore

WAIT_ENV_VAR = "CLUSTERDECK_SSH_WAIT"


def options_from_env() -> RegisterOptions:
    raw = os.environ.get(WAIT_ENV_VAR)
    if raw is None:
        return RegisterOptions()
    try:
        seconds = float(raw)
    except ValueError:
        raise UsageError(f"{WAIT_ENV_VAR}={raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise UsageError(f"{WAIT_ENV_VAR} must be positive (seconds to wait for each host)")
    return RegisterOptions(wait_timeout=seconds)


class SshProvider:
    name = "ssh"
    capabilities = Capabilities(creates_machines=False, load_balancer=False)

    def __init__(self, options: RegisterOptions | None = None) -> None:
        self.options = options

    def observe(self, ctx: ApplyContext) -> Observed:
        nodes = {}
        for rec in ctx.store.resources(ctx.environment):
            if rec.key.startswith(NODE_PREFIX) and rec.data.get("provider") == "ssh":
                name = rec.key[len(NODE_PREFIX) :]
                nodes[name] = ObservedNode(
                    name=name,
                    provider_id=rec.provider_id,
                    state=str(rec.data.get("state", "recorded")),
                )
        return Observed(nodes=nodes)

    def apply(self, ctx: ApplyContext) -> InfraResult:
        if not ctx.nodes:
            return InfraResult()
        return asyncio.run(register(ctx, self.options or options_from_env()))

    def machines_gone(
        self, environment: str, store: StateStore, records: list[ResourceRecord]
    ) -> list[str]:
        return []

    def release(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        records: list[ResourceRecord],
    ) -> None:
        for rec in records:
            store.mark_deleted(environment, rec.key)

    def destroy(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        resources: list[ResourceRecord],
    ) -> list[str]:
        for rec in resources:
            store.mark_deleted(environment, rec.key)
            events(
                Event(
                    EventKind.FINISHED,
                    rec.key.removeprefix(NODE_PREFIX),
                    "forget",
                    "host forgotten (the machine itself is untouched)",
                )
            )
        return []
