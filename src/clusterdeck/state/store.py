"""The StateStore interface and where the default store lives.

Callers record each resource the moment its ID exists (``record_resource``), so a crash
never leaks what was created; and they hold ``lock(environment)`` while changing it.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from platformdirs import user_data_path

from clusterdeck.errors import NotFoundError
from clusterdeck.model.records import (
    EnvironmentRecord,
    EventRecord,
    HostKeyRecord,
    ResourceRecord,
)

STATE_ENV_VAR = "CLUSTERDECK_STATE"


def default_state_path() -> Path:
    """``$CLUSTERDECK_STATE`` or ``<user data dir>/clusterdeck/state.db``."""
    override = os.environ.get(STATE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return user_data_path("clusterdeck") / "state.db"


def require_environment(store: StateStore, name: str) -> EnvironmentRecord:
    """The recorded environment, or a NotFoundError naming the environments there are."""
    record = store.environment(name)
    if record is None:
        known = ", ".join(e.name for e in store.environments()) or "none"
        raise NotFoundError(
            f"no environment named {name!r} in the state store {store.path} (known: {known})"
        )
    return record


class StateStore(Protocol):
    path: Path

    def save_environment(
        self, name: str, provider: str, spec: dict[str, Any]
    ) -> EnvironmentRecord: ...
    def environment(self, name: str) -> EnvironmentRecord | None: ...
    def environments(self) -> list[EnvironmentRecord]: ...
    def set_status(self, name: str, status: str, **outputs: Any) -> None: ...
    def forget_environment(self, name: str) -> None: ...

    def record_resource(
        self,
        environment: str,
        key: str,
        kind: str,
        provider_id: str,
        data: dict[str, Any] | None = None,
    ) -> ResourceRecord: ...
    def resources(
        self, environment: str, *, include_deleted: bool = False
    ) -> list[ResourceRecord]: ...
    def mark_deleted(self, environment: str, key: str) -> None: ...

    def start_event(self, environment: str, subject: str, step: str, message: str = "") -> int: ...
    def end_event(self, event_id: int, kind: str, message: str = "") -> None: ...
    def events(self, environment: str) -> list[EventRecord]: ...

    def pin_host_key(
        self, environment: str, host: str, port: int, key_type: str, public_key: str
    ) -> None: ...
    def host_key(self, environment: str, host: str, port: int) -> HostKeyRecord | None: ...
    def host_keys(self, environment: str) -> list[HostKeyRecord]: ...
    def forget_host_key(self, environment: str, host: str, port: int | None = None) -> int: ...

    def lock(self, environment: str, purpose: str) -> AbstractContextManager[None]: ...
