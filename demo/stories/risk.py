"""`ops demo risk`: the quarterly risk review, end to end, against the running local stack.

Owners re-score from the inbox; the Director accepts one risk above appetite until a date at the gate and has
another treated; then that accepted risk is re-scored, its acceptance is voided and the Director is asked again.
People are played the way their browsers would: each link is opened (GET), its form read, and answered (POST).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx
from sqlmodel import col, select

from demo.browser import answer_link, links_in, new_mail, reachable_stack, run_state, wait_for
from engine import inbox, occasions, periods, runs
from engine.settings import get_settings
from registry import Occasion, Person, session
from registry.risk import AcceptanceStatus, Risk, RiskAcceptance
from registry.trail import verify

DEPLOYMENT = "risk-review/risk-review"
PROCESS = "risk-review"
TITLE = re.compile(r"Re-score risk ([A-Z0-9-]+)")
DECIDE = re.compile(r"Risk ([A-Z0-9-]+) above appetite")


def _free_period() -> str:
    """The current quarter, or the next one with no review yet (so the demo can run again)."""
    day = periods.today()
    with session() as db:
        if db.exec(select(Risk.id)).first() is None:
            raise SystemExit("the demo risk register is missing: run `ops init`")
        while occasions.find(db, PROCESS, (quarter := periods.quarter_of_day(day)).name) is not None:
            day = quarter.end + timedelta(days=1)
    return quarter.name


def _code(http: httpx.Client, url: str, pattern: re.Pattern[str]) -> str:
    found = pattern.search(http.get(url).text)
    return found.group(1) if found else ""


def _rescore(risk: Risk, up: bool) -> dict[str, str]:
    """A re-score that moves the residual one step, within the inherent score (the form refuses more)."""
    if up and risk.residual_likelihood < risk.inherent_likelihood:
        return {"residual_likelihood": str(risk.residual_likelihood + 1)}
    if up and risk.residual_impact < risk.inherent_impact:
        return {"residual_impact": str(risk.residual_impact + 1)}
    if risk.residual_likelihood > 1:
        return {"residual_likelihood": str(risk.residual_likelihood - 1)}
    return {"residual_impact": str(max(1, risk.residual_impact - 1))}


def _risks() -> dict[str, Risk]:
    with session() as db:
        return {r.code: r for r in db.exec(select(Risk))}


def _answer_owners(http: httpx.Client, seen: set[str]) -> None:
    """Every owner's digest answered: the first risk not above appetite re-scored down, the rest confirmed."""
    digests = wait_for("the owners' re-score requests", lambda: new_mail(seen, "Risk review: re-score") or None, 120)
    risks, rescored, confirmed, moved = _risks(), 0, 0, ""
    for mail in digests:
        for url in links_in(mail.html):
            code = _code(http, url, TITLE)
            if not moved and risks[code].residual_likelihood > 1:
                fields = {"decision": "rescore", **_rescore(risks[code], up=False),
                          "rationale": "The new controls were tested this quarter and work."}
                moved, rescored = code, rescored + 1
            else:
                fields, confirmed = {"decision": "confirm"}, confirmed + 1
            answer_link(http, url, fields).raise_for_status()
    print(f"  {len(digests)} owners asked in one digest each; {rescored} risk re-scored ({moved}, down), "
          f"{confirmed} confirmed — each applied the moment it was answered")


