"""Run on this machine what the SSH path runs remotely: phase scripts (bash, the node bundle in
``CLUSTERDECK_BUNDLE``, output streamed to the agent's log, the journal) and single commands
(:class:`LocalRunner`, for the etcd code shared with the day-2 shrink)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.errors import PermanentError
from clusterdeck.transport.command import Command, Secret

if TYPE_CHECKING:
    from clusterdeck.transport import Endpoint
    from clusterdeck.transport.run import Result

Log = Callable[[str], None]
TAIL_LINES = 8


def run_script(
    text: str,
    *,
    name: str,
    bundle: Path,
    log: Log,
    timeout: float = 900,
    args: tuple[str, ...] = (),
) -> str:
    """Run ``text`` with bash; its output, or PermanentError naming the phase and its last
    lines."""
    with tempfile.NamedTemporaryFile("w", prefix=f"{name}-", suffix=".sh", delete=False) as fh:
        fh.write(text)
        path = fh.name
    try:
        Path(path).chmod(0o700)
        proc = subprocess.Popen(
            ["/bin/bash", path, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "CLUSTERDECK_BUNDLE": str(bundle)},
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            log(f"{name}: {line.rstrip()}")
        status = proc.wait(timeout=timeout)
    finally:
        Path(path).unlink()
    if status != 0:
        tail = " | ".join(x for x in lines[-TAIL_LINES:] if x.strip())
        raise PermanentError(f"phase {name} failed with status {status}; last lines: {tail}")
    return "\n".join(lines)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class LocalRunner:
    """Runs an :class:`~clusterdeck.transport.Command` on this machine (the agent is root), so
    the code that asks etcd over SSH asks it here unchanged (:class:`clusterdeck.etcd.Runner`)."""

    async def run(
        self,
        endpoint: Endpoint,
        command: Command,
        *,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        from clusterdeck.transport.run import Result

        argv = [a.reveal() if isinstance(a, Secret) else str(a) for a in command.argv]
        env = {k: v.reveal() if isinstance(v, Secret) else str(v) for k, v in command.env.items()}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(command.stdin), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PermanentError(
                f"{command.label} on this node: no answer in {timeout} s"
            ) from None
        result = Result(
            endpoint.label,
            command.masked(),
            proc.returncode if proc.returncode is not None else -1,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - started,
        )
        if check and not result.ok:
            raise PermanentError(
                f"{command.label} on this node failed ({result.exit_status}): "
                f"{result.stderr.strip()}"
            )
        return result


def merge_hosts(entry: Path, hosts: Path, log: Log) -> list[str]:
    """Add each line of ``entry`` (the overlay's names, the VIP's first) to ``hosts`` unless
    that exact line is there; the lines added. A hosts file that cannot be written is said in
    the log, not fatal: kubeadm and the kubelets reach the API by the VIP's address."""
    try:
        wanted = [x.strip() for x in entry.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []
    try:
        present = {x.strip() for x in hosts.read_text().splitlines()}
    except FileNotFoundError:
        present = set()
    added = [line for line in wanted if line not in present]
    if not added:
        return []
    try:
        with hosts.open("a") as fh:
            fh.write("".join(f"{line}\n" for line in added))
    except OSError as exc:
        log(f"could not add {', '.join(added)} to {hosts}: {exc.strerror}")
        return []
    log(f"added to {hosts}: {', '.join(added)}")
    return added
