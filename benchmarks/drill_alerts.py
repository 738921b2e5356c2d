"""A drill for a whole site: from "start" to every participant's alert accepted by the mail server.

    .venv/bin/python benchmarks/drill_alerts.py [--people 500]

A throw-away SQLite registry gets one facility with `--people` on its roster (two of them wardens) and a loopback
SMTP server (the mail catcher the local stack runs). Timed, in one run:

- the drill's own steps, called as its tasks call them: open the drill (a drill row, one human step and one
  participant row per person, the trail event) and alert everyone (render each alert, mint each link, deliver);
- the same number of alerts through Apprise, one `notify` per message (a new SMTP session and TLS context each);
- the bare floor: the same number of pre-built messages through `smtplib` over one session.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import socket
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="ops-drill-bench-"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = _free_port()
MAIL_URL = f"mailto://127.0.0.1:{PORT}?from=ops%40bench.example&mode=insecure"
os.environ.update({"PREFECT_HOME": str(WORK / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "OPS_DATA_DIR": str(WORK / "data"), "OPS_MAIL_URL": MAIL_URL})
sys.path.insert(0, str(PROJECT_ROOT))

import apprise  # noqa: E402

from engine import mailcatcher  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from flows.emergency_drill import DrillParameters, alert_participants, open_drill  # noqa: E402
from registry import Facility, Person, RosterEntry, RosterRole, session  # noqa: E402
from registry.migrate import upgrade  # noqa: E402


def _site(people: int) -> None:
    upgrade()
    with session() as db:
        site = Facility(code="SITE", name="Bench site", address="1 Bench Road")
        db.add(site)
        db.flush()
        persons = [Person(name=f"Person {i}", email=f"person{i}@bench.example") for i in range(people)]
        db.add_all(persons)
        db.flush()
        db.add_all(RosterEntry(facility_id=site.id or 0, person_id=p.id or 0, area=f"Floor {i % 5}",
                               role=RosterRole.warden if i < 2 else RosterRole.occupant)
                   for i, p in enumerate(persons))


def _caught() -> int:
    return len(list((get_settings().mailbox_dir / "new").iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=500)
    args = parser.parse_args()
    catcher = mailcatcher.start(get_settings().mailbox_dir, "127.0.0.1", PORT)
    try:
        _site(args.people)
        began = time.perf_counter()
        drill_id = open_drill.fn(DrillParameters(facility="SITE", window_minutes=20))
        opened = time.perf_counter() - began
        began = time.perf_counter()
        sent = alert_participants.fn(drill_id)
        alerted = time.perf_counter() - began
        assert sent == args.people == _caught(), (sent, _caught())

        with session() as db:
            first = db.get(Person, 1)
            assert first is not None
            email = first.email
        before = _caught()
        began = time.perf_counter()
        for i in range(args.people):
            # A fresh instance per message, as a per-message send is written: one reused instance would also
            # wait out Apprise's per-plugin throttle (5.5 s between notifications).
            notifier = apprise.Apprise()
            notifier.add(f"{MAIL_URL}&to={email}")
            assert notifier.notify(title=f"DRILL: Fire evacuation ({i})", body="<p>Are you accounted for?</p>",
                                   body_format=apprise.NotifyFormat.HTML)
        per_message = time.perf_counter() - began
        assert _caught() - before == args.people

        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "ops@bench.example", email, "DRILL: Fire evacuation"
        message.set_content("Are you accounted for?")
        message.add_alternative("<p>Are you accounted for?</p>", subtype="html")
        raw = message.as_bytes()
        began = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", PORT) as smtp:
            for _ in range(args.people):
                smtp.sendmail("ops@bench.example", [email], raw)
        floor = time.perf_counter() - began
    finally:
        catcher.stop()
        shutil.rmtree(WORK, ignore_errors=True)

    n = args.people
    print(f"{n} people on one site's roster, SQLite registry, SMTP on loopback\n")
    rows = [("drill opened: steps, participants, trail", opened, None),
            ("every alert rendered, linked and delivered", alerted, n),
            ("start to last alert accepted (the two above)", opened + alerted, n),
            ("Apprise, one notify per message (baseline)", per_message, n),
            ("smtplib, pre-built, one session (floor)", floor, n)]
    for label, seconds, count in rows:
        rate = f"{count / seconds:8.0f} msg/s" if count else ""
        print(f"  {label:<46} {seconds:7.2f} s {rate}")
    print(f"\n  ours vs Apprise per message: {per_message / alerted:.1f}x faster for the same number of alerts")


if __name__ == "__main__":
    main()
