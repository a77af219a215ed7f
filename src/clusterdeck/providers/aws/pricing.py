"""Spot price limits: ``maxPrice`` as given, ``maxPricePercent`` from the on-demand price.

Why it exists: EC2 takes a spot limit in USD per hour only. A percentage needs the on-demand
price, which only the AWS Pricing API knows. It is asked once per instance type, before
anything is created; where it is unavailable (no permission, an isolated partition, a local
test endpoint) create stops with an error that suggests ``maxPrice`` instead of guessing.
"""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, Decimal

from clusterdeck.errors import ClusterdeckError, PermanentError
from clusterdeck.model.topology import SpotRequest
from clusterdeck.providers.aws.errors import call
from clusterdeck.providers.aws.session import AwsSession


def spot_limit(
    session: AwsSession, spot: SpotRequest, instance_type: str, pool: str, cache: dict[str, Decimal]
) -> str | None:
    """The MaxPrice to send (None: AWS caps at the on-demand price)."""
    if spot.max_price:
        return spot.max_price
    if not spot.max_price_percent:
        return None
    if instance_type not in cache:
        cache[instance_type] = on_demand_price(session, instance_type, pool)
    limit = cache[instance_type] * Decimal(spot.max_price_percent) / Decimal(100)
    return str(limit.quantize(Decimal("0.00001"), rounding=ROUND_DOWN))


def on_demand_price(session: AwsSession, instance_type: str, pool: str) -> Decimal:
    hint = (
        f"pool {pool!r}: spot.maxPricePercent needs the on-demand price of {instance_type} "
        f"in {session.region} from the AWS Pricing API"
    )
    suggestion = 'set spot.maxPrice (USD per hour, e.g. "0.40") instead of maxPricePercent'
    filters = {
        "instanceType": instance_type,
        "regionCode": session.region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    try:
        out = call(
            session.pricing().get_products,
            "AWS Pricing API",
            ServiceCode="AmazonEC2",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=10,
        )
        prices = [_price(item) for item in out.get("PriceList", [])]
    except ClusterdeckError as exc:
        raise PermanentError(f"{hint}, which is not available here ({exc}); {suggestion}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(
            f"{hint}, whose answer could not be read ({exc}); {suggestion}"
        ) from exc
    found = [p for p in prices if p is not None and p > 0]
    if not found:
        raise PermanentError(f"{hint}, which has no on-demand price for it; {suggestion}")
    return min(found)


def _price(item: str | object) -> Decimal | None:
    product = json.loads(item) if isinstance(item, str) else item
    assert isinstance(product, dict)
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None:
                return Decimal(str(usd))
    return None
