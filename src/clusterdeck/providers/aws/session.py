"""boto3 clients for one region, built from the standard credential chain and settings.

Why it exists: every AWS call clusterdeck makes goes through clients made here, so the
credential chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``..., instance roles), the endpoint
override (``AWS_ENDPOINT_URL``, which is how tests reach a local moto server), the retry
policy and the API-call counter are decided in exactly one place. No other module creates a
boto3 client or session. It never shells out to the aws CLI.

Retries: botocore's ``standard`` mode (or ``AWS_RETRY_MODE``) retries throttling, 5xx and
dropped connections with jittered exponential backoff, ``AWS_MAX_ATTEMPTS`` times (default 6).
What is still failing after that is translated by :mod:`.errors`.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from clusterdeck.errors import UsageError
from clusterdeck.providers.aws.errors import translate

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_ssm import SSMClient

DEFAULT_MAX_ATTEMPTS = 6
PRICING_REGION = "us-east-1"  # the Pricing API answers in us-east-1 for every region
USER_AGENT = "clusterdeck"


class CallCounter:
    """Counts AWS API calls (one per operation invoked, retries not included), thread-safe.

    Fed by botocore's ``before-call`` event on every session made here; read by the provider
    (an INFO event per run), by tests and by ``bench/aws_calls.py``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __call__(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.service_name}:{model.name}" if model is not None else "?"
        with self._lock:
            self._counts[name] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


CALLS = CallCounter()

# Extra botocore event handlers put on every session made here, e.g. by tests or the bench
# to look at request parameters ("before-parameter-build.ec2.RunInstances"). Empty in normal use.
EXTRA_HANDLERS: list[tuple[str, Callable[..., Any]]] = []


def client_config(max_attempts: int | None = None) -> Config:
    mode = os.environ.get("AWS_RETRY_MODE", "standard")
    attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    retries: Any = {"mode": mode, "total_max_attempts": attempts}
    return Config(
        retries=retries,
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra=USER_AGENT,
    )


@dataclass
class AwsSession:
    """The clients of one region. Clients are thread-safe; the boto3 session is not shared."""

    region: str
    boto: boto3.Session
    ec2: EC2Client
    elbv2: ElasticLoadBalancingv2Client
    ssm: SSMClient
    iam: IAMClient  # global service: the region only picks the endpoint
    _pricing: PricingClient | None = field(default=None, repr=False)

    def pricing(self) -> PricingClient:
        if self._pricing is None:
            self._pricing = self.boto.client(
                "pricing", region_name=PRICING_REGION, config=client_config(max_attempts=2)
            )
        return self._pricing


def connect(region: str | None = None, *, profile: str | None = None) -> AwsSession:
    """Clients for ``region`` (else the standard chain's region) with the standard credentials."""
    try:
        boto = boto3.Session(profile_name=profile or None)
    except BotoCoreError as exc:
        raise translate(exc, "AWS session") from exc
    region = region or os.environ.get("AWS_REGION") or boto.region_name
    if not region:
        raise UsageError(
            "no AWS region: set spec.aws.region in the file, pass --region, or set AWS_REGION"
        )
    boto.events.register("before-call", CALLS)
    for event, handler in EXTRA_HANDLERS:
        boto.events.register(event, handler)
    config = client_config()
    return AwsSession(
        region=region,
        boto=boto,
        ec2=boto.client("ec2", region_name=region, config=config),
        elbv2=boto.client("elbv2", region_name=region, config=config),
        ssm=boto.client("ssm", region_name=region, config=config),
        iam=boto.client("iam", region_name=region, config=config),
    )
