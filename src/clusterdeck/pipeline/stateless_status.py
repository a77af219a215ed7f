"""Read the stateless nodes' own reports from the coordination point, over SSH from any node.

Why it exists: ``status --live`` must tell what a stateless node is doing (its boots, its last
rejoin, a refusal and why) exactly when the API cannot: with quorum lost. Every node mounts the
shared directory, so the first node that answers is enough; nothing there is a secret (the join
material is in ``secrets/``, which this never reads).
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import PurePosixPath
from typing import Any

from clusterdeck.coordination.reports import PREFIX, Report, parse
from clusterdeck.coordination.shared_dir import RECORDS
from clusterdeck.errors import PermanentError, TransientError
from clusterdeck.model.topology import Topology
from clusterdeck.pipeline.targets import Target
from clusterdeck.providers.ssh.access import host_key_policy
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Command, Connections


def read_command(env: Environment) -> Command:
    """Print every node report of ``env``, one JSON document per line."""
    assert env.spec.ephemeral is not None
    records = PurePosixPath(env.spec.ephemeral.shared_directory) / env.name / RECORDS
    pattern = f"{shlex.quote(str(records))}/{PREFIX}*"
    script = f'for f in {pattern}; do [ -f "$f" ] && {{ cat "$f"; echo; }}; done; true'
    return Command(["sh", "-c", script], name="node reports", root=True)


def parse_reports(text: str, names: list[str]) -> list[dict[str, Any]]:
    """The reports of the topology's nodes, in its order; a node without one never booted."""
    found: dict[str, Report] = {}
    for line in text.splitlines():
        if line.strip():
            report = parse(line)
            found[report.name] = report
    rows = []
    for name in names:
        known = found.get(name)
        rows.append(
            {
                "name": name,
                "reported": known is not None,
                "state": known.state if known else "never booted",
                "boots": known.boots if known else 0,
                "joined_at": known.joined_at if known else None,
                "last_rejoin": known.last_rejoin if known else None,
                "refusal": known.refusal if known else None,
                "updated": known.updated if known else None,
                "events": known.events if known else [],
            }
        )
    return rows


def node_reports(
    env: Environment, store: StateStore, topology: Topology, targets: dict[str, Target]
) -> dict[str, Any]:
    """``{"read_from": node, "nodes": rows}`` from the first node that answers (control planes
    first); PermanentError naming every node tried when none does."""
    names = [n.name for n in topology.nodes]
    order = [n.name for n in topology.control_planes()] + [n.name for n in topology.workers()]

    async def go() -> dict[str, Any]:
        tried = []
        async with Connections(host_keys=host_key_policy(env, store, env.name)) as conns:
            for name in order:
                try:
                    res = await conns.run(targets[name].endpoint, read_command(env), timeout=20)
                    rows = parse_reports(res.stdout, names)
                except (TransientError, PermanentError, ValueError) as exc:
                    tried.append(f"{name}: {exc}")
                    continue
                return {"read_from": name, "nodes": rows}
        raise PermanentError("no stateless node answered for its reports: " + "; ".join(tried))

    return asyncio.run(go())
