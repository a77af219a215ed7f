"""The AWS provider: VPC, subnets, gateways, security groups, instances and an NLB via boto3.

Modules by resource family: ``session`` (clients), ``errors`` (the one place botocore errors
are translated), ``tags`` and ``observe`` (ownership and discovery), ``preflight``,
``images``, ``pricing``, ``network``, ``security``, ``compute``, ``loadbalancer``,
``delete``, ``caller_ip``; ``provider`` sequences them. Import cost stays here: the registry
imports this package only for environments with aws pools.
"""

from __future__ import annotations

from clusterdeck.providers.aws.provider import AwsProvider, cleanup, find, recorded_region

__all__ = ["AwsProvider", "cleanup", "find", "provider", "recorded_region"]


def provider() -> AwsProvider:
    return AwsProvider()
