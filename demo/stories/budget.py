"""`ops demo budget`: the monthly budget variance, end to end, against the running local stack.

The cost centres' owners are played from the inbox as their browsers would: each justification link is opened
(GET), its form read and answered (POST). One owner asks for a corrective action, one justification is left
unanswered (the sweep escalates it to the owner's and the cost centre's managers), and the director signs the pack.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import unescape

import httpx
from sqlmodel import select

from demo.browser import answer_link, links_in, new_mail, reachable_stack, run_state, wait_for
from engine import inbox, occasions, periods, runs
from engine.settings import get_settings
from registry import CostCentre, Finding, HumanStep, Occasion, OccasionStatus, session
from registry.trail import verify

PROCESS = "budget-variance"
_FORECAST = re.compile(r"Forecast to year end[^<]*</th><td>([^<]+)</td>")
_TITLE = re.compile(r"<h1>([^<]+)</h1>")


def _free_month() -> periods.Period:
    """Last month, or the latest month before it whose variance has not been run (so the demo can run again)."""
    month = periods.month_of(periods.today()).previous()
    with session() as db:
        if db.exec(select(CostCentre)).first() is None:
            raise SystemExit("the demo budget is missing: run `ops init`")
        for _ in range(month.start.month):
            if occasions.find(db, PROCESS, month.name) is None:
                return month
            month = month.previous()
    raise SystemExit(f"every month of {month.start.year + 1} so far has had its variance run: to play the story "
                     "again, stop the stack, remove .ops-data and `make run` (a fresh registry, the demo seeded again)")


def _occasion(month: str) -> Occasion:
    with session() as db:
        found = occasions.find(db, PROCESS, month)
    assert found is not None
    return found


def _explanation(title: str, recurring: bool) -> str:
    """What an owner would write for the line: a price rise that will recur, income that slipped, or a one-off."""
    if recurring:
        return "A supplier raised its prices from October; the new contract runs a year."
    if "under budget" in title:
        return "A customer's November order slipped into January; it is confirmed, so the year is only short by it."
    return "A one-off charge fell in this month (a migration ran two weeks on both systems); it will not recur."


def _answer(http: httpx.Client, url: str, ask_for_action: bool) -> str:
    """Justify one line from its page, keeping the forecast the page shows; the line's title."""
    page = http.get(url)
    page.raise_for_status()
    forecast, title = _FORECAST.search(page.text), _TITLE.search(page.text)
    fields = {"explanation": _explanation(unescape(title[1]) if title else "", ask_for_action),
              "nature": "recurring" if ask_for_action else "one-off",
              "revised_forecast": unescape(forecast[1]) if forecast else "0"}
    if ask_for_action:
        fields |= {"corrective_action_needed": "true",
                   "action_description": "Re-tender the contract and cap spend at the budget until it is signed.",
                   "action_due": (periods.today() + timedelta(days=30)).isoformat()}
    answer_link(http, url, fields).raise_for_status()
    return unescape(title[1]) if title else url


def main() -> None:
    settings = get_settings()
    http, api = reachable_stack()
    month = _free_month()
    seen = {m.key for m in inbox.messages()}
    started = time.monotonic()
    print(f"Starting the budget variance of {month.label} (justification window: 1 minute)…")
    run = runs.start(f"{PROCESS}/{PROCESS}", {"month": month.name, "justification_minutes": 1})
    print(f"  flow run {run.name}: http://127.0.0.1:{settings.prefect_port}/runs/flow-run/{run.id}")
    wait_for("the month to open",
             lambda: run_state(http, api, str(run.id)) in ("COMPLETED", "FAILED", "CRASHED") or None, 120)
    requests = new_mail(seen, "Budget justification needed")
    if not requests:
        raise SystemExit(f"no justification request arrived; see the run in the Prefect UI ({run.id})")
    links = [(mail.to, url) for mail in requests for url in links_in(mail.html)]
    *answered, (left_to, _) = links
    print(f"  {len(requests)} owner(s) asked about {len(links)} line(s); {len(answered)} justified from their links:")
    acted = False
    for _, url in answered:
        # The first line over budget asks for a corrective action; the others are explained as one-offs.
        over = "over budget" in http.get(url).text
        title = _answer(http, url, ask_for_action=over and not acted)
        print(f"    - {title}{' (asks for a corrective action)' if over and not acted else ''}")
        acted = acted or over
    print(f"  left unanswered: the line of {left_to}")

    print("Waiting for the deadline: the sweep escalates the unanswered line, the follow-up run builds the pack…")
    escalated = wait_for("the escalation", lambda: new_mail(seen, "Escalated to you") or None, 240)
    print(f"  escalated to {', '.join(sorted({m.to for m in escalated}))}")
    signoff = wait_for("the sign-off request",
                       lambda: new_mail(seen, f"Sign-off needed: budget variance pack {month.label}") or None, 240)[0]
    url = links_in(signoff.html)[0]
    clicked = time.monotonic()
    answer_link(http, url, {"decision": "approve", "comment": "Reviewed the variances; approved."}).raise_for_status()
    occasion = _occasion(month.name)
    with session() as db:
        step = db.get(HumanStep, occasion.signoff_step_id)
        assert step is not None and step.flow_run_id is not None
        waiting_run = step.flow_run_id
    final = wait_for("the run to finish", lambda: (lambda s: s if s in ("COMPLETED", "FAILED", "CRASHED") else None)(
        run_state(http, api, waiting_run)), 120, 0.2)
    occasion = _occasion(month.name)
    with session() as db:
        findings = list(db.exec(select(Finding).where(Finding.occasion_id == occasion.id)))
        trail = verify(db)
    print(f"Sign-off approved; the waiting run ended {final} {time.monotonic() - clicked:.1f} s after the click.")
    print(f"  budget variance {month.label}: {occasion.status.value}; pack {occasion.report_path}")
    print(f"  {len(findings)} corrective action(s) raised: " + "; ".join(f.description for f in findings))
    print(f"  trail: {'intact' if trail.ok else 'TAMPERED'} ({trail.events} events)")
    print(f"  whole story: {time.monotonic() - started:.0f} s")
    print(f"Look at: the inbox {settings.gateway_url}/inbox, the run's artifacts in the Prefect UI "
          f"http://127.0.0.1:{settings.prefect_port}/runs, the pack's CSV beside its PDF")
    if final != "COMPLETED" or occasion.status != OccasionStatus.closed or not trail.ok:
        raise SystemExit(1)
