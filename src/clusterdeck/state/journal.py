"""Day-2 steps in the store's events: the journal ``clusterdeck events`` shows, and apply reads.

Why it exists: a running cluster is changed one step at a time, and each step is written to
the store when it starts and again when it ends (finished, or failed with its reason). A step
that started and never ended is one a killed process was in: the next ``apply`` says so when
it plans what is left (what to do is observed again, never replayed from here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clusterdeck.events import EventKind
from clusterdeck.model.records import EventRecord
from clusterdeck.state.store import StateStore

APPLY_SUBJECT = "apply"  # the event that holds a whole apply's plan
STARTED = EventKind.STARTED.value


@contextmanager
def recorded_step(
    store: StateStore, environment: str, subject: str, step: str, message: str = ""
) -> Iterator[None]:
    """A step in the store's events, with its outcome."""
    event = store.start_event(environment, subject, step, message)
    try:
        yield
    except BaseException as exc:
        store.end_event(event, EventKind.FAILED.value, str(exc)[:500])
        raise
    store.end_event(event, EventKind.FINISHED.value, message)


def stopped_apply(
    store: StateStore, environment: str
) -> tuple[EventRecord, list[EventRecord]] | None:
    """The last apply, if it started and never ended (its process was killed), with the steps
    it had begun and not ended."""
    events = store.events(environment)
    last = next((e for e in reversed(events) if e.subject == APPLY_SUBJECT), None)
    if last is None or last.kind != STARTED:
        return None
    open_steps = [e for e in events if e.id > last.id and e.kind == STARTED]
    return last, open_steps


def close_stopped(store: StateStore, environment: str, message: str) -> None:
    """End a killed apply's journal (and its open steps) once a later run has found nothing
    left to do, so it is reported once, not on every run after."""
    stopped = stopped_apply(store, environment)
    if stopped is not None:
        last, steps = stopped
        for event in [*steps, last]:
            store.end_event(event.id, EventKind.FAILED.value, message)
