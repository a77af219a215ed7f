"""The one place botocore errors become clusterdeck errors, and the retry loop for settling.

Why it exists: the rest of the aws package never catches ``ClientError``; it calls AWS through
:func:`call`, which names the resource it was working on, so every failure reaches the user as
one line that says what, where and whether trying again can help:

- throttling, 5xx and dropped connections: botocore already retried them with jittered
  backoff (see :mod:`.session`); what is left is a :class:`~clusterdeck.errors.TransientError`;
- quotas: a :class:`~clusterdeck.errors.PermanentError` naming the Service Quotas entry;
- capacity, credentials, invalid parameters: a ``PermanentError`` naming the resource;
- "not found": :class:`AwsNotFound` (delete counts it as done);
- "still in use" (DependencyViolation...): :class:`AwsBusy`, retried by :func:`call` when the
  caller lists it in ``settle`` (deletes waiting for ENIs to drain, references to a resource
  AWS has not finished creating). Those retries use full-jitter exponential backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from clusterdeck.errors import ClusterdeckError, PermanentError, TransientError, UsageError

T = TypeVar("T")

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
    }
)
SERVER = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "InternalServerError",
        "ServerInternal",
        "ServiceUnavailableException",
    }
)
# Service Quotas names, so the user knows which quota to raise.
QUOTAS = {
    "VpcLimitExceeded": "VPCs per Region",
    "SubnetLimitExceeded": "Subnets per VPC",
    "InternetGatewayLimitExceeded": "Internet gateways per Region",
    "NatGatewayLimitExceeded": "NAT gateways per Availability Zone",
    "AddressLimitExceeded": "EC2-VPC Elastic IPs",
    "RouteTableLimitExceeded": "Route tables per VPC",
    "RouteLimitExceeded": "Routes per route table",
    "SecurityGroupLimitExceeded": "VPC security groups per Region",
    "RulesPerSecurityGroupLimitExceeded": "Inbound or outbound rules per security group",
    "SecurityGroupsPerInstanceLimitExceeded": "Security groups per network interface",
    "InstanceLimitExceeded": "Running On-Demand instances",
    "VcpuLimitExceeded": "Running On-Demand instances (vCPUs) for this instance family",
    "MaxSpotInstanceCountExceeded": "All Spot Instance Requests (vCPUs)",
    "NetworkInterfaceLimitExceeded": "Network interfaces per Region",
    "VolumeLimitExceeded": "Storage for General Purpose SSD (gp3) volumes",
    "TooManyLoadBalancers": "Network Load Balancers per Region",
    "TooManyTargetGroups": "Target Groups per Region",
    "TooManyTargets": "Targets per Network Load Balancer",
    "TooManyListeners": "Listeners per Network Load Balancer",
    "TooManyRegistrationsForTargetId": "Load balancers per target",
    "TooManyTags": "Tags per resource",
    "ResourceLimitExceeded": "the resource's quota",
}
CAPACITY = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientFreeAddressesInSubnet",
        "InsufficientAddressCapacity",
        "InsufficientCapacityOnOutpost",
        "SpotMaxPriceTooLow",
        "Unsupported",
        "UnsupportedOperation",
    }
)
AUTH = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AccessDenied",
        "AccessDeniedException",
        "OptInRequired",
        "UnrecognizedClientException",
        "Blocked",
        "PendingVerification",
        "MissingAuthenticationToken",
        "InvalidAccessKeyId",
        "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
    }
)
BUSY = frozenset(
    {
        "DependencyViolation",
        "ResourceInUse",
        "IncorrectState",
        "IncorrectInstanceState",
        "InvalidNetworkInterface.InUse",
        "InvalidIPAddress.InUse",
        "InvalidAddress.Locked",
        "InvalidState",
        "OperationNotPermitted",
        "DeleteConflict",  # IAM: a role still in a profile or with a policy attached
    }
)
NOT_FOUND_EXTRA = frozenset(
    {
        "LoadBalancerNotFound",
        "TargetGroupNotFound",
        "ListenerNotFound",
        "ParameterNotFound",
        "InvalidAssociationID.NotFound",
        "InvalidAllocationID.NotFound",
        "NatGatewayNotFound",
        "InvalidGroup.NotFound",
        "InvalidPermission.NotFound",
        "Gateway.NotAttached",
        "NoSuchEntity",  # IAM
    }
)
# Right after a create, AWS may not yet know the new ID everywhere (eventual consistency).
EVENTUAL = frozenset(
    {
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidAllocationID.NotFound",
        "NatGatewayNotFound",
        "InvalidNetworkInterfaceID.NotFound",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
        "InvalidTarget",
    }
)


class AwsNotFound(PermanentError):
    """AWS says the resource does not exist (delete treats this as done)."""


class AwsBusy(TransientError):
    """AWS refuses because something still uses the resource; waiting can help."""


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        )
    return ""


def is_not_found(code: str) -> bool:
    return code.endswith((".NotFound", "NotFound")) or code in NOT_FOUND_EXTRA


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _aws_message(exc: ClientError) -> str:
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    if not message or message.lstrip().startswith("<"):
        return f"HTTP {_status(exc)}"
    return " ".join(message.split())


def aws_code(exc: BaseException) -> str:
    """The AWS error code behind a translated error ("" when there was none)."""
    return str(getattr(exc, "aws_code", ""))


def translate(exc: BaseException, what: str) -> ClusterdeckError:
    """One clusterdeck error for a botocore failure while working on ``what``."""
    err = _translate(exc, what)
    if not hasattr(err, "aws_code"):
        err.aws_code = error_code(exc)  # type: ignore[attr-defined]
    return err


def _translate(exc: BaseException, what: str) -> ClusterdeckError:
    if isinstance(exc, ClusterdeckError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return PermanentError(
            f"{what}: no usable AWS credentials ({exc}); configure them with AWS_PROFILE, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or `aws configure`"
        )
    if isinstance(exc, ProfileNotFound):
        return UsageError(f"{what}: {exc}; check AWS_PROFILE")
    if isinstance(exc, NoRegionError):
        return UsageError(f"{what}: no AWS region; set spec.aws.region or AWS_REGION")
    if isinstance(exc, ResponseParserError):
        return TransientError(
            f"{what}: AWS sent an unreadable answer, retried, still "
            "failing; run the command again later"
        )
    if isinstance(exc, EndpointConnectionError | ConnectionError | ReadTimeoutError):
        return TransientError(f"{what}: cannot reach AWS ({exc}); retried, still failing")
    if isinstance(exc, BotoCoreError):
        return PermanentError(f"{what}: {exc}")
    if not isinstance(exc, ClientError):
        return PermanentError(f"{what}: {type(exc).__name__}: {exc}")
    code = error_code(exc)
    message = _aws_message(exc)
    status = _status(exc)
    if code in THROTTLING:
        return TransientError(
            f"{what}: AWS is throttling requests ({code}) and kept doing so "
            "through the retries; wait a minute and run the command again"
        )
    if code in SERVER or status >= 500:
        return TransientError(
            f"{what}: AWS had a server error ({code or status}: {message}); "
            "retried, still failing; run the command again later"
        )
    if code in QUOTAS or code.endswith("LimitExceeded"):
        quota = QUOTAS.get(code, code)
        return PermanentError(
            f"{what}: quota reached: {quota} ({code}: {message}); free some "
            "up or request an increase in the Service Quotas console"
        )
    if code in CAPACITY:
        return PermanentError(
            f"{what}: AWS has no capacity for it ({code}: {message}); try "
            "another instance type or availability zone, or later"
        )
    if code in AUTH:
        return PermanentError(
            f"{what}: not allowed with the current AWS credentials ({code}: {message})"
        )
    if code in BUSY:
        return AwsBusy(f"{what}: still in use ({code}: {message})")
    if is_not_found(code):
        return AwsNotFound(f"{what}: not found ({code}: {message})")
    return PermanentError(f"{what}: refused by AWS ({code or status}: {message})")


def backoff(attempt: int, base: float = 0.5, cap: float = 15.0) -> float:
    """Full-jitter exponential backoff: uniform between 0 and ``base * 2**attempt`` (capped)."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def call(
    fn: Callable[..., T],
    what: str,
    *,
    settle: Iterable[str] = (),
    timeout: float = 120.0,
    on_retry: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> T:
    """``fn(**kwargs)`` with errors translated; codes in ``settle`` retried until ``timeout``."""
    settle_codes = frozenset(settle)
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            code = error_code(exc)
            if code in settle_codes and time.monotonic() < deadline:
                if on_retry is not None:
                    on_retry(f"{code}; waiting")
                time.sleep(min(backoff(attempt), max(0.0, deadline - time.monotonic())))
                attempt += 1
                continue
            raise translate(exc, what) from exc


def collect(
    client: Any, operation: str, result_key: str, what: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every item of a paginated describe, each page fetched through :func:`call`."""
    iterator = iter(client.get_paginator(operation).paginate(**kwargs))
    items: list[dict[str, Any]] = []
    while True:
        page = call(lambda: next(iterator, None), what)
        if page is None:
            return items
        items.extend(page.get(result_key, []))
