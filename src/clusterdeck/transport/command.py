"""Commands as argv objects: quoted exactly once, with secrets masked wherever they are shown.

Nothing in clusterdeck builds a remote command line by string concatenation. A
:class:`Command` holds an argv list and an environment; values wrapped in :class:`Secret`
are real on the wire but print as ``***`` in every log line, event and error message.
Secret environment values never appear on a command line at all (where ``ps`` on the node
would show them): they travel on the channel's stdin and a fixed wrapper exports them.
A :class:`Script` is sent as a file on stdin, written to a private temporary file on the node
and run from there, so its text is never part of a command line either.

This module only builds strings and bytes; it does no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO

MASK = "***"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Fixed wrappers run by ``sh -c``; user data only ever reaches them as positional arguments
# or on stdin, never spliced into their text.
_READ_SECRETS = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do IFS= read -r v || exit 97; '
    'export "$1=$v"; shift; n=$((n-1)); done; '
)
_ENV_WRAPPER = _READ_SECRETS + 'exec "$@"'
_SCRIPT_WRAPPER = (
    "umask 077; "
    + _READ_SECRETS
    # a private file named by our PID, created exclusively (set -C: O_EXCL, so never through
    # someone's symlink); mktemp only if that name is taken. One exec fewer on every host.
    + 'i=$1; shift; f="${TMPDIR:-/tmp}/clusterdeck.$$"; set -C; '
    'if ! true 2>/dev/null >"$f"; then '
    'f=$(mktemp "${TMPDIR:-/tmp}/clusterdeck.XXXXXX") || exit 98; fi; set +C; '
    'cat > "$f" || { rm -f "$f"; exit 98; }; '
    '"$i" "$f" "$@" </dev/null; rc=$?; rm -f "$f"; exit $rc'
)
_UPLOAD_WRAPPER = (
    'umask 077; t="$1.clusterdeck.$$"; cat > "$t" && chmod "$2" "$t" && mv -f "$t" "$1" '
    '|| { rm -f "$t"; exit 1; }'
)
# The same without chmod, for modes a umask can express (no exec or special bits).
_UPLOAD_UMASK_WRAPPER = (
    'umask "$2"; t="$1.clusterdeck.$$"; cat > "$t" && mv -f "$t" "$1" || { rm -f "$t"; exit 1; }'
)


class Secret:
    """A value that must reach the node but never a log, an event or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))


Arg = str | Secret


def _plain(value: Arg) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _shown(value: Arg) -> str:
    return MASK if isinstance(value, Secret) else value


def _check_env(env: Mapping[str, Arg]) -> None:
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a valid identifier")
        if isinstance(value, Secret) and ("\n" in value.reveal() or "\0" in value.reveal()):
            raise ValueError(f"secret environment value {name} must be a single line")


@dataclass(frozen=True)
class Wire:
    """What actually goes over the channel: the one command line, its stdin, its shown form."""

    line: str
    stdin: bytes
    shown: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class FileSource:
    """Bytes streamed to a command's stdin from a local file, from ``offset`` on, so a large
    file never sits in memory and an interrupted upload resumes where it stopped."""

    opener: Callable[[], AbstractContextManager[IO[bytes]]]
    size: int
    offset: int = 0


