from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pytest

from flows.supply.purchase_approval.rules import (
    ApprovalChainError,
    after_decision,
    approval_chain,
    line_amount,
    next_level,
    readable_money,
    rejection_reason,
    request_amount,
)

AUTO, DIRECTOR = Decimal("1000"), Decimal("10000")
MANAGER_ID, DIRECTOR_ID = 2, 9


@dataclass
class Asker:
    id: int | None = 1
    name: str = "Pia Planner"
    manager_id: int | None = MANAGER_ID


def test_amounts_are_exact_to_the_cent() -> None:
    assert line_amount(3, Decimal("0.1")) == Decimal("0.30")
    assert line_amount(3, Decimal("0.3333")) == Decimal("1.00")
    assert request_amount([(3, Decimal("0.1")), (1, Decimal("999.70"))]) == Decimal("1000.00")
    assert request_amount([]) == Decimal("0.00")


@pytest.mark.parametrize(
    ("amount", "chain"),
    [
        ("0", []),
        ("999.99", []),
        ("1000", []),                       # up to the auto limit inclusive
        ("1000.01", [MANAGER_ID]),          # just above it: the manager
        ("10000", [MANAGER_ID]),            # up to the director limit inclusive: still only the manager
        ("10000.01", [MANAGER_ID, DIRECTOR_ID]),  # above: the manager, then the director
        ("2500000", [MANAGER_ID, DIRECTOR_ID]),
    ],
)
def test_approval_chain_by_amount(amount: str, chain: list[int]) -> None:
    assert approval_chain(Decimal(amount), Asker(), AUTO, DIRECTOR, director_id=DIRECTOR_ID) == chain


def test_limits_are_configurable() -> None:
    assert approval_chain(Decimal("50"), Asker(), Decimal("0"), Decimal("100"), director_id=DIRECTOR_ID) == [2]
    assert approval_chain(Decimal("50"), Asker(), Decimal("10"), Decimal("10"), director_id=DIRECTOR_ID) == [2, 9]


def test_a_requester_who_reports_to_the_director_is_approved_by_them_once() -> None:
    asker = Asker(manager_id=DIRECTOR_ID)
    assert approval_chain(Decimal("20000"), asker, AUTO, DIRECTOR, director_id=DIRECTOR_ID) == [DIRECTOR_ID]


def test_a_requester_without_a_manager_is_named() -> None:
    assert approval_chain(Decimal("1000"), Asker(manager_id=None), AUTO, DIRECTOR, director_id=DIRECTOR_ID) == []
    with pytest.raises(ApprovalChainError, match="Pia Planner has no manager"):
        approval_chain(Decimal("1000.01"), Asker(manager_id=None), AUTO, DIRECTOR, director_id=DIRECTOR_ID)


def test_a_missing_director_is_named() -> None:
    assert approval_chain(Decimal("10000"), Asker(), AUTO, DIRECTOR, director_id=None) == [MANAGER_ID]
    with pytest.raises(ApprovalChainError, match="nobody has the director role"):
        approval_chain(Decimal("10000.01"), Asker(), AUTO, DIRECTOR, director_id=None)


def test_the_director_cannot_approve_their_own_large_request() -> None:
    director = Asker(id=DIRECTOR_ID, name="Dana Director", manager_id=7)
    assert approval_chain(Decimal("5000"), director, AUTO, DIRECTOR, director_id=DIRECTOR_ID) == [7]
    with pytest.raises(ApprovalChainError, match="Dana Director would have to approve their own"):
        approval_chain(Decimal("20000"), director, AUTO, DIRECTOR, director_id=DIRECTOR_ID)


@pytest.mark.parametrize(("auto", "director"), [("-1", "10"), ("100", "99.99")])
def test_limits_out_of_order_are_refused(auto: str, director: str) -> None:
    with pytest.raises(ApprovalChainError, match="limits must satisfy"):
        approval_chain(Decimal("5"), Asker(), Decimal(auto), Decimal(director), director_id=DIRECTOR_ID)


@pytest.mark.parametrize(
    ("pending", "approved_levels", "levels", "expected"),
    [
        (True, 0, 2, 1),
        (True, 1, 2, 2),
        (True, 2, 2, None),   # every level approved: nothing left to ask
        (False, 0, 2, None),  # rejected (or ordered): the chain is over
        (True, 0, 0, None),   # auto-approved requests have no chain
    ],
)
def test_next_level(pending: bool, approved_levels: int, levels: int, expected: int | None) -> None:
    assert next_level(pending=pending, approved_levels=approved_levels, levels=levels) == expected


@pytest.mark.parametrize(
    ("approved", "level", "levels", "expected"),
    [(True, 1, 2, "next level"), (True, 2, 2, "approved"), (True, 1, 1, "approved"), (False, 1, 2, "rejected"),
     (False, 2, 2, "rejected")],
)
def test_after_decision(approved: bool, level: int, levels: int, expected: str) -> None:
    assert after_decision(approved=approved, level=level, levels=levels) == expected


def test_the_requester_is_told_the_approvers_reason_or_that_nobody_decided() -> None:
    assert rejection_reason(answered=True, comment="  Not this month. ", approver="Max Manager", expires_at=None,
                            outcome="answered") == "Not this month."
    assert rejection_reason(answered=False, comment="", approver="Max Manager", expires_at=datetime(2026, 12, 3, 17),
                            outcome="expired") == "Max Manager did not decide by 2026-12-03 17:00 UTC (step expired)."


@pytest.mark.parametrize(("stored", "shown"), [("4.0000", "4.00"), ("0.3333", "0.3333"), ("2.5", "2.50")])
def test_money_reads_to_the_cent_unless_finer(stored: str, shown: str) -> None:
    assert str(readable_money(Decimal(stored))) == shown
