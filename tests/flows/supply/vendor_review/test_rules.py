from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from flows.supply.vendor_review.rules import (
    ContractNotice,
    DeliveryLine,
    DeliveryTotals,
    Metrics,
    Thresholds,
    Weights,
    contract_notice,
    decision_label,
    fall_severity,
    metrics,
    score,
    standing_for,
    totals,
)
from registry.supply import Standing

PROMISED = date(2026, 8, 10)


def line(*, late_days: int | None = 0, ordered: int = 100, received: int | None = None, rejected: int = 0,
         unit: str = "10.00", contracted: str = "10.00") -> DeliveryLine:
    """A line promised on PROMISED; `late_days` None means not delivered (and then nothing was received)."""
    delivered = None if late_days is None else PROMISED + timedelta(days=late_days)
    if received is None:
        received = 0 if delivered is None else ordered
    return DeliveryLine(promised=PROMISED, delivered=delivered, ordered=ordered, received=received,
                        rejected=rejected, unit_price=Decimal(unit), contracted_price=Decimal(contracted))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], Metrics(0, None, None, None, None), id="no deliveries"),
        pytest.param([line(), line(late_days=-3)], Metrics(2, 1.0, 1.0, 0.0, 0.0), id="perfect, early counts"),
        pytest.param([line(), line(late_days=2)], Metrics(2, 0.5, 1.0, 0.0, 0.0), id="one late"),
        pytest.param([line(), line(late_days=None)], Metrics(2, 1.0, 0.5, 0.0, 0.0),
                     id="undelivered line: not in on-time, halves the fill"),
        pytest.param([line(late_days=None), line(late_days=None, ordered=50)], Metrics(2, None, 0.0, None, 0.0),
                     id="zero received: no on-time, no defect rate"),
        pytest.param([line(received=80, rejected=8)], Metrics(1, 1.0, 0.8, 0.1, 0.0), id="short and rejects"),
        pytest.param([line(unit="9.00")], Metrics(1, 1.0, 1.0, 0.0, -0.1), id="price under contract"),
        pytest.param([line(unit="10.50", ordered=100), line(unit="10.00", ordered=100)],
                     Metrics(2, 1.0, 1.0, 0.0, 0.025), id="price over contract, weighted by quantity"),
        pytest.param([line(contracted="0", unit="0")], Metrics(1, 1.0, 1.0, 0.0, None), id="free goods: no variance"),
    ],
)
def test_metrics_from_delivery_lines(lines: list[DeliveryLine], expected: Metrics) -> None:
    measured = metrics(totals(lines))
    assert measured.deliveries == expected.deliveries
    for name in ("on_time_rate", "fill_rate", "defect_rate", "price_variance"):
        got, want = getattr(measured, name), getattr(expected, name)
        assert got == (None if want is None else pytest.approx(want)), name


def test_totals_sum_money_exactly() -> None:
    summed = totals([line(unit="10.10", ordered=3), line(unit="9.95", ordered=7)])
    assert summed.price_delta == Decimal("0.30") + Decimal("-0.35")
    assert summed.contracted_value == Decimal("100.00")
    assert totals([]) == DeliveryTotals()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], None, id="no deliveries: no score"),
        pytest.param([line()], 100.0, id="perfect"),
        pytest.param([line(unit="8.00")], 100.0, id="under contract is not a bonus"),
        pytest.param([line(), line(late_days=3, received=90, rejected=9, unit="10.50", ordered=100)],
                     # on time 0.5, fill 0.95, quality 1 - 9/190, price variance 0.025 → 0.75 of the price marks
                     round(100 * (0.35 * 0.5 + 0.30 * 0.95 + 0.25 * (1 - 9 / 190) + 0.10 * 0.75), 1),
                     id="weighted mix"),
        pytest.param([line(unit="11.00")], 90.0, id="10 % over contract scores 0 on price"),
        pytest.param([line(unit="15.00")], 90.0, id="price component never below 0"),
        pytest.param([line(late_days=None)], round(100 * (0.30 * 0 + 0.10 * 1) / 0.40, 1),
                     id="nothing received: unmeasured components left out, weights rescaled"),
        pytest.param([line(received=120)], 100.0, id="over-delivery caps the fill at 1"),
    ],
)
def test_score(lines: list[DeliveryLine], expected: float | None) -> None:
    assert score(metrics(totals(lines)), Weights()) == expected


