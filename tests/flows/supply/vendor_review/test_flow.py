from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlmodel import col, select

from engine import occasions
from engine.settings import get_settings
from engine.sweep import sweep
from flows.supply.vendor_review.flow import ReviewOutcome, ReviewParameters, vendor_review
from flows.supply.vendor_review.notices import today, vendor_contract_notices
from flows.supply.vendor_review.report import ARTIFACT_KEY
from flows.supply.vendor_review.rules import DeliveryLine, totals
from flows.supply.vendor_review.tasks import measure, procurement_manager
from registry import (
    ActionStatus,
    AuditEvent,
    ContractNotice,
    CorrectiveAction,
    Criticality,
    Delivery,
    Finding,
    FindingStatus,
    HumanStep,
    Notification,
    Occasion,
    OccasionStatus,
    Person,
    Standing,
    Vendor,
    VendorScorecard,
    session,
)
from registry.clock import utcnow
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.conftest import Served
from tests.links import answer_link, links_in

PERIOD = "2026-Q3"
IN_PERIOD = date(2026, 8, 10)


def _person(name: str, manager: Person | None = None, roles: list[str] | None = None, active: bool = True) -> Person:
    with session() as db:
        person = factories.person(db, name, manager=manager, active=active)
        person.roles = roles or []
        db.add(person)
        return person


def _vendor(owner: Person, lines: list[dict[str, Any]] | None = None, **fields: Any) -> Vendor:
    """A vendor with delivery lines (promised and delivered mid-quarter unless a line says otherwise)."""
    with session() as db:
        vendor = factories.vendor(db, owner=owner, **fields)
        for spec in lines or []:
            factories.delivery(db, vendor, **{"promised": IN_PERIOD, "delivered": IN_PERIOD, **spec})
        return vendor


def _organisation() -> dict[str, Any]:
    """A procurement manager; Olive manages three vendors due this quarter, Omar one due and one yearly."""
    director = _person("Dana Director")
    buyer = _person("Paula Procurement", manager=director, roles=["buyer", "procurement_manager"])
    olive = _person("Olive Owner", manager=director)
    omar = _person("Omar Owner", manager=director)
    late = IN_PERIOD + timedelta(days=5)
    star = _vendor(olive, [{}, {}, {"delivered": IN_PERIOD - timedelta(days=2)},
                           # promised after the quarter: not part of this review, however late
                           {"promised": date(2026, 10, 5), "delivered": date(2026, 11, 1), "received": 0}])
    poor = _vendor(olive, [{"delivered": late, "rejected": 30, "unit_price": "10.80"},
                           {"delivered": None, "received": 0}])
    idle = _vendor(olive, standing=Standing.probation)
    steady = _vendor(omar, [{}, {}, {}, {"delivered": late}], standing=Standing.preferred)
    yearly = _vendor(omar, [{"delivered": late}], cadence="0 7 1 1 *")
    return {"buyer": buyer, "olive": olive, "omar": omar, "star": star, "poor": poor, "idle": idle,
            "steady": steady, "yearly": yearly}


