"""What already exists, as seen by the providers and the state store.

The planner diffs the topology against this; an empty Observed means "nothing exists yet",
which is what ``plan`` shows for a new environment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ObservedNode(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    provider_id: str | None = None
    instance_type: str | None = None
    state: str = "unknown"
    phases_done: list[str] = Field(default_factory=list)


class Observed(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodes: dict[str, ObservedNode] = Field(default_factory=dict)
    resources: dict[str, str] = Field(default_factory=dict)  # logical key -> provider ID

    @classmethod
    def nothing(cls) -> Observed:
        return cls()
