"""The reorder charges each request to its vendor's cost centre and checks it against what remains of that budget,
on both databases: one query for all of a run's cost centres, the run's own requests counted in turn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from flows.supply.inventory_reorder.flow import inventory_reorder
from flows.supply.purchase_rules import ApprovalChainError
from registry import Person, PurchaseRequest, get_engine, session
from tests import factories
from tests.conftest import Mailbox
from tests.flows.supply.purchasing import Org, budget, events, low_item, organisation, person_in, purchase_requests


@contextmanager
def statements_reading(table: str) -> Iterator[list[str]]:
    """Every SQL statement sent while inside that reads `table`."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if f"FROM {table}" in statement or f"JOIN {table}" in statement:
            seen.append(statement)

    engine = get_engine()
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _people(org: Org, *names: str) -> list[Person]:
    with session() as db:
        return [person_in(db, name, manager=org.director) for name in names]


def _vendor(org: Org) -> Any:
    with session() as db:
        return factories.vendor(db, owner=org.manager, contact=org.contact)


def _reordered() -> dict[int, PurchaseRequest]:
    return {r.vendor_id: r for r in purchase_requests() if r.key.startswith("reorder-")}


def test_each_request_is_checked_against_its_cost_centre_in_one_query(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    org = organisation()
    olga, ivan = _people(org, "Olga Owner", "Ivan Owner")
    tight, roomy, unbudgeted, nowhere = org.vendor, _vendor(org), _vendor(org), _vendor(org)
    first = budget(tight, olga, year_budget="10000", booked="6000", committed="1500")  # 2,500 left
    second = budget(roomy, ivan, year_budget="50000", booked="1000.50", account="6200")  # 48,999.50 left
    third = budget(unbudgeted, olga, year_budget=None, booked="450")  # no budget, 450 spent: -450 left
    low_item(tight, qty=50, unit_cost="60.00")        # 3,000: 500 over, 5% of 10,000
    low_item(roomy, qty=10, unit_cost="99.95")        # 999.50: within
    low_item(unbudgeted, qty=10, unit_cost="10.00")   # 100: unbudgeted, 550 over, no %
    low_item(nowhere, qty=10, unit_cost="10.00")      # charged to no cost centre: not checked

    with statements_reading("budget_line") as budget_reads:
        result = inventory_reorder()
    assert len(result.created) == 4
    assert len(budget_reads) == 1, "one query for every cost centre of the run, not one per request"

    made = _reordered()
    charged = {vendor.id: (made[vendor.id or 0].cost_centre_id, made[vendor.id or 0].account,
                           made[vendor.id or 0].budget_remaining, made[vendor.id or 0].over_budget_amount,
                           made[vendor.id or 0].over_budget_pct) for vendor in (tight, roomy, unbudgeted, nowhere)}
    assert charged == {
        tight.id: (first.id, "6100", Decimal("2500.00"), Decimal("500.00"), 5.0),
        roomy.id: (second.id, "6200", Decimal("48999.50"), None, None),
        unbudgeted.id: (third.id, "6100", Decimal("-450.00"), Decimal("550.00"), None),
        nowhere.id: (None, "", None, None, None),
    }
    assert made[unbudgeted.id or 0].approvers == [olga.id, org.director.id], "below the auto limit, never automatic"
    assert made[roomy.id or 0].approvers == [] and made[nowhere.id or 0].approvers == []
    told = smtp.wait_for(2, to=org.planner.email)
    assert sorted(m.subject.split(":")[0] for m in told) == ["Purchase request over budget"] * 2
    [unbudgeted_notice] = [m for m in told if "it has no budget for" in m.text]
    assert "The cost centre was already £450.00 over before it" in unbudgeted_notice.text
    assert {e.data.get("over_budget_amount") for e in events("purchase_request.created")} == {"500.00", "550.00",
                                                                                               None}


def test_a_runs_requests_to_one_cost_centre_count_against_each_other(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    org = organisation()
    [olga] = _people(org, "Olga Owner")
    second_vendor = _vendor(org)
    centre = budget(org.vendor, olga, year_budget="5000")
    with session() as db:
        charged = db.get(type(second_vendor), second_vendor.id)
        assert charged is not None
        charged.cost_centre_id, charged.account = centre.id, "6100"
        db.add(charged)
    low_item(org.vendor, qty=30, unit_cost="100.00")   # 3,000 of 5,000: fits
    low_item(second_vendor, qty=30, unit_cost="90.00")  # 2,700 of the 2,000 the first left: 700 over

    inventory_reorder()
    made = _reordered()
    first, second = made[org.vendor.id or 0], made[second_vendor.id or 0]
    assert (first.budget_remaining, first.over_budget_amount) == (Decimal("5000.00"), None)
    assert (second.budget_remaining, second.over_budget_amount, second.over_budget_pct) == (
        Decimal("2000.00"), Decimal("700.00"), 14.0)
    assert second.approvers == [org.manager.id, olga.id, org.director.id]


def test_the_cost_centres_manager_stands_in_for_an_inactive_owner_or_one_who_requests(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    org = organisation()
    olga, carl = _people(org, "Olga Owner", "Carl Controller")
    centre = budget(org.vendor, olga, year_budget="1000", manager=carl)
    low_item(org.vendor, qty=20, unit_cost="100.00")  # 2,000: 1,000 over, 100%
    with session() as db:
        owner = db.get(Person, olga.id)
        assert owner is not None
        owner.active = False
        db.add(owner)

    inventory_reorder()
    [request] = _reordered().values()
    assert request.approvers == [org.manager.id, carl.id, org.director.id]
    assert request.over_budget_pct == 100.0
    [told] = smtp.wait_for(1, to=org.planner.email)
    assert f"Carl Controller (standing in for Olga Owner, owner of cost centre {centre.code})" in told.text


def test_a_cost_centre_nobody_else_answers_for_refuses_the_run_and_writes_nothing(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    org = organisation()
    centre = budget(org.vendor, org.planner, year_budget="1000")  # the planner owns it; no manager of its own
    with session() as db:
        planner = db.get(Person, org.planner.id)
        assert planner is not None
        planner.manager_id = None  # nobody stands in for the owner either
        db.add(planner)
    low_item(org.vendor, qty=5, unit_cost="300.00")  # 1,500: 500 over; and above the auto limit

    with pytest.raises(ApprovalChainError, match=f"cost centre {centre.code} has no owner or manager other than "
                                                 "Pia Planner"):
        inventory_reorder(auto_approve_limit=Decimal("5000"), director_limit=Decimal("10000"))
    assert _reordered() == {} and smtp.messages() == []
