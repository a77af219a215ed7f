"""Host key policies: trust on first use then pinned in the state store, or strict known_hosts.

There is no "off" switch. With :class:`PinnedHostKeys` the first key a host proves it owns
is pinned for the environment; from then on any other key stops the connection with
:class:`HostKeyChanged` naming the host. With :class:`KnownHostsOnly` (strict mode) only the
user's known_hosts files are trusted and nothing is pinned. The key is pinned only after the
handshake succeeded, i.e. after the server proved it holds the private key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from clusterdeck.state.store import StateStore


@dataclass(frozen=True)
class HostKey:
    key_type: str  # e.g. "ssh-ed25519"
    public_key: str  # base64 body, as in known_hosts

    def openssh(self) -> str:
        return f"{self.key_type} {self.public_key}"

    @classmethod
    def parse(cls, line: str) -> HostKey:
        key_type, body, *_ = line.split()
        return cls(key_type, body)

    def fingerprint(self) -> str:
        import base64
        import hashlib

        digest = hashlib.sha256(base64.b64decode(self.public_key)).digest()
        return f"{self.key_type} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


# Host key signature algorithms that make a server present a key of the pinned type.
_SIG_ALGS = {
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
}


def sig_algorithms(key_type: str) -> list[str]:
    return _SIG_ALGS.get(key_type, [key_type])


class HostKeyPolicy(Protocol):
    strict: bool

    def pinned(self, host: str, port: int) -> HostKey | None: ...

    def pin(self, host: str, port: int, key: HostKey) -> None: ...

    def known_hosts_files(self) -> list[str]: ...


class PinnedHostKeys:
    """Trust on first use, then the key pinned in the state store for this environment."""

    strict = False

    def __init__(self, store: StateStore, environment: str) -> None:
        self.store = store
        self.environment = environment

    def pinned(self, host: str, port: int) -> HostKey | None:
        record = self.store.host_key(self.environment, host, port)
        return HostKey(record.key_type, record.public_key) if record else None

    def pin(self, host: str, port: int, key: HostKey) -> None:
        self.store.pin_host_key(self.environment, host, port, key.key_type, key.public_key)

    def known_hosts_files(self) -> list[str]:
        return []


class MemoryHostKeys:
    """Trust on first use within one process (scripts and benchmarks without a store)."""

    strict = False

    def __init__(self) -> None:
        self._keys: dict[tuple[str, int], HostKey] = {}

    def pinned(self, host: str, port: int) -> HostKey | None:
        return self._keys.get((host, port))

    def pin(self, host: str, port: int, key: HostKey) -> None:
        self._keys.setdefault((host, port), key)

    def known_hosts_files(self) -> list[str]:
        return []


class KnownHostsOnly:
    """Strict mode: only keys listed in known_hosts files are accepted; nothing is pinned."""

    strict = True

    def __init__(self, files: Sequence[str | Path] = ()) -> None:
        paths = [Path(f).expanduser() for f in files] or [Path("~/.ssh/known_hosts").expanduser()]
        self.files = [str(p) for p in paths]

    def pinned(self, host: str, port: int) -> HostKey | None:
        return None

    def pin(self, host: str, port: int, key: HostKey) -> None:
        return None

    def known_hosts_files(self) -> list[str]:
        return [f for f in self.files if Path(f).is_file()]


def known_hosts_line(host: str, port: int, key: HostKey) -> str:
    """One known_hosts line for the system ``ssh`` client (``[host]:port`` when not 22)."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.openssh()}\n"
