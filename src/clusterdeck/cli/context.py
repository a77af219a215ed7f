"""Shared CLI plumbing: global options, the store, output format, consent and progress.

Every command module (``cmd_*.py``) uses these so that flags, prompts, JSON output and error
lines behave the same everywhere. Only the CLI prints; the library emits events.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from clusterdeck.errors import ConsentRequired
from clusterdeck.events import Event, EventKind, EventSink

if TYPE_CHECKING:  # the store (and its records' models) load only when a command opens it
    from clusterdeck.state import SqliteStore

TRUTHY = {"1", "true", "yes", "on"}


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass
class AppState:
    state_path: Path | None = None
    verbose: int = 0
    non_interactive_flag: bool = False
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    _store: SqliteStore | None = None

    @property
    def non_interactive(self) -> bool:
        return (
            self.non_interactive_flag
            or os.environ.get("CLUSTERDECK_NONINTERACTIVE", "").lower() in TRUTHY
            or os.environ.get("CI", "").lower() in TRUTHY
            or not sys.stdin.isatty()
        )

    def store(self) -> SqliteStore:
        if self._store is None:
            from clusterdeck.state import SqliteStore, default_state_path

            self._store = SqliteStore(self.state_path or default_state_path())
        return self._store


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def print_json(data: Any) -> None:
    """JSON to stdout, never wrapped or coloured, so it pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def confirm(app: AppState, question: str, *, yes: bool) -> None:
    """Go on only with consent: ``--yes``, or a yes at the prompt. Never waits in CI."""
    if yes:
        return
    if app.non_interactive:
        raise ConsentRequired(f"{question} Not asking in non-interactive mode: re-run with --yes")
    if not ask(question):
        raise typer.Exit(1)


def ask(question: str, *, default: bool = False) -> bool:
    """A yes/no prompt; no answer on standard input is a clear error, not a hang."""
    try:
        return bool(typer.confirm(question, default=default))
    except typer.Abort:
        raise ConsentRequired(
            f"{question} No answer on standard input: use --yes or --non-interactive"
        ) from None


@contextmanager
def progress(app: AppState, title: str) -> Iterator[EventSink]:
    """One rich progress display for all subjects; yields the event sink to hand the library."""
    bars = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[subject]}"),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=app.err,
        transient=False,
        disable=app.verbose < 0,
    )
    tasks: dict[str, Any] = {}

    def sink(event: Event) -> None:
        if event.kind is EventKind.INFO:
            if app.verbose >= 0:
                bars.console.print(
                    f"{event.subject}: {event.step} {event.message}".strip(), highlight=False
                )
            return
        key = event.group or event.subject
        if key not in tasks:
            tasks[key] = bars.add_task(event.step, total=None, subject=key)
        task = tasks[key]
        if event.kind is EventKind.FAILED:
            bars.update(task, description=f"[red]{event.step} failed: {event.message}")
        elif event.kind is EventKind.FINISHED and event.step == "done":
            bars.update(task, description="[green]done", total=1, completed=1)
        elif event.kind is EventKind.RETRYING:
            bars.update(task, description=f"[yellow]{event.step}: retrying ({event.message})")
        else:
            bars.update(task, description=f"{event.step} {event.message}".strip())
        if app.verbose > 0:
            bars.console.log(f"{event.subject} {event.step} {event.kind.value} {event.message}")

    app.err.print(f"[bold]{title}")
    with bars:
        yield sink


@contextmanager
def status_line(app: AppState, title: str) -> Iterator[Callable[[str], None]]:
    """A one-line spinner for long work of a single subject; yields ``update(text)``."""
    if app.verbose < 0:
        yield lambda _text: None
        return
    with app.err.status(f"[bold]{title}") as status:

        def update(text: str) -> None:
            status.update(f"[bold]{title}[/bold] {text}")
            if app.verbose > 0:
                app.err.log(f"{title}: {text}")

        yield update
