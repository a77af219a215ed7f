"""The plan: typed data saying what clusterdeck would build or change, and why.

The planner produces it from (Topology, Observed) without I/O; the CLI renders it as tables
or JSON; executors consume its actions. Nothing here knows how to call a cloud.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class SourceKind(StrEnum):
    CIDR = "cidr"
    CALLER = "caller-ip"  # the caller's public IP, found at create time (never 0.0.0.0/0)
    SECURITY_GROUP = "security-group"
    SELF = "self"


class RuleSource(Item):
    kind: SourceKind
    value: str  # a CIDR, a security-group logical name, or a description

    def __str__(self) -> str:
        return {
            SourceKind.CIDR: self.value,
            SourceKind.CALLER: "caller public IP",
            SourceKind.SECURITY_GROUP: f"SG {self.value}",
            SourceKind.SELF: f"SG {self.value} (self)",
        }[self.kind]


class SecurityGroupRule(Item):
    protocol: str  # tcp | udp | icmp
    from_port: int  # -1 for ICMP
    to_port: int
    sources: list[RuleSource]
    purpose: str

    @property
    def ports(self) -> str:
        if self.protocol == "icmp":
            return "-"
        return (
            str(self.from_port)
            if self.from_port == self.to_port
            else f"{self.from_port}-{self.to_port}"
        )


class SecurityGroupPlan(Item):
    key: str  # logical key, e.g. "sg/control-plane"
    name: str
    role: str
    rules: list[SecurityGroupRule]


class ResourcePlan(Item):
    """One cloud resource: ``key`` is stable across runs and is what ownership tags carry."""

    key: str
    kind: str
    name: str
    details: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)


class InstanceGroupPlan(Item):
    """Instances launched by one RunInstances call: one pool in one zone."""

    key: str
    pool: str
    role: str
    zone: str
    instance_type: str
    count: int
    nodes: list[str]
    market: str = "on-demand"
    spot_price: str | None = None
    root_volume_gb: int = 64
    public_ip: bool = True
    subnet: str = ""
    security_group: str = ""
    instance_profile: str | None = None  # IAM instance profile (SSM) for nodes with no public IP
    reach: str = "ssh"  # how clusterdeck logs in: ssh (direct or through the bastion) | ssm
    # what each instance is launched as (Node.machine), recorded with it: apply replaces an
    # instance whose recorded machine is not what the file asks for
    machine: dict[str, str | int | None] = {}


class LoadBalancerPlan(Item):
    kind: str  # nlb | keepalived
    name: str
    listener_port: int
    target_port: int
    targets: list[str]
    health_check: str
    target_group: str | None = None
    # NLB: a second, internal load balancer the nodes use (client IP preservation off)
    internal_name: str | None = None
    internal_target_group: str | None = None


class Endpoint(Item):
    kind: str  # nlb | vip | control-plane
    host: str  # an address, or a description when only known after create
    port: int
    known: bool  # False when the address exists only after create (NLB DNS, public IP)

    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


class NodePlan(Item):
    name: str
    role: str
    pool: str
    provider: str
    zone: str | None
    address: str | None
    labels: dict[str, str]
    taints: list[str]
    phases: list[str]
    # amd64 or arm64 (aws: from the instance type); None: an ssh host, known from its facts
    arch: str | None = None
    # spec.overlay: the node's site, and how the overlay reaches it (direct, relay, nat)
    site: str | None = None
    overlay: str | None = None


class ActionKind(StrEnum):
    CREATE = "create"
    DELETE = "delete"
    REPLACE = "replace"
    UPGRADE = "upgrade"
    NOOP = "no-op"


class Action(Item):
    kind: ActionKind
    target: str  # a node name or a resource key
    reason: str


class Plan(Item):
    environment: str
    provider: str
    endpoint: Endpoint
    control_plane_untainted: bool
    untainted_reason: str
    network_mode: str | None = None
    # AWS drops packets an instance sends or receives for addresses not its own unless its
    # interfaces' source/destination check is off: only unencapsulated pod traffic needs that
    source_dest_check_off: bool = False
    resources: list[ResourcePlan] = Field(default_factory=list)
    security_groups: list[SecurityGroupPlan] = Field(default_factory=list)
    instance_groups: list[InstanceGroupPlan] = Field(default_factory=list)
    load_balancer: LoadBalancerPlan | None = None
    nodes: list[NodePlan] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    # False: the machines exist (created with --infra-only) but Kubernetes is not installed
    kubernetes_installed: bool | None = None

    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind is not ActionKind.NOOP]