def _in_background(params: ReviewParameters) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def _run() -> None:
        try:
            state = vendor_review(**dict(params), return_state=True)
            outcome["run_id"] = str(state.state_details.flow_run_id)
            outcome["result"] = state.result()
        except BaseException as error:  # surfaced by the test's assertion
            outcome["error"] = error

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until_paused(seconds: float = 60) -> None:
    """Until the run waits for an approval: an answer that lands before the pause is otherwise left to the sweep
    once the gateway's few seconds of retries are spent, which a loaded machine can exceed."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            with session() as db:
                waiting = db.exec(select(HumanStep.flow_run_id).where(col(HumanStep.flow_run_id).is_not(None))).first()
            state = client.read_flow_run(UUID(waiting)).state if waiting else None
            if state is not None and state.is_paused():
                return
            time.sleep(0.1)
    raise AssertionError("the run never paused for an approval")


def _mails(smtp: Mailbox, prefix: str, to: str | None = None) -> list[Any]:
    return [m for m in smtp.messages(to=to) if m.subject.startswith(prefix)]


def _cards() -> dict[int, VendorScorecard]:
    with session() as db:
        return {c.vendor_id: c for c in db.exec(select(VendorScorecard))}


def _snapshot() -> tuple[list[str], int, int, list[dict[str, Any]]]:
    """What a re-run must leave as it was: messages queued, trail length, steps asked, scorecards."""
    with session() as db:
        return (sorted(db.exec(select(Notification.idempotency_key))), len(db.exec(select(AuditEvent)).all()),
                len(db.exec(select(HumanStep)).all()),
                [c.model_dump() for c in db.exec(select(VendorScorecard).order_by(col(VendorScorecard.id)))])


def _events(action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == action)))


def _artifact_rows(flow_run_id: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    assert artifacts, "the run published its scorecards table"
    latest = max(artifacts, key=lambda a: a.created or 0)
    data = latest.data if isinstance(latest.data, list) else json.loads(str(latest.data))
    return list(data)


def test_a_quarterly_review_scores_asks_once_and_applies_only_what_is_approved(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation()
    thread, outcome = _in_background(ReviewParameters(period=PERIOD))

    [approvals] = smtp.wait_for(1, seconds=60, to=org["buyer"].email)
    assert approvals.subject == f"Approval needed: 2 changes of vendor standing, {PERIOD}"
    star_link, poor_link = links_in(approvals.html)
    assert org["star"].code in approvals.text and org["poor"].code in approvals.text
    assert org["idle"].code not in approvals.text and org["steady"].code not in approvals.text
    page = gateway.client.get(star_link)
    assert f"Change {org['star'].name} ({org['star'].code}) from approved to preferred" in page.text
    _wait_until_paused()
    assert answer_link(gateway.client, star_link, {"decision": "approve", "comment": ""}).status_code == 200
    rejected = answer_link(gateway.client, poor_link, {"decision": "reject", "comment": "One bad month; watch it."})
    assert rejected.status_code == 200
    thread.join(timeout=90)
    assert "error" not in outcome, outcome.get("error")
    result: ReviewOutcome = outcome["result"]
    assert (result.status, result.vendors, result.scored, result.proposed, result.approved, result.rejected) \
        == ("reviewed", 4, 4, 2, 1, 1)

    cards = _cards()
    star, poor, idle, steady = (cards[org[k].id] for k in ("star", "poor", "idle", "steady"))
    assert org["yearly"].id not in cards, "a vendor reviewed yearly is not due in Q3"
    assert (star.deliveries, star.on_time_rate, star.fill_rate, star.defect_rate, star.score) == (3, 1.0, 1.0, 0.0, 100)
    assert (poor.deliveries, poor.on_time_rate, poor.fill_rate, poor.defect_rate) == (2, 0.0, 0.5, 0.3)
    assert poor.price_variance == pytest.approx(0.04) and poor.score == 38.5
    assert (idle.deliveries, idle.score, idle.standing_proposed) == (0, None, Standing.probation)
    assert (steady.on_time_rate, steady.standing_proposed) == (0.75, Standing.preferred)
    assert star.applied_at is not None and poor.applied_at is None
    assert idle.step_id is None and steady.step_id is None

    with session() as db:
        standings = {v.id: v for v in db.exec(select(Vendor))}
        trail_ok = verify(db).ok
    assert standings[org["star"].id].standing == Standing.preferred
    assert standings[org["poor"].id].standing == Standing.approved
    reviewed = standings[org["star"].id]
    assert reviewed.last_reviewed_at is not None and reviewed.next_review_at is not None
    assert reviewed.next_review_at > reviewed.last_reviewed_at
    assert standings[org["yearly"].id].last_reviewed_at is None
    [changed] = _events("vendor.standing_changed")
    assert (changed.entity_id, changed.actor, changed.data["from"], changed.data["to"]) \
        == (org["star"].id, org["buyer"].email, "approved", "preferred")
    [kept] = _events("vendor.standing_change_rejected")
    assert kept.entity_id == org["poor"].id and kept.data["comment"] == "One bad month; watch it."
    assert trail_ok

    by_person = Counter(m.to for m in _mails(smtp, "Vendor scorecards"))
    assert by_person == {org["olive"].email: 1, org["omar"].email: 1}, "one digest per owner"
    [olive_mail] = _mails(smtp, "Vendor scorecards", to=org["olive"].email)
    assert all(org[k].code in olive_mail.text for k in ("star", "poor", "idle"))
    [omar_mail] = _mails(smtp, "Vendor scorecards", to=org["omar"].email)
    assert org["steady"].code in omar_mail.text and org["yearly"].code not in omar_mail.text
    assert f"No deliveries in {PERIOD}: no score." in olive_mail.html and "probation, kept" in olive_mail.html
    assert "approved → <strong>preferred</strong> proposed, awaiting the procurement manager" in olive_mail.html
    assert len(_mails(smtp, "Approval needed")) == 1

    with session() as db:
        built = occasions.find(db, "vendor-review", PERIOD)
    assert built is not None and built.report_path is not None and built.status == OccasionStatus.closed
    report = Path(built.report_path)
    assert built.report_sha256 == hashlib.sha256(report.read_bytes()).hexdigest() == result.report_sha256
    html = report.read_text()
    assert html.count("<rect ") == 3 and "no deliveries: no score, standing kept" in html and "<svg" in html
    rows = {r["vendor"]: r for r in _artifact_rows(outcome["run_id"])}
    assert set(rows) == {org[k].code for k in ("star", "poor", "idle", "steady")}
    assert rows[org["star"].code]["decision"] == "approved" and rows[org["poor"].code]["decision"] == "rejected"
    assert rows[org["idle"].code]["score"] == "—"

    # A re-run of the same quarter scores, asks, sends and records nothing new.
    before, sent = _snapshot(), len(smtp.messages())
    again = vendor_review(period=PERIOD)
    assert (again.scored, again.approved, again.rejected, again.report_sha256) == (0, 1, 1, result.report_sha256)
    assert _snapshot() == before
    assert len(smtp.messages()) == sent


def test_a_change_nobody_decides_expires_and_the_standing_stays(prefect_api: str, gateway: Gateway,
                                                                 smtp: Mailbox) -> None:
    _person("Paula Procurement", roles=["procurement_manager"])
    vendor = _vendor(_person("Olive Owner"), [{"delivered": IN_PERIOD + timedelta(days=9)}])  # late: probation
    thread, outcome = _in_background(ReviewParameters(period=PERIOD))
    _wait_until_paused()
    report = sweep(now=utcnow() + timedelta(days=60))  # past the step's final deadline
    assert len(report.expired) == 1
    thread.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    assert (outcome["result"].proposed, outcome["result"].expired, outcome["result"].approved) == (1, 1, 0)
    with session() as db:
        assert db.get(Vendor, vendor.id).standing == Standing.approved  # type: ignore[union-attr]
    [expired] = _events("vendor.standing_change_expired")
    assert (expired.entity_id, expired.data["proposed"]) == (vendor.id, "probation")
    assert _cards()[vendor.id or 0].applied_at is None


def test_an_approved_fall_to_probation_is_a_finding_with_an_action_for_the_owner(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    buyer = _person("Paula Procurement", roles=["procurement_manager"])
    owner = _person("Olive Owner")
    vendor = _vendor(owner, [{"delivered": IN_PERIOD + timedelta(days=9)}])  # late: approved → probation
    thread, outcome = _in_background(ReviewParameters(period=PERIOD))
    [approvals] = smtp.wait_for(1, seconds=60, to=buyer.email)
    [link] = links_in(approvals.html)
    _wait_until_paused()
    assert answer_link(gateway.client, link, {"decision": "approve", "comment": "Agreed."}).status_code == 200
    thread.join(timeout=90)
    assert "error" not in outcome, outcome.get("error")
    assert (outcome["result"].proposed, outcome["result"].approved) == (1, 1)

    card = _cards()[vendor.id or 0]
    with session() as db:
        [finding] = db.exec(select(Finding)).all()
        [action] = db.exec(select(CorrectiveAction)).all()
        review = occasions.find(db, "vendor-review", PERIOD)
        step = db.get(HumanStep, action.step_id)
    assert review is not None and step is not None
    assert (finding.origin_type, finding.origin_id, finding.code, finding.severity, finding.process) \
        == ("vendor_scorecard", card.id, "standing-fell", Criticality.medium, "vendor-review")
    assert (finding.occasion_id, finding.verifier_id, finding.status) == (review.id, buyer.id, FindingStatus.open)
    assert (action.owner_id, action.status, step.person_id, step.form) == (owner.id, ActionStatus.open, owner.id,
                                                                           "action_done")
    [told] = _mails(smtp, "Corrective action needed", to=owner.email)
    assert vendor.code in told.text and "approved → probation" in told.text
    [action_link] = links_in(told.html)
    page = gateway.client.get(action_link)
    assert page.status_code == 200 and step.title in page.text

    before, sent = _snapshot(), len(smtp.messages())
    vendor_review(period=PERIOD)
    assert _snapshot() == before and len(smtp.messages()) == sent, "raised once, told once"


def test_contract_notices_at_60_and_30_days_are_sent_once(prefect_api: str, smtp: Mailbox) -> None:
    olive, omar = _person("Olive Owner"), _person("Omar Owner")
    now = today()
    soon = _vendor(olive, contract_end=now + timedelta(days=45))
    close = _vendor(olive, contract_end=now + timedelta(days=20))
    warned = _vendor(olive, contract_end=now + timedelta(days=25))
    _vendor(olive, contract_end=now + timedelta(days=61))
    _vendor(olive, contract_end=now - timedelta(days=1))
    urgent = _vendor(omar, contract_end=now + timedelta(days=10))
    with session() as db:  # an earlier run gave the 60-day notice for this contract
        assert warned.contract_end is not None
        db.add(ContractNotice(vendor_id=warned.id or 0, contract_end=warned.contract_end, days_before=60))

    first = vendor_contract_notices()
    assert first.contract_notices == 4
    [olive_mail] = _mails(smtp, "Vendor contracts ending soon", to=olive.email)
    assert f"<strong>{soon.code} {soon.name}</strong>: the contract ends on <strong>{soon.contract_end}</strong>, " \
           "in 45 days (60-day notice)" in olive_mail.html
    assert "in 20 days (30-day notice)" in olive_mail.html and "in 25 days (30-day notice)" in olive_mail.html
    assert olive_mail.html.count("-day notice") == 3, "contracts past the horizon or ended are not mentioned"
    [omar_mail] = _mails(smtp, "Vendor contract ending soon", to=omar.email)
    assert urgent.code in omar_mail.html and "(30-day notice)" in omar_mail.html
    with session() as db:
        recorded = Counter((n.vendor_id, n.days_before) for n in db.exec(select(ContractNotice)))
    assert recorded == {(soon.id, 60): 1, (close.id, 60): 1, (close.id, 30): 1, (warned.id, 60): 1,
                        (warned.id, 30): 1, (urgent.id, 60): 1, (urgent.id, 30): 1}, "both thresholds recorded"

    sent = len(smtp.messages())
    daily = vendor_contract_notices()
    assert (daily.status, daily.contract_notices) == ("contracts", 0)
    assert len(smtp.messages()) == sent, "never again on later runs"
    assert vendor_review(period=PERIOD).proposed == 0
    assert len(_mails(smtp, "Vendor contract")) == 2, "the review itself sends no contract notice"


def test_one_vendor_by_code_even_when_not_due_and_without_deliveries(prefect_api: str, smtp: Mailbox) -> None:
    owner = _person("Olive Owner")
    yearly = _vendor(owner, standing=Standing.probation, cadence="0 7 1 1 *")
    _vendor(owner, [{}])
    result = vendor_review(period=PERIOD, vendor_code=f" {yearly.code} ")
    assert (result.vendors, result.scored, result.proposed) == (1, 1, 0)
    [card] = _cards().values()
    assert (card.vendor_id, card.deliveries, card.score, card.on_time_rate, card.standing_proposed) \
        == (yearly.id, 0, None, None, Standing.probation)
    [mail] = smtp.messages()
    assert mail.subject == f"Vendor scorecards {PERIOD}: 1 vendor you manage"
    assert "No deliveries in 2026-Q3: no score." in mail.html and "probation, kept" in mail.html
    with session() as db:
        [queued] = db.exec(select(Notification.body_text)).all()
    assert "No deliveries in 2026-Q3: no score, and the standing stays probation." in queued
    with session() as db:
        assert db.exec(select(HumanStep)).all() == []


def test_preview_writes_and_sends_nothing(prefect_api: str, smtp: Mailbox) -> None:
    org = _organisation()
    _vendor(org["olive"], contract_end=today() + timedelta(days=20))  # due for review too, without deliveries
    result = vendor_review(period=PERIOD, preview=True)
    assert result.status == "preview" and result.vendors == 5
    assert result.detail.startswith("5 scorecard(s), 2 change(s) of standing in 3 message(s)")
    notices = vendor_contract_notices(preview=True)
    assert (notices.status, notices.contract_notices) == ("preview", 1)
    assert notices.detail.startswith("1 contract notice(s) in 1 message(s)")
    with session() as db:
        for table in (VendorScorecard, HumanStep, Notification, ContractNotice, AuditEvent, Occasion):
            assert db.exec(select(table)).all() == [], table.__name__
        assert all(v.last_reviewed_at is None for v in db.exec(select(Vendor)))
    assert smtp.messages() == []
    assert not (get_settings().data_dir / "reports").exists()


def test_without_a_procurement_manager_the_error_names_the_role(prefect_api: str, smtp: Mailbox) -> None:
    owner = _person("Olive Owner")
    _vendor(owner, [{}])  # approved → preferred: a change someone must approve
    with pytest.raises(ValueError, match="no person has the role 'procurement_manager'"):
        vendor_review(period=PERIOD)


def test_an_unknown_vendor_is_named_in_the_error(prefect_api: str, registry_db: str) -> None:
    with pytest.raises(ValueError, match="vendor 'NOPE' does not exist"):
        vendor_review(period=PERIOD, vendor_code="NOPE")


def test_the_aggregate_query_agrees_with_the_rules(any_db: str) -> None:
    """The SQL sums and the pure `totals` over the same lines are the same numbers, on both databases."""
    owner = _person("Olive Owner")
    specs = [{}, {"delivered": IN_PERIOD + timedelta(days=3), "received": 90, "rejected": 4, "unit_price": "10.25"},
             {"delivered": None, "received": 0, "unit_price": "9.50", "ordered": 40},
             {"promised": date(2026, 7, 1), "delivered": date(2026, 6, 30), "contracted_price": "12.3456"},
             {"promised": date(2026, 9, 30), "delivered": date(2026, 9, 30), "ordered": 7, "received": 7}]
    vendor = _vendor(owner, specs)
    other = _vendor(owner, [{"promised": date(2026, 10, 1)}])  # the first day after the quarter
    with session() as db:
        lines = [DeliveryLine(promised=d.promised_date, delivered=d.delivered_date, ordered=d.qty_ordered,
                              received=d.qty_received, rejected=d.qty_rejected, unit_price=d.unit_price,
                              contracted_price=d.contracted_price)
                 for d in db.exec(select(Delivery).where(Delivery.vendor_id == vendor.id)
                                  .where(col(Delivery.promised_date) < date(2026, 10, 1)))]
    measured = measure.fn(PERIOD, [vendor.id or 0, other.id or 0])
    assert set(measured) == {vendor.id}, "a vendor without lines in the period has no totals"
    assert measured[vendor.id or 0] == totals(lines)


def test_the_procurement_manager_is_found_by_role(any_db: str) -> None:
    _person("Rita Roles", roles=["procurement_manager_deputy"])  # a longer role is not the role
    _person("Ivan Inactive", roles=["procurement_manager"], active=False)
    manager = _person("Paula Procurement", roles=["buyer", "procurement_manager"])
    with session() as db:
        assert procurement_manager(db).id == manager.id


def _run_state(api: str, run_id: str) -> str:
    return str(httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]["type"])


def _until(what: str, probe: Callable[[], bool], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_under_a_deployment_each_wait_suspends_and_the_rerun_repeats_nothing(
        served: Served, gateway: Gateway, smtp: Mailbox) -> None:
    """Suspended once per undecided change; every resume re-runs the flow from the top, which asks and sends
    nothing again; a change answered out of turn resumes the run, which applies it and waits on for the other."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    org = _organisation()
    # `served` waits for the compliance audit's deployment; the others register around the same time.
    _until("the vendor-review deployment", lambda: httpx.get(
        f"{served.api}/deployments/name/vendor-review/vendor-review", timeout=10).status_code == 200, seconds=60)
    started = run_deployment("vendor-review/vendor-review", parameters={"period": PERIOD}, timeout=0)
    assert isinstance(started, FlowRun)
    run_id = str(started.id)
    [approvals] = smtp.wait_for(1, seconds=120, to=org["buyer"].email)
    star_link, poor_link = links_in(approvals.html)

    def suspended_on(vendor: str, again: str = "") -> bool:
        # The run holds every change it asked (one digest of gates): it waits on the one its pause is keyed by.
        with session() as db:
            step = db.exec(select(HumanStep).where(HumanStep.key == f"vendor-{org[vendor].id}-standing-{PERIOD}")).one()
        state = httpx.get(f"{served.api}/flow_runs/{run_id}", timeout=10).json()["state"]
        return (step.flow_run_id == run_id and state["type"] == "PAUSED"
                and state["state_details"].get("pause_key") == f"step-{step.id}{again}")

    _until("the run to suspend for the first change", lambda: suspended_on("star"))
    # The second change answered first: its answer resumes the run, whose re-run applies it and waits on.
    assert answer_link(gateway.client, poor_link, {"decision": "reject", "comment": "Not yet."}).status_code == 200
    _until("the re-run to suspend for the first change again", lambda: suspended_on("star", again="-1"))
    cards = _cards()
    assert (cards[org["poor"].id].decided_at is not None, cards[org["star"].id].decided_at) == (True, None), \
        "the change answered out of turn is applied before the run waits on for the other"
    assert answer_link(gateway.client, star_link, {"decision": "approve", "comment": ""}).status_code == 200
    _until("the run to complete", lambda: _run_state(served.api, run_id) in ("COMPLETED", "FAILED", "CRASHED"))
    assert _run_state(served.api, run_id) == "COMPLETED", served.log_tail()

    with session() as db:
        standings = {v.id: v.standing for v in db.exec(select(Vendor))}
        keys = list(db.exec(select(Notification.idempotency_key)))
        report = verify(db)
    assert (standings[org["star"].id], standings[org["poor"].id]) == (Standing.preferred, Standing.approved)
    assert len(keys) == len(set(keys)) == 3, "two owner digests and one approval digest, however often re-run"
    assert Counter(e.entity_id for e in _events("vendor.scored")) == {org[k].id: 1 for k in
                                                                      ("star", "poor", "idle", "steady")}
    assert len(_events("vendor.standing_changed")) == len(_events("vendor.standing_change_rejected")) == 1
    assert report.ok, report.problems
    assert len(smtp.messages()) == 3
