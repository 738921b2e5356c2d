"""`ops demo drill`: an unscheduled fire evacuation at the demo head office, against the running local stack.

Most people acknowledge from their links, one asks for assistance, three never answer; a warden then accounts
for one of the missing from the escalation message, as a warden would after finding them at the car park.
"""

from __future__ import annotations

import time

from sqlmodel import select

from demo.browser import answer_link, links_in, new_mail, reachable_stack, run_state, wait_for
from engine import inbox, runs
from registry import Drill, session
from registry.trail import verify

FACILITY = "HQ"
WINDOW_MINUTES = 2.0
ESCALATE_AFTER_MINUTES = 1.0
ANSWERS = {
    "dora": ("accounted", "Assembly point A"), "clara": ("accounted", "Assembly point A"),
    "ivan": ("accounted", "Car park"), "fatima": ("accounted", "Assembly point A"),
    "wendy": ("accounted", "Assembly point B"), "sam": ("needs_assistance", "Stairwell B, first floor"),
}


def main() -> None:
    http, api = reachable_stack()
    seen = {m.key for m in inbox.messages()}
    started = time.monotonic()
    print(f"Starting an unscheduled fire evacuation drill at {FACILITY} (window {WINDOW_MINUTES:g} min, "
          f"escalation after {ESCALATE_AFTER_MINUTES:g} min)…")
    run = runs.start("emergency-drill/emergency-drill", {
        "facility": FACILITY, "window_minutes": WINDOW_MINUTES, "escalate_after_minutes": ESCALATE_AFTER_MINUTES})
    alerts = wait_for("the drill alerts", lambda: (lambda found: found if len(found) >= 9 else None)(
        new_mail(seen, "DRILL:")), 120)
    print(f"  {len(alerts)} people alerted, each with a link of their own")
    for mail in alerts:
        who = mail.to.split(".")[0]
        if who not in ANSWERS:
            print(f"  {mail.to}: no answer")
            continue
        status, where = ANSWERS[who]
        answer_link(http, links_in(mail.html)[0], {"status": status, "location": where}).raise_for_status()
        print(f"  {mail.to}: {status.replace('_', ' ')} ({where})")
    escalation = wait_for("the escalation to the wardens", lambda: new_mail(seen, "Escalated to you") or None, 150)
    warden_mail = next((m for m in escalation if m.to.startswith("wendy")), escalation[0])
    url = links_in(warden_mail.html)[0]
    answer_link(http, url, {"status": "accounted", "location": "Car park (found by the warden)"}).raise_for_status()
    print(f"  {warden_mail.to} was told who is missing and accounted for one of them from the message")
    final = wait_for("the drill to close", lambda: (lambda s: s if s in ("COMPLETED", "FAILED", "CRASHED") else None)(
        run_state(http, api, str(run.id))), 240, 1)
    with session() as db:
        drill = db.exec(select(Drill).where(Drill.flow_run_id == str(run.id))).one()
        trail = verify(db)
    recovery = "not achieved" if drill.recovery_minutes is None else f"{drill.recovery_minutes:.1f} min"
    print(f"Drill closed ({final}): {drill.accounted} of {drill.total} accounted for, median "
          f"{drill.median_seconds or 0:.0f} s, 90th percentile {drill.p90_seconds or 0:.0f} s, recovery {recovery}")
    print(f"  after-action report: {drill.report_path}")
    print(f"  trail: {'intact' if trail.ok else 'TAMPERED'} ({trail.events} events); "
          f"whole story {time.monotonic() - started:.0f} s")
    if final != "COMPLETED" or not trail.ok:
        raise SystemExit(1)
