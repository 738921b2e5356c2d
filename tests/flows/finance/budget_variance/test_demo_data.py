"""The demo budget as `ops init` imports it: in the organisation's own year whatever year the clone runs in, with
purchase requests committed against it so the November pack shows committed spend."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlmodel import col, func, select

from engine import importer, periods
from engine.cli import _import_demo_data
from engine.processes import discover
from flows.finance.budget_variance.ledger import figures
from registry import Actual, BudgetLine, PurchaseRequest, session
from registry.budget import positions
from registry.demo import seed


def _import_on(day: date, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every process's kinds, as `ops init` registers them, for this test only (other tests' list stays as it was).
    known = dict(importer._KINDS) | {kind.name: kind for p in discover().values() for kind in p.imports}
    monkeypatch.setattr(importer, "_KINDS", known)
    monkeypatch.setattr(periods, "today", lambda *_, **__: day)
    with session() as db:
        seed(db)
    _import_demo_data()


def test_a_clone_run_in_another_year_gets_the_demo_budget_in_that_year_booked_up_to_its_month(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _import_on(date(2027, 3, 15), monkeypatch)
    with session() as db:
        months = set(db.exec(select(col(BudgetLine.month))))
        booked = db.exec(select(func.min(Actual.booked_on), func.max(Actual.booked_on))).one()
        requests = db.exec(select(func.count()).select_from(PurchaseRequest)).one()
        march = figures(db, date(2027, 3, 1))
    assert months == {date(2027, m, 1) for m in range(1, 13)}, "the whole year budgeted, in 2027"
    assert booked[0] >= date(2027, 1, 1) and booked[1] <= date(2027, 3, 31), "nothing booked after March"
    assert requests == 0, "the demo's requests are dated October and November: not raised yet in March"
    assert sum(line.actual for line in march) > 0 and sum(line.budget for line in march) > 0


def test_the_november_pack_shows_committed_spend_and_an_invoiced_request_counts_once(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _import_on(date(2026, 12, 1), monkeypatch)
    with session() as db:
        november = figures(db, date(2026, 11, 1))
        committed = {(x.cost_centre, x.account): x.committed_ytd for x in november if x.committed_ytd}
        invoiced = db.exec(select(PurchaseRequest).where(PurchaseRequest.key == "reorder-CLEAN-2026-10-02")).one()
        booked = db.exec(select(Actual).where(Actual.reference == invoiced.key)).one()
        ids = {x.cost_centre: x.cost_centre_id for x in november}
        wh = positions(db, [ids["WH"]], 2026)[ids["WH"]]
    # Approved or ordered and not invoiced: committed against the vendor's cost centre and account.
    assert committed == {("IT", "6310"): Decimal("1200.00"), ("FAC", "6120"): Decimal("880.00"),
                         ("WH", "5210"): Decimal("2400.00"), ("OPS", "5100"): Decimal("640.00")}
    assert (booked.amount, booked.cost_centre_id) == (invoiced.amount, invoiced.cost_centre_id)
    # The demo's first reorder (Acme, £13,000 of warehouse supplies) still goes over the warehouse's budget.
    assert Decimal("0") < wh.remaining < Decimal("13000.00")
