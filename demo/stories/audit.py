"""`ops demo`: the quarterly compliance audit, end to end, against the running local stack.

People are played the way their browsers would: each link is opened (GET), its form read, and answered (POST).
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlmodel import select

from demo.browser import answer_link, links_in, new_mail, reachable_stack, run_state, wait_for
from engine import inbox, runs
from engine.deadlines import quarter_of
from engine.settings import get_settings
from registry import Audit, Finding, Framework, HumanStep, Occasion, OccasionStatus, session
from registry.clock import utcnow
from registry.demo import DEMO_FRAMEWORK
from registry.trail import verify


def _free_period() -> str:
    """The current quarter, or the next one with no signed-off audit (so the demo can run again)."""
    moment = utcnow()
    with session() as db:
        framework = db.exec(select(Framework).where(Framework.name == DEMO_FRAMEWORK)).first()
        if framework is None:
            raise SystemExit("the demo organisation is missing: run `ops init`")
        while True:
            period = quarter_of(moment, get_settings().timezone)
            audit = db.exec(select(Audit).where(Audit.framework_id == framework.id, Audit.period == period)).first()
            if audit is None:
                return period
            moment += timedelta(days=92)


def _occasion(period: str) -> Occasion:
    with session() as db:
        audit = db.exec(select(Audit).join(Framework).where(Framework.name == DEMO_FRAMEWORK,
                                                            Audit.period == period)).one()
        occasion = db.get(Occasion, audit.occasion_id)
    assert occasion is not None
    return occasion


def main() -> None:
    settings = get_settings()
    http, api = reachable_stack()
    period = _free_period()
    seen = {m.key for m in inbox.messages()}
    started = time.monotonic()
    print(f"Starting the compliance audit of {DEMO_FRAMEWORK} for {period} (evidence window: 1 minute)…")
    run = runs.start("compliance-audit/compliance-audit",
                     {"period": period, "evidence_window_minutes": 1})
    print(f"  flow run {run.name}: {settings.gateway_url.replace('8080', str(settings.prefect_port))}"
          f"/runs/flow-run/{run.id}")
    wait_for("the audit to open",
             lambda: run_state(http, api, str(run.id)) in ("COMPLETED", "FAILED", "CRASHED") or None, 120)
    requests = new_mail(seen, "Evidence needed")
    if not requests:
        raise SystemExit(f"no evidence request arrived; see the run in the Prefect UI ({run.id})")
    answered = 0
    unanswered = []
    for mail in requests:
        for position, url in enumerate(links_in(mail.html)):
            if "hugo" in mail.to and position == 1:
                unanswered.append(url)
                continue
            if "ivan" in mail.to and position == 0:
                fields = {"result": "fail", "note": "Two leavers still had VPN access."}
            else:
                fields = {"result": "pass", "note": "Checked.", "evidence_url": "https://wiki.demo.example/evidence"}
            response = answer_link(http, url, fields)
            response.raise_for_status()
            answered += 1
    print(f"  {len(requests)} owners asked; {answered} controls answered from their links, "
          f"{len(unanswered)} left unanswered, one attested as failing")
    print("Waiting for the evidence deadline and the evaluation run…")
    signoff = wait_for("the sign-off request",
                    lambda: new_mail(seen, f"Sign-off needed: {DEMO_FRAMEWORK} audit {period}") or None, 240)[0]
    url = links_in(signoff.html)[0]
    clicked = time.monotonic()
    answer_link(http, url, {"decision": "approve", "comment": "Reviewed the findings; approved."}).raise_for_status()
    with session() as db:
        occasion = _occasion(period)
        step = db.get(HumanStep, occasion.signoff_step_id)
        assert step is not None and step.flow_run_id is not None
        waiting_run = step.flow_run_id
    wait_for("the run to resume",
             lambda: run_state(http, api, waiting_run) in ("RUNNING", "COMPLETED") or None, 120, 0.1)
    resumed = time.monotonic() - clicked
    final = wait_for("the run to finish", lambda: (lambda s: s if s in ("COMPLETED", "FAILED", "CRASHED") else None)(
        run_state(http, api, waiting_run)), 120, 0.2)
    with session() as db:
        occasion = _occasion(period)
        findings = list(db.exec(select(Finding).where(Finding.occasion_id == occasion.id)))
        trail = verify(db)
        status = occasion.status
    print(f"Sign-off approved; the waiting run was running again {resumed:.2f} s after the click and ended {final}.")
    print(f"  audit {period}: {status.value}; {len(findings)} finding(s): "
          + ", ".join(f"{f.severity.value}" for f in findings))
    print(f"  trail: {'intact' if trail.ok else 'TAMPERED'} ({trail.events} events)")
    print(f"  whole story: {time.monotonic() - started:.0f} s")
    print(f"Look at: the inbox {settings.gateway_url}/inbox, the runs and artifacts in the Prefect UI "
          f"http://127.0.0.1:{settings.prefect_port}/runs")
    if final != "COMPLETED" or status != OccasionStatus.closed or not trail.ok:
        raise SystemExit(1)

