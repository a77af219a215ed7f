"""What the store records of an environment, read the way create, apply and status all need it.

Why it exists: the day-2 flow and the create flow agree on one reading of the records: which
status means Kubernetes is installed, the name each recorded node has (it follows its host or
machine through edits of the file), what exists, and the spec as it is recorded.
"""

from __future__ import annotations

from typing import Any

from clusterdeck.model.observed import Observed, ObservedNode
from clusterdeck.model.records import NODE_PREFIX, EnvironmentRecord
from clusterdeck.planner.expand import HostIdentity, NodeNames, RecordedMachine
from clusterdeck.spec.models import Environment, Provider
from clusterdeck.state.store import StateStore

INFRA_ONLY_STATUS = "infra-ready"  # what a create with --infra-only leaves
READY_STATUS = "ready"
# while apply runs (and after one was killed, until apply runs again): the settled status it
# came from stays readable, so a re-run knows which kind of environment it resumes
APPLYING = {READY_STATUS: "applying", INFRA_ONLY_STATUS: "applying-infra-only"}


def settled_status(status: str) -> str:
    """The status an environment has apart from an apply in progress."""
    return next((done for done, busy in APPLYING.items() if busy == status), status)


def kubernetes_installed(record: EnvironmentRecord) -> bool | None:
    """False after an --infra-only create (machines, no Kubernetes); True once a create has
    bootstrapped it; None when the store cannot tell (a create still running or failed)."""
    status = settled_status(record.status)
    if status == INFRA_ONLY_STATUS:
        return False
    if status in (READY_STATUS, "bootstrap-failed"):
        return True
    return None


def recorded_names(store: StateStore, environment: str) -> NodeNames:
    """The names recorded nodes have: an ssh host's follows the host through edits, an aws
    node's follows its machine."""
    hosts: dict[HostIdentity, str] = {}
    machines: dict[str, RecordedMachine] = {}
    for res in store.resources(environment):
        if not res.key.startswith(NODE_PREFIX):
            continue
        data, name = res.data, res.key[len(NODE_PREFIX) :]
        provider = data.get("provider")
        if provider == Provider.SSH.value and data.get("ssh_host"):
            key = (str(data.get("pool")), str(data["ssh_host"]), int(data.get("ssh_port") or 22))
            hosts[key] = name
        elif provider == Provider.AWS.value:
            machine = data.get("machine")
            machines[name] = RecordedMachine(
                str(data.get("pool")), dict(machine) if isinstance(machine, dict) else None
            )
    return NodeNames(hosts=hosts, machines=machines)


def observed_from_store(store: StateStore, environment: str) -> Observed:
    nodes: dict[str, ObservedNode] = {}
    resources: dict[str, str] = {}
    for res in store.resources(environment):
        if res.key.startswith(NODE_PREFIX):
            name = res.key[len(NODE_PREFIX) :]
            nodes[name] = ObservedNode(
                name=name,
                provider_id=res.provider_id,
                instance_type=res.data.get("instance_type"),
                state=str(res.data.get("state", "recorded")),
            )
        else:
            resources[res.key] = res.provider_id
    return Observed(nodes=nodes, resources=resources)


def effective_spec(env: Environment, dedicated: bool | None) -> dict[str, Any]:
    """The spec as recorded: the file, plus the answer to the dedicated prompt if one was given,
    so later plans and status agree with what was built."""
    data: dict[str, Any] = env.model_dump(mode="json", by_alias=True)
    if dedicated is not None:
        data["spec"]["cluster"]["controlPlane"]["dedicated"] = dedicated
    return data
