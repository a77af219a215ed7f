"""Leases and secrets through a shared directory: exactly one leader among agents that start
together, a dead leader replaced after its lease expires, secrets private and short-lived."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from clusterdeck.coordination import Lease, SharedDirectory

AGENTS = 20
ROUNDS = 100


def _agent(root: str, barrier: object, index: int, rounds: int, out: object) -> None:
    wins = []
    for round_no in range(rounds):
        barrier.wait()  # type: ignore[attr-defined]
        lease = SharedDirectory(Path(root) / f"round-{round_no}").claim("init", f"m{index}", 30)
        wins.append(lease is not None)
    out.put((index, wins))  # type: ignore[attr-defined]


def test_twenty_agents_starting_at_once_elect_exactly_one_leader_each_round(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(AGENTS), ctx.Queue()
    procs = [
        ctx.Process(target=_agent, args=(str(tmp_path), barrier, i, ROUNDS, out))
        for i in range(AGENTS)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    winners = [sum(results[i][r] for i in range(AGENTS)) for r in range(ROUNDS)]
    assert winners == [1] * ROUNDS
    for r in range(ROUNDS):  # and the lease on disk names that winner
        leader = SharedDirectory(tmp_path / f"round-{r}").leader("init")
        assert leader is not None
        assert results[int(leader.holder[1:])][r]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_leader_that_stops_renewing_is_replaced_and_learns_it_lost(tmp_path: Path) -> None:
    clock = Clock()
    shared = SharedDirectory(tmp_path, clock)
    first = shared.claim("init", "machine-a", ttl=10)
    assert first is not None and first.generation == 1
    assert shared.claim("init", "machine-b", ttl=10) is None  # live: taken
    clock.now += 5
    renewed = shared.renew(first, ttl=10)
    assert renewed is not None and renewed.expires_at == 1015.0
    clock.now += 11  # it died in the middle of init: no more renewals
    second = shared.claim("init", "machine-b", ttl=10)
    assert second == Lease("init", "machine-b", 2, 1026.0)
    assert shared.renew(renewed, ttl=10) is None  # the old leader must stop
    assert shared.leader("init") == second


def test_a_released_role_is_free_at_once(tmp_path: Path) -> None:
    shared = SharedDirectory(tmp_path)
    lease = shared.claim("init", "machine-a", ttl=600)
    assert lease is not None
    shared.release(lease)
    assert shared.leader("init") is None
    assert shared.claim("init", "machine-b", ttl=600) is not None


def test_holders_are_compared_whole(tmp_path: Path) -> None:
    """A holder whose identity is a prefix of another's is not the other."""
    shared = SharedDirectory(tmp_path)
    lease = shared.claim("init", "198.18.0.21", ttl=600)
    assert lease is not None
    imposter = Lease("init", "198.18.0.2", lease.generation, lease.expires_at)
    assert shared.renew(imposter, ttl=600) is None
    shared.release(imposter)
    assert shared.leader("init") == lease


def test_secrets_are_private_and_expire(tmp_path: Path) -> None:
    clock = Clock()
    shared = SharedDirectory(tmp_path, clock)
    shared.publish("join-token", b"abcdef.0123456789abcdef", ttl=60)
    path = tmp_path / "secrets" / "join-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert shared.fetch("join-token") == b"abcdef.0123456789abcdef"
    clock.now += 61
    assert shared.fetch("join-token") is None
    assert not path.exists()  # removed when found expired
    assert not list(path.parent.glob(".tmp-*"))  # no temporary file left behind


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b"])
def test_names_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name"):
        SharedDirectory(tmp_path).publish(name, b"x", ttl=1)
