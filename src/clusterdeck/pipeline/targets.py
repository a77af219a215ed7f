"""Where each node is and how to log in, read from the providers' ``node/<name>`` records.

The only provider knowledge the pipeline has: ``ssh_host``, ``ssh_port``, ``ssh_user`` and
the addresses in each record, the key from the spec, a ``bastion`` output when there is
one, and ``reach: ssm`` for nodes reached through a Systems Manager session. Anything
missing is a clear error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterdeck.errors import NotFoundError, UsageError
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.model.topology import Node, Topology
from clusterdeck.spec.models import Environment
from clusterdeck.transport import Endpoint, SsmRoute


@dataclass(frozen=True)
class Target:
    node: Node
    endpoint: Endpoint


def _keys(path: str | None) -> tuple[str, ...]:
    return (path,) if path else ()


def targets(
    env: Environment, topology: Topology, records: list[ResourceRecord], outputs: dict[str, Any]
) -> dict[str, Target]:
    by_name = {
        r.key[len(NODE_PREFIX) :]: r
        for r in records
        if r.key.startswith(NODE_PREFIX) and r.deleted_at is None
    }
    auth = env.spec.auth
    jump = None
    bastion = outputs.get("bastion") or (auth.bastion.address if auth.bastion else None)
    if bastion:
        host, _, port = str(bastion).rpartition(":") if ":" in str(bastion) else (bastion, "", "")
        b = auth.bastion
        jump = Endpoint(
            host=str(host),
            port=int(port or (b.port if b else 22)),
            user=(b.user if b and b.user else auth.username),
            keys=_keys(b.private_key if b and b.private_key else auth.private_key),
            name="bastion",
        )
    found: dict[str, Target] = {}
    missing = [n.name for n in topology.nodes if n.name not in by_name]
    if missing:
        raise NotFoundError(
            f"no machine recorded for {', '.join(missing)}: run create "
            "again so the provider records them"
        )
    for node in topology.nodes:
        data = by_name[node.name].data
        host = data.get("ssh_host") or data.get("public_ip") or data.get("private_ip")
        if not host:
            raise UsageError(f"node {node.name}: its record has no ssh_host or address")
        key = node.host.key if node.host and node.host.key else auth.private_key
        if data.get("reach") == "ssm":
            # an SSM session to the instance's own sshd: no bastion, no open SSH port; the
            # SSH inside it (host key pinning included) is the same as for a direct login
            route = SsmRoute(
                instance_id=by_name[node.name].provider_id,
                region=str(data.get("region", "")),
                port=int(data.get("ssh_port") or 22),
            )
            found[node.name] = Target(
                node,
                Endpoint(
                    host=route.instance_id,
                    port=route.port,
                    user=str(data.get("ssh_user") or auth.username),
                    keys=_keys(key),
                    name=node.name,
                    ssm=route,
                ),
            )
            continue
        found[node.name] = Target(
            node,
            Endpoint(
                host=str(host),
                port=int(data.get("ssh_port") or 22),
                user=str(data.get("ssh_user") or auth.username),
                keys=_keys(key),
                name=node.name,
                jump=jump,
            ),
        )
    return found
