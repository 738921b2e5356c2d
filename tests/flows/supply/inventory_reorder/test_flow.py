"""The daily inventory reorder, with real parts only.

Called as a plain function (not under a deployment), `inventory_reorder` raises the requests and orders the
auto-approved ones, then leaves each request awaiting approval to its own `purchase-approval` run (its own tests
are tests/flows/supply/purchase_approval/). The last test runs both deployments from prefect.yaml in `ops serve`,
where the approval runs suspend and resume.
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
from sqlmodel import select

from flows.supply.inventory_reorder.flow import ReorderOutcome, inventory_reorder
from flows.supply.inventory_reorder.tasks import APPROVAL_DEPLOYMENT, select_reorder_lines
from registry import (
    HumanStep,
    Notification,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    Vendor,
    session,
)
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.conftest import SERVE_STARTUP_SECONDS, Served
from tests.flows.supply.purchasing import approval_link, events, low_item, organisation, purchase_requests
from tests.links import answer_link, links_in

REORDER_DEPLOYMENT = "inventory-reorder/inventory-reorder"


def test_the_selection_counts_what_is_already_on_open_requests(any_db: str) -> None:
    with session() as db:
        owner = factories.person(db)
        first, second = factories.vendor(db, owner=owner), factories.vendor(db, owner=owner)
        due = factories.inventory_item(db, second, on_hand=4, reorder_point=10, reorder_qty=30)
        covered = factories.inventory_item(db, first, on_hand=4, reorder_point=10, reorder_qty=30)
        partly = factories.inventory_item(db, first, on_hand=0, reorder_point=10, reorder_qty=5)
        closed = factories.inventory_item(db, first, on_hand=10, reorder_point=10, reorder_qty=30, unit_cost="2.50")
        factories.inventory_item(db, first, on_hand=11, reorder_point=10)
        seeded = [(RequestStatus.ordered, covered, 4), (RequestStatus.pending_approval, covered, 3),
                  (RequestStatus.approved, partly, 5), (RequestStatus.rejected, closed, 99),
                  (RequestStatus.received, closed, 99)]
        for status, item, quantity in seeded:
            request = PurchaseRequest(key=f"seed-{status}-{item.id}", vendor_id=item.vendor_id, status=status,
                                      requester_id=owner.id or 0, amount=Decimal(0))
            db.add(request)
            db.flush()
            db.add(PurchaseRequestLine(request_id=request.id or 0, item_id=item.id or 0, quantity=quantity,
                                       unit_cost=Decimal(1)))
    with session() as db:
        lines = select_reorder_lines(db)
    assert [(line.item_id, line.open_qty, line.quantity) for line in lines] == [
        (partly.id, 5, 6),   # 0 on hand + 5 open is still at or below 10: topped up to 11
        (closed.id, 0, 30),  # rejected and received requests order nothing
        (due.id, 0, 30),     # the second vendor after the first
    ], "an item whose open requests already lift it above its point (covered) is not ordered again"
    assert lines[1].unit_cost == Decimal("2.50") and isinstance(lines[1].unit_cost, Decimal)


def test_small_needs_are_ordered_at_once_one_request_per_vendor_and_a_rerun_adds_nothing(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    with session() as db:
        other_contact = factories.person(db, "Otto Other")
        other = factories.vendor(db, owner=org.manager, contact=other_contact)
    items = [low_item(org.vendor, qty=50, unit_cost="4.00"), low_item(org.vendor, qty=20, unit_cost="10.50"),
             low_item(other, qty=10, unit_cost="9.99")]

    result = inventory_reorder()
    assert (result.lines, len(result.created), result.awaiting_approval) == (3, 2, [])
    assert sorted(result.ordered) == sorted(result.created)
    first, second = purchase_requests()
    assert (first.vendor_id, first.amount, first.status) == (org.vendor.id, Decimal("410.00"), RequestStatus.ordered)
    assert (second.vendor_id, second.amount) == (other.id, Decimal("99.90"))
    assert first.key == f"reorder-{org.vendor.code}-{result.day}" and first.ordered_at is not None
    assert first.requester_id == org.planner.id and first.approvers == []

    [order] = smtp.wait_for(1, to=org.contact.email)
    assert order.subject == f"Purchase order {first.key}"
    assert items[0].sku in order.html and items[1].sku in order.html and items[2].sku not in order.html
    assert "410.00" in order.html and "Pia Planner" in order.html
    assert len(smtp.wait_for(1, to=other_contact.email)) == 1

    again: ReorderOutcome = inventory_reorder()
    assert (again.lines, again.created, again.ordered, again.deferred_lines) == (0, [], [], 0)
    assert len(purchase_requests()) == 2 and len(smtp.messages()) == 2
    assert [e.data.get("auto") for e in events("purchase_request.approved")] == [True, True]
    assert len(events("purchase_request.created")) == len(events("purchase_request.ordered")) == 2
    with session() as db:
        assert verify(db).ok


def test_a_vendor_without_contact_leaves_the_request_approved_and_tells_the_requester(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation(contact=False)
    low_item(org.vendor)
    result = inventory_reorder()
    assert result.ordered == []
    [request] = purchase_requests()
    assert request.status == RequestStatus.approved and request.ordered_at is None
    assert request.order_not_sent_at is not None, "the request itself holds that its requester was told"
    [note] = events("purchase_request.order_not_sent")
    assert note.data["reason"] == "the vendor has no order contact"
    [told] = smtp.wait_for(1, to=org.planner.email)
    assert told.subject.startswith("Purchase order not sent")

    inventory_reorder()
    assert len(events("purchase_request.order_not_sent")) == 1 and len(smtp.messages()) == 1, "noted once"
    with session() as db:
        vendor = db.get(Vendor, org.vendor.id)
        assert vendor is not None
        vendor.contact_id = org.contact.id
        db.add(vendor)
    later = inventory_reorder()
    assert later.ordered == [request.id], "a later run sends it once the vendor has a contact"
    assert len(smtp.wait_for(1, to=org.contact.email)) == 1
    with session() as db:
        keys = list(db.exec(select(Notification.idempotency_key)))
    assert len(keys) == len(set(keys)) == 2


def _state(client: httpx.Client, api: str, run_id: str) -> str:
    response = client.get(f"{api}/flow_runs/{run_id}")
    response.raise_for_status()
    return str(response.json()["state"]["type"])


def _wait_for_state(client: httpx.Client, api: str, run_id: str, wanted: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while (state := _state(client, api, run_id)) != wanted:
        assert state not in {"FAILED", "CRASHED", "CANCELLED"}, f"flow run {run_id} ended {state}"
        assert time.monotonic() < deadline, f"flow run {run_id} still {state} after {seconds:.0f} s"
        time.sleep(0.2)


def _waiting_run(request_id: int, level: int) -> str:
    with session() as db:
        step = db.exec(select(HumanStep).where(HumanStep.key == f"purchase-{request_id}-level-{level}")).one()
        assert step.flow_run_id is not None
        return step.flow_run_id


def test_under_its_deployment_each_request_waits_suspended_in_its_own_approval_run(
        served: Served, gateway: Gateway, smtp: Mailbox) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    org = organisation()
    with session() as db:
        other_contact = factories.person(db, "Otto Other")
        other = factories.vendor(db, owner=org.manager, contact=other_contact)
    low_item(org.vendor, qty=50, unit_cost="400.00")  # 20,000: manager, then director
    low_item(other, qty=50, unit_cost="40.00")  # 2,000: manager
    with httpx.Client(timeout=10) as api:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        while api.get(f"{served.api}/deployments/name/{APPROVAL_DEPLOYMENT}").status_code != 200:
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.25)
        for _ in range(2):  # the second run of the day starts nothing new
            started = run_deployment(REORDER_DEPLOYMENT, parameters={}, timeout=0)
            assert isinstance(started, FlowRun)
            _wait_for_state(api, served.api, str(started.id), "COMPLETED")
        large, mid = purchase_requests()

        # Both managers' requests are out at once: one request's wait does not hold up the other's.
        mails = [m for m in smtp.wait_for(2, seconds=90, to=org.manager.email)
                 if m.subject.startswith("Approval needed")]
        assert len(mails) == 2
        large_run, mid_run = _waiting_run(large.id or 0, 1), _waiting_run(mid.id or 0, 1)
        assert large_run != mid_run
        for run_id in (large_run, mid_run):
            _wait_for_state(api, served.api, run_id, "PAUSED")
        large_link = next(links_in(m.html)[0] for m in mails if large.key in m.subject)
        mid_link = next(links_in(m.html)[0] for m in mails if mid.key in m.subject)
        answer_link(gateway.client, mid_link, {"decision": "approve", "comment": ""}).raise_for_status()
        _wait_for_state(api, served.api, mid_run, "COMPLETED")
        assert len(smtp.wait_for(1, to=other_contact.email)) == 1
        assert _state(api, served.api, large_run) == "PAUSED"

        # Resumed, the run restarts from the top: level 1 is not asked again, level 2 is asked once.
        answer_link(gateway.client, large_link, {"decision": "approve", "comment": ""}).raise_for_status()
        director_link = approval_link(smtp, org.director)
        assert _waiting_run(large.id or 0, 2) == large_run
        _wait_for_state(api, served.api, large_run, "PAUSED")
        answer_link(gateway.client, director_link, {"decision": "approve", "comment": "Yes."}).raise_for_status()
        _wait_for_state(api, served.api, large_run, "COMPLETED")

    assert [r.status for r in purchase_requests()] == [RequestStatus.ordered, RequestStatus.ordered]
    assert len(smtp.wait_for(1, to=org.contact.email)) == 1
    assert len(smtp.messages(to=org.manager.email)) == 2 and len(smtp.messages(to=org.director.email)) == 1
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 3
        keys = list(db.exec(select(Notification.idempotency_key)))
        assert len(keys) == len(set(keys)) == 5
        assert verify(db).ok
