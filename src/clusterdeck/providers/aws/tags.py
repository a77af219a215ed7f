"""Ownership tags: how clusterdeck recognises its own AWS resources without the state store.

Why it exists: observe, resume and ``cleanup`` find resources by these tags alone, so a lost
state file never means a leak and a crashed create never makes duplicates. Every resource is
tagged in the create call itself (``TagSpecifications`` / ``Tags``), never afterwards, so there
is no moment where something we made exists untagged.

- ``clusterdeck.dev/environment``: the environment name;
- ``clusterdeck.dev/managed``: ``true``;
- ``clusterdeck.dev/key``: the plan's logical key (``vpc``, ``subnet/public/us-west-2a``,
  ``instances/workers/us-west-2a`` ...), which maps a found resource back to the plan;
- ``Name``, and ``clusterdeck.dev/role`` / ``clusterdeck.dev/pool`` where they apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef, TagTypeDef

ENVIRONMENT = "clusterdeck.dev/environment"
MANAGED = "clusterdeck.dev/managed"
KEY = "clusterdeck.dev/key"
ROLE = "clusterdeck.dev/role"
POOL = "clusterdeck.dev/pool"
NAME = "Name"


def tags(environment: str, key: str, name: str, **extra: str) -> list[TagTypeDef]:
    """Our tags for one resource; ``extra`` keys are ``role``/``pool`` or full tag keys."""
    values = {ENVIRONMENT: environment, MANAGED: "true", KEY: key, NAME: name}
    for k, v in extra.items():
        values[{"role": ROLE, "pool": POOL}.get(k, k)] = v
    return [{"Key": k, "Value": v} for k, v in values.items()]


def spec(resource_type: ResourceTypeType, tag_list: list[TagTypeDef]) -> TagSpecificationTypeDef:
    return {"ResourceType": resource_type, "Tags": tag_list}


def env_filter(environment: str) -> list[FilterTypeDef]:
    """The EC2 describe filter matching everything of one environment."""
    return [
        {"Name": f"tag:{ENVIRONMENT}", "Values": [environment]},
        {"Name": f"tag:{MANAGED}", "Values": ["true"]},
    ]


def as_dict(tag_list: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tag_list or []}


def owned_by(tag_map: Mapping[str, str], environment: str) -> bool:
    return tag_map.get(ENVIRONMENT) == environment and tag_map.get(MANAGED) == "true"
