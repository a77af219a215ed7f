"""etcd's answers as clusterdeck reads them: members by exact identity, a checked snapshot."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest

from clusterdeck import etcd
from clusterdeck.errors import PermanentError
from clusterdeck.etcd import Health, leaving_member, parse_members, snapshot_bytes

LISTED = {
    "members": [
        {
            "ID": "11342859195283224370",
            "name": "lab-cp-0",
            "peerURLs": ["https://10.0.0.2:2380"],
            "clientURLs": ["https://10.0.0.2:2379"],
        },
        {
            "ID": "4150254129744393283",
            "name": "lab-cp-1",
            "peerURLs": ["https://10.0.0.21:2380"],
            "clientURLs": ["https://10.0.0.21:2379"],
        },
        {"ID": "77", "name": "", "peerURLs": ["https://10.0.0.3:2380"], "isLearner": True},
    ]
}


def test_members_are_parsed_with_their_64_bit_ids() -> None:
    members = parse_members(LISTED)
    assert members[0].id == 11342859195283224370
    assert members[2].learner and not members[0].learner


def test_a_member_is_found_by_its_exact_name_and_address_never_a_prefix() -> None:
    members = parse_members(LISTED)
    assert leaving_member(members, "lab-cp-1", "10.0.0.21") == members[1]
    assert leaving_member(members, "lab-cp", None) is None  # a prefix of a name is no match
    with pytest.raises(PermanentError, match=r"none on 10\.0\.0\.2: not removing"):
        leaving_member(members, "lab-cp-1", "10.0.0.2")  # 10.0.0.21 is not 10.0.0.2


def test_an_unstarted_member_is_found_by_its_exact_peer_address_only() -> None:
    listed = {
        "members": [
            {"ID": "5", "name": "", "peerURLs": ["https://198.18.0.21:2380"]},
            {"ID": "6", "name": "", "peerURLs": ["https://198.18.0.2:2380"]},
        ]
    }
    members = parse_members(listed)
    assert leaving_member(members, "stl-cp-0", "198.18.0.2") == members[1]
    assert leaving_member(members, "stl-cp-1", "198.18.0.21") == members[0]
    assert leaving_member(members, "stl-cp-2", "198.18.0.3") is None
    assert leaving_member(members, "stl-cp-0", None) is None  # no address: no unnamed match


def test_quorum_counts_voters_only() -> None:
    members = tuple(parse_members(LISTED))
    state = Health(members, ("lab-cp-0", "lab-cp-1"), ("77",))
    assert state.quorum == 2 and state.has_quorum
    assert not Health(members, ("lab-cp-0",), ("lab-cp-1", "77")).has_quorum


def test_a_snapshot_is_kept_only_when_its_sha256_matches() -> None:
    db = b"bolt database bytes" * 100
    whole = db + hashlib.sha256(db).digest()
    lines = [
        json.dumps({"result": {"blob": base64.b64encode(part).decode()}})
        for part in (whole[:1000], whole[1000:])
    ]
    assert snapshot_bytes("\n".join(lines)) == whole
    with pytest.raises(PermanentError, match="incomplete"):
        snapshot_bytes(lines[0])
    with pytest.raises(PermanentError, match="refused"):
        snapshot_bytes(json.dumps({"error": {"message": "permission denied"}}))


def _answers(monkeypatch: pytest.MonkeyPatch, answers: list[Health | Exception]) -> list[int]:
    """Make etcd.health return ``answers`` in turn (the last one for ever); count the asks."""
    asked = [0]

    async def fake_health(conns: object, cp: object) -> Health:
        answer = answers[min(asked[0], len(answers) - 1)]
        asked[0] += 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(etcd, "health", fake_health)
    monkeypatch.setattr(etcd, "HEALTH_POLL", 0.0)
    return asked


def test_a_member_that_catches_up_within_the_wait_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = tuple(parse_members(LISTED))[:2]
    lagging = Health(members, ("lab-cp-0",), ("lab-cp-1",))
    caught_up = Health(members, ("lab-cp-0", "lab-cp-1"), ())
    asked = _answers(monkeypatch, [PermanentError("restarting"), lagging, caught_up])
    state = asyncio.run(
        etcd.require_healthy(None, None, expected=2, step="the end", wait=5.0)  # type: ignore[arg-type]
    )
    assert state == caught_up and asked[0] == 3


def test_a_member_that_stays_unhealthy_refuses_the_step_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = tuple(parse_members(LISTED))[:2]
    asked = _answers(monkeypatch, [Health(members, ("lab-cp-0",), ("lab-cp-1",))])
    with pytest.raises(PermanentError, match=r"not: lab-cp-1.*after 0 s, expected 2 members"):
        asyncio.run(
            etcd.require_healthy(None, None, expected=2, step="the end", wait=0.05)  # type: ignore[arg-type]
        )
    assert asked[0] >= 2  # it asked again before refusing
    asked = _answers(monkeypatch, [Health(members, ("lab-cp-0",), ("lab-cp-1",))])
    with pytest.raises(PermanentError):
        asyncio.run(etcd.require_healthy(None, None, expected=2, step="x"))  # type: ignore[arg-type]
    assert asked[0] == 1  # no wait: one ask
