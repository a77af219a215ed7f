"""Rows of the state store: environments, resources, events and pinned host keys.

Secrets never appear here: specs hold key *paths*, never key material, and events carry
masked messages only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Nodes are recorded under this key prefix (``node/<node name>``) by every provider.
NODE_PREFIX = "node/"
# A node's place on the overlay (``overlay/<node name>``): its address, its public key (the
# private key never leaves the node) and its pod range, once known.
OVERLAY_PREFIX = "overlay/"
OVERLAY_KIND = "overlay-member"


class Row(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class EnvironmentRecord(Row):
    name: str
    provider: str
    spec: dict[str, Any]
    status: str = "planned"
    outputs: dict[str, Any] = Field(default_factory=dict)  # endpoint, region, ... (no secrets)
    created_at: float
    updated_at: float


class ResourceRecord(Row):
    environment: str
    key: str  # logical key from the plan, e.g. "vpc", "sg/worker", "node/gpu-lab-cp-0"
    kind: str
    provider_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    deleted_at: float | None = None


class EventRecord(Row):
    id: int
    environment: str
    subject: str
    step: str
    kind: str
    message: str = ""
    started_at: float
    ended_at: float | None = None


class HostKeyRecord(Row):
    environment: str
    host: str
    port: int
    key_type: str
    public_key: str
    pinned_at: float
