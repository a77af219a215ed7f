"""How to reach a node over SSH: transport endpoints from the topology or from the store.

Used for ssh-provider hosts and for any recorded node that carries the store conventions of
:mod:`clusterdeck.providers.base` (``ssh_host``, ``ssh_port``, ``ssh_user``, optional
``bastion``, or ``reach: ssm`` for AWS nodes without a public address), so ``clusterdeck exec``
and ``clusterdeck ssh`` work the same for every provider, and which host keys to trust. No I/O.
"""

from __future__ import annotations

from typing import Any

from clusterdeck.errors import UsageError
from clusterdeck.model.records import NODE_PREFIX, ResourceRecord
from clusterdeck.model.topology import Node
from clusterdeck.spec.models import Environment, HostKeyPolicyKind
from clusterdeck.state.store import StateStore
from clusterdeck.transport import Endpoint, SsmRoute
from clusterdeck.transport.hostkeys import HostKeyPolicy, KnownHostsOnly, PinnedHostKeys


def _keys(path: str | None) -> tuple[str, ...]:
    return (path,) if path else ()


def split_host_port(text: str, default_port: int = 22) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def host_key_policy(spec: Environment | None, store: StateStore, environment: str) -> HostKeyPolicy:
    """The spec's host-key policy: pinned on first use (default) or known_hosts files only."""
    auth = spec.spec.auth if spec is not None else None
    if auth is not None and auth.host_key_policy is HostKeyPolicyKind.STRICT:
        return KnownHostsOnly(auth.known_hosts)
    return PinnedHostKeys(store, environment)


def bastion_endpoint(spec: Environment | None, address: str | None = None) -> Endpoint | None:
    """The jump host from the spec (``auth.bastion``) or a recorded ``host[:port]``."""
    auth = spec.spec.auth if spec is not None else None
    configured = auth.bastion if auth is not None else None
    if address is None and (configured is None or configured.address is None):
        return None
    if address is not None:
        host, port = split_host_port(address, configured.port if configured else 22)
    else:
        assert configured is not None and configured.address is not None
        host, port = configured.address, configured.port
    user = (configured.user if configured and configured.user else None) or (
        auth.username if auth is not None else "root"
    )
    key = (configured.private_key if configured and configured.private_key else None) or (
        auth.private_key if auth is not None else None
    )
    return Endpoint(host=host, port=port, user=user, keys=_keys(key), name="bastion")


def node_endpoint(node: Node, spec: Environment) -> Endpoint:
    """The endpoint of an ssh-provider node of the topology."""
    if node.host is None:
        raise UsageError(
            f"node {node.name} has no host address (pool {node.pool}: add it under hosts:)"
        )
    return Endpoint(
        host=node.host.address,
        port=node.host.port,
        user=node.host.user,
        keys=_keys(node.host.key),
        name=node.name,
        jump=bastion_endpoint(spec),
    )


def record_endpoint(record: ResourceRecord, spec: Environment | None) -> Endpoint:
    """The endpoint of a recorded node (any provider), from its store data."""
    data: dict[str, Any] = record.data
    name = record.key.removeprefix(NODE_PREFIX)
    auth = spec.spec.auth if spec is not None else None
    key = data.get("ssh_key") or (auth.private_key if auth is not None else None)
    user = str(data.get("ssh_user") or (auth.username if auth is not None else "root"))
    if data.get("reach") == "ssm":
        route = SsmRoute(
            instance_id=record.provider_id,
            region=str(data.get("region", "")),
            port=int(data.get("ssh_port", 22)),
        )
        return Endpoint(
            host=record.provider_id,
            port=route.port,
            user=user,
            keys=_keys(key),
            name=name,
            ssm=route,
        )
    host = data.get("ssh_host") or data.get("public_ip") or data.get("private_ip")
    if not host:
        raise UsageError(
            f"node {name} has no address recorded yet (state "
            f"{data.get('state', 'unknown')}); run create again"
        )
    bastion = data.get("bastion")
    jump = bastion_endpoint(spec, str(bastion)) if bastion else bastion_endpoint(spec)
    return Endpoint(
        host=str(host),
        port=int(data.get("ssh_port", 22)),
        user=user,
        keys=_keys(key),
        name=name,
        jump=jump,
    )
