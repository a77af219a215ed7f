"""Ask a control plane's stacked etcd who its members are and whether they are healthy.

Why it exists: the control plane grows one member at a time, and each step is safe only while
etcd has quorum. A control plane holds the client certificate kubeadm made for health checks;
``curl`` on that node speaks to etcd's JSON gateway (the v3 API over HTTPS), so no etcdctl has
to be installed. Members are told apart by their exact ID and name, never by a part of an
address. It reads (members, health, a snapshot before an upgrade) and makes one change, the
removal of a member by its exact ID under a quorum check (:func:`remove_member`). It sits below
both the SSH pipeline and the stateless node's agent, which run the same code over different
:class:`Runner`s.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from clusterdeck.errors import PermanentError
from clusterdeck.transport import Command, Endpoint

if TYPE_CHECKING:
    from clusterdeck.transport.run import Result

PKI = "/etc/kubernetes/pki/etcd"
LOCAL_CLIENT = "https://127.0.0.1:2379"
HEALTH_POLL = 3.0  # seconds between asks while waiting for members to become healthy
BRIEF = 15.0  # before a step: ride out one missed health deadline, then refuse
SETTLE = 120.0  # how long a member may take to answer healthy after its pod was replaced
_CURL = [
    "curl",
    "--silent",
    "--show-error",
    "--fail",
    "--cacert",
    f"{PKI}/ca.crt",
    "--cert",
    f"{PKI}/healthcheck-client.crt",
    "--key",
    f"{PKI}/healthcheck-client.key",
]


class Runner(Protocol):
    """Runs a command on a control plane: over SSH (the transport's ``Connections``), or on
    this very machine (a stateless node's agent, :class:`clusterdeck.agent.local.LocalRunner`)."""

    async def run(
        self,
        endpoint: Endpoint,
        command: Command,
        *,
        timeout: float | None = ...,
        check: bool = ...,
    ) -> Result: ...


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool = False


@dataclass(frozen=True)
class Health:
    members: tuple[Member, ...]
    healthy: tuple[str, ...]  # names of the members that answered healthy
    unhealthy: tuple[str, ...]

    @property
    def quorum(self) -> int:
        voters = [m for m in self.members if not m.learner]
        return len(voters) // 2 + 1

    @property
    def has_quorum(self) -> bool:
        return len(self.healthy) >= self.quorum

    def describe(self) -> str:
        text = f"{len(self.healthy)}/{len(self.members)} etcd members healthy"
        if self.unhealthy:
            text += f" (not: {', '.join(self.unhealthy)})"
        return text


def parse_members(data: dict[str, Any]) -> list[Member]:
    """The gateway's member list: IDs are unsigned 64-bit numbers sent as strings."""
    return [
        Member(
            id=int(m["ID"]),
            name=str(m.get("name", "")),
            peer_urls=tuple(m.get("peerURLs") or ()),
            client_urls=tuple(m.get("clientURLs") or ()),
            learner=bool(m.get("isLearner", False)),
        )
        for m in data.get("members", [])
    ]


async def _curl(
    conns: Runner,
    cp: Endpoint,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    max_time: int = 10,
) -> str:
    argv = [*_CURL, "--max-time", str(max_time), url]
    if body is not None:
        argv += ["-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    res = await conns.run(
        cp,
        Command(argv, name="etcd " + url.rsplit("/", 1)[-1], root=True),
        timeout=max_time + 20,
        check=False,
    )
    if res.exit_status == 127:
        raise PermanentError(f"{cp.label}: curl is not installed; it is needed to ask etcd")
    if res.exit_status != 0:
        raise PermanentError(f"{cp.label}: etcd at {url}: {res.stderr.strip() or 'no answer'}")
    return res.stdout


async def _call(
    conns: Runner, cp: Endpoint, url: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await _curl(conns, cp, url, body) or "{}")
    return data


async def members(conns: Runner, cp: Endpoint) -> list[Member]:
    return parse_members(await _call(conns, cp, f"{LOCAL_CLIENT}/v3/cluster/member/list", {}))


async def health(conns: Runner, cp: Endpoint) -> Health:
    """Every member's own health endpoint, asked from ``cp`` (a member that cannot reach the
    others' leader reports itself unhealthy)."""
    found = await members(conns, cp)
    good: list[str] = []
    bad: list[str] = []
    for member in found:
        url = member.client_urls[0] if member.client_urls else ""
        ok = False
        if url:
            try:
                ok = (await _call(conns, cp, f"{url}/health")).get("health") == "true"
            except PermanentError:
                ok = False
        (good if ok else bad).append(member.name or str(member.id))
    return Health(tuple(found), tuple(good), tuple(bad))


async def require_healthy(
    conns: Runner, cp: Endpoint, *, expected: int, step: str, wait: float = 0.0
) -> Health:
    """Refuse ``step`` unless etcd has ``expected`` members, every one healthy.

    With ``wait``, keep asking for up to that many seconds: a member whose static pod was just
    replaced (an upgrade, a join) answers unhealthy until it has caught up with the leader, and
    a loaded member can miss one health deadline. Only a state that lasts is an error.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            state = await health(conns, cp)
        except PermanentError:
            # the asked member itself may be the one restarting; its answer is what we wait for
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(HEALTH_POLL)
            continue
        if len(state.members) == expected and not state.unhealthy:
            return state
        if time.monotonic() >= deadline:
            waited = f" after {wait:.0f} s" if wait else ""
            raise PermanentError(
                f"etcd is not ready for {step}: {state.describe()}{waited}, expected "
                f"{expected} members; nothing was changed by this step"
            )
        await asyncio.sleep(HEALTH_POLL)


def snapshot_bytes(stream: str) -> bytes:
    """The database from the gateway's snapshot stream (one JSON message per line, each with
    a base64 part), checked against the sha256 etcd appends to it."""
    data = bytearray()
    for line in stream.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if "error" in message:
            raise PermanentError(f"etcd refused the snapshot: {message['error']}")
        data += base64.b64decode(message.get("result", {}).get("blob", ""))
    if len(data) < 32 or hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise PermanentError("the etcd snapshot is incomplete: its sha256 does not match")
    return bytes(data)


async def snapshot(conns: Runner, cp: Endpoint) -> bytes:
    """A consistent snapshot of the whole keyspace (Secrets included: keep it private)."""
    stream = await _curl(conns, cp, f"{LOCAL_CLIENT}/v3/maintenance/snapshot", {}, max_time=300)
    return snapshot_bytes(stream)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def leaving_member(members: list[Member], name: str, address: str | None) -> Member | None:
    """The member of node ``name``: its exact name, and, when the node's address is known, a
    peer URL on exactly that address (never a prefix or part of one); or, unnamed (added but
    never started), exactly that peer address. None when it has none."""
    named = [m for m in members if m.name == name]
    if not named and address is not None:
        # a member added by a join that never started has no name yet: its peer URL, exactly
        named = [m for m in members if not m.name and address in {_host(u) for u in m.peer_urls}]
    if not named:
        return None
    if len(named) > 1:
        raise PermanentError(f"etcd has {len(named)} members named {name}: remove none")
    member = named[0]
    if address is not None and address not in {_host(u) for u in member.peer_urls}:
        raise PermanentError(
            f"etcd member {name} ({member.id:x}) has peer URLs {', '.join(member.peer_urls)}, "
            f"none on {address}: not removing a member that may be another machine's"
        )
    return member


async def leader_id(conns: Runner, cp: Endpoint) -> int:
    status = await _call(conns, cp, f"{LOCAL_CLIENT}/v3/maintenance/status", {})
    return int(status.get("leader", 0))


async def remove_member(
    conns: Runner, cp: Endpoint, name: str, address: str | None, log: Callable[[str], None]
) -> None:
    """Take node ``name``'s member out of etcd, asked through ``cp`` (a member that stays),
    only while the members that stay keep quorum; leadership is moved off it first. The one
    place where clusterdeck removes an etcd member (shrinking the control plane, and a
    stateless node's rejoin)."""
    state = await health(conns, cp)
    member = leaving_member(list(state.members), name, address)
    if member is None:
        log(f"etcd has no member {name}: nothing to remove")
        return
    staying = [m for m in state.members if m.id != member.id and not m.learner]
    healthy = [m for m in staying if (m.name or str(m.id)) in state.healthy]
    need = len(staying) // 2 + 1
    if not staying or len(healthy) < need:
        raise PermanentError(
            f"removing etcd member {name} would leave {len(healthy)} healthy of "
            f"{len(staying)} members, and quorum needs {need}: refused ({state.describe()})"
        )
    if await leader_id(conns, cp) == member.id:
        to = healthy[0]
        log(f"etcd: moving leadership from {name} to {to.name}")
        url = member.client_urls[0] if member.client_urls else LOCAL_CLIENT
        await _call(
            conns, cp, f"{url}/v3/maintenance/transfer-leadership", {"targetID": str(to.id)}
        )
    log(f"etcd: removing member {name} ({member.id:x}); {len(healthy)} healthy members stay")
    await _call(conns, cp, f"{LOCAL_CLIENT}/v3/cluster/member/remove", {"ID": str(member.id)})
