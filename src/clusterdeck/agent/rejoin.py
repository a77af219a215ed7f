"""A stateless node's next boot: its leftovers removed, with quorum, before it joins again.

A node that booted from RAM comes back with nothing: its old Node object and, for a control
plane, its old etcd member are still in the cluster, and ``kubeadm join`` would clash with
them. The node cannot remove them itself (it has no credentials yet), so it asks through the
coordination point and a live control plane, the steward, answers:

- ``rejoin-NAME`` (the node's request): its boot, its address.
- ``rejoined-NAME`` (the steward's answer for that boot): ``done``, with the etcd member it
  removed (by exact ID, found by exact name and peer address, in :mod:`clusterdeck.etcd`, the
  code the day-2 shrink uses) and whether it deleted the Node (its exact name and address); or
  ``refused``, with the reason. Without quorum nothing is removed: the answer says so, and the
  node reports it and waits, asking again, until a member comes back.
- ``node-NAME`` (the node's report, :mod:`clusterdeck.coordination.reports`, what
  ``clusterdeck status --live`` reads even when the API is down): boot count, state, last join
  and rejoin, the refusal and its reason, last events.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterdeck import etcd
from clusterdeck.agent.local import LocalRunner, Log
from clusterdeck.coordination.base import Coordinator
from clusterdeck.coordination.reports import Report, read, save
from clusterdeck.errors import PermanentError
from clusterdeck.transport import Endpoint

ADMIN = "/etc/kubernetes/admin.conf"
ASK_EVERY = 3.0  # seconds between looks at the steward's answer


def request_key(name: str) -> str:
    return f"rejoin-{name}"


def answer_key(name: str) -> str:
    return f"rejoined-{name}"


BOOT_MARK = Path("/run/clusterdeck/boot")  # in RAM: gone at a reboot, kept by a restart
LEFT_SOMETHING = ("joining", "joined", "initialised", "waiting", "refused")
NO_STEWARD_PERIODS = 3  # lease periods without a steward before the wait is reported


def this_boot(mark: Path = BOOT_MARK) -> tuple[str, bool]:
    """This boot's identity, and True when the agent already ran in it (a restart of the
    service, not a reboot: the mark lives in /run, which a reboot empties)."""
    try:
        return mark.read_text().strip(), True
    except FileNotFoundError:
        pass
    mark.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    boot = uuid.uuid4().hex
    mark.write_text(boot + "\n")
    return boot, False


def start_boot(coord: Coordinator, name: str, boot: str) -> tuple[Report, bool]:
    """Count this boot; True when an earlier boot may have left a Node or an etcd member
    behind (it joined, or got as far as joining). A restart of the agent in the same boot is
    not counted; it asks again only if it was waiting for its cleanup when it stopped."""
    report = read(coord, name) or Report(name)
    if report.boot == boot:
        return report, report.state in ("waiting", "refused")
    left = report.joined_at is not None or report.state in LEFT_SOMETHING
    report.boots += 1
    report.boot = boot
    report.state, report.refusal = "booting", None
    report.event("boot", f"boot {report.boots}")
    save(coord, report)
    return report, left


def ask_cleanup(
    coord: Coordinator,
    report: Report,
    address: str,
    log: Log,
    *,
    lease_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Ask the steward to remove this node's leftovers and wait for its ``done``; a refusal
    is reported (log, report, event) and waited out: the request stands, the steward retries."""
    request = {"boot": report.boot, "address": address, "at": time.time()}
    coord.put(request_key(report.name), json.dumps(request).encode())
    log(
        f"{report.name}: rebooted (boot {report.boots}); asking a control plane to remove the "
        "old Node and etcd member before joining again"
    )
    report.state = "waiting"
    save(coord, report)
    told = ""
    no_steward_since = time.monotonic()
    while True:
        raw = coord.get(answer_key(report.name))
        answer = json.loads(raw) if raw else {}
        if coord.leader("steward") is not None:
            no_steward_since = time.monotonic()
        elif time.monotonic() - no_steward_since > NO_STEWARD_PERIODS * lease_seconds:
            waited = NO_STEWARD_PERIODS * lease_seconds
            reason = (
                f"no control plane has served as steward for {waited:.0f} s, so none can remove "
                "this node's leftovers: waiting for one (if every control plane rebooted, "
                "etcd's data is gone and the cluster must be reset: clear the shared directory "
                "and reboot every node)"
            )
            answer = {"boot": report.boot, "result": "refused", "reason": reason}
        if answer.get("boot") == report.boot:
            if answer.get("result") == "done":
                if report.refusal is not None:
                    report.event("rejoin", "the refusal is over: leftovers removed")
                report.refusal = None
                report.state = "joining"
                save(coord, report)
                return answer
            reason = str(answer.get("reason", "refused"))
            if reason != told:
                log(f"{report.name}: rejoin refused, waiting: {reason}")
                report.state, report.refusal = "refused", reason
                report.event("refused", reason)
                save(coord, report)
                told = reason
        sleep(ASK_EVERY)