def test_score_uses_the_weights_given() -> None:
    measured = metrics(totals([line(), line(late_days=1)]))  # on time 0.5, everything else perfect
    assert score(measured, Weights(on_time=1, fill=0, quality=0, price=0)) == 50.0
    assert score(measured, Weights(on_time=0, fill=1, quality=1, price=1)) == 100.0
    assert score(metrics(totals([line(late_days=None)])), Weights(on_time=1, fill=0, quality=0, price=0)) is None


@pytest.mark.parametrize(
    ("points", "current", "expected"),
    [
        (100.0, Standing.approved, Standing.preferred),
        (90.0, Standing.approved, Standing.preferred),
        (89.9, Standing.preferred, Standing.approved),
        (75.0, Standing.probation, Standing.approved),
        (74.9, Standing.approved, Standing.probation),
        (60.0, Standing.disqualified, Standing.probation),
        (59.9, Standing.approved, Standing.disqualified),
        (0.0, Standing.preferred, Standing.disqualified),
        (None, Standing.probation, Standing.probation),
        (None, Standing.disqualified, Standing.disqualified),
    ],
)
def test_standing_from_thresholds(points: float | None, current: Standing, expected: Standing) -> None:
    assert standing_for(points, current, Thresholds()) == expected


def test_thresholds_and_weights_are_checked() -> None:
    assert standing_for(80.0, Standing.approved, Thresholds(preferred=80, approved=70, probation=50)) \
        == Standing.preferred
    with pytest.raises(ValidationError, match="must not increase"):
        Thresholds(preferred=70, approved=75, probation=60)
    with pytest.raises(ValidationError, match="at least one weight"):
        Weights(on_time=0, fill=0, quality=0, price=0)
    with pytest.raises(ValidationError):
        Weights(on_time=-0.1)


TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("days_left", "already", "expected"),
    [
        (61, set(), ContractNotice(record=(), send=None)),
        (60, set(), ContractNotice(record=(60,), send=60)),
        (45, set(), ContractNotice(record=(60,), send=60)),
        (45, {60}, ContractNotice(record=(), send=None)),
        (30, {60}, ContractNotice(record=(30,), send=30)),
        (20, set(), ContractNotice(record=(60, 30), send=30)),
        (20, {30}, ContractNotice(record=(60,), send=60)),
        (20, {60, 30}, ContractNotice(record=(), send=None)),
        (0, set(), ContractNotice(record=(60, 30), send=30)),
        (-1, set(), ContractNotice(record=(), send=None)),
    ],
)
def test_contract_notice_once_per_threshold(days_left: int, already: set[int], expected: ContractNotice) -> None:
    assert contract_notice(TODAY + timedelta(days=days_left), TODAY, already) == expected


@pytest.mark.parametrize(
    ("deliveries", "before", "proposed", "applied", "verdict", "label"),
    [
        (0, Standing.approved, Standing.approved, False, None, "no deliveries: standing kept"),
        (5, Standing.approved, Standing.approved, False, None, "unchanged"),
        (5, Standing.approved, Standing.preferred, False, None, "awaiting approval"),
        (5, Standing.approved, Standing.preferred, True, "approved", "approved"),
        (5, Standing.approved, Standing.preferred, False, "approved", "approved, not yet applied"),
        (5, Standing.approved, Standing.probation, False, "rejected", "rejected"),
        (5, Standing.approved, Standing.probation, False, "expired", "expired"),
    ],
)
def test_decision_label(deliveries: int, before: Standing, proposed: Standing, applied: bool, verdict: str | None,
                        label: str) -> None:
    assert decision_label(deliveries=deliveries, before=before, proposed=proposed, applied=applied,
                          verdict=verdict) == label


@pytest.mark.parametrize(
    ("before", "after", "severity"),
    [
        (Standing.approved, Standing.probation, "medium"),
        (Standing.preferred, Standing.probation, "medium"),
        (Standing.approved, Standing.disqualified, "high"),
        (Standing.probation, Standing.disqualified, "high"),
        (Standing.preferred, Standing.approved, None),
        (Standing.probation, Standing.approved, None),
        (Standing.disqualified, Standing.probation, None),
        (Standing.probation, Standing.probation, None),
    ],
)
def test_a_fall_to_probation_or_worse_needs_a_corrective_action(before: Standing, after: Standing,
                                                                 severity: str | None) -> None:
    assert fall_severity(before, after) == severity
