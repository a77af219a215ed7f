"""Running one command or script on an open connection: deadline, output, masking, result.

Output is streamed line by line to an optional sink (the node's log file) with every secret
of the command masked; the caller gets the real output back in the :class:`Result`. A command
past its deadline is signalled, its channel closed, and :class:`DeadlineExceeded` raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import asyncssh

from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.transport.command import (
    SUDO_PASSWORD_PROMPTS,
    Command,
    FileSource,
    Masker,
    Script,
    as_root,
)
from clusterdeck.transport.errors import CommandFailed, DeadlineExceeded, SudoRefused, translate

_OPEN_ATTEMPTS = 5
_CHUNK = 1 << 20
OutputSink = Callable[[str], None]
"""Receives masked text lines for a node's log (``$ command``, output, ``exit``)."""


@dataclass(frozen=True)
class Result:
    host: str
    command: str  # as shown: secrets masked
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


async def _pump(
    stream: asyncssh.SSHReader[bytes],
    parts: list[bytes],
    output: OutputSink | None,
    mask: Masker,
    prefix: str,
) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        parts.append(line)
        if output is not None:
            output(prefix + mask(line.decode(errors="replace").rstrip("\n")))


async def _stream(process: asyncssh.SSHClientProcess[bytes], source: FileSource | None) -> None:
    """Send a file to the command's stdin in chunks, waiting for the channel to drain."""
    if source is None:
        return
    with source.opener() as fh:
        skip = source.offset
        while skip > 0:  # tar members cannot seek: read past what was already sent
            chunk = fh.read(min(skip, _CHUNK))
            if not chunk:
                break
            skip -= len(chunk)
        while chunk := fh.read(_CHUNK):
            process.stdin.write(chunk)
            await process.stdin.drain()
    process.stdin.write_eof()


async def _open_session(
    conn: asyncssh.SSHClientConnection, line: str
) -> asyncssh.SSHClientProcess[bytes]:
    """Open the session channel; a refusal ("no more sessions": sshd frees closed sessions
    a moment late) is retried briefly, since the command has not started yet."""
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return await conn.create_process(line, encoding=None)
        except asyncssh.ChannelOpenError:
            if attempt + 1 == _OPEN_ATTEMPTS or conn.is_closed():
                raise
            await asyncio.sleep(0.02 * 2**attempt)
    raise AssertionError("unreachable")


async def run_on(
    conn: asyncssh.SSHClientConnection,
    host: str,
    command: Command | Script,
    *,
    timeout: float | None,
    check: bool,
    output: OutputSink | None,
    sudo: bool = False,
) -> Result:
    """Run ``command``; with ``sudo`` (a login that is not root), one that needs root rights
    goes through ``sudo -n``, and a sudo that wants a password is one clear error."""
    wire = command.wire()
    privileged = sudo and command.root
    if privileged:
        wire = replace(wire, line=as_root(wire.line))
    mask = Masker(wire.secrets)
    if output is not None:
        output(f"$ {wire.shown}")
    started = time.monotonic()
    out: list[bytes] = []
    err: list[bytes] = []
    process: asyncssh.SSHClientProcess[bytes] | None = None
    try:
        process = await _open_session(conn, wire.line)
        if wire.stdin:
            process.stdin.write(wire.stdin)
        source = command.stdin_file if isinstance(command, Command) else None
        if source is None:
            process.stdin.write_eof()
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                _pump(process.stdout, out, output, mask, ""),
                _pump(process.stderr, err, output, mask, "stderr: "),
                _stream(process, source),
            )
            completed = await process.wait()
            # sshd frees the session slot (MaxSessions) only once the channel is closed
            process.close()
            await process.wait_closed()
    except TimeoutError as exc:
        if process is not None:
            with contextlib.suppress(Exception):
                process.send_signal("KILL")
            process.close()
        if output is not None:
            output(f"deadline of {timeout:g}s passed; stopped")
        if timeout is not None:
            raise DeadlineExceeded(host, wire.shown, timeout) from exc
        raise translate(host, exc) from exc
    except (TransientError, PermanentError):
        raise
    except Exception as exc:
        if output is not None:
            output(f"connection problem: {mask(str(exc))}")
        raise translate(host, exc) from exc
    duration = time.monotonic() - started
    status = completed.exit_status
    if status is None:  # killed by a signal, or the channel closed without a status
        status = 255
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    if output is not None:
        output(f"exit {status} ({duration:.2f}s)")
    result = Result(host, wire.shown, status, stdout, stderr, duration)
    if privileged and status != 0 and any(p in stderr for p in SUDO_PASSWORD_PROMPTS):
        raise SudoRefused(host, wire.shown)
    if check and status != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise CommandFailed(host, wire.shown, status, mask(lines[-1]) if lines else "")
    return result