def joined(coord: Coordinator, report: Report, *, rejoin: bool, state: str = "joined") -> None:
    now = time.time()
    report.state, report.joined_at, report.refusal = state, now, None
    if rejoin:
        report.last_rejoin = now
    report.event(state, "rejoined after a reboot" if rejoin else state)
    save(coord, report)


# the steward's side ---------------------------------------------------------------------------


def _kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={ADMIN}", "--request-timeout=10s", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def remove_node(name: str, address: str) -> bool:
    """Delete Node ``name`` if it is this machine's: its InternalIP is exactly ``address``."""
    found = _kubectl("get", "node", name, "-o", "json", "--ignore-not-found")
    if found.returncode != 0:
        raise PermanentError(
            f"the API server did not answer about Node {name}: {found.stderr.strip()}"
        )
    if not found.stdout.strip():
        return False
    addresses = {
        a.get("address")
        for a in json.loads(found.stdout).get("status", {}).get("addresses", [])
        if a.get("type") == "InternalIP"
    }
    if address not in addresses:
        raise PermanentError(
            f"Node {name} has the address {', '.join(sorted(addresses)) or 'none'}, not "
            f"{address}: it may be another machine's, not removed"
        )
    gone = _kubectl("delete", "node", name, "--wait=true", "--ignore-not-found")
    if gone.returncode != 0:
        raise PermanentError(f"deleting Node {name} failed: {gone.stderr.strip()}")
    return True


def clean_up(
    name: str, address: str, control_plane: bool, local: Endpoint, log: Log
) -> dict[str, Any]:
    """Remove node ``name``'s leftovers from here (a live control plane); PermanentError when
    it must not (quorum would be lost, or the leftovers are another machine's)."""
    removed_member = None
    if control_plane:
        runner = LocalRunner()

        async def remove() -> int | None:
            try:
                state = await etcd.health(runner, local)
            except PermanentError as exc:
                raise PermanentError(
                    f"etcd does not answer here, so quorum cannot be confirmed (quorum lost?): "
                    f"{exc}; nothing was removed"
                ) from None
            member = etcd.leaving_member(list(state.members), name, address)
            await etcd.remove_member(runner, local, name, address, log)
            return member.id if member else None

        member_id = asyncio.run(remove())
        removed_member = f"{member_id:x}" if member_id is not None else None
    removed_node = remove_node(name, address)
    return {"member": removed_member, "node_removed": removed_node}


def serve_requests(
    nodes: dict[str, tuple[str, bool]],
    coord: Coordinator,
    local: Endpoint,
    log: Log,
    still_steward: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Answer every standing rejoin request (``nodes``: name → (address, control plane));
    returns the names answered ``done`` now. Nothing is removed once ``still_steward`` says
    the lease was lost (another steward may be answering the same request)."""
    done = []
    for name, (address, control_plane) in nodes.items():
        if not still_steward():
            break
        raw = coord.get(request_key(name))
        if raw is None:
            continue
        request = json.loads(raw)
        old = coord.get(answer_key(name))
        answer = json.loads(old) if old else {}
        if answer.get("boot") == request["boot"] and answer.get("result") == "done":
            continue
        if request.get("address") != address:
            reason = (
                f"the request came from {request.get('address')}, but {name} is {address}: refused"
            )
            coord.put(
                answer_key(name),
                json.dumps(
                    {"boot": request["boot"], "result": "refused", "reason": reason}
                ).encode(),
            )
            continue
        try:
            removed = clean_up(name, address, control_plane, local, log)
        except PermanentError as exc:
            reason = str(exc)
            if reason != answer.get("reason"):
                log(f"steward: not removing {name}'s leftovers: {reason}")
            result = {"boot": request["boot"], "result": "refused", "reason": reason}
        else:
            log(
                f"steward: {name}'s leftovers removed (etcd member {removed['member'] or 'none'}, "
                f"Node {'deleted' if removed['node_removed'] else 'absent'})"
            )
            result = {"boot": request["boot"], "result": "done", **removed}
            done.append(name)
        coord.put(answer_key(name), json.dumps({**result, "at": time.time()}).encode())
    return done
