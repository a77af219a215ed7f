"""The state of one AWS create or delete: clients, what exists, the store and the event sink.

Why it exists: every resource-family module (network, security, compute, load balancer)
needs the same four things and the same two habits: record a resource in the state store the
moment AWS returns its ID, and tell the user what is happening through events grouped by
resource family. Keeping them here keeps those modules to their AWS calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterdeck.events import Event, EventKind, EventSink
from clusterdeck.providers.aws import errors
from clusterdeck.providers.aws.observe import Inventory
from clusterdeck.providers.aws.session import AwsSession
from clusterdeck.state.store import StateStore

T = TypeVar("T")

NETWORK = "network"
SECURITY_GROUPS = "security-groups"
INSTANCES = "instances"
LOAD_BALANCER = "load-balancer"
PREFLIGHT = "preflight"


@dataclass
class AwsRun:
    environment: str
    session: AwsSession
    store: StateStore
    events: EventSink
    inventory: Inventory
    ids: dict[str, str] = field(default_factory=dict)  # logical key -> AWS ID, this run

    @property
    def region(self) -> str:
        return self.session.region

    def record(self, key: str, kind: str, provider_id: str, **data: Any) -> None:
        """Write a resource to the store now; call this the moment AWS returns its ID."""
        self.store.record_resource(
            self.environment,
            key,
            kind,
            provider_id,
            {"provider": "aws", "region": self.region, **data},
        )
        self.ids[key] = provider_id

    def emit(
        self,
        kind: EventKind,
        group: str,
        subject: str,
        step: str,
        message: str = "",
        duration: float | None = None,
    ) -> None:
        self.events(
            Event(
                kind=kind,
                subject=subject,
                step=step,
                message=message,
                group=group,
                duration=duration,
            )
        )

    def info(self, group: str, step: str, message: str = "") -> None:
        self.emit(EventKind.STARTED, group, group, step, message)

    def done(self, group: str, started: float, message: str = "") -> None:
        self.emit(
            EventKind.FINISHED, group, group, "done", message, duration=time.monotonic() - started
        )

    def call(
        self,
        fn: Callable[..., T],
        what: str,
        group: str,
        *,
        settle: tuple[str, ...] = (),
        timeout: float = 120.0,
        **kwargs: Any,
    ) -> T:
        """An AWS call through :func:`errors.call`, retries shown as RETRYING events."""

        def on_retry(reason: str) -> None:
            self.emit(EventKind.RETRYING, group, what, "waiting", reason)

        return errors.call(fn, what, settle=settle, timeout=timeout, on_retry=on_retry, **kwargs)
