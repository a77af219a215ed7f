"""The executor: a DAG of steps run as soon as their inputs exist, within bounded concurrency.

Each :class:`Step` names the steps it needs; it starts the moment the last of them finished
(no waves, no per-node serial loops), at most ``concurrency`` at a time. A step that raises
:class:`TransientError` is retried with jittered backoff up to its ``retries``; anything
else fails it at once, and the steps that need it are skipped (others go on). Every change
is an :class:`Event` (started / retrying / finished / failed / skipped, with durations) sent to
the sink and, with a store, recorded with its timings. Steps write their node's log file.

The executor knows nothing about SSH or clouds: a step is any coroutine function.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterdeck.engine.logs import NodeLogs, NodeLogWriter, default_log_root
from clusterdeck.errors import PermanentError, TransientError, UsageError
from clusterdeck.events import Event, EventKind, EventSink, discard

if TYPE_CHECKING:
    from clusterdeck.state.store import StateStore

DEFAULT_CONCURRENCY = 100
"""Steps in flight at once. sshd's MaxStartups counts handshakes per server: the transport
keeps those below it for each host, so this bounds only the work on this machine."""


class StepDeadline(PermanentError):
    """A step ran past its deadline and was cancelled."""


@dataclass(frozen=True)
class Step:
    id: str
    run: Callable[[StepContext], Awaitable[Any]]
    subject: str = ""  # the node (or resource) the step works on: events and log file
    needs: Sequence[str] = ()
    name: str = ""  # the phase shown in events; defaults to the id
    deadline: float | None = None  # seconds for one attempt
    retries: int = 2  # extra attempts after a TransientError

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass
class StepContext:
    step: Step
    inputs: Mapping[str, Any]  # results of the steps it needs, by id
    attempt: int
    log: NodeLogWriter | None

    def need(self, step_id: str) -> Any:
        return self.inputs[step_id]

    def write(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


@dataclass
class RunReport:
    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # step -> the failed step it needed
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def failed_subjects(self, steps: Sequence[Step]) -> dict[str, str]:
        """subject -> first failure message, for one-line reports."""
        by_id = {s.id: s for s in steps}
        out: dict[str, str] = {}
        for step_id, exc in self.failed.items():
            out.setdefault(by_id[step_id].subject or step_id, str(exc))
        return out


def check_graph(steps: Sequence[Step]) -> None:
    """Reject duplicate ids, unknown needs and cycles before anything runs."""
    ids: dict[str, Step] = {}
    for step in steps:
        if step.id in ids:
            raise UsageError(f"two steps share the id {step.id!r}")
        ids[step.id] = step
    for step in steps:
        for need in step.needs:
            if need not in ids:
                raise UsageError(f"step {step.id!r} needs {need!r}, which is not a step")
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(step_id: str, path: list[str]) -> None:
        if state.get(step_id) == 2:
            return
        if state.get(step_id) == 1:
            cycle = [*path[path.index(step_id) :], step_id]
            raise UsageError(f"steps depend on each other in a cycle: {' -> '.join(cycle)}")
        state[step_id] = 1
        for need in ids[step_id].needs:
            visit(need, [*path, step_id])
        state[step_id] = 2

    for step in steps:
        visit(step.id, [])


class Executor:
    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        events: EventSink = discard,
        store: StateStore | None = None,
        environment: str = "",
        log_root: Path | None = None,
        logs: bool = True,
        retry_backoff: float = 0.5,
        max_backoff: float = 8.0,
        stop_on_failure: bool = False,
    ) -> None:
        if concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        if store is not None and not environment:
            raise UsageError("recording events in the store needs the environment name")
        self.concurrency = concurrency
        self.events = events
        self.store = store
        self.environment = environment
        root = log_root or default_log_root(store.path if store is not None else None)
        self.logs = NodeLogs(environment or "default", root) if logs else None
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.stop_on_failure = stop_on_failure

    def run_sync(self, steps: Sequence[Step]) -> RunReport:
        return asyncio.run(self.run(steps))

    async def run(self, steps: Sequence[Step]) -> RunReport:
        check_graph(steps)
        report = RunReport()
        by_id = {s.id: s for s in steps}
        waiting = {s.id: len(set(s.needs)) for s in steps}
        dependents: dict[str, list[str]] = {s.id: [] for s in steps}
        for step in steps:
            for need in set(step.needs):
                dependents[need].append(step.id)
        gate = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        stopping = False

        def start(step: Step) -> None:
            task = asyncio.create_task(self._run_step(step, gate, report))
            tasks.add(task)
            task.add_done_callback(functools.partial(finished, step))

        def skip(step_id: str, because: str) -> None:
            if step_id in report.skipped or step_id in report.results:
                return
            step = by_id[step_id]
            report.skipped[step_id] = because
            self._emit(
                Event(
                    EventKind.SKIPPED,
                    step.subject or step.id,
                    step.label,
                    f"not run: {because} failed",
                    group=step.subject,
                )
            )
            for later in dependents[step_id]:
                skip(later, because)

        def finished(step: Step, task: asyncio.Task[None]) -> None:
            nonlocal stopping
            tasks.discard(task)
            if task.cancelled():
                return
            if step.id in report.failed:
                stopping = stopping or self.stop_on_failure
                for later in dependents[step.id]:
                    skip(later, step.id)
                return
            if step.id not in report.results:
                return
            for later in dependents[step.id]:
                waiting[later] -= 1
                if waiting[later] == 0 and later not in report.skipped:
                    if stopping:
                        skip(later, "an earlier step")
                    else:
                        start(by_id[later])

        try:
            for step in steps:
                if waiting[step.id] == 0:
                    start(step)
            while tasks:
                await asyncio.wait(set(tasks))
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if self.logs is not None:
                self.logs.close()
        return report

    async def _run_step(self, step: Step, gate: asyncio.Semaphore, report: RunReport) -> None:
        inputs = {need: report.results[need] for need in step.needs}
        subject = step.subject or step.id
        log = self.logs.writer(subject, step.label) if self.logs is not None else None
        async with gate:
            started = time.monotonic()
            record = self._record_start(subject, step.label)
            self._emit(Event(EventKind.STARTED, subject, step.label, group=step.subject))
            attempt = 0
            while True:
                ctx = StepContext(step, inputs, attempt, log)
                deadline = asyncio.timeout(step.deadline)
                try:
                    async with deadline:
                        result = await step.run(ctx)
                except TimeoutError as exc:
                    if not deadline.expired():
                        error: BaseException = exc
                    else:
                        error = StepDeadline(
                            f"{subject}: {step.label} did not finish within {step.deadline:g}s"
                        )
                        error.__cause__ = exc
                except TransientError as exc:
                    if attempt < step.retries:
                        attempt += 1
                        delay = random.uniform(
                            self.retry_backoff / 2,
                            min(self.max_backoff, self.retry_backoff * 2 ** (attempt - 1)),
                        )
                        self._emit(
                            Event(
                                EventKind.RETRYING,
                                subject,
                                step.label,
                                f"{exc}; attempt {attempt + 1} of {step.retries + 1}",
                                group=step.subject,
                            )
                        )
                        if log is not None:
                            log(f"retrying in {delay:.1f}s after: {exc}")
                        await asyncio.sleep(delay)
                        continue
                    error = exc
                except asyncio.CancelledError:
                    self._record_end(record, EventKind.FAILED, "cancelled")
                    raise
                except Exception as exc:  # a failed step must not stop the other nodes
                    error = exc
                else:
                    duration = time.monotonic() - started
                    report.results[step.id] = result
                    report.durations[step.id] = duration
                    self._record_end(record, EventKind.FINISHED, "")
                    self._emit(
                        Event(
                            EventKind.FINISHED,
                            subject,
                            step.label,
                            duration=duration,
                            group=step.subject,
                        )
                    )
                    return
                duration = time.monotonic() - started
                report.failed[step.id] = error
                report.durations[step.id] = duration
                message = str(error) or type(error).__name__
                if log is not None:
                    log(f"failed: {message}")
                self._record_end(record, EventKind.FAILED, message)
                self._emit(
                    Event(
                        EventKind.FAILED,
                        subject,
                        step.label,
                        message,
                        duration=duration,
                        group=step.subject,
                    )
                )
                return

    def _emit(self, event: Event) -> None:
        self.events(event)

    def _record_start(self, subject: str, step: str) -> int | None:
        if self.store is None:
            return None
        return self.store.start_event(self.environment, subject, step)

    def _record_end(self, record: int | None, kind: EventKind, message: str) -> None:
        if self.store is not None and record is not None:
            self.store.end_event(record, kind.value, message)
