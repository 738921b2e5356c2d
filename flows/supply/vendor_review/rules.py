"""The vendor review's rules: plain functions, no Prefect, no database.

Standings are the registry's values as plain strings (registry.supply.Standing is a StrEnum of the same):
preferred > approved > probation > disqualified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

RANK: dict[str, int] = {"preferred": 3, "approved": 2, "probation": 1, "disqualified": 0}
WATCHED = {"probation": "medium", "disqualified": "high"}
"""A fall to one of these standings is a finding, of this severity: the vendor's owner acts on it."""

# Paying this much over the contracted price (as a share of the contracted value) scores 0 on price.
PRICE_VARIANCE_AT_ZERO = 0.10

CONTRACT_NOTICE_DAYS = (60, 30)


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


VendorCode = Annotated[str, BeforeValidator(_stripped)]
"""A vendor code as a form gives it: padding dropped, blank ("") meaning every vendor."""


class Weights(BaseModel):
    """Relative weights of the score's components; they need not add up to 1."""

    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored

    on_time: float = Field(0.35, ge=0, title="On-time delivery", description="Weight of the on-time rate.")
    fill: float = Field(0.30, ge=0, title="Fill rate", description="Weight of the share of ordered goods received.")
    quality: float = Field(0.25, ge=0, title="Quality", description="Weight of the received goods not rejected.")
    price: float = Field(0.10, ge=0, title="Price", description="Weight of paying no more than the contracted price.")

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if self.on_time + self.fill + self.quality + self.price <= 0:
            raise ValueError("at least one weight must be above 0")
        return self


class Thresholds(BaseModel):
    """The lowest score for each standing; below `probation` a vendor is disqualified."""

    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored

    preferred: float = Field(90, ge=0, le=100, title="Preferred from", description="Lowest score for preferred.")
    approved: float = Field(75, ge=0, le=100, title="Approved from", description="Lowest score for approved.")
    probation: float = Field(60, ge=0, le=100, title="Probation from",
                             description="Lowest score for probation; below it, disqualified.")

    @model_validator(mode="after")
    def _descending(self) -> Thresholds:
        if not self.preferred >= self.approved >= self.probation:
            raise ValueError("thresholds must not increase: preferred ≥ approved ≥ probation")
        return self


@dataclass(frozen=True)
class DeliveryLine:
    """One purchase-order line as delivered (or not yet)."""

    promised: date
    delivered: date | None
    ordered: int
    received: int
    rejected: int
    unit_price: Decimal
    contracted_price: Decimal


@dataclass(frozen=True)
class DeliveryTotals:
    """A vendor's lines in a period, summed; the SQL aggregate in the flow yields exactly these sums."""

    lines: int = 0
    delivered: int = 0
    on_time: int = 0
    ordered: int = 0
    received: int = 0
    rejected: int = 0
    price_delta: Decimal = Decimal(0)  # Σ (unit − contracted) · qty ordered
    contracted_value: Decimal = Decimal(0)  # Σ contracted · qty ordered


def totals(lines: Iterable[DeliveryLine]) -> DeliveryTotals:
    rows = list(lines)
    return DeliveryTotals(
        lines=len(rows),
        delivered=sum(r.delivered is not None for r in rows),
        on_time=sum(r.delivered is not None and r.delivered <= r.promised for r in rows),
        ordered=sum(r.ordered for r in rows),
        received=sum(r.received for r in rows),
        rejected=sum(r.rejected for r in rows),
        price_delta=sum(((r.unit_price - r.contracted_price) * r.ordered for r in rows), Decimal(0)),
        contracted_value=sum((r.contracted_price * r.ordered for r in rows), Decimal(0)),
    )


@dataclass(frozen=True)
class Metrics:
    """Rates between 0 and 1; None where nothing could be measured (no line delivered, nothing received)."""

    deliveries: int
    on_time_rate: float | None
    fill_rate: float | None
    defect_rate: float | None
    price_variance: float | None


def _ratio(part: int | Decimal, whole: int | Decimal) -> float | None:
    return float(part) / float(whole) if whole else None


def metrics(sums: DeliveryTotals) -> Metrics:
    return Metrics(
        deliveries=sums.lines,
        on_time_rate=_ratio(sums.on_time, sums.delivered),
        fill_rate=_ratio(sums.received, sums.ordered),
        defect_rate=_ratio(sums.rejected, sums.received),
        price_variance=_ratio(sums.price_delta, sums.contracted_value),
    )


def _price_component(variance: float) -> float:
    """Paying at or under the contract earns full marks; paying over loses them linearly."""
    return max(0.0, 1.0 - max(variance, 0.0) / PRICE_VARIANCE_AT_ZERO)


def score(measured: Metrics, weights: Weights) -> float | None:
    """0–100, one decimal. A component that could not be measured is left out and the other weights rescaled,
    so a vendor is neither rewarded nor punished for what did not happen; no component at all, no score."""
    parts = [
        (weights.on_time, measured.on_time_rate),
        (weights.fill, None if measured.fill_rate is None else min(measured.fill_rate, 1.0)),
        (weights.quality, None if measured.defect_rate is None else 1.0 - min(measured.defect_rate, 1.0)),
        (weights.price, None if measured.price_variance is None else _price_component(measured.price_variance)),
    ]
    counted = [(weight, value) for weight, value in parts if value is not None and weight > 0]
    total_weight = sum(weight for weight, _ in counted)
    if measured.deliveries == 0 or not total_weight:
        return None
    return round(100 * sum(weight * value for weight, value in counted) / total_weight, 1)


def standing_for(points: float | None, current: str, thresholds: Thresholds) -> str:
    """The standing a score earns; without a score the vendor keeps the one it has."""
    if points is None:
        return current
    if points >= thresholds.preferred:
        return "preferred"
    if points >= thresholds.approved:
        return "approved"
    if points >= thresholds.probation:
        return "probation"
    return "disqualified"


def decision_label(*, deliveries: int, before: str, proposed: str, applied: bool, verdict: str | None) -> str:
    """Where a scorecard's standing stands, for tables and reports; `verdict` is the approval's (approved,
    rejected, expired, cancelled), None while nobody has decided."""
    if before == proposed:
        return "no deliveries: standing kept" if deliveries == 0 else "unchanged"
    if applied:
        return "approved"
    if verdict == "approved":
        return "approved, not yet applied"
    if verdict is not None:
        return verdict
    return "awaiting approval"


def fall_severity(before: str, after: str) -> str | None:
    """A change of standing that needs a corrective action: down to probation (medium) or to disqualified (high);
    None for a rise, a change that keeps the vendor above probation, or no change."""
    if RANK[after] >= RANK[before]:
        return None
    return WATCHED.get(after)


@dataclass(frozen=True)
class ContractNotice:
    """Which thresholds to record as reached, and the one notice to send for them (None: send nothing)."""

    record: tuple[int, ...]
    send: int | None


def contract_notice(contract_end: date, today: date, already: Iterable[int],
                    thresholds: Iterable[int] = CONTRACT_NOTICE_DAYS) -> ContractNotice:
    """Each threshold reached is noticed once; when several are reached at once, only the nearest is sent."""
    days_left = (contract_end - today).days
    if days_left < 0:
        return ContractNotice(record=(), send=None)
    done = set(already)
    new = tuple(sorted((t for t in thresholds if days_left <= t and t not in done), reverse=True))
    return ContractNotice(record=new, send=min(new) if new else None)