def main() -> None:
    settings = get_settings()
    http, api = reachable_stack()
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    period = _free_period()
    seen = {m.key for m in inbox.messages()}
    started = time.monotonic()
    print(f"Starting the risk review for {period} (re-score window: 1 minute)…")
    run = runs.start(DEPLOYMENT, {"period": period, "rescore_minutes": 1})
    print(f"  flow run {run.name}: {ui}/runs/flow-run/{run.id}")
    wait_for("the review to open", lambda: run_state(http, api, str(run.id)) in ("COMPLETED", "FAILED", "CRASHED")
             or None, 120)
    _answer_owners(http, seen)

    print("Waiting for the re-score deadline and the follow-up run (the Director's gate)…")
    asked = wait_for("the Director's decision request",
                     lambda: new_mail(seen, "Decision needed:") or None, 240)[0]
    links = links_in(asked.html)
    decided: dict[str, str] = {}
    for url in links:
        code = _code(http, url, DECIDE)
        if "accept" not in decided.values():
            until = periods.today() + timedelta(days=60)
            answer_link(http, url, {"decision": "accept", "accepted_until": until.isoformat(),
                                    "justification": "Insurance renewed; the remaining controls land next quarter"}
                        ).raise_for_status()
            decided[code] = "accept"
            print(f"  {code}: accepted until {until:%d %b %Y} at the Director's gate")
        else:
            owner = _owner_email(code)
            answer_link(http, url, {"decision": "treat", "action": f"Bring {code} within appetite: a second "
                                                                   "supplier or control, tested",
                                    "action_owner": owner}).raise_for_status()
            decided[code] = "treat"
            print(f"  {code}: treated — a corrective action for {owner}")
    closed = wait_for("the review to close", lambda: _closed(period), 240)
    report, status = closed.report_path, closed.status.value
    print(f"  review {period}: {status}, the run that waited at the gate resumed and wrote the report {report}")

    accepted = next((code for code, how in decided.items() if how == "accept"), None)
    if accepted is None:
        raise SystemExit("no risk was above appetite: nothing to accept")
    print(f"Re-scoring {accepted} from the UI's one-risk review: the acceptance no longer describes it…")
    seen = {m.key for m in inbox.messages()}
    again = runs.start(DEPLOYMENT, {"risk_code": accepted, "period": period, "rescore_minutes": 1})
    wait_for("the one-risk review to open", lambda: run_state(http, api, str(again.id)) in ("COMPLETED", "FAILED")
             or None, 120)
    [mail] = wait_for("the owner's re-score request",
                      lambda: new_mail(seen, "Risk review: re-score 1 risk") or None, 60)
    answer_link(http, links_in(mail.html)[0], {"decision": "rescore", **_rescore(_risks()[accepted], up=True),
                                               "rationale": "A new attack campaign targets our sector"}
                ).raise_for_status()
    asked_again = wait_for("the Director to be asked again",
                           lambda: new_mail(seen, "Decision needed: 1 risk above appetite") or None, 60)
    with session() as db:
        rows = list(db.exec(select(RiskAcceptance).join(Risk, col(Risk.id) == RiskAcceptance.risk_id)
                            .where(Risk.code == accepted).order_by(col(RiskAcceptance.id))))
        trail = verify(db)
    void = [a for a in rows if a.status == AcceptanceStatus.voided]
    pending = [a for a in rows if a.status == AcceptanceStatus.pending]
    print(f"  {accepted}: acceptance {'voided (' + void[0].void_reason + ')' if void else 'NOT voided'}; "
          f"the Director asked again ({len(asked_again)} message, {len(pending)} decision pending)")
    print(f"  trail: {'intact' if trail.ok else 'TAMPERED'} ({trail.events} events)")
    print(f"  whole story: {time.monotonic() - started:.0f} s")
    print(f"Look at: the inbox {settings.gateway_url}/inbox (the Director's new question is there), the report "
          f"{report}, the artifacts in the Prefect UI {ui}/artifacts")
    if status != "closed" or not void or not pending or not trail.ok:
        raise SystemExit(1)


def _owner_email(code: str) -> str:
    with session() as db:
        owner = db.exec(select(Person.email).join(Risk, col(Risk.owner_id) == Person.id).where(Risk.code == code)).one()
    return owner


def _closed(period: str) -> Occasion | None:
    with session() as db:
        occasion = occasions.find(db, PROCESS, period)
        return occasion if occasion is not None and occasion.closed_at is not None else None
