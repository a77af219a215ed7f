"""Record a stateless environment when its boot material is written, so the verbs that read a
running cluster (``get kubeconfig``, ``status --live``, ``delete``) know it.

Why it exists: clusterdeck never creates stateless nodes (they boot from a PXE server and
bootstrap themselves), so ``create``'s record is never made for them. ``pxe render`` records
the file and each node's declared address instead; the nodes are reached over SSH, as the
file's ``auth`` says, only to read from them.
"""

from __future__ import annotations

from clusterdeck.api.recorded import effective_spec
from clusterdeck.errors import UsageError
from clusterdeck.model.records import NODE_PREFIX
from clusterdeck.model.topology import Topology
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore

STATELESS_STATUS = "stateless"


def refuse_another(env: Environment, store: StateStore) -> None:
    """Refuse to record over an environment of the same name that ``create`` made."""
    before = store.environment(env.name)
    if before is not None and not before.spec.get("spec", {}).get("ephemeral"):
        raise UsageError(
            f"{env.name}: an environment of that name exists and is not stateless (made by "
            "create); delete it first or give this file another metadata.name"
        )


def record_rendered(env: Environment, topology: Topology, store: StateStore) -> None:
    """Record ``env`` and its nodes as rendered boot material (again: replaced whole)."""
    with store.lock(env.name, "pxe render"):
        refuse_another(env, store)
        store.save_environment(env.name, env.spec.provider.value, effective_spec(env, None))
        wanted = set()
        for node in topology.nodes:
            assert node.host is not None  # a stateless node is a declared host
            key = f"{NODE_PREFIX}{node.name}"
            wanted.add(key)
            store.record_resource(
                env.name,
                key,
                "host",
                node.host.address,
                {
                    "provider": "ssh",
                    "role": node.role.value,
                    "pool": node.pool,
                    "private_ip": node.host.address,
                    "ssh_host": node.host.address,
                    "ssh_port": node.host.port,
                    "state": STATELESS_STATUS,
                },
            )
        for old in store.resources(env.name):
            if old.key not in wanted:  # a node the file no longer has
                store.mark_deleted(env.name, old.key)
        store.set_status(env.name, STATELESS_STATUS)
