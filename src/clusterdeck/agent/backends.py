"""Keep this control plane's HAProxy servers in step with etcd's members.

Why it exists: HAProxy sends the API's connections to every control plane of the file, and its
``/readyz`` check takes out one whose API server does not answer. A control plane whose etcd
member was removed (a stateless node that rebooted, before it has joined again) must get no
connections even if something answers on its port, and one that joins gets them once it is a
voting member. Each control plane's agent compares, every round, the voting members (by their
exact names, which kubeadm gives them: the node names) with its HAProxy's servers, and sets
each server ``ready`` or ``maint`` through HAProxy's runtime API (a root-only UNIX socket).
Only changes are sent, and each is logged.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable

from clusterdeck import etcd
from clusterdeck.agent.local import LocalRunner, Log
from clusterdeck.bootstrap.lbconfig import API_BACKEND, HAPROXY_ADMIN_SOCKET
from clusterdeck.errors import PermanentError
from clusterdeck.transport import Endpoint

READY, MAINT = "ready", "maint"


def haproxy_command(line: str, path: str = HAPROXY_ADMIN_SOCKET, timeout: float = 5.0) -> str:
    """One command on HAProxy's runtime API; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def wanted(servers: Iterable[str], voting: set[str]) -> dict[str, str]:
    """Each server's state: ready while it is a voting member of etcd, else maint."""
    return {name: READY if name in voting else MAINT for name in servers}


class BackendSync:
    """The servers' states as last set here; :meth:`sync` sends what changed."""

    def __init__(
        self,
        servers: list[str],
        local: Endpoint,
        log: Log,
        send: Callable[[str], str] = haproxy_command,
    ) -> None:
        self.servers, self.local, self.log, self.send = servers, local, log, send
        self.states: dict[str, str] = {}

    def voting_members(self) -> set[str] | None:
        """The names of etcd's voting members, asked here; None when etcd does not answer."""
        try:
            found = asyncio.run(etcd.members(LocalRunner(), self.local))
        except PermanentError:
            return None
        return {m.name for m in found if m.name and not m.learner}

    def sync(self, voting: set[str] | None = None) -> list[str]:
        """Set every server whose state should change; the lines sent."""
        if voting is None:
            voting = self.voting_members()
        if voting is None:  # etcd does not answer: change nothing, the health checks decide
            return []
        sent = []
        for name, state in wanted(self.servers, voting).items():
            if self.states.get(name) == state:
                continue
            line = f"set server {API_BACKEND}/{name} state {state}"
            answer = self.send(line).strip()
            if answer:  # HAProxy answers nothing on success
                raise PermanentError(f"HAProxy refused {line!r}: {answer}")
            why = "a voting etcd member" if state == READY else "not a voting etcd member"
            if name in self.states or state == MAINT:
                self.log(f"HAProxy: server {name} set {state} ({why})")
            self.states[name] = state
            sent.append(line)
        return sent
