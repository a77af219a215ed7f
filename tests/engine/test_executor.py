"""The executor: dependency order, start-as-soon-as-ready, bounds, retries, deadlines, events."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.engine import Executor, Step, StepContext, StepDeadline
from clusterdeck.errors import PermanentError, TransientError, UsageError
from clusterdeck.events import Collector, EventKind
from clusterdeck.state import SqliteStore


def sleeper(
    seconds: float, value: Any = None, log: list[tuple[str, str, float]] | None = None
) -> Any:
    async def run(ctx: StepContext) -> Any:
        if log is not None:
            log.append(("start", ctx.step.id, time.monotonic()))
        await asyncio.sleep(seconds)
        if log is not None:
            log.append(("end", ctx.step.id, time.monotonic()))
        return value if value is not None else ctx.step.id

    return run


def run(steps: list[Step], tmp_path: Path, **options: Any) -> tuple[Any, Collector]:
    events = Collector()
    report = Executor(
        events=events, log_root=tmp_path / "logs", retry_backoff=0.01, **options
    ).run_sync(steps)
    return report, events


def test_a_step_starts_as_soon_as_its_own_inputs_exist_not_after_a_wave(tmp_path: Path) -> None:
    log: list[tuple[str, str, float]] = []
    steps = [
        Step("fast", sleeper(0.02, log=log)),
        Step("slow", sleeper(0.5, log=log)),
        Step("after-fast", sleeper(0.01, log=log), needs=["fast"]),
        Step("after-both", sleeper(0.01, log=log), needs=["fast", "slow"]),
    ]
    report, _ = run(steps, tmp_path)
    assert report.ok
    at = {(kind, sid): t for kind, sid, t in log}
    assert at[("start", "after-fast")] < at[("end", "slow")]
    assert at[("start", "after-fast")] >= at[("end", "fast")]
    assert at[("start", "after-both")] >= at[("end", "slow")]


def test_steps_receive_their_inputs(tmp_path: Path) -> None:
    async def total(ctx: StepContext) -> int:
        return int(ctx.need("a")) + int(ctx.need("b"))

    report, _ = run(
        [Step("a", sleeper(0, 2)), Step("b", sleeper(0, 40)), Step("sum", total, needs=["a", "b"])],
        tmp_path,
    )
    assert report.results["sum"] == 42


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    running = 0
    peak = 0

    async def work(ctx: StepContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    report, _ = run([Step(f"s{i}", work) for i in range(40)], tmp_path, concurrency=5)
    assert report.ok and peak == 5


def test_transient_errors_are_retried_and_permanent_ones_are_not(tmp_path: Path) -> None:
    calls = {"flaky": 0, "broken": 0, "bug": 0}

    async def flaky(ctx: StepContext) -> str:
        calls["flaky"] += 1
        if ctx.attempt < 2:
            raise TransientError("connection reset")
        return "ok"

    async def broken(ctx: StepContext) -> None:
        calls["broken"] += 1
        raise PermanentError("node-1: authentication refused")

    async def bug(ctx: StepContext) -> None:
        calls["bug"] += 1
        raise KeyError("oops")

    report, events = run(
        [
            Step("flaky", flaky, subject="n0", retries=3),
            Step("broken", broken, subject="n1", retries=3),
            Step("bug", bug, subject="n2", retries=3),
        ],
        tmp_path,
    )
    assert calls == {"flaky": 3, "broken": 1, "bug": 1}
    assert report.results["flaky"] == "ok"
    assert set(report.failed) == {"broken", "bug"}
    retrying = [e for e in events.events if e.kind is EventKind.RETRYING]
    assert [e.subject for e in retrying] == ["n0", "n0"]
    assert "connection reset" in retrying[0].message


def test_retries_run_out(tmp_path: Path) -> None:
    async def always(ctx: StepContext) -> None:
        raise TransientError("host h3: connection refused")

    report, events = run([Step("x", always, subject="h3", retries=2)], tmp_path)
    assert "connection refused" in str(report.failed["x"])
    kinds = [e.kind for e in events.events]
    assert kinds == [EventKind.STARTED, EventKind.RETRYING, EventKind.RETRYING, EventKind.FAILED]


def test_a_failure_skips_what_needs_it_and_nothing_else(tmp_path: Path) -> None:
    async def fail(ctx: StepContext) -> None:
        raise PermanentError("boom")

    steps = [
        Step("a/1", fail, subject="a"),
        Step("a/2", sleeper(0), subject="a", needs=["a/1"]),
        Step("a/3", sleeper(0), subject="a", needs=["a/2"]),
        Step("b/1", sleeper(0.05), subject="b"),
        Step("b/2", sleeper(0), subject="b", needs=["b/1"]),
    ]
    report, events = run(steps, tmp_path)
    assert set(report.failed) == {"a/1"}
    assert report.skipped == {"a/2": "a/1", "a/3": "a/1"}
    assert set(report.results) == {"b/1", "b/2"}
    assert report.failed_subjects(steps) == {"a": "boom"}
    assert {e.step for e in events.events if e.kind is EventKind.SKIPPED} == {"a/2", "a/3"}


def test_stop_on_failure_starts_nothing_new(tmp_path: Path) -> None:
    async def fail(ctx: StepContext) -> None:
        raise PermanentError("boom")

    steps = [Step("a", fail), Step("b", sleeper(0.1)), Step("c", sleeper(0), needs=["b"])]
    report, _ = run(steps, tmp_path, stop_on_failure=True)
    assert "b" in report.results and "c" in report.skipped


def test_deadline_cancels_a_hung_step(tmp_path: Path) -> None:
    started = time.monotonic()
    report, events = run(
        [Step("hang", sleeper(30), subject="n1", deadline=0.2, retries=5)], tmp_path
    )
    assert time.monotonic() - started < 5
    error = report.failed["hang"]
    assert isinstance(error, StepDeadline) and "within 0.2s" in str(error)
    assert [e.kind for e in events.events] == [EventKind.STARTED, EventKind.FAILED]


def test_events_carry_durations_and_are_recorded_in_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.save_environment("env1", "ssh", {})

    async def fail(ctx: StepContext) -> None:
        raise PermanentError("n2: exited 3")

    _, events = run(
        [
            Step("n1/x", sleeper(0.05), subject="n1", name="x"),
            Step("n2/x", fail, subject="n2", name="x"),
        ],
        tmp_path,
        store=store,
        environment="env1",
    )
    finished = [e for e in events.events if e.kind is EventKind.FINISHED]
    assert len(finished) == 1 and finished[0].duration is not None
    assert finished[0].duration >= 0.05
    rows = {(r.subject, r.kind, r.message) for r in store.events("env1")}
    assert rows == {("n1", "finished", ""), ("n2", "failed", "n2: exited 3")}
    assert all(r.ended_at is not None for r in store.events("env1"))


def test_each_node_has_its_own_private_log_file(tmp_path: Path) -> None:
    async def talk(ctx: StepContext) -> None:
        ctx.write(f"hello from {ctx.step.subject}")

    run(
        [Step(f"{n}/say", talk, subject=n, name="say") for n in ("n1", "n2")],
        tmp_path,
        environment="lab",
    )
    log_dir = tmp_path / "logs" / "lab"
    assert sorted(p.name for p in log_dir.iterdir()) == ["n1.log", "n2.log"]
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    for node in ("n1", "n2"):
        path = log_dir / f"{node}.log"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"[say] hello from {node}" in path.read_text()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Step("a", sleeper(0)), Step("a", sleeper(0))], "share the id"),
        ([Step("a", sleeper(0), needs=["nope"])], "'nope', which is not a step"),
        ([Step("a", sleeper(0), needs=["b"]), Step("b", sleeper(0), needs=["a"])], "cycle"),
    ],
)
def test_bad_graphs_are_refused_before_anything_runs(
    steps: list[Step], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=message):
        run(steps, tmp_path)


def test_node_logs_live_beside_the_state_store_in_use(tmp_path: Path, monkeypatch) -> None:
    """Without $CLUSTERDECK_LOGS, --state somewhere keeps that store's node logs beside it."""
    monkeypatch.delenv("CLUSTERDECK_LOGS", raising=False)

    async def hello(ctx: StepContext) -> None:
        ctx.write("hello")

    store = SqliteStore(tmp_path / "team" / "state.db")
    ex = Executor(store=store, environment="lab")
    asyncio.run(ex.run([Step("n1/x", hello, subject="n1")]))
    assert (tmp_path / "team" / "logs" / "lab" / "n1.log").read_text().strip().endswith("hello")
