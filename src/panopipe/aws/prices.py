"""AWS prices the cost estimate uses (``panopipe run --estimate``): dated, with the page they come from.

No price is fetched: panopipe runs where AWS's Price List API may be out of reach, and an estimate should not
change between two runs of the same plan. Check the pages named below when the date is old, and pass other
:class:`Prices` for another region.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Prices:
    """USD prices of one region: Fargate (Linux, x86_64) compute, the Fargate Spot discount, S3 requests."""

    region: str
    as_of: str
    """When the figures were read from the pages in ``sources`` (ISO date)."""
    fargate_vcpu_hour: float
    fargate_gb_hour: float
    spot_discount: float
    """Fargate Spot's price as a discount on Fargate's (AWS: "up to 70%"; it varies by region and over time)."""
    s3_put_per_1000: float
    """S3 Standard PUT, COPY, POST and LIST requests."""
    s3_get_per_1000: float
    """S3 Standard GET, SELECT and all other requests."""
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": list(self.sources)}


US_EAST_1 = Prices(
    region="us-east-1",
    as_of="2025-06-01",
    fargate_vcpu_hour=0.04048,
    fargate_gb_hour=0.004445,
    spot_discount=0.70,
    s3_put_per_1000=0.005,
    s3_get_per_1000=0.0004,
    sources=(
        "AWS Fargate Pricing (https://aws.amazon.com/fargate/pricing/): Linux/x86, per vCPU per hour and per GB "
        "per hour; Fargate Spot: up to 70% off",
        "Amazon S3 Pricing (https://aws.amazon.com/s3/pricing/), Requests & data retrievals: S3 Standard",
    ),
)
"""US East (N. Virginia), the region the stack defaults to: the published prices as of mid-2025 (Fargate's
have not changed since its January 2019 price cut), not re-read since (this machine cannot reach the pages)."""


__all__ = ["US_EAST_1", "Prices"]
