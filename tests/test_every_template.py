"""Every report, message and page renders on an empty registry and on the registry a fresh install seeds.

The flows build their own contexts here: the operations report runs for real and mails its list over a real SMTP
server; the other processes render what they would send through their preview mode. The last test walks
templates/ and fails for a template no test of the suite renders, so a new one cannot be forgotten.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import col, func, select

from engine.deployments import PROJECT_ROOT
from engine.settings import get_settings
from flows.compliance.audit.flow import compliance_audit
from flows.continuity.drill.flow import emergency_drill
from flows.continuity.plan_review.flow import continuity_review
from flows.engine.deadline_sweep.flow import deadline_sweep
from flows.finance.budget_variance.flow import budget_variance
from flows.reporting.operations_report.flow import operations_report
from flows.reporting.operations_report.rules import DISTRIBUTION_ROLE
from flows.risk.risk_review.dispatch import risk_review_dispatch
from flows.risk.risk_review.flow import risk_review
from flows.supply.vendor_review.flow import vendor_review
from flows.supply.vendor_review.notices import vendor_contract_notices
from registry import Facility, Notification, session
from registry.people import people_with_role
from tests import factories
from tests.conftest import TEMPLATES_USED, WALK_TEST, Mailbox, unrendered_templates, whole_suite

# The periods a person runs by hand (the failure of issue 9) and the two the deployments run on schedule.
PERIODS = ["this-month", "last-month", "last-week"]


def _fresh_install() -> None:
    """`ops init` as `make run` does it: the schema, the demo organisation and its imported data."""
    done = subprocess.run([sys.executable, "-m", "engine.cli", "init"], cwd=PROJECT_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(params=["empty", "demo"])
def fresh(request: pytest.FixtureRequest, smtp: Mailbox) -> str:
    """This test's registry, left empty or seeded as a fresh install seeds it."""
    if request.param == "demo":
        _fresh_install()
    return str(request.param)


def test_the_operations_report_is_built_and_mailed_on_a_fresh_install(
        prefect_api: str, fresh: str, smtp: Mailbox) -> None:
    with session() as db:
        if fresh == "empty":  # one reader and no data at all: no KPI, no finding, so neither chart is drawn
            reader = factories.person(db, "Only Reader")
            reader.roles = [DISTRIBUTION_ROLE]
            db.add(reader)
        readers = sorted(p.email for p in people_with_role(db, DISTRIBUTION_ROLE))
    assert readers
    for number, period in enumerate(PERIODS, start=1):
        outcome = operations_report(period=period)
        assert all(Path(p).is_file() for p in (outcome.html, outcome.pdf, outcome.csv)), period
        assert (outcome.recipients, outcome.sent) == (len(readers), len(readers)), period
        for reader in readers:
            mails = smtp.wait_for(number, to=reader)
            assert len(mails) == number and mails[-1].subject.startswith("Operations report "), period
    with session() as db:
        waiting = db.exec(select(func.count()).select_from(Notification)
                          .where(col(Notification.status) != "sent")).one()
    assert waiting == 0, "every message of the report went out"


def test_every_process_previews_what_it_would_send_on_the_demo_registry(prefect_api: str, smtp: Mailbox) -> None:
    _fresh_install()
    with session() as db:
        facility = db.exec(select(Facility.code).order_by(col(Facility.id))).first()
    assert facility is not None
    previews = [
        compliance_audit(preview=True),
        continuity_review(preview=True, lead_days=180),
        emergency_drill(facility=facility, preview=True),
        emergency_drill(facility=facility, kind="it_outage_tabletop", preview=True),
        vendor_review(preview=True),
        vendor_contract_notices(preview=True),
        budget_variance(preview=True),
        risk_review(preview=True),
        risk_review_dispatch(preview=True),
    ]
    assert all(outcome.status == "preview" for outcome in previews if hasattr(outcome, "status")), previews
    deadline_sweep()
    assert smtp.messages() == [], "a preview sends nothing"


def test_a_drill_nobody_answers_ends_with_its_report_on_the_demo_registry(
        prefect_api: str, smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ops demo drill`'s fire drill with nobody answering: alerts, escalation, headcount, report, actions."""
    _fresh_install()
    monkeypatch.setenv("OPS_DRILL_POLL_SECONDS", "0.2")
    get_settings.cache_clear()
    with session() as db:
        facility = db.exec(select(Facility.code).order_by(col(Facility.id))).first()
    assert facility is not None
    outcome = emergency_drill(facility=facility, window_minutes=0.1, escalate_after_minutes=0.03)
    assert (outcome.status, outcome.accounted) == ("closed", 0) and outcome.total > 0, outcome
    assert Path(outcome.report).is_file() and outcome.findings > 0, outcome
    subjects = {m.subject.split(":")[0] for m in smtp.messages()}
    assert "DRILL" in subjects and any("after-action" in s.lower() for s in subjects), subjects


def test_every_template_file_is_rendered_by_some_test(request: pytest.FixtureRequest) -> None:
    """Runs last (tests/conftest.py orders it): every file under templates/ was rendered by a test before it.

    Under pytest-xdist (`make test`) each worker renders only its share, so the controller makes this check over
    what every worker rendered, at the session's end (tests/conftest.py), and fails the session instead."""
    assert request.node.originalname == WALK_TEST
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("checked over every worker's templates by the xdist controller at the session's end")
    if not whole_suite(request.session.items):
        pytest.skip("the template walk needs the whole suite: other tests render the templates")
    assert (unrendered := unrendered_templates(TEMPLATES_USED)) == [], \
        f"no test renders {', '.join(unrendered)}: render each where its flow builds it"
