"""What ``apply`` found running and what it will change: the day-2 plan as data.

Why it exists: ``apply`` shows the user each action with its reason, asks, and then runs exactly
those actions; the plan shown, the JSON printed and the executor all read this one value. A run
stopped midway needs no journal of its own: the next ``apply`` observes the nodes again (the
store's records and the cluster's Nodes) and plans only what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

WORKER = "worker"


class ChangeKind(StrEnum):
    ADD = "add"  # a new machine joins (a worker, or a control plane: etcd grows by one)
    REMOVE = "remove"  # cordon, drain, delete the Node, reset the host
    UPGRADE = "upgrade"  # the node's kubeadm step, then its kubelet (workers drained first)


@dataclass(frozen=True)
class RunningNode:
    """A node the environment has: its record in the store, and whether the cluster has it."""

    name: str
    role: str
    pool: str
    provider: str
    address: str | None  # the ssh host it runs on, when recorded
    present: bool  # the API server lists its Node (--infra-only: its machine is recorded)
    ready: bool = False
    kubelet_version: str = ""
    machine_gone: bool = False  # the provider has no machine for its record any more


@dataclass(frozen=True)
class NodeChange:
    kind: ChangeKind
    node: str
    role: str
    pool: str
    reason: str
    replaces: str | None = None  # an added node that takes the place of a removed one
    wave: int | None = None  # additions of one rolling wave join together

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "kind": self.kind.value,
            "target": self.node,
            "role": self.role,
            "pool": self.pool,
            "reason": self.reason,
            "replaces": self.replaces,
            "wave": self.wave,
        }


@dataclass(frozen=True)
class ApplyPlan:
    """The changes, in the order they run, and what apply refuses (then nothing runs)."""

    environment: str
    changes: tuple[NodeChange, ...]
    refused: tuple[str, ...]
    resumes: str | None = None  # what an earlier, killed apply was doing when it stopped

    @property
    def empty(self) -> bool:
        return not self.changes and not self.refused

    def of_kind(self, kind: ChangeKind) -> list[NodeChange]:
        return [c for c in self.changes if c.kind is kind]

    def batches(self) -> list[tuple[ChangeKind, list[NodeChange]]]:
        """How the changes run: consecutive worker additions of one wave (or of none: a pool
        that grows) join together in one bootstrap; a
        control plane joins alone (etcd grows one member at a time, checked before and after);
        removals drain one node after another; an upgrade is one run over its nodes (kubeadm
        on every control plane before any kubelet)."""
        runs: list[tuple[ChangeKind, list[NodeChange]]] = []
        for change in self.changes:
            last = runs[-1][1][-1] if runs else None
            if last is not None and _run_together(last, change):
                runs[-1][1].append(change)
            else:
                runs.append((change.kind, [change]))
        return runs


def _run_together(last: NodeChange, change: NodeChange) -> bool:
    if last.kind is not change.kind:
        return False
    if change.kind is ChangeKind.UPGRADE:
        return True
    return (
        change.kind is ChangeKind.ADD and WORKER == last.role == change.role
    ) and last.wave == change.wave
