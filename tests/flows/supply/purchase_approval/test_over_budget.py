"""Over-budget spend approved as such, with real parts only: a reorder request that would take its cost centre over
what remains of its budget asks the requester's manager, then the cost centre's owner, then the Director, each
seeing the breach; the requester is told why, and the vendor's purchase order says it was authorised as such."""

from __future__ import annotations

from decimal import Decimal

from flows.supply.inventory_reorder.flow import inventory_reorder
from flows.supply.purchase_approval.flow import purchase_approval
from registry import Person, PurchaseRequest, RequestStatus, session
from registry.trail import verify
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.supply.purchasing import (
    Org,
    approval_link,
    budget,
    events,
    low_item,
    organisation,
    person_in,
    purchase_requests,
)
from tests.links import answer_link


def _owner(org: Org) -> Person:
    with session() as db:
        return person_in(db, "Olga Owner", manager=org.director)


def _reordered() -> PurchaseRequest:
    [request] = [r for r in purchase_requests() if r.key.startswith("reorder-")]
    return request


def _over_budget(org: Org) -> tuple[Person, str, PurchaseRequest]:
    """£2,500 left of a £10,000 budget (£6,000 booked, £1,500 ordered and not invoiced), and a £3,000 reorder."""
    owner = _owner(org)
    centre = budget(org.vendor, owner, year_budget="10000", booked="6000", committed="1500")
    low_item(org.vendor, qty=50, unit_cost="60.00")
    inventory_reorder()
    return owner, centre.code, _reordered()


def test_an_over_budget_request_asks_the_manager_then_the_cost_centre_owner_then_the_director(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    owner, code, request = _over_budget(org)
    assert request.approvers == [org.manager.id, owner.id, org.director.id], "the owner before the Director"
    assert (request.over_budget_amount, request.over_budget_pct, request.budget_remaining, request.account) == (
        Decimal("500.00"), 5.0, Decimal("2500.00"), "6100")
    [created] = events("purchase_request.created")
    assert (created.data["cost_centre"], created.data["over_budget_amount"]) == (code, "500.00")

    # The requester is told at once why the request waits for more than their manager.
    [told] = smtp.wait_for(1, to=org.planner.email)
    assert told.subject.startswith("Purchase request over budget") and "needs 3 approvals" in told.subject
    assert f"cost centre {code}" in told.text and "£500.00 over its" in told.text and "5.0%" in told.text
    assert "£2,500.00 remained of the budget before it" in told.text
    assert f"Max Manager, Olga Owner (owner of cost centre {code}), Dana Director (Director)" in told.text

    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    for approver, level in ((org.manager, 1), (owner, 2), (org.director, 3)):
        link = approval_link(smtp, approver)
        [mail] = [m for m in smtp.messages(to=approver.email) if m.subject.startswith("Approval needed")]
        assert mail.subject.endswith(", over budget"), mail.subject
        assert f"approver {level} of 3" in mail.text and "OVER BUDGET" in mail.text
        assert "£500.00 over its" in mail.text and "5.0% of the year's budget" in mail.text
        assert "£2,500.00 remained of the budget before it" in mail.text and 'id="over-budget"' in mail.html
        assert ("as its owner: approving accepts this spend beyond it" in mail.text) == (approver == owner)
        page = gateway.client.get(link)
        assert "Over budget by" in page.text and "£500.00" in page.text and "5.0%" in page.text
        assert "Budget remaining before" in page.text and "£2,500.00" in page.text and code in page.text
        answer_link(gateway.client, link, {"decision": "approve", "comment": f"Level {level} ok."}).raise_for_status()
    approved = finished(thread, outcome, "the approval run")

    assert (approved.status, approved.approved_levels, approved.levels) == ("ordered", 3, 3)
    assert [(e.actor, e.data["over_budget_amount"]) for e in events("purchase_request.approved")] == [
        (org.manager.email, "500.00"), (owner.email, "500.00"), (org.director.email, "500.00")]
    # The vendor sees that the order was authorised beyond the budget, and by whom, but not our budget figures.
    [order] = smtp.wait_for(1, to=org.contact.email)
    assert order.subject.startswith("Purchase order") and "£3,000.00" in order.text
    assert f"goes beyond the budget of the cost centre it is charged to, {code}" in order.text
    assert "authorised as such by each in turn: Max Manager, Olga Owner" in " ".join(order.text.split())
    assert "£500.00" not in order.text and "£2,500.00" not in order.text and "5.0%" not in order.text
    # The requester is told how it was decided.
    told_again = smtp.wait_for(2, to=org.planner.email)
    [decided] = [m for m in told_again if m.subject.startswith("Purchase request approved as over-budget spend")]
    assert "Olga Owner" in decided.text and "Dana Director" in decided.text and "£500.00 over its" in decided.text
    with session() as db:
        assert verify(db).ok


def test_a_request_within_budget_keeps_its_chain_and_says_where_it_is_charged(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    centre = budget(org.vendor, _owner(org), year_budget="10000", booked="6000")
    low_item(org.vendor, qty=50, unit_cost="40.00")  # 2,000 of the 4,000 left
    inventory_reorder()
    request = _reordered()
    assert request.approvers == [org.manager.id] and request.over_budget_amount is None
    assert (request.cost_centre_id, request.budget_remaining) == (centre.id, Decimal("4000.00"))

    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    link = approval_link(smtp, org.manager)
    [mail] = smtp.messages(to=org.manager.email)
    assert not mail.subject.endswith("over budget") and "OVER BUDGET" not in mail.text
    assert f"Charged to cost centre {centre.code}" in mail.text and "within its budget, £4,000.00" in mail.text
    answer_link(gateway.client, link, {"decision": "approve", "comment": ""}).raise_for_status()
    assert finished(thread, outcome, "the approval run").status == "ordered"
    [order] = smtp.wait_for(1, to=org.contact.email)
    assert "beyond the budget" not in order.text and f"Our cost centre for this order: {centre.code}" in order.text
    assert smtp.messages(to=org.planner.email) == [], "a request within budget tells its requester nothing new"


def test_an_over_budget_request_the_owner_rejects_tells_the_requester_the_breach(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = organisation()
    owner, code, request = _over_budget(org)
    thread, outcome = in_background(lambda: purchase_approval(request_id=request.id or 0))
    answer_link(gateway.client, approval_link(smtp, org.manager), {"decision": "approve", "comment": ""}) \
        .raise_for_status()
    answer_link(gateway.client, approval_link(smtp, owner), {"decision": "reject", "comment": "Wait for April."}) \
        .raise_for_status()
    rejected = finished(thread, outcome, "the approval run")

    assert (rejected.status, rejected.approved_levels) == ("rejected", 1)
    [notice] = [m for m in smtp.wait_for(2, to=org.planner.email) if m.subject.startswith("Purchase request rejected")]
    assert "Olga Owner rejected" in notice.text and "Wait for April." in notice.text
    assert f"cost centre {code}" in notice.text and "£500.00 over its" in notice.text
    assert smtp.messages(to=org.director.email) == [] and smtp.messages(to=org.contact.email) == []
    assert _reordered().status == RequestStatus.rejected