@dataclass(frozen=True)
class Command:
    """One program with its arguments, run on a node. ``argv[0]`` is the program."""

    argv: Sequence[Arg]
    env: Mapping[str, Arg] = field(default_factory=dict)
    stdin: bytes = b""
    name: str = ""  # a short label for events; defaults to argv[0]
    root: bool = False  # needs root rights: run through ``sudo -n`` when the login is not root
    stdin_file: FileSource | None = None  # streamed after ``stdin``

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least a program name")
        _check_env(self.env)

    @property
    def label(self) -> str:
        return self.name or _shown(self.argv[0])

    def secrets(self) -> tuple[str, ...]:
        values = [a.reveal() for a in self.argv if isinstance(a, Secret)]
        values += [v.reveal() for v in self.env.values() if isinstance(v, Secret)]
        return tuple(v for v in values if v)

    def masked(self) -> str:
        """The command as logs and events show it: secrets replaced by ``***``."""
        env = [f"{k}={_shown(v)}" for k, v in self.env.items()]
        return shlex.join([*env, *(_shown(a) for a in self.argv)])

    def wire(self) -> Wire:
        """Quote once, for ``sh``; secret env values go on stdin ahead of the command's own."""
        secret_env = {k: v for k, v in self.env.items() if isinstance(v, Secret)}
        plain_env = [f"{k}={v}" for k, v in self.env.items() if not isinstance(v, Secret)]
        argv = [_plain(a) for a in self.argv]
        if plain_env:
            argv = ["env", *plain_env, *argv]
        stdin = self.stdin
        if secret_env:
            argv = [
                "sh",
                "-c",
                _ENV_WRAPPER,
                "clusterdeck-env",
                str(len(secret_env)),
                *secret_env,
                *argv,
            ]
            stdin = _secret_lines(secret_env) + stdin
        return Wire(shlex.join(argv), stdin, self.masked(), self.secrets())


def _secret_lines(values: Mapping[str, Secret]) -> bytes:
    return b"".join(v.reveal().encode() + b"\n" for v in values.values())


@dataclass(frozen=True)
class Script:
    """A script sent as a file and run on the node with ``interpreter`` (not pasted inline)."""

    text: str
    args: Sequence[Arg] = ()
    env: Mapping[str, Arg] = field(default_factory=dict)
    interpreter: str = "/bin/sh"
    name: str = "script"
    root: bool = False  # needs root rights: run through ``sudo -n`` when the login is not root

    def __post_init__(self) -> None:
        _check_env(self.env)

    @property
    def label(self) -> str:
        return self.name

    def secrets(self) -> tuple[str, ...]:
        return Command([self.interpreter, *self.args], self.env).secrets()

    def masked(self) -> str:
        env = [f"{k}={_shown(v)}" for k, v in self.env.items()]
        return shlex.join(
            [*env, self.interpreter, f"<{self.name}>", *(_shown(a) for a in self.args)]
        )

    def wire(self) -> Wire:
        secret_env = {k: v for k, v in self.env.items() if isinstance(v, Secret)}
        plain_env = [f"{k}={v}" for k, v in self.env.items() if not isinstance(v, Secret)]
        inner = [
            "sh",
            "-c",
            _SCRIPT_WRAPPER,
            "clusterdeck-script",
            str(len(secret_env)),
            *secret_env,
            self.interpreter,
            *(_plain(a) for a in self.args),
        ]
        argv = ["env", *plain_env, *inner] if plain_env else inner
        stdin = _secret_lines(secret_env) + self.text.encode()
        return Wire(shlex.join(argv), stdin, self.masked(), self.secrets())


def upload_command(path: str, data: bytes, mode: int = 0o600, *, root: bool = False) -> Command:
    """Write ``data`` to ``path`` atomically with ``mode``, through stdin (never the line)."""
    if mode & ~0o666 == 0:
        return Command(
            ["sh", "-c", _UPLOAD_UMASK_WRAPPER, "clusterdeck-upload", path, f"{~mode & 0o777:03o}"],
            stdin=data,
            name=f"upload {path}",
            root=root,
        )
    return Command(
        ["sh", "-c", _UPLOAD_WRAPPER, "clusterdeck-upload", path, f"{mode:o}"],
        stdin=data,
        name=f"upload {path}",
        root=root,
    )


SUDO = ("sudo", "-n", "--")
SUDO_PASSWORD_PROMPTS = ("a password is required", "a terminal is required")


def as_root(line: str) -> str:
    """``line`` (one quoted ``sh`` command line) run with root rights: sudo never prompts
    (``-n``), so a login without passwordless sudo fails at once with sudo's own message."""
    return shlex.join([*SUDO, "sh", "-c", line])


class Masker:
    """Replaces every known secret value in text, longest first (so overlaps stay hidden)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
