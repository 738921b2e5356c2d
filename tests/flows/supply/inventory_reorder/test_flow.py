"""The daily inventory reorder and the purchase approvals it starts, with real parts only.

Called as a plain function (not under a deployment), `inventory_reorder` raises the requests and orders the
auto-approved ones, then leaves each request awaiting approval to its own `purchase-approval` run: these tests run
that flow in a background thread per request, as a deployment would start it, and answer its links over HTTP.
The last test runs both deployments from prefect.yaml in `ops serve`, where the approval runs suspend and resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlmodel import Session, col, select

from engine.sweep import sweep
from flows.supply.inventory_reorder.flow import ReorderOutcome, ReorderParameters, inventory_reorder
from flows.supply.inventory_reorder.tasks import APPROVAL_DEPLOYMENT, select_reorder_lines
from flows.supply.purchase_approval.flow import ApprovalParameters, purchase_approval
from flows.supply.purchase_approval.rules import ApprovalChainError
from registry import (
    AuditEvent,
    HumanStep,
    InventoryItem,
    Notification,
    Person,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    Vendor,
    session,
)
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.conftest import SERVE_STARTUP_SECONDS, Served
from tests.links import answer_link, links_in

REORDER_DEPLOYMENT = "inventory-reorder/inventory-reorder"


def _person(db: Session, name: str, *, manager: Person | None = None, roles: tuple[str, ...] = ()) -> Person:
    row = factories.person(db, name, manager=manager)
    row.roles = list(roles)
    db.add(row)
    db.flush()
    return row


@dataclass
class Org:
    director: Person
    manager: Person
    planner: Person
    contact: Person
    vendor: Vendor


def _organisation(*, contact: bool = True) -> Org:
    """Dana the director (reporting to Cleo); Max manages Pia the planner; one vendor whose order contact is Cora."""
    with session() as db:
        chief = _person(db, "Cleo Chief")
        director = _person(db, "Dana Director", manager=chief, roles=("director",))
        manager = _person(db, "Max Manager", manager=director)
        planner = _person(db, "Pia Planner", manager=manager, roles=("inventory_planner",))
        cora = _person(db, "Cora Contact")
        vendor = factories.vendor(db, owner=manager, contact=cora if contact else None)
        return Org(director=director, manager=manager, planner=planner, contact=cora, vendor=vendor)


def _low_item(vendor: Vendor, *, qty: int = 50, unit_cost: str = "4.00") -> InventoryItem:
    """An item at its reorder point whose order is `qty` × `unit_cost`."""
    with session() as db:
        return factories.inventory_item(db, vendor, on_hand=5, reorder_point=10, reorder_qty=qty, unit_cost=unit_cost)


def _requests() -> list[PurchaseRequest]:
    with session() as db:
        return list(db.exec(select(PurchaseRequest).order_by(col(PurchaseRequest.id))))


def _events(action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))))






def _approval_link(smtp: Mailbox, person: Person) -> str:
    [mail] = [m for m in smtp.wait_for(1, seconds=60, to=person.email) if m.subject.startswith("Approval needed")]
    return links_in(mail.html)[0]


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
    org = _organisation()
    with session() as db:
        other_contact = factories.person(db, "Otto Other")
        other = factories.vendor(db, owner=org.manager, contact=other_contact)
    items = [_low_item(org.vendor, qty=50, unit_cost="4.00"), _low_item(org.vendor, qty=20, unit_cost="10.50"),
             _low_item(other, qty=10, unit_cost="9.99")]

    result = inventory_reorder(ReorderParameters())
    assert (result.lines, len(result.created), result.awaiting_approval) == (3, 2, [])
    assert sorted(result.ordered) == sorted(result.created)
    first, second = _requests()
    assert (first.vendor_id, first.amount, first.status) == (org.vendor.id, Decimal("410.00"), RequestStatus.ordered)
    assert (second.vendor_id, second.amount) == (other.id, Decimal("99.90"))
    assert first.key == f"reorder-{org.vendor.code}-{result.day}" and first.ordered_at is not None
    assert first.requester_id == org.planner.id and first.approvers == []

    [order] = smtp.wait_for(1, to=org.contact.email)
    assert order.subject == f"Purchase order {first.key}"
    assert items[0].sku in order.html and items[1].sku in order.html and items[2].sku not in order.html
    assert "410.00" in order.html and "Pia Planner" in order.html
    assert len(smtp.wait_for(1, to=other_contact.email)) == 1

    again: ReorderOutcome = inventory_reorder(ReorderParameters())
    assert (again.lines, again.created, again.ordered, again.deferred_lines) == (0, [], [], 0)
    assert len(_requests()) == 2 and len(smtp.messages()) == 2
    assert [e.data.get("auto") for e in _events("purchase_request.approved")] == [True, True]
    assert len(_events("purchase_request.created")) == len(_events("purchase_request.ordered")) == 2
    with session() as db:
        assert verify(db).ok


def test_a_mid_size_request_needs_the_manager(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation()
    _low_item(org.vendor, qty=50, unit_cost="40.00")  # 2,000

    result = inventory_reorder(ReorderParameters())
    [request] = _requests()
    assert result.awaiting_approval == [request.id] and "run purchase-approval" in result.detail
    assert request.status == RequestStatus.pending_approval and request.approvers == [org.manager.id]

    thread, outcome = in_background(lambda: purchase_approval(ApprovalParameters(request_id=request.id or 0)))
    link = _approval_link(smtp, org.manager)
    page = gateway.client.get(link)
    assert "Approve purchase request" in page.text and "Pia Planner" in page.text
    assert answer_link(gateway.client, link, {"decision": "approve", "comment": "Go ahead."}).status_code == 200
    approved = finished(thread, outcome, "the approval run")

    assert (approved.status, approved.approved_levels, approved.levels) == ("ordered", 1, 1)
    [order] = smtp.wait_for(1, to=org.contact.email)
    assert order.subject.startswith("Purchase order") and "2000.00" in order.text
    [event] = _events("purchase_request.approved")
    assert event.actor == org.manager.email and event.data["level"] == 1 and event.data["comment"] == "Go ahead."


def test_a_large_request_needs_the_manager_then_the_director(prefect_api: str, gateway: Gateway,
                                                              smtp: Mailbox) -> None:
    org = _organisation()
    _low_item(org.vendor, qty=50, unit_cost="400.00")  # 20,000
    inventory_reorder(ReorderParameters())
    [request] = _requests()
    assert request.approvers == [org.manager.id, org.director.id]

    thread, outcome = in_background(lambda: purchase_approval(ApprovalParameters(request_id=request.id or 0)))
    manager_link = _approval_link(smtp, org.manager)
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 1, "the director is not asked before the manager approved"
    assert smtp.messages(to=org.director.email) == []
    answer_link(gateway.client, manager_link, {"decision": "approve", "comment": ""}).raise_for_status()

    director_link = _approval_link(smtp, org.director)
    director_mail = smtp.messages(to=org.director.email)[0]
    assert "approver 2 of 2" in director_mail.text and "already approved by Max Manager" in director_mail.text
    assert smtp.messages(to=org.contact.email) == [], "nothing is ordered before the last level approved"
    answer_link(gateway.client, director_link, {"decision": "approve", "comment": "Budgeted."}).raise_for_status()
    approved = finished(thread, outcome, "the approval run")

    assert (approved.status, approved.approved_levels) == ("ordered", 2)
    assert [e.actor for e in _events("purchase_request.approved")] == [org.manager.email, org.director.email]
    assert len(smtp.wait_for(1, to=org.contact.email)) == 1
    with session() as db:
        assert verify(db).ok


def test_a_rejection_stops_the_chain_and_tells_the_requester_why(prefect_api: str, gateway: Gateway,
                                                                 smtp: Mailbox) -> None:
    org = _organisation()
    _low_item(org.vendor, qty=50, unit_cost="400.00")
    inventory_reorder(ReorderParameters())
    [request] = _requests()

    thread, outcome = in_background(lambda: purchase_approval(ApprovalParameters(request_id=request.id or 0)))
    link = _approval_link(smtp, org.manager)
    answer_link(gateway.client, link, {"decision": "reject", "comment": "Use the stock in Leeds first."}) \
        .raise_for_status()
    rejected = finished(thread, outcome, "the approval run")

    assert (rejected.status, rejected.approved_levels) == ("rejected", 0)
    [notice] = smtp.wait_for(1, to=org.planner.email)
    assert notice.subject.startswith("Purchase request rejected") and "Use the stock in Leeds first." in notice.html
    assert "Max Manager" in notice.text
    assert smtp.messages(to=org.director.email) == [] and smtp.messages(to=org.contact.email) == []
    [stored] = _requests()
    assert stored.decision_note == "Use the stock in Leeds first." and stored.decided_at is not None
    [event] = _events("purchase_request.rejected")
    assert event.actor == org.manager.email

    again = inventory_reorder(ReorderParameters())
    assert (again.lines, again.created, again.deferred_lines) == (1, [], 1), \
        "a rejected need comes back, but not as a second request the same day"


def test_an_approval_nobody_gives_in_time_rejects_the_request(prefect_api: str, gateway: Gateway,
                                                              smtp: Mailbox) -> None:
    org = _organisation()
    _low_item(org.vendor, qty=50, unit_cost="40.00")
    inventory_reorder(ReorderParameters())
    [request] = _requests()
    thread, outcome = in_background(lambda: purchase_approval(ApprovalParameters(request_id=request.id or 0)))
    _approval_link(smtp, org.manager)
    with session() as db:
        step = db.exec(select(HumanStep)).one()
        expires_at = step.expires_at
    # The sweep expires the step and resumes the waiting run; as the minute sweep does, it tries again while
    # the run has not yet finished pausing (a loaded machine can take longer than the gateway's retries).
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        sweep(now=expires_at + timedelta(seconds=1))
        thread.join(timeout=2)
    expired = finished(thread, outcome, "the approval run")

    assert expired.status == "rejected" and "Max Manager did not decide by" in expired.detail
    [notice] = smtp.wait_for(1, to=org.planner.email)
    assert notice.subject.startswith("Purchase request rejected") and "not approved in time" in notice.text
    [event] = _events("purchase_request.rejected")
    assert event.actor == "purchase-approval" and event.data["outcome"] == "expired"


def test_the_requester_cannot_approve_their_own_request(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation()
    _low_item(org.vendor, qty=50, unit_cost="400.00")
    with pytest.raises(ApprovalChainError, match="Dana Director would have to approve their own"):
        inventory_reorder(ReorderParameters(requester=org.director.email))
    assert _requests() == [], "nothing is written when a request cannot be approved"

    inventory_reorder(ReorderParameters())
    [request] = _requests()
    thread, outcome = in_background(lambda: purchase_approval(ApprovalParameters(request_id=request.id or 0)))
    manager_link = _approval_link(smtp, org.manager)
    with session() as db:
        step = db.exec(select(HumanStep)).one()
        planner = db.get(Person, org.planner.id)
        assert planner is not None and step.requested_by_id == planner.id
        own = f"{gateway.url}/s/{factories.link(db, step, holder=planner)}"
    refused = gateway.client.get(own)
    assert refused.status_code == 403 and "You cannot approve your own request" in refused.text
    with session() as db:
        assert db.exec(select(HumanStep)).one().status.value == "pending"
    answer_link(gateway.client, manager_link, {"decision": "reject", "comment": "Not this month."}).raise_for_status()
    assert finished(thread, outcome, "the approval run").status == "rejected"


def test_a_vendor_without_contact_leaves_the_request_approved_and_tells_the_requester(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation(contact=False)
    _low_item(org.vendor)
    result = inventory_reorder(ReorderParameters())
    assert result.ordered == []
    [request] = _requests()
    assert request.status == RequestStatus.approved and request.ordered_at is None
    [note] = _events("purchase_request.order_not_sent")
    assert note.data["reason"] == "the vendor has no order contact"
    [told] = smtp.wait_for(1, to=org.planner.email)
    assert told.subject.startswith("Purchase order not sent")

    inventory_reorder(ReorderParameters())
    assert len(_events("purchase_request.order_not_sent")) == 1 and len(smtp.messages()) == 1, "noted once"
    with session() as db:
        vendor = db.get(Vendor, org.vendor.id)
        assert vendor is not None
        vendor.contact_id = org.contact.id
        db.add(vendor)
    later = inventory_reorder(ReorderParameters())
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

    org = _organisation()
    with session() as db:
        other_contact = factories.person(db, "Otto Other")
        other = factories.vendor(db, owner=org.manager, contact=other_contact)
    _low_item(org.vendor, qty=50, unit_cost="400.00")  # 20,000: manager, then director
    _low_item(other, qty=50, unit_cost="40.00")  # 2,000: manager
    with httpx.Client(timeout=10) as api:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        while api.get(f"{served.api}/deployments/name/{APPROVAL_DEPLOYMENT}").status_code != 200:
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.25)
        for _ in range(2):  # the second run of the day starts nothing new
            started = run_deployment(REORDER_DEPLOYMENT, parameters={"params": {}}, timeout=0)
            assert isinstance(started, FlowRun)
            _wait_for_state(api, served.api, str(started.id), "COMPLETED")
        large, mid = _requests()

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
        director_link = _approval_link(smtp, org.director)
        assert _waiting_run(large.id or 0, 2) == large_run
        _wait_for_state(api, served.api, large_run, "PAUSED")
        answer_link(gateway.client, director_link, {"decision": "approve", "comment": "Yes."}).raise_for_status()
        _wait_for_state(api, served.api, large_run, "COMPLETED")

    assert [r.status for r in _requests()] == [RequestStatus.ordered, RequestStatus.ordered]
    assert len(smtp.wait_for(1, to=org.contact.email)) == 1
    assert len(smtp.messages(to=org.manager.email)) == 2 and len(smtp.messages(to=org.director.email)) == 1
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 3
        keys = list(db.exec(select(Notification.idempotency_key)))
        assert len(keys) == len(set(keys)) == 5
        assert verify(db).ok
