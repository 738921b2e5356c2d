"""The purchase approval chain the reorder starts, with real parts only.

Each test raises a request with `inventory_reorder` called as a plain function, then runs `purchase_approval` in
a background thread, as a deployment would start it, and answers its links over HTTP.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlmodel import select

from engine.sweep import sweep
from flows.supply.inventory_reorder.flow import inventory_reorder
from flows.supply.purchase_approval.flow import purchase_approval
from flows.supply.purchase_approval.rules import ApprovalChainError
from registry import HumanStep, Person, RequestStatus, session
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.supply.purchasing import approval_link, events, low_item, organisation, purchase_requests
from tests.links import answer_link


def test_a_mid_size_request_needs_the_manager(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    low_item(org.vendor, qty=50, unit_cost="40.00")  # 2,000

    result = inventory_reorder()
    [request] = purchase_requests()
    assert result.awaiting_approval == [request.id] and "run purchase-approval" in result.detail
    assert request.status == RequestStatus.pending_approval and request.approvers == [org.manager.id]

    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    link = approval_link(smtp, org.manager)
    page = gateway.client.get(link)
    assert "Approve purchase request" in page.text and "Pia Planner" in page.text
    # The amount in the organisation's currency and locale, and every line listed, not counted.
    assert "£2,000.00" in page.text and "Lines" in page.text and "£40.00" in page.text and ">50<" in page.text
    assert answer_link(gateway.client, link, {"decision": "approve", "comment": "Go ahead."}).status_code == 200
    approved = finished(thread, outcome, "the approval run")

    assert (approved.status, approved.approved_levels, approved.levels) == ("ordered", 1, 1)
    [order] = smtp.wait_for(1, to=org.contact.email)
    assert order.subject.startswith("Purchase order") and "£2,000.00" in order.text
    [event] = events("purchase_request.approved")
    assert event.actor == org.manager.email and event.data["level"] == 1 and event.data["comment"] == "Go ahead."


def test_a_large_request_needs_the_manager_then_the_director(prefect_api: str, gateway: Gateway,
                                                              smtp: Mailbox) -> None:
    org = organisation()
    low_item(org.vendor, qty=50, unit_cost="400.00")  # 20,000
    inventory_reorder()
    [request] = purchase_requests()
    assert request.approvers == [org.manager.id, org.director.id]

    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    manager_link = approval_link(smtp, org.manager)
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 1, "the director is not asked before the manager approved"
    assert smtp.messages(to=org.director.email) == []
    answer_link(gateway.client, manager_link, {"decision": "approve", "comment": ""}).raise_for_status()

    director_link = approval_link(smtp, org.director)
    director_mail = smtp.messages(to=org.director.email)[0]
    assert "approver 2 of 2" in director_mail.text and "already approved by Max Manager" in director_mail.text
    assert smtp.messages(to=org.contact.email) == [], "nothing is ordered before the last level approved"
    answer_link(gateway.client, director_link, {"decision": "approve", "comment": "Budgeted."}).raise_for_status()
    approved = finished(thread, outcome, "the approval run")

    assert (approved.status, approved.approved_levels) == ("ordered", 2)
    assert [e.actor for e in events("purchase_request.approved")] == [org.manager.email, org.director.email]
    assert len(smtp.wait_for(1, to=org.contact.email)) == 1
    with session() as db:
        assert verify(db).ok


def test_a_rejection_stops_the_chain_and_tells_the_requester_why(prefect_api: str, gateway: Gateway,
                                                                 smtp: Mailbox) -> None:
    org = organisation()
    low_item(org.vendor, qty=50, unit_cost="400.00")
    inventory_reorder()
    [request] = purchase_requests()

    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    link = approval_link(smtp, org.manager)
    answer_link(gateway.client, link, {"decision": "reject", "comment": "Use the stock in Leeds first."}) \
        .raise_for_status()
    rejected = finished(thread, outcome, "the approval run")

    assert (rejected.status, rejected.approved_levels) == ("rejected", 0)
    [notice] = smtp.wait_for(1, to=org.planner.email)
    assert notice.subject.startswith("Purchase request rejected") and "Use the stock in Leeds first." in notice.html
    assert "Max Manager" in notice.text
    assert smtp.messages(to=org.director.email) == [] and smtp.messages(to=org.contact.email) == []
    [stored] = purchase_requests()
    assert stored.decision_note == "Use the stock in Leeds first." and stored.decided_at is not None
    [event] = events("purchase_request.rejected")
    assert event.actor == org.manager.email

    again = inventory_reorder()
    assert (again.lines, again.created, again.deferred_lines) == (1, [], 1), \
        "a rejected need comes back, but not as a second request the same day"


def test_an_approval_nobody_gives_in_time_rejects_the_request(prefect_api: str, gateway: Gateway,
                                                              smtp: Mailbox) -> None:
    org = organisation()
    low_item(org.vendor, qty=50, unit_cost="40.00")
    inventory_reorder()
    [request] = purchase_requests()
    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    approval_link(smtp, org.manager)
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
    [event] = events("purchase_request.rejected")
    assert event.actor == "purchase-approval" and event.data["outcome"] == "expired"


def test_the_requester_cannot_approve_their_own_request(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    low_item(org.vendor, qty=50, unit_cost="400.00")
    with pytest.raises(ApprovalChainError, match="Dana Director would have to approve their own"):
        inventory_reorder(requester=org.director.email)
    assert purchase_requests() == [], "nothing is written when a request cannot be approved"

    inventory_reorder()
    [request] = purchase_requests()
    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    manager_link = approval_link(smtp, org.manager)
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
