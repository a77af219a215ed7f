"""The executor driving real SSH on lab hosts: a host lost mid-run, and secrets kept secret."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from clusterdeck.engine import Executor, RunReport, Step, StepContext
from clusterdeck.events import Collector, EventKind
from clusterdeck.state import SqliteStore
from clusterdeck.transport import Command, Connections, ConnectOptions, Endpoint, Secret
from tests.lab.fixtures import HostFactory, endpoint
from tests.lab.light import Lab

pytestmark = pytest.mark.lab


def remote(
    pool: Connections, node: Endpoint, command: Command
) -> Callable[[StepContext], Awaitable[str]]:
    async def run(ctx: StepContext) -> str:
        result = await pool.run(node, command, output=ctx.log)
        return result.stdout

    return run


def test_a_host_whose_sshd_stops_mid_run_is_retried_then_reported(
    lab: Lab, lab_hosts: HostFactory, tmp_path: Path
) -> None:
    hosts = lab_hosts(3)
    victim = hosts[1]
    events = Collector()
    nodes = {h.name: endpoint(lab, h, name=f"lab-w-{h.index}") for h in hosts}

    async def main() -> RunReport:
        pool = Connections(options=ConnectOptions(attempts=3, backoff=0.05), events=events)

        async def sabotage(ctx: StepContext) -> None:
            await asyncio.to_thread(lab.stop_sshd, victim)

        steps = [Step("sabotage", sabotage, needs=[f"{h.name}/facts" for h in hosts])]
        for h in hosts:
            steps += [
                Step(
                    f"{h.name}/facts",
                    remote(pool, nodes[h.name], Command(["uname", "-s"])),
                    subject=nodes[h.name].name,
                    name="facts",
                ),
                Step(
                    f"{h.name}/work",
                    remote(pool, nodes[h.name], Command(["hostname"])),
                    subject=nodes[h.name].name,
                    name="work",
                    needs=["sabotage"],
                    retries=2,
                ),
            ]
        executor = Executor(
            events=events, log_root=tmp_path / "logs", environment="lab", retry_backoff=0.05
        )
        async with pool:
            return await executor.run(steps)

    report = asyncio.run(main())
    victim_name = f"lab-w-{victim.index}"
    assert set(report.failed) == {f"{victim.name}/work"}
    error = str(report.failed[f"{victim.name}/work"])
    assert victim_name in error and victim.address in error and "connection refused" in error
    others = {h.name for h in hosts} - {victim.name}
    assert all(report.results[f"{n}/work"].strip() == n for n in others)
    retries = [e for e in events.events if e.kind is EventKind.RETRYING]
    assert retries and {e.subject for e in retries} == {victim_name}
    failed = [e for e in events.events if e.kind is EventKind.FAILED]
    assert [e.subject for e in failed] == [victim_name]
    log = (tmp_path / "logs" / "lab" / f"{victim_name}.log").read_text()
    assert "retrying" in log and "failed:" in log


def test_secrets_never_reach_logs_events_the_store_or_process_lists(
    lab: Lab, lab_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = lab_hosts(1)
    node = endpoint(lab, host, name="sec-0")
    arg_secret = "argument-secret-5d2f91"
    env_secret = "environment-secret-b7c3e8"
    store = SqliteStore(tmp_path / "state.db")
    store.save_environment("sec", "ssh", {})
    events = Collector()
    seen_in_proc: list[str] = []
    stop = threading.Event()

    def watch_process_lists() -> None:  # lab hosts share this kernel's /proc
        while not stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    if env_secret.encode() in cmdline.read_bytes():
                        seen_in_proc.append(str(cmdline))

    talk = Command(
        ["sh", "-c", 'sleep 0.3; echo "arg=$1 env=$API_TOKEN"', "sh", Secret(arg_secret)],
        env={"API_TOKEN": Secret(env_secret), "MODE": "x"},
    )
    fail = Command(
        ["sh", "-c", 'echo "bad token $API_TOKEN" >&2; exit 3'],
        env={"API_TOKEN": Secret(env_secret)},
    )

    async def main() -> RunReport:
        async with Connections() as pool:
            executor = Executor(
                events=events, store=store, environment="sec", log_root=tmp_path / "logs"
            )
            return await executor.run(
                [
                    Step("talk", remote(pool, node, talk), subject="sec-0", name="talk"),
                    Step(
                        "fail",
                        remote(pool, node, fail),
                        subject="sec-0",
                        name="fail",
                        needs=["talk"],
                    ),
                ]
            )

    watcher = threading.Thread(target=watch_process_lists)
    watcher.start()
    try:
        report = asyncio.run(main())
    finally:
        stop.set()
        watcher.join()
    # the node really got both values
    assert report.results["talk"] == f"arg={arg_secret} env={env_secret}\n"
    assert "bad token ***" in str(report.failed["fail"])
    assert seen_in_proc == [], "a secret environment value was visible on a command line"
    log = (tmp_path / "logs" / "sec" / "sec-0.log").read_text()
    assert "arg=*** env=***" in log and "API_TOKEN=***" in log and "MODE=x" in log
    surfaces = [
        log,
        repr(events.events),
        repr(store.events("sec")),
        (tmp_path / "state.db").read_bytes().decode(errors="replace"),
        str(report.failed["fail"]),
    ]
    for surface in surfaces:
        assert arg_secret not in surface and env_secret not in surface
