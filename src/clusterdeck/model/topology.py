"""Every node the environment should have: the spec expanded into concrete machines.

Built by :func:`clusterdeck.planner.expand.expand`; everything downstream (plan, providers,
bootstrap, status) works from this list and never re-reads the spec's shorthand forms.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

GPU_FAMILIES = ("g", "p")  # the aws instance families with NVIDIA GPUs


class Role(StrEnum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class HostRef(Record):
    """An existing machine reached over SSH (ssh provider)."""

    address: str
    user: str
    port: int = 22
    key: str | None = None


class SpotRequest(Record):
    """How a spot node is priced: no limit (on-demand cap), a percent, or a USD price."""

    max_price_percent: int | None = None
    max_price: str | None = None


class OverlayPlace(Record):
    """A node's place in the overlay's topology: its site, and whether it is behind NAT
    (reached only through a relay) or relays for those that are."""

    site: str
    nat: bool = False
    relay: bool = False


class Node(Record):
    name: str
    role: Role
    pool: str
    index: int
    provider: str
    zone: str | None = None
    instance_type: str | None = None
    root_volume_gb: int | None = None
    spot: SpotRequest | None = None
    labels: dict[str, str]
    taints: list[str]
    host: HostRef | None = None
    image: str | None = None  # aws: the AMI ID the file names, or its OS image
    first_control_plane: bool = False
    overlay: OverlayPlace | None = None  # with spec.overlay: where the node sits on it

    def machine(self) -> dict[str, str | int | None]:
        """The settings an aws instance is launched with and cannot change in place: a node
        whose recorded machine differs from this is replaced, not modified."""
        spot = self.spot
        return {
            "instance_type": self.instance_type,
            "image": self.image,
            "root_volume_gb": self.root_volume_gb,
            "zone": self.zone,
            "market": "spot" if spot is not None else "on-demand",
            "spot_max_price": (spot.max_price or spot.max_price_percent) if spot else None,
        }

    @property
    def gpu_instance(self) -> bool:
        """An aws instance of a GPU family (g*, p*). Whether an ssh host has a GPU is known
        only from its facts."""
        return self.provider == "aws" and (self.instance_type or " ")[0] in GPU_FAMILIES


class Topology(Record):
    environment: str
    nodes: list[Node]
    control_plane_untainted: bool
    untainted_reason: str

    def control_planes(self) -> list[Node]:
        return [n for n in self.nodes if n.role is Role.CONTROL_PLANE]

    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role is Role.WORKER]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def pools(self) -> dict[str, list[Node]]:
        grouped: dict[str, list[Node]] = {}
        for node in self.nodes:
            grouped.setdefault(node.pool, []).append(node)
        return grouped
