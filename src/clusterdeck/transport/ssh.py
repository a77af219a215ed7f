"""SSH connections to nodes: one shared, kept-alive connection per node, opened with retries.

:class:`Connections` is the only way clusterdeck reaches a node. It opens at most one
connection per endpoint (every step on a node shares it as separate channels), directly, via a
bastion (``jump``, an asyncssh tunnel over the bastion's own pooled connection) or via an SSM
session. It bounds the handshakes in flight per sshd below OpenSSH's default
``MaxStartups 10:30:100`` and the channels per connection below the default ``MaxSessions 10``,
and retries refused, reset and dropped connections with jittered exponential backoff.
Host keys are checked by a :class:`~clusterdeck.transport.hostkeys.HostKeyPolicy`; there is no
way to turn checking off. A connection that dies is dropped from the pool, so the next use
reconnects.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.events import Event, EventKind, EventSink, discard
from clusterdeck.transport.command import Command, Script, upload_command
from clusterdeck.transport.errors import (
    ConnectionDropped,
    HostKeyChanged,
    Unreachable,
    describe,
    translate,
)
from clusterdeck.transport.hostkeys import HostKey, HostKeyPolicy, MemoryHostKeys, sig_algorithms
from clusterdeck.transport.run import OutputSink, Result, run_on
from clusterdeck.transport.ssm import SsmRoute, SsmStream, open_stream

# Preferred first because they are cheapest on CPUs with AES instructions.
_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]


@dataclass(frozen=True)
class Endpoint:
    """Where a node's sshd is and how to log in. ``name`` is the node name used in messages."""

    host: str
    port: int = 22
    user: str = "root"
    keys: tuple[str, ...] = ()  # private key files; empty: ssh-agent and ~/.ssh defaults
    name: str = ""
    jump: Endpoint | None = None
    ssm: SsmRoute | None = None

    @property
    def label(self) -> str:
        address = self.host if self.port == 22 else f"{self.host}:{self.port}"
        return f"{self.name} ({address})" if self.name else address


@dataclass(frozen=True)
class ConnectOptions:
    connect_timeout: float = 15.0  # one attempt: TCP, banner, key exchange, auth
    attempts: int = 5
    backoff: float = 0.3  # first retry waits up to this long; doubles each time
    max_backoff: float = 5.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 4
    handshakes_per_host: int = 8  # below sshd's default MaxStartups start (10)
    # sshd's default MaxSessions is 10, and it frees a closed session only on its next loop
    # turn: k channels in flight can look like 2k-1 sessions to it, so 5 is the safe most.
    channels_per_connection: int = 5
    use_agent: bool = True


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2**attempt))
    return random.uniform(min(base / 2, ceiling), ceiling)


class _Client(asyncssh.SSHClient):
    """Checks the server's host key against the policy and remembers what it saw."""

    def __init__(self, label: str, pinned: HostKey | None, strict: bool) -> None:
        self.label = label
        self.pinned = pinned
        self.strict = strict
        self.seen: HostKey | None = None
        self.changed: HostKeyChanged | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        seen = HostKey.parse(key.export_public_key("openssh").decode())
        self.seen = seen
        if self.strict:  # only what known_hosts lists (asyncssh checked that already)
            return False
        if self.pinned is None or seen == self.pinned:
            return True
        self.changed = HostKeyChanged(self.label, self.pinned.fingerprint(), seen.fingerprint())
        return False


