"""Typed progress events: what the library tells the outside world about long work.

The library emits these through an :class:`EventSink`; only the CLI renders them (one rich
progress display), and the state store records them with their timings. Events never carry
secrets: command lines in messages are masked by the transport before they get here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    RETRYING = "retrying"
    SKIPPED = "skipped"
    INFO = "info"


@dataclass(frozen=True)
class Event:
    """One step of work changed state. ``subject`` is a node or resource, ``step`` the phase."""

    kind: EventKind
    subject: str
    step: str
    message: str = ""
    at: float = field(default_factory=time.time)
    duration: float | None = None
    group: str = ""


EventSink = Callable[[Event], None]


def discard(_: Event) -> None:
    """An event sink that drops everything (library use without a UI)."""


class Collector:
    """An event sink that keeps every event, for tests and for scripts."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
