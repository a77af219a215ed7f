"""The contract every infrastructure provider fulfils, and how providers are looked up.

A provider observes, creates and deletes what its pools need (machines, network, load
balancer for aws; registration of existing hosts for ssh). It records every resource in the
store the moment it exists, emits events, and raises only clusterdeck errors. Capability flags
say what it can do: the ssh provider cannot create or delete machines.

Store conventions every provider follows, so ``status`` and later stages can read them:
- a node is recorded under key ``node/<node name>``, kind ``instance`` (aws) or ``host`` (ssh),
  provider_id the instance ID or the host address, and ``data`` with at least
  ``role``, ``pool``, ``private_ip``, ``public_ip`` (or None), ``ssh_host``, ``ssh_port``,
  ``ssh_user`` and ``state``;
- the API endpoint, once known, goes to the environment's outputs as ``endpoint``
  (``https://host:port``); other outputs: ``region``, ``bastion`` ("host:port") when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from clusterdeck.events import EventSink
from clusterdeck.model.observed import Observed
from clusterdeck.model.plan import Plan
from clusterdeck.model.records import ResourceRecord
from clusterdeck.model.topology import Node, Topology
from clusterdeck.spec.models import Environment
from clusterdeck.state.store import StateStore


@dataclass(frozen=True)
class Capabilities:
    creates_machines: bool
    load_balancer: bool


@dataclass
class InfraResult:
    """What a provider's apply produced: the nodes now reachable, and anything left to do."""

    ready: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node or resource -> reason


@dataclass
class ApplyContext:
    """Everything a provider needs for one run; ``nodes`` are the topology's nodes it owns."""

    environment: str
    plan: Plan
    topology: Topology
    nodes: list[Node]
    store: StateStore
    events: EventSink
    spec: Environment


class InfraProvider(Protocol):
    name: str
    capabilities: Capabilities

    def observe(self, ctx: ApplyContext) -> Observed: ...

    def apply(self, ctx: ApplyContext) -> InfraResult: ...

    def destroy(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        resources: list[ResourceRecord],
    ) -> list[str]:
        """Delete everything this provider made for the environment; return what is left."""
        ...

    def machines_gone(
        self, environment: str, store: StateStore, records: list[ResourceRecord]
    ) -> list[str]:
        """The record keys among ``records`` whose machines no longer exist (aws: no live
        instance with the recorded ID carries the environment's tags, e.g. a reclaimed spot
        instance). An ssh host is the user's: whether it answers is the cluster's to say."""
        ...

    def release(
        self,
        environment: str,
        store: StateStore,
        events: EventSink,
        records: list[ResourceRecord],
    ) -> None:
        """Let these nodes' machines go (day-2 removal, after they left the cluster): aws
        terminates the instances; ssh forgets the hosts, which stay the user's."""
        ...