class Connection:
    """One live SSH connection to a node; commands run as channels on it."""

    def __init__(
        self,
        endpoint: Endpoint,
        conn: asyncssh.SSHClientConnection,
        channels: int,
        stream: SsmStream | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.raw = conn
        self._channels = asyncio.Semaphore(channels)
        self._stream = stream

    @property
    def closed(self) -> bool:
        return self.raw.is_closed()

    async def run(
        self,
        command: Command | Script,
        *,
        timeout: float | None = None,
        check: bool = True,
        output: OutputSink | None = None,
    ) -> Result:
        """Run a command or script; raise CommandFailed on non-zero exit when ``check``."""
        async with self._channels:
            return await run_on(
                self.raw,
                self.endpoint.label,
                command,
                timeout=timeout,
                check=check,
                output=output,
                sudo=self.endpoint.user != "root",
            )

    async def upload(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o600,
        timeout: float | None = None,
        output: OutputSink | None = None,
    ) -> Result:
        """Write ``data`` to ``path`` on the node atomically (stdin to a file, one channel),
        with root rights (through sudo when the login is not root)."""
        return await self.run(
            upload_command(path, data, mode, root=True), timeout=timeout, output=output
        )

    def close(self) -> None:
        self.raw.close()
        if self._stream is not None:
            self._stream.close()

    async def wait_closed(self) -> None:
        await self.raw.wait_closed()
        if self._stream is not None:
            await self._stream.process.wait()


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: Connection | None = None


class Connections:
    """The pool: at most one connection per endpoint, retried, keyed and pinned per host."""

    def __init__(
        self,
        host_keys: HostKeyPolicy | None = None,
        options: ConnectOptions | None = None,
        events: EventSink = discard,
    ) -> None:
        self.host_keys: HostKeyPolicy = host_keys or MemoryHostKeys()
        self.options = options or ConnectOptions()
        self.events = events
        self._slots: dict[Endpoint, _Slot] = {}
        self._handshakes: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._keys: dict[tuple[str, ...], list[asyncssh.SSHKey]] = {}
        self.connects = 0  # successful handshakes, for tests and benchmarks
        self.retries = 0

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, endpoint: Endpoint, output: OutputSink | None = None) -> Connection:
        """The live connection to ``endpoint``, opening (with retries) if there is none."""
        slot = self._slots.setdefault(endpoint, _Slot())
        async with slot.lock:
            if slot.conn is None or slot.conn.closed:
                slot.conn = await self._connect_with_retry(endpoint, output)
            return slot.conn

    def forget(self, endpoint: Endpoint) -> None:
        """Drop a connection after it failed, so the next :meth:`get` reconnects."""
        slot = self._slots.get(endpoint)
        if slot is not None and slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    async def run(
        self,
        endpoint: Endpoint,
        command: Command | Script,
        *,
        timeout: float | None = None,
        check: bool = True,
        output: OutputSink | None = None,
    ) -> Result:
        """Get the node's connection and run one command on it; a dropped one is forgotten."""
        conn = await self.get(endpoint, output)
        try:
            return await conn.run(command, timeout=timeout, check=check, output=output)
        except ConnectionDropped:
            self.forget(endpoint)
            raise

    async def wait_for_banner(self, endpoint: Endpoint, timeout: float) -> str:
        """Wait until the node's sshd answers with its banner (a booting host refuses or
        times out first); return the banner line. Through a bastion the TCP connection is
        opened by the bastion. SSM routes have no TCP path of their own: returns ""."""
        if endpoint.ssm is not None:
            return ""
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            remaining = started + timeout - loop.time()
            try:
                async with self._handshake_gate(endpoint):
                    return await asyncio.wait_for(
                        self._read_banner(endpoint), max(0.1, min(remaining, 10.0))
                    )
            except (TransientError, PermanentError):
                raise
            except (OSError, TimeoutError, asyncssh.Error, EOFError) as exc:
                reason = describe(exc)
            attempt += 1
            delay = backoff_delay(attempt - 1, self.options.backoff, self.options.max_backoff)
            if loop.time() + delay > started + timeout:
                raise Unreachable(endpoint.label, reason, attempt, loop.time() - started)
            await asyncio.sleep(delay)

    async def _read_banner(self, endpoint: Endpoint) -> str:
        reader: Any
        writer: Any
        if endpoint.jump is not None:
            bastion = await self.get(endpoint.jump)
            reader, writer = await bastion.raw.open_connection(endpoint.host, endpoint.port)
        else:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            line = await reader.readline()
        finally:
            writer.close()
        text = bytes(line).decode(errors="replace").strip()
        if not text.startswith("SSH-"):
            raise EOFError("no SSH banner" if not text else f"not an SSH server ({text[:40]!r})")
        return text

    async def close(self) -> None:
        conns = [s.conn for s in self._slots.values() if s.conn is not None]
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
        self._slots.clear()

    # connecting ---------------------------------------------------------------------------
    async def _connect_with_retry(
        self, endpoint: Endpoint, output: OutputSink | None
    ) -> Connection:
        opts = self.options
        started = time.monotonic()
        reason = ""
        for attempt in range(opts.attempts):
            try:
                return await self._connect_once(endpoint)
            except TransientError as exc:
                reason = exc.reason if isinstance(exc, ConnectionDropped) else str(exc)
                if attempt + 1 >= opts.attempts:
                    break
                self.retries += 1
                delay = backoff_delay(attempt, opts.backoff, opts.max_backoff)
                message = f"{reason}; attempt {attempt + 2} of {opts.attempts} in {delay:.1f}s"
                self.events(
                    Event(
                        EventKind.RETRYING,
                        endpoint.name or endpoint.host,
                        "connect",
                        message,
                        group=endpoint.name,
                    )
                )
                if output is not None:
                    output(f"connect to {endpoint.label}: retrying, {message}")
                await asyncio.sleep(delay)
        raise Unreachable(endpoint.label, reason, opts.attempts, time.monotonic() - started)

    def _handshake_gate(self, endpoint: Endpoint) -> asyncio.Semaphore:
        key = (endpoint.host, endpoint.port)
        gate = self._handshakes.get(key)
        if gate is None:
            gate = self._handshakes[key] = asyncio.Semaphore(self.options.handshakes_per_host)
        return gate

    def _client_keys(self, endpoint: Endpoint) -> list[asyncssh.SSHKey] | None:
        if not endpoint.keys:
            return None  # asyncssh: ssh-agent, then ~/.ssh/id_* files
        cached = self._keys.get(endpoint.keys)
        if cached is None:
            cached = []
            for path in endpoint.keys:
                file = Path(path).expanduser()
                try:
                    cached.append(asyncssh.read_private_key(file))
                except FileNotFoundError:
                    raise PermanentError(
                        f"{endpoint.label}: private key file {file} does not exist"
                    ) from None
                except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                    raise PermanentError(
                        f"{endpoint.label}: cannot use private key {file} ({exc}); "
                        "for a passphrase-protected key, load it into ssh-agent and leave "
                        "the key path empty"
                    ) from exc
            self._keys[endpoint.keys] = cached
        return cached

    async def _connect_once(self, endpoint: Endpoint) -> Connection:
        policy = self.host_keys
        pinned = policy.pinned(endpoint.host, endpoint.port)
        client = _Client(endpoint.label, pinned, policy.strict)
        kwargs: dict[str, Any] = {
            "username": endpoint.user,
            "client_keys": self._client_keys(endpoint),
            "config": None,
            "encryption_algs": _CIPHERS,
            "compression_algs": None,
            "keepalive_interval": self.options.keepalive_interval,
            "keepalive_count_max": self.options.keepalive_count_max,
            "login_timeout": self.options.connect_timeout,
            "connect_timeout": self.options.connect_timeout,
        }
        if not self.options.use_agent:
            kwargs["agent_path"] = None
        if policy.strict:
            kwargs["known_hosts"] = policy.known_hosts_files() or ([], [], [])
        else:
            kwargs["known_hosts"] = ([], [], [])  # every key goes through _Client's check
            if pinned is not None:
                kwargs["server_host_key_algs"] = sig_algorithms(pinned.key_type)
        stream: SsmStream | None = None
        async with self._handshake_gate(endpoint):
            try:
                if endpoint.ssm is not None:
                    stream = await open_stream(endpoint.ssm, endpoint.label)
                    kwargs["sock"] = stream.sock
                elif endpoint.jump is not None:
                    bastion = await self.get(endpoint.jump)
                    kwargs["tunnel"] = bastion.raw
                conn = await asyncio.wait_for(
                    asyncssh.connect(
                        endpoint.host, endpoint.port, client_factory=lambda: client, **kwargs
                    ),
                    self.options.connect_timeout,
                )
            except (TransientError, PermanentError):
                if stream is not None:
                    stream.close()
                raise
            except Exception as exc:
                if stream is not None:
                    stream.close()
                if client.changed is not None:
                    raise client.changed from exc
                if isinstance(exc, asyncssh.ChannelOpenError) and endpoint.jump is not None:
                    raise ConnectionDropped(
                        endpoint.label, f"via {endpoint.jump.label}: {describe(exc)}"
                    ) from exc
                raise translate(endpoint.label, exc) from exc
        if client.seen is not None and pinned is None and not policy.strict:
            policy.pin(endpoint.host, endpoint.port, client.seen)
        self.connects += 1
        return Connection(endpoint, conn, self.options.channels_per_connection, stream)
