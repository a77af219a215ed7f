"""What each stateless node says about itself, kept at the coordination point.

Why it exists: a node's agent writes it (boots, state, joins, refusals); ``clusterdeck status
--live`` reads it, from the operator's machine, even when the API is down (quorum lost is
exactly when it matters). One format, here, below both. Each report is one JSON document on
one line, in the record ``node-NAME``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from clusterdeck.coordination.base import Coordinator

PREFIX = "node-"
EVENTS_KEPT = 10
STATES = ("booting", "initialising", "waiting", "refused", "joining", "joined", "initialised")


def report_key(name: str) -> str:
    return f"{PREFIX}{name}"


@dataclass
class Report:
    """One stateless node's account of itself."""

    name: str
    boots: int = 0
    boot: str = ""  # this boot's random identity
    state: str = "booting"  # one of STATES
    joined_at: float | None = None  # the last successful init or join
    last_rejoin: float | None = None  # the last join that first removed leftovers
    refusal: str | None = None  # why the rejoin is refused now, if it is
    events: list[dict[str, Any]] = field(default_factory=list)
    updated: float = 0.0

    def event(self, kind: str, message: str) -> None:
        self.events = [*self.events, {"kind": kind, "message": message, "at": time.time()}]
        self.events = self.events[-EVENTS_KEPT:]

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def parse(raw: bytes | str) -> Report:
    """A report from its JSON; fields a newer agent added are ignored."""
    data = json.loads(raw)
    return Report(**{k: v for k, v in data.items() if k in Report.__dataclass_fields__})


def read(coord: Coordinator, name: str) -> Report | None:
    raw = coord.get(report_key(name))
    return None if raw is None else parse(raw)


def save(coord: Coordinator, report: Report) -> None:
    report.updated = time.time()
    coord.put(report_key(report.name), report.to_json().encode())
