"""Read what the doubles recorded: one run per invocation, with its start, end and status.

Runs in the tests. A run whose program was killed before it ended has ``end`` and ``rc``
of ``None``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    program: str
    argv: list[str]
    host: str
    start: float
    end: float | None = None
    rc: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> list[str]:
        return [a for a in self.argv if not a.startswith("-")]

    def overlaps(self, other: Run) -> bool:
        assert self.end is not None and other.end is not None
        return self.start < other.end and other.start < self.end


def read(shared: Path) -> list[Run]:
    path = shared / "records.jsonl"
    runs: dict[str, Run] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        run = runs.get(entry["id"])
        if run is None:
            run = runs[entry["id"]] = Run(
                entry["program"], entry["argv"], entry["host"], entry["start"]
            )
        if entry["event"] == "end":
            run.end, run.rc = entry["end"], entry["rc"]
            run.extra = {
                k: v
                for k, v in entry.items()
                if k not in {"id", "program", "argv", "host", "pid", "start", "end", "rc", "event"}
            }
    return sorted(runs.values(), key=lambda r: r.start)


def kubeadm(runs: list[Run], *words: str) -> list[Run]:
    """The kubeadm runs whose positional words start with ``words`` (e.g. "init")."""
    return [r for r in runs if r.program == "kubeadm" and r.words[: len(words)] == list(words)]
