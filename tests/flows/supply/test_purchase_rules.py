"""Over-budget purchase requests: the breach a request carries and the chain it gains (flows/supply/purchase_rules.py).

The chain by amount alone is tested with the purchase approval's rules (purchase_approval/test_rules.py)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from flows.supply.purchase_rules import (
    ApprovalChainError,
    Breach,
    Budget,
    BudgetHolder,
    approval_chain,
    breach,
    budget_approver,
    check_charges,
)

AUTO, LIMIT = Decimal("1000"), Decimal("10000")
REQUESTER, MANAGER, OWNER, CC_MANAGER, DIRECTOR = 1, 2, 3, 4, 9


@dataclass
class Asker:
    id: int | None = REQUESTER
    name: str = "Pia Planner"
    manager_id: int | None = MANAGER


def holder(owner: int | None = OWNER, stand_in: int | None = CC_MANAGER) -> BudgetHolder:
    return BudgetHolder(cost_centre="OPS", owner_id=owner, stand_in_id=stand_in)


@pytest.mark.parametrize(
    ("amount", "budget", "remaining", "expected"),
    [
        ("500", "10000", "500", None),                        # exactly what remains: within budget
        ("499.99", "10000", "500", None),
        ("500.01", "10000", "500", ("0.01", 0.0)),            # a cent over
        ("2000", "10000", "500", ("1500.00", 15.0)),          # % of the year's budget, not of what remained
        ("2000", "10000", "0", ("2000.00", 20.0)),            # nothing left: all of it is over
        ("2000", "10000", "-1000", ("3000.00", 30.0)),        # already over: the breach is where it would stand
        ("1", "3", "0", ("1.00", 33.33)),                     # the percentage to two places
        ("2000", "0", "0", ("2000.00", None)),                # no budget for the year: unbudgeted, no %
        ("2000", "0", "-450", ("2450.00", None)),             # no budget but actuals booked already
        ("0", "10000", "-1000", None),                        # a request that spends nothing breaches nothing
    ],
)
def test_breach(amount: str, budget: str, remaining: str, expected: tuple[str, float | None] | None) -> None:
    found = breach(Decimal(amount), Budget(Decimal(budget), Decimal(remaining)))
    if expected is None:
        assert found is None
        return
    assert found == Breach(amount=Decimal(expected[0]), pct=expected[1], remaining=Decimal(remaining),
                           budget=Decimal(budget))


def test_one_runs_requests_are_checked_against_what_the_ones_before_left() -> None:
    budgets = {"OPS": Budget(Decimal("10000"), Decimal("3000")), "IT": Budget(Decimal("5000"), Decimal("5000"))}
    found = check_charges([("OPS", Decimal("2000")), ("IT", Decimal("100")), ("OPS", Decimal("1500")),
                           (None, Decimal("99999")), ("HR", Decimal("50")), ("OPS", Decimal("10"))], budgets)
    assert [c.remaining if c else None for c in found] == [
        Decimal("3000"), Decimal("5000"), Decimal("1000"), None, None, Decimal("-500")]
    assert [c.breach.amount if c and c.breach else None for c in found] == [
        None, None, Decimal("500.00"), None, None, Decimal("510.00")]
    assert budgets["OPS"].remaining == Decimal("3000"), "the positions given are not changed"


@pytest.mark.parametrize(
    ("owner", "stand_in", "requester", "expected"),
    [
        (OWNER, CC_MANAGER, REQUESTER, OWNER),
        (None, CC_MANAGER, REQUESTER, CC_MANAGER),       # no (active) owner: the cost centre's manager
        (REQUESTER, CC_MANAGER, REQUESTER, CC_MANAGER),  # the owner requests: their manager approves instead
    ],
)
def test_who_approves_a_breach(owner: int | None, stand_in: int | None, requester: int, expected: int) -> None:
    assert budget_approver(holder(owner, stand_in), Asker(id=requester)) == expected


@pytest.mark.parametrize(("owner", "stand_in"), [(None, None), (REQUESTER, None), (REQUESTER, REQUESTER)])
def test_a_cost_centre_nobody_else_answers_for_is_named(owner: int | None, stand_in: int | None) -> None:
    with pytest.raises(ApprovalChainError, match="cost centre OPS has no owner or manager other than Pia Planner"):
        budget_approver(holder(owner, stand_in), Asker())


@pytest.mark.parametrize(
    ("amount", "asker", "over", "chain"),
    [
        # within budget: the chain by amount, unchanged
        ("500", Asker(), None, []),
        ("2000", Asker(), None, [MANAGER]),
        ("20000", Asker(), None, [MANAGER, DIRECTOR]),
        # over budget: the owner before the Director, and the Director whatever the amount
        ("2000", Asker(), holder(), [MANAGER, OWNER, DIRECTOR]),
        ("20000", Asker(), holder(), [MANAGER, OWNER, DIRECTOR]),
        ("500", Asker(), holder(), [OWNER, DIRECTOR]),           # never auto-approved; no manager below the limit
        ("500", Asker(manager_id=None), holder(), [OWNER, DIRECTOR]),
        # nobody asked twice, the owner still before the Director
        ("2000", Asker(), holder(owner=MANAGER), [MANAGER, DIRECTOR]),
        ("2000", Asker(), holder(owner=DIRECTOR), [MANAGER, DIRECTOR]),
        ("2000", Asker(manager_id=DIRECTOR), holder(), [OWNER, DIRECTOR]),
        ("2000", Asker(manager_id=DIRECTOR), holder(owner=DIRECTOR), [DIRECTOR]),
        # the requester owns the cost centre: its manager approves the breach
        ("2000", Asker(id=OWNER), holder(), [MANAGER, CC_MANAGER, DIRECTOR]),
        ("2000", Asker(id=OWNER), holder(stand_in=MANAGER), [MANAGER, DIRECTOR]),
    ],
)
def test_the_chain_of_an_over_budget_request(amount: str, asker: Asker, over: BudgetHolder | None,
                                             chain: list[int]) -> None:
    assert approval_chain(Decimal(amount), asker, AUTO, LIMIT, director_id=DIRECTOR, over_budget=over) == chain


def test_over_budget_spend_needs_a_director() -> None:
    with pytest.raises(ApprovalChainError, match=r"nobody has the director role .* \(over the budget of cost "
                                                 r"centre OPS\)"):
        approval_chain(Decimal("500"), Asker(), AUTO, LIMIT, director_id=None, over_budget=holder())
    with pytest.raises(ApprovalChainError, match="above the director limit"):
        approval_chain(Decimal("20000"), Asker(), AUTO, LIMIT, director_id=None, over_budget=holder())


def test_the_director_cannot_approve_their_own_over_budget_request() -> None:
    director = Asker(id=DIRECTOR, name="Dana Director", manager_id=7)
    assert approval_chain(Decimal("2000"), director, AUTO, LIMIT, director_id=DIRECTOR) == [7]
    with pytest.raises(ApprovalChainError, match="Dana Director would have to approve their own"):
        approval_chain(Decimal("2000"), director, AUTO, LIMIT, director_id=DIRECTOR, over_budget=holder())


def test_an_over_budget_request_above_the_auto_limit_still_needs_the_requesters_manager() -> None:
    with pytest.raises(ApprovalChainError, match="Pia Planner has no manager"):
        approval_chain(Decimal("2000"), Asker(manager_id=None), AUTO, LIMIT, director_id=DIRECTOR,
                       over_budget=holder())
