"""The one place where asyncssh and socket errors become clusterdeck errors.

Everything the transport raises is a :class:`TransientError` (a retry may help: refused,
reset, dropped, timed out) or a :class:`PermanentError` (it will not: bad key, auth refused,
changed host key), always naming the host, chained with ``from``. Messages never hold secrets.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import asyncssh

from clusterdeck.errors import PermanentError, TransientError


class HostKeyChanged(PermanentError):
    """The host presented a key other than the one pinned for it: stop, never connect."""

    def __init__(self, host: str, pinned: str, seen: str) -> None:
        self.host = host
        super().__init__(
            f"host key of {host} changed (pinned {pinned}, now {seen}); refusing to connect "
            "(if the machine was reinstalled on purpose, unpin it with "
            "`clusterdeck host-key forget ENV NODE` and connect again)"
        )


class HostKeyUnknown(PermanentError):
    """Strict mode: the host is not in known_hosts (or its key does not match)."""


class Unreachable(PermanentError):
    """Connecting kept failing for transient reasons until the attempts ran out."""

    def __init__(self, host: str, reason: str, attempts: int, seconds: float) -> None:
        self.host = host
        self.reason = reason
        super().__init__(
            f"{host}: {reason}; gave up after {attempts} attempt"
            f"{'s' if attempts != 1 else ''} in {seconds:.1f}s"
        )


class ConnectionDropped(TransientError):
    """A connection went away (refused, reset, closed by the server, timed out)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class AuthFailed(PermanentError):
    """The host refused every key offered."""


class CommandFailed(PermanentError):
    """A command ran and exited non-zero."""

    def __init__(self, host: str, shown: str, exit_status: int, detail: str) -> None:
        self.host = host
        self.exit_status = exit_status
        tail = f": {detail}" if detail else ""
        super().__init__(f"{host}: `{shown}` exited with status {exit_status}{tail}")


class SudoRefused(PermanentError):
    """The login user has no passwordless sudo, which every node step needs."""

    def __init__(self, host: str, shown: str) -> None:
        self.host = host
        super().__init__(
            f"{host}: sudo asked for a password for `{shown}`: clusterdeck needs passwordless "
            "sudo for the login user (for example `USER ALL=(ALL) NOPASSWD:ALL` in "
            "/etc/sudoers.d/), or log in as root"
        )


class DeadlineExceeded(PermanentError):
    """A command ran longer than its deadline and was stopped."""

    def __init__(self, host: str, shown: str, seconds: float) -> None:
        self.host = host
        super().__init__(f"{host}: `{shown}` did not finish within {seconds:g}s; stopped")


_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
}


def describe(exc: BaseException) -> str:
    """A short reason for a connection problem, without the noise of the exception class."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.ConnectionLost):
        return "connection closed by the server"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def translate(host: str, exc: BaseException) -> TransientError | PermanentError:
    """Map a connect-time or run-time failure to a transient or permanent clusterdeck error."""
    if isinstance(exc, TransientError | PermanentError):
        return exc
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthFailed(f"{host}: authentication refused (no offered key was accepted)")
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyUnknown(f"{host}: host key not trusted: {exc.reason}")
    if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
        return PermanentError(f"{host}: cannot use the private key: {exc}")
    if isinstance(exc, socket.gaierror):
        return PermanentError(f"{host}: cannot resolve the address ({exc.strerror})")
    if isinstance(
        exc,
        asyncssh.ConnectionLost
        | asyncssh.ServiceNotAvailable
        | asyncio.TimeoutError
        | TimeoutError
        | asyncssh.ChannelOpenError
        | asyncio.IncompleteReadError
        | BrokenPipeError
        | EOFError,
    ):
        return ConnectionDropped(host, describe(exc))
    if isinstance(exc, asyncssh.DisconnectError):
        if exc.code in (
            asyncssh.DISC_CONNECTION_LOST,
            asyncssh.DISC_BY_APPLICATION,
            asyncssh.DISC_TOO_MANY_CONNECTIONS,
        ):
            return ConnectionDropped(host, describe(exc))
        return PermanentError(f"{host}: {describe(exc)}")
    if isinstance(exc, OSError) and (
        exc.errno in _TRANSIENT_ERRNOS or isinstance(exc, ConnectionError)
    ):
        return ConnectionDropped(host, describe(exc))
    if isinstance(exc, OSError):
        return PermanentError(f"{host}: {describe(exc)}")
    return PermanentError(f"{host}: {type(exc).__name__}: {exc}")
